#include "layers/gemm.h"

#include <algorithm>
#include <armadillo>
#include <cstddef>

#include "core/parallel.h"
#include "layers/vec8.h"

namespace chorus::layers {

namespace {

// Below this many multiply-adds a split costs more than it gains.
constexpr double kMinParallelMacs = 2e5;
// OpenBLAS takes its small-matrix kernels up to this many multiply-adds (see serial_gemm).
constexpr double kSmallProductMacs = 1e6;
// Panel edges on multiples of this, the width of OpenBLAS' sgemm kernels.
constexpr int kPanelAlign = 16;

// y (m) = A (m x k, column-major, lda) * x + beta * y, streaming A once: column j is added
// x[j] times, four columns per pass over y (four sequential reads; y stays in L1). A dense
// layer on one frame is bound by how fast its weights arrive: this loop drew 35.8 GB/s from a
// 151 MB matrix on one core where OpenBLAS' sgemv drew 30 (BM_Dense, 2026-11-27).
void stream_gemv(int m, int k, const float* __restrict a, int lda, const float* __restrict x, float* __restrict y,
                 float beta) {
  if (beta == 0.0f)
    std::fill(y, y + m, 0.0f);
  else if (beta != 1.0f)
    for (int i = 0; i < m; ++i) y[i] *= beta;
  const auto column = [&](int j) { return a + static_cast<std::size_t>(j) * lda; };
  int j = 0;
  for (; j + 4 <= k; j += 4) {
    const float x0 = x[j], x1 = x[j + 1], x2 = x[j + 2], x3 = x[j + 3];
    const float *a0 = column(j), *a1 = column(j + 1), *a2 = column(j + 2), *a3 = column(j + 3);
    int i = 0;
    for (; i + kVecWLanes <= m; i += kVecWLanes)
      storew(y + i, loadw(y + i) + x0 * loadw(a0 + i) + x1 * loadw(a1 + i) + x2 * loadw(a2 + i) + x3 * loadw(a3 + i));
    for (; i < m; ++i) y[i] += x0 * a0[i] + x1 * a1[i] + x2 * a2[i] + x3 * a3[i];
  }
  for (; j < k; ++j) {
    const float xj = x[j], *aj = column(j);
    for (int i = 0; i < m; ++i) y[i] += xj * aj[i];
  }
}

void serial_gemm(char trans_a, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c, int ldc,
                 float beta) {
  arma::blas_int bm = m, bn = n, bk = k, blda = lda, bldb = ldb, bldc = ldc;
  const char trans_b = 'N';
  const float alpha = 1.0f;
  // One column (a dense layer on one frame): Debian's OpenBLAS 0.3.21 would pack all of A for
  // sgemm, reading a 400 MB weight matrix twice; a matrix-vector product streams it once.
  if (n == 1 && trans_a == 'N') {
    stream_gemv(m, k, a, lda, b, c, beta);
    return;
  }
  // Products small enough for OpenBLAS' small-matrix kernels (m * n * k up to 100^3): its
  // SkylakeX 'NN' kernel calls malloc on every call when m is not a multiple of 16 (OpenBLAS
  // 0.3.21, measured with the allocation counter: m = 21, 22, 24, 100 allocate; 64, 96 do not),
  // and a steady state must not allocate (a head or a Dense slice of a split has such shapes).
  // Column by column, each a streamed matrix-vector product, they stay in cache anyway.
  if (trans_a == 'N' && static_cast<double>(m) * n * k <= kSmallProductMacs) {
    for (int j = 0; j < n; ++j)
      stream_gemv(m, k, a, lda, b + static_cast<std::size_t>(j) * ldb, c + static_cast<std::size_t>(j) * ldc, beta);
    return;
  }
  if (n == 1) {
    arma::blas_int rows = bk, cols = bm, one = 1;
    arma::blas::gemv<float>(&trans_a, &rows, &cols, &alpha, a, &blda, b, &one, &beta, c, &one);
    return;
  }
  arma::blas::gemm<float>(&trans_a, &trans_b, &bm, &bn, &bk, &alpha, a, &blda, b, &bldb, &beta, c, &bldc);
}

// Splits C across the compute threads, each part one single-threaded BLAS call (whole ranges:
// each call packs its operand again). Splitting the columns makes every thread pack all of A,
// splitting the rows all of B: the smaller one is packed twice.
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
        kPanelAlign, /*whole_ranges=*/true);
  else
    parallel_range(
        m, kPanelAlign,
        [&](std::int64_t i0, std::int64_t i1) {
          const float* a_rows = trans_a == 'N' ? a + i0 : a + i0 * lda;
          serial_gemm(trans_a, static_cast<int>(i1 - i0), n, k, a_rows, lda, b, ldb, c + i0, ldc, beta);
        },
        kPanelAlign, /*whole_ranges=*/true);
}

}  // namespace

void gemm(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c, int ldc, float beta) {
  call_gemm('N', m, n, k, a, lda, b, ldb, c, ldc, beta);
}

void gemm_at(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c, int ldc, float beta) {
  call_gemm('T', m, n, k, a, lda, b, ldb, c, ldc, beta);
}

}  // namespace chorus::layers
