#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "cli/commands.h"
#include "core/error.h"

namespace chorus::cli {

std::string this_program(const std::string& command) {
  std::error_code ec;
  const std::string path = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  if (ec) fail(command, ": cannot find this program's path");
  return path;
}

CLI::Validator seed_number() {
  return CLI::Validator(
      [](const std::string& value) {
        if (value.find('-') != std::string::npos) return std::string("a seed is a whole number of 0 or more");
        // CLI11 saturates a number past 2^64 - 1 at that without a word.
        errno = 0;
        std::strtoull(value.c_str(), nullptr, 10);
        return errno == ERANGE ? std::string("a seed is at most 18446744073709551615") : std::string();
      },
      "SEED");
}

CLI::Validator finite_number(double least) {
  return CLI::Validator(
      [least](const std::string& value) {
        double v = 0;
        try {
          v = std::stod(value);
        } catch (const std::exception&) {
          return std::string();  // not a number at all: the option's own conversion says so
        }
        if (!std::isfinite(v)) return "a finite number, not " + value;
        if (v < least) {
          std::ostringstream text;
          text << value << " is below " << least;
          return text.str();
        }
        return std::string();
      },
      "NUMBER");
}

int run_cli(int argc, char** argv, runtime::Transport& transport) {
  CLI::App app{"Chorus: run one neural network across a cluster of small devices"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "chorus 0.1.0");
  add_info_command(app);
  int exit_code = 0;
  add_run_command(app, transport, exit_code);
  add_plan_command(app);
  add_init_weights_command(app);
  add_bench_command(app);
  add_profile_command(app);
  add_cluster_command(app);
  add_supervise_command(app, exit_code);
  add_testbed_command(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Every rank of a job has the same arguments, so one rank says what is wrong with them.
    if (transport.rank() == 0) return app.exit(e);
    std::ostringstream quiet;
    return app.exit(e, quiet, quiet);
  }
  return exit_code;
}

}  // namespace chorus::cli
