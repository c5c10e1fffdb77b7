#include "core/threads.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "core/error.h"

namespace chorus {

bool set_blas_threads(int threads) {
  if (threads < 1) threads = 1;
  // Looked up at run time because Armadillo reaches OpenBLAS through Debian's libblas.so.3
  // alternative: the symbol exists only when that alternative is OpenBLAS.
  using SetThreads = void (*)(int);
  bool found = false;
  for (const char* name : {"openblas_set_num_threads", "goto_set_num_threads"}) {
    if (auto fn = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, name))) {
      fn(threads);
      found = true;
      break;
    }
  }
  if (auto fn = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"))) fn(threads);
  return found;
}

std::string blas_kernels() {
  using CoreName = char* (*)();
  if (auto fn = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename")))
    if (const char* name = fn()) return std::string("OpenBLAS, ") + name + " kernels";
  return "unknown";
}

int usable_cpus() {
  // The host's online CPUs, not this process' affinity mask: mpirun binds each of a few ranks
  // to one core by default, and threads capped to that would hide the binding instead of
  // showing it in the run's speed.
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  return online > 0 ? static_cast<int>(online) : std::max(1u, std::thread::hardware_concurrency());
}

int checked_thread_count(int requested, bool warn) {
  if (requested < 0) fail("--threads ", requested, ": give a count of at least 1, or 0 for one per CPU");
  const int cpus = usable_cpus();
  if (requested == 0) return cpus;
  if (requested > cpus) {
    if (warn)
      std::fprintf(stderr, "chorus: warning: --threads %d is more than the %d CPU(s) of this host; using %d\n",
                   requested, cpus, cpus);
    return cpus;
  }
  return requested;
}

}  // namespace chorus
