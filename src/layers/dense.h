#pragma once
// Fully connected layer (Keras Dense) on the last axis: every (row, column) position of the
// input is mapped from `in` to `units` values, so on a flattened input it is the usual
// matrix-vector product. Kernel in Keras order (in, units) = column-major (units x in). On
// sequences (more than one position per frame: a transformer's tokens) the kernel is packed
// once at load for packed_gemm, which sgemm would otherwise repack on every call; a vector's
// kernel (VGG16's fc6: 411 MB) stays as it is, streamed once per frame.
#include <memory>

#include "layers/layer.h"
#include "layers/packed_gemm.h"

namespace chorus::layers {

struct DenseSettings {
  int units = 1;
  bool use_bias = true;
  Activation activation;
};

class Dense : public Layer {
 public:
  Dense(std::string name, DenseSettings settings);
  std::string type() const override { return "Dense"; }
  const DenseSettings& settings() const { return settings_; }

  std::vector<WeightSpec> weight_specs() const override;
  void set_weights(WeightMap weights) override;
  double macs() const override;
  void forward(const std::vector<const Tensor*>& in, Tensor& out) const override;
  void forward_in_parts(const std::vector<const Tensor*>& in, Tensor& out, const std::vector<std::int64_t>& parts,
                        FunctionRef<void(int, double)> part_done) const override;
  double partwise_fraction() const override { return 1.0; }
  bool positionwise() const override { return true; }
  void forward_channels_in_parts(const std::vector<const Tensor*>& in, Tensor& out,
                                 const std::vector<std::int64_t>& parts,
                                 FunctionRef<void(int, double)> part_done) const override;
  void forward_positions(const std::vector<const Tensor*>& in, Tensor& out, std::int64_t p0,
                         std::int64_t p1) const override;
  Activation* fusable_activation() override { return &settings_.activation; }
  std::string describe() const override;
  // A vector's product taken block by block of its input, as the blocks arrive (a split stage's
  // gathered slices: partition::StageWorker). multiply_input_block multiplies input channels
  // [c0, c1) of `frames` vectors (x: frames x (c1 - c0), frame after frame) into `out` (frames x
  // units), setting it or adding to it (`accumulate`); finish_vectors then adds the bias and
  // applies the activation.
  void multiply_input_block(const float* x, int frames, int c0, int c1, float* out, bool accumulate) const;
  void finish_vectors(float* out, int frames) const;
  void fold_scale_shift(const std::vector<float>& scale, const std::vector<float>& shift);

 protected:
  Shape infer_shape(const std::vector<Shape>& in) override;

 private:
  void compute_positions(const Tensor& x, Tensor& out, std::int64_t p0, std::int64_t p1) const;
  // out[u] = x . kernel(c0..c1, u) for units [u0, u1) (added to out[u] when `accumulate`), where
  // x holds input channels [c0, c1); split among the threads, or inline inside a task.
  void multiply_vector(const float* x, int c0, int c1, float* out, int u0, int u1, bool accumulate) const;
  DenseSettings settings_;
  std::vector<float> kernel_;  // empty once packed
  std::vector<float> bias_;
  std::unique_ptr<PackedWeights> packed_;
};

}  // namespace chorus::layers
