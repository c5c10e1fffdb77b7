#pragma once
// One function pair per subcommand: `add_X_command` declares its options on the parser and
// arranges for the command to run when chosen.
#include <CLI/CLI.hpp>
#include <string>

#include "runtime/transport.h"

namespace chorus::cli {

void add_info_command(CLI::App& app);
// `exit_code` receives the run's status (set-up errors on some rank give 1).
void add_run_command(CLI::App& app, runtime::Transport& transport, int& exit_code);
void add_plan_command(CLI::App& app);
void add_init_weights_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_profile_command(CLI::App& app);
void add_cluster_command(CLI::App& app);
// `exit_code` receives the supervised job's status.
void add_supervise_command(CLI::App& app, int& exit_code);
// `exit_code` receives the job's status.
void add_testbed_command(CLI::App& app, int& exit_code);

// A check for number options that refuses NaN and infinities, which CLI11 reads (and its ranges
// let NaN through), and numbers below `least`.
CLI::Validator finite_number(double least = -1e308);

// A check for unsigned seeds: CLI11 reads "-1" into one as 2^64 - 1 without a word.
CLI::Validator seed_number();

// This program's path (supervise and testbed start it again under mpirun); `command` names the
// caller in the error when it cannot be found.
std::string this_program(const std::string& command);

}  // namespace chorus::cli
