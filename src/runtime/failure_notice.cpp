#include "runtime/failure_notice.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>

namespace chorus::runtime {

namespace {

// Two buffers, switched atomically, so the handler never reads one being written.
constexpr std::size_t kBytes = 512;
char g_who[kBytes];
char g_waiting[2][kBytes];
std::atomic<int> g_current{0};
std::atomic<bool> g_is_waiting{false};

void write_all(const char* text) {
  std::size_t left = std::strlen(text);
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, text, left);
    if (n <= 0) return;
    text += n;
    left -= static_cast<std::size_t>(n);
  }
}

extern "C" void on_termination(int signal_number) {
  write_all("[");
  write_all(g_who);
  write_all("] ended by mpirun (a peer failed or the job was stopped)");
  if (g_is_waiting.load()) {
    write_all("; it was waiting for ");
    write_all(g_waiting[g_current.load()]);
  }
  write_all("\n");
  _exit(128 + signal_number);
}

}  // namespace

void install_failure_notice(const std::string& who) {
  std::snprintf(g_who, kBytes, "%s", who.c_str());
  struct sigaction action {};
  action.sa_handler = on_termination;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
}

void note_waiting(const char* what) {
  const int next = 1 - g_current.load();
  std::snprintf(g_waiting[next], kBytes, "%s", what);
  g_current.store(next);
  g_is_waiting.store(true);
}

void note_not_waiting() { g_is_waiting.store(false); }

void silence_failure_notice() {
  std::signal(SIGTERM, SIG_DFL);
  std::signal(SIGINT, SIG_DFL);
}

}  // namespace chorus::runtime
