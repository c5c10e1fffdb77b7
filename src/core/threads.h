#pragma once
// Thread count of BLAS (OpenBLAS) and OpenMP. Chorus keeps them at one (set_compute_threads in
// core/parallel.h): its own threads split the work and call BLAS inside each part.

namespace chorus {

// Sets the BLAS thread count at run time. Returns false when the loaded BLAS has no such knob.
bool set_blas_threads(int threads);

}  // namespace chorus
