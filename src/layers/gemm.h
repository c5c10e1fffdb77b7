#pragma once
// Matrix product through Armadillo's BLAS wrapper (OpenBLAS sgemm on Debian), column-major
// with explicit leading dimensions so results can land inside NHWC tensors without copies.
// Called outside a parallel task, a large product is split across the compute threads
// (core/parallel.h); inside one it runs on the calling thread.

namespace chorus::layers {

// C (m x n, leading dim ldc) = A (m x k, lda) * B (k x n, ldb) + beta * C. All column-major.
void gemm(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c, int ldc,
          float beta = 0.0f);

// Same with A transposed: C (m x n) = A^T * B where A is stored k x m (lda >= k).
void gemm_at(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c, int ldc,
             float beta = 0.0f);

}  // namespace chorus::layers
