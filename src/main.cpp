// chorus: one SPMD binary for every command. Under mpirun every rank runs this same main;
// errors end the process (or, while streaming, the whole job) with a message, never a crash.
#include <cstdio>
#include <exception>

#include "cli/cli.h"
#include "core/error.h"
#include "runtime/stop_request.h"
#include "runtime/transport.h"

int main(int argc, char** argv) {
  // Before MPI_Init, which can take seconds: a stop request (SIGUSR1, from chorus supervise
  // through mpirun) that comes while a rank starts must not end it.
  chorus::runtime::install_stop_request_handler();
  // MPI first (when launched by mpirun), since MPI_Init may consume its own arguments.
  auto transport = chorus::runtime::make_transport(&argc, &argv);
  const std::string prefix = transport->size() > 1 ? "[rank " + std::to_string(transport->rank()) + "] " : "";
  try {
    return chorus::cli::run_cli(argc, argv, *transport);
  } catch (const chorus::Error& e) {
    std::fprintf(stderr, "%schorus: error: %s\n", prefix.c_str(), e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%schorus: error: out of memory\n", prefix.c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%schorus: internal error: %s\n", prefix.c_str(), e.what());
    return 2;
  }
}
