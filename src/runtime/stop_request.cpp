#include "runtime/stop_request.h"

#include <atomic>
#include <csignal>

namespace chorus::runtime {

namespace {
std::atomic<bool> g_stop{false};
extern "C" void on_stop_request(int) { g_stop.store(true); }
}  // namespace

void install_stop_request_handler() {
  struct sigaction action {};
  action.sa_handler = on_stop_request;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // MPI's and the decoders' system calls carry on
  sigaction(SIGUSR1, &action, nullptr);
}

bool stop_requested() { return g_stop.load(); }

}  // namespace chorus::runtime
