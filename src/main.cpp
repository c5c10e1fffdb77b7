// chorus: one binary for every command. Errors end the process with a message, never a crash.
#include <cstdio>
#include <exception>

#include "cli/cli.h"
#include "core/error.h"

int main(int argc, char** argv) {
  try {
    return chorus::cli::run_cli(argc, argv);
  } catch (const chorus::Error& e) {
    std::fprintf(stderr, "chorus: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "chorus: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chorus: internal error: %s\n", e.what());
    return 2;
  }
}
