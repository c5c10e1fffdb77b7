#pragma once
// Thread count for BLAS (OpenBLAS) and OpenMP; one per rank unless the user asks for more.

namespace chorus {

// Sets the BLAS thread count at run time. Returns false when the loaded BLAS has no such knob.
bool set_blas_threads(int threads);

}  // namespace chorus
