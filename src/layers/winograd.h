#pragma once
// Winograd F(m x m, 3x3) convolution (Lavin & Gray 2016) for 3x3, stride-1, undilated,
// ungrouped convolutions on NHWC tensors: m = 2 (4x4 transformed tiles, 2.25x fewer
// multiplications than direct) or m = 4 (6x6 tiles, 4x fewer). The kernel is transformed once;
// each forward transforms input tiles in blocks, runs one packed_gemm per transformed position
// (tiles x channels times channels x filters, the transformed kernel packed once) and
// inverse-transforms with bias and activation.
#include <cstddef>
#include <vector>

#include "layers/activation.h"
#include "layers/layer.h"
#include "layers/packed_gemm.h"

namespace chorus::layers {

class Winograd3x3 {
 public:
  // `tile` is m (2 or 4); `kernel` is Keras' (3, 3, channels, filters), row-major.
  Winograd3x3(int tile, const std::vector<float>& kernel, int channels, int filters);

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
  int m_, alpha_, channels_, filters_;
  std::vector<PackedWeights> u_;  // per transformed position, channels x filters
};

}  // namespace chorus::layers
