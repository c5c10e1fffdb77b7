#include "layers/gemm.h"

#include <algorithm>
#include <armadillo>

#include "core/parallel.h"

namespace chorus::layers {

namespace {

// Below this many multiply-adds a split costs more than it gains.
constexpr double kMinParallelMacs = 2e5;
// Panel edges on multiples of this, the width of OpenBLAS' sgemm kernels.
constexpr int kPanelAlign = 16;

void serial_gemm(char trans_a, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c, int ldc,
                 float beta) {
  arma::blas_int bm = m, bn = n, bk = k, blda = lda, bldb = ldb, bldc = ldc;
  const char trans_b = 'N';
  const float alpha = 1.0f;
  if (n == 1) {
    // One column (a dense layer on one frame): Debian's OpenBLAS 0.3.21 would pack all of A
    // for sgemm, reading a 400 MB weight matrix twice; sgemv streams it once.
    arma::blas_int rows = trans_a == 'N' ? bm : bk, cols = trans_a == 'N' ? bk : bm, one = 1;
    arma::blas::gemv<float>(&trans_a, &rows, &cols, &alpha, a, &blda, b, &one, &beta, c, &one);
    return;
  }
  arma::blas::gemm<float>(&trans_a, &trans_b, &bm, &bn, &bk, &alpha, a, &blda, b, &bldb, &beta, c, &bldc);
}

// Splits C across the compute threads, each part a single-threaded BLAS call. Splitting the
// columns makes every thread pack all of A, splitting the rows all of B: the smaller one is
// packed twice.
void call_gemm(char trans_a, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c, int ldc,
               float beta) {
  if (parallel_threads() == 1 || static_cast<double>(m) * n * k < kMinParallelMacs) {
    serial_gemm(trans_a, m, n, k, a, lda, b, ldb, c, ldc, beta);
    return;
  }
  if (n > m)
    parallel_range(
        n, kPanelAlign,
        [&](std::int64_t j0, std::int64_t j1) {
          serial_gemm(trans_a, m, static_cast<int>(j1 - j0), k, a, lda, b + j0 * ldb, ldb, c + j0 * ldc, ldc, beta);
        },
        kPanelAlign);
  else
    parallel_range(
        m, kPanelAlign,
        [&](std::int64_t i0, std::int64_t i1) {
          const float* a_rows = trans_a == 'N' ? a + i0 : a + i0 * lda;
          serial_gemm(trans_a, static_cast<int>(i1 - i0), n, k, a_rows, lda, b, ldb, c + i0, ldc, beta);
        },
        kPanelAlign);
}

}  // namespace

void gemm(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c, int ldc, float beta) {
  call_gemm('N', m, n, k, a, lda, b, ldb, c, ldc, beta);
}

void gemm_at(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c, int ldc, float beta) {
  call_gemm('T', m, n, k, a, lda, b, ldb, c, ldc, beta);
}

}  // namespace chorus::layers
