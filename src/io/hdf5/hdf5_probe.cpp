#include "io/hdf5/hdf5_probe.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "core/error.h"
#include "io/hdf5/hdf5_file.h"

// Set by sanitizer runtimes only (a weak reference is null elsewhere): a fuzzer registers a callback
// that saves the input as a crash of its own, which a probe child's expected death is not.
extern "C" void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

namespace chorus::io {
namespace {
// The child's exit status when it read the whole structure (or HDF5 reported an error): anything
// else means it died on its way, e.g. through a sanitizer that turned a crash into exit(1).
constexpr int kProbeFinished = 0;
}  // namespace

namespace {
// Opens the file in the child; `path` names it in messages.
void probe(const std::string& path, const std::function<H5File()>& open, double timeout_s) {
  if (timeout_s <= 0) {
    const char* env = std::getenv("CHORUS_HDF5_PROBE_S");
    timeout_s = env ? std::atof(env) : 30.0;
    if (timeout_s <= 0) timeout_s = 30.0;
  }
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return;  // no child to spare: read it directly, as without the probe
  if (pid == 0) {
    // The default action for fatal signals, so that a crash ends the child at once: handlers the
    // process installed (AddressSanitizer's, a fuzzer's) would report it as their own failure.
    for (const int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) signal(sig, SIG_DFL);
    if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(nullptr);
    try {
      open().read_whole_structure();
    } catch (...) {
    }
    _exit(kProbeFinished);  // no destructors, no atexit handlers of the parent (MPI, HDF5's own)
  }
  const auto start = std::chrono::steady_clock::now();
  int status = 0;
  for (int sleep_ms = 1;; sleep_ms = std::min(sleep_ms * 2, 50)) {
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) return;
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_s) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      fail(path, ": the HDF5 library did not finish reading this file's structure in ", timeout_s,
           " s; the file is corrupt (a valid model file takes milliseconds)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
  }
  if (WIFSIGNALED(status))
    fail(path, ": the HDF5 library crashed reading this file's structure (", strsignal(WTERMSIG(status)),
         "); the file is corrupt");
  if (WIFEXITED(status) && WEXITSTATUS(status) != kProbeFinished)
    fail(path, ": the HDF5 library crashed reading this file's structure (exit status ", WEXITSTATUS(status),
         "); the file is corrupt");
}

}  // namespace

void probe_hdf5_structure(const std::string& path, double timeout_s) {
  probe(
      path, [&] { return H5File(path); }, timeout_s);
}

void probe_hdf5_image(const void* data, std::size_t size, const std::string& name, double timeout_s) {
  probe(
      name, [&] { return H5File::from_image(data, size, name); }, timeout_s);
}

}  // namespace chorus::io
