#pragma once
// The `chorus` command line: parses arguments and runs one subcommand.

#include "runtime/transport.h"

namespace chorus::cli {

// Returns the process exit code; throws chorus::Error for user errors (main prints them).
int run_cli(int argc, char** argv, runtime::Transport& transport);

}  // namespace chorus::cli
