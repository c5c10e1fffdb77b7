#include "core/threads.h"

#include <dlfcn.h>

#include <cstdlib>
#include <string>

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

}  // namespace chorus
