#pragma once
// Thread count of BLAS (OpenBLAS) and OpenMP. Chorus keeps them at one (set_compute_threads in
// core/parallel.h): its own threads split the work and call BLAS inside each part.

#include <string>

namespace chorus {

// CPUs of this host (online), at least 1.
int usable_cpus();

// The compute thread count for a --threads option: 0 means one per CPU of the host; a count
// above the host's CPUs is capped to them, with a warning on stderr when `warn` (threads beyond
// the cores only take turns, and tens of thousands of them swamp the machine); a negative one is
// an error.
int checked_thread_count(int requested, bool warn = true);

// Sets the BLAS thread count at run time. Returns false when the loaded BLAS has no such knob.
bool set_blas_threads(int threads);

// The kernels the loaded BLAS runs, for reports: "OpenBLAS, Haswell kernels" where OpenBLAS says,
// else "unknown". OpenBLAS picks them by CPU model, and a model newer than the library gets
// old ones: Debian 12's 0.3.21 runs Prescott's (SSE3) on an Emerald Rapids Xeon, sgemm at
// 20 GFLOP/s against 103 with OPENBLAS_CORETYPE=SkylakeX.
std::string blas_kernels();

}  // namespace chorus
