#pragma once
// Winograd F(m x m, r x r) convolution (Lavin & Gray 2016) for stride-1, undilated, ungrouped
// convolutions on NHWC tensors: 3x3 kernels with m = 2 (4x4 transformed tiles, 2.25x fewer
// multiplications than direct) or m = 4 (6x6 tiles, 4x fewer), and 5x5 kernels with m = 2 (6x6
// tiles, 2.8x fewer: AlexNet's second layer). The kernel is transformed once;
// each forward transforms input tiles in blocks, runs one packed_gemm per transformed position
// (tiles x channels times channels x filters, the transformed kernel packed once) and
// inverse-transforms with bias and activation.
#include <cstddef>
#include <vector>

#include "layers/activation.h"
#include "layers/layer.h"
#include "layers/packed_gemm.h"

namespace chorus::layers {

class Winograd {
 public:
  // `kernel_size` is r and `tile` m: (3, 2), (3, 4) or (5, 2). `kernel` is Keras' (r, r,
  // channels, filters), row-major.
  Winograd(int kernel_size, int tile, const std::vector<float>& kernel, int channels, int filters);

  int kernel_size() const { return r_; }
  int tile() const { return m_; }
  // Multiplies output channel co of the kernel by scale[co] (a folded batch norm).
  void scale_filters(const std::vector<float>& scale);
  // Floats held by the transformed kernel.
  std::size_t floats() const;

  // out (frames x out_h x out_w x filters) = act(conv(in) + bias) where in is frames x in_h x
  // in_w x channels and pads give the zero rows/columns before the input (those after follow
  // from the output size). `bias` is filters floats or null.
  void forward(const float* in, int frames, int in_h, int in_w, Pads pads, int out_h, int out_w, const float* bias,
               const Activation& activation, float* out) const;

 private:
  int r_, m_, alpha_, channels_, filters_;
  int fewest_local_tiles_;        // tiles a thread's own block takes at least (see forward)
  std::vector<PackedWeights> u_;  // per transformed position, channels x filters
};

}  // namespace chorus::layers
