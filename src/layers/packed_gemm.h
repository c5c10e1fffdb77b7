#pragma once
// The product of a convolution's or a Dense layer's inputs with weights packed once at load (a
// Dense layer on one vector: packed_gemv, below); for convolutions, every 1x1 or im2col
// layer without groups (and outside Winograd) that has k >= 64 inputs and 32 filters or more
// (ResNet-50's 1x1 and 512-channel 3x3 layers, MobileNetV2's larger 1x1 layers), and every such
// layer where the build has AVX-512. OpenBLAS packs both operands on every call and zeroes C
// first; here the weights are packed in panels of 16 filters when the layer is loaded, the
// inputs are read in place, the bias starts the sums and clamping activations (relu, relu6) are
// applied in registers before the store. A tile keeps 6 pixels x one panel in AVX2's or NEON's
// registers, 12 pixels x two panels in AVX-512's.
#include <vector>

#include "core/aligned.h"
#include "layers/activation.h"

namespace chorus::layers {

class PackedWeights {
 public:
  // `w` is k x filters, row-major (Chorus' kernel layout).
  PackedWeights(const float* w, int k, int filters);
  PackedWeights(const std::vector<float>& w, int k, int filters);
  // Takes `w` and frees it: its pages go back to the system as their rows are packed, so that a
  // large layer (VGG16's first dense layer, 411 MB) is never held twice.
  PackedWeights(std::vector<float>&& w, int k, int filters);

  int k() const { return k_; }
  int filters() const { return filters_; }
  // Multiplies filter f's weights by scale[f] (a folded batch norm).
  void scale_filters(const std::vector<float>& scale);
  // Panel j: filters [16j, 16j + 16), k rows of 16 floats (zeros past the last filter).
  const float* panel(int j) const { return data_.get() + static_cast<std::size_t>(j) * k_ * 16; }
  int panels() const { return (filters_ + 15) / 16; }
  // Floats held (the filters rounded up to 16).
  std::size_t floats() const { return static_cast<std::size_t>(panels()) * k_ * 16; }

 private:
  int k_, filters_;
  // Rows [i0, i1) of `w` (k x filters, row-major) into every panel, the padding zeroed.
  void pack_rows(const float* w, int i0, int i1);
  AlignedFloats data_;  // a panel row is one cache line; written row by row, never zero-filled first
};

// Panels a tile of packed_gemm takes at once (four with AVX-512, else one): threads that share a
// layer by panels split it on multiples of this, or their tiles come out narrower.
int packed_gemm_tile_panels();

// Whether packed_gemm is worth its packing for `k` inputs and `filters` outputs per pixel.
bool prefer_packed_gemm(int k, int filters);

// The product of one vector with packed weights: out[f] = sum_i x[i - k0] * w(i, f) over rows
// [k0, k1) of k, for filters [f0, f1) only (added to out[f] when `accumulate`). The panels are
// adjacent, so the weights are read as one stream (a dense layer on one frame is bound by how
// fast they arrive). Runs on the calling thread.
void packed_gemv(const float* x, const PackedWeights& w, int k0, int k1, float* out, int f0, int f1,
                 bool accumulate = false);

// out[p * filters + f] = act(bias[f] + sum_i in[p * ldi + i] * w(i, f) + residual[p * filters + f])
// for p in [0, pixels) and the filters of panels [first_panel, end_panel) (-1: to the last), so
// that threads can share a layer of few pixels by filters; a part of the panels needs an
// activation that Activation::as_clamp accepts. `bias` and `residual` (a residual connection's
// other input, added before the activation) may be null. Runs on the calling thread.
void packed_gemm(const float* in, int ldi, int pixels, const PackedWeights& w, const float* bias,
                 const Activation& act, float* out, int first_panel = 0, int end_panel = -1,
                 const float* residual = nullptr);

}  // namespace chorus::layers
