#include "cli/cli.h"

#include <CLI/CLI.hpp>
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
