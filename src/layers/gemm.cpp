#include "layers/gemm.h"

#include <armadillo>

namespace chorus::layers {

namespace {
void call_gemm(char trans_a, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
               int ldc, float beta) {
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
}  // namespace

void gemm(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c, int ldc, float beta) {
  call_gemm('N', m, n, k, a, lda, b, ldb, c, ldc, beta);
}

void gemm_at(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c, int ldc,
             float beta) {
  call_gemm('T', m, n, k, a, lda, b, ldb, c, ldc, beta);
}

}  // namespace chorus::layers
