#pragma once
// The layer interface. A layer is built once from its input shapes (which fixes its output
// shape and the weights it expects), then given its weights, then run any number of times
// through a const forward, so one loaded model serves many frames.
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/function_ref.h"
#include "layers/activation.h"
#include "tensor/tensor.h"

namespace chorus::layers {

// A weight as Keras names and stores it: "kernel" of shape (kh, kw, in, out), "bias" (out)...
struct WeightSpec {
  std::string name;
  std::vector<int> shape;
  std::size_t count() const;
  std::string shape_str() const;  // "(3, 3, 64, 128)"
};

// Weights by Keras name, each in Keras' own (row-major) element order.
using WeightMap = std::map<std::string, std::vector<float>>;

// Spatial padding in elements on each side.
struct Pads {
  int top = 0, bottom = 0, left = 0, right = 0;
};

// Keras padding modes. `same` follows TensorFlow: the extra element for an odd total goes at
// the bottom/right.
enum class Padding { valid, same };

// Output length and (before, after) padding of one spatial axis, as TensorFlow computes them.
struct AxisGeometry {
  int out = 0, pad_before = 0, pad_after = 0;
};
AxisGeometry axis_geometry(int in, int kernel, int stride, int dilation, Padding padding);

// A 2-D sliding window (convolution or pooling): its size, stride, dilation and padding,
// either a Keras mode or explicit pads (ONNX, row bands).
struct Window2D {
  int kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
  Padding padding = Padding::valid;
  bool explicit_pads = false;
  Pads pads;
};

// Output rows and columns of a window over `in`, and the pads it applies. Rows or columns of
// 0 mean the window does not fit.
struct WindowGeometry {
  int out_h = 0, out_w = 0;
  Pads pads;
};
WindowGeometry window_geometry(Shape in, const Window2D& window);

// How a layer's output rows read its input's rows, for row bands (plan/band_geometry): a window
// of `kernel` rows every `stride` rows, dilated, under `pad_top` rows of padding (convolutions,
// pooling; a 3-D layer's rows in every image), a shift down by `pad_top` rows (zero padding), or
// row for row.
struct RowWindow {
  enum class Kind { row_for_row, window, shift } kind = Kind::row_for_row;
  int kernel = 1, stride = 1, dilation = 1, pad_top = 0;
};

class Layer {
 public:
  explicit Layer(std::string name) : name_(std::move(name)) {}
  virtual ~Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  const std::string& name() const { return name_; }
  // The Keras class name ("Conv2D").
  virtual std::string type() const = 0;
  // Number of inputs it takes; 0 means two or more (merge layers), -1 that infer_shape checks.
  virtual int arity() const { return 1; }
  // Whether it takes clips (Shape::d > 1): 3-D layers, and those that treat every value or
  // every channel alike. Others are refused a clip when built, rather than reading one image.
  virtual bool takes_clips() const { return false; }

  // Fixes the input shapes and returns the output shape; throws chorus::Error naming the
  // layer when the inputs do not fit. Must be called before the calls below.
  Shape build(const std::vector<Shape>& inputs);
  const std::vector<Shape>& input_shapes() const { return inputs_; }
  const Shape& output_shape() const { return output_; }

  // The weights this layer expects, in Keras names and shapes (empty for most layers).
  virtual std::vector<WeightSpec> weight_specs() const { return {}; }
  // Takes (moves) the weights named by weight_specs(); throws when one is missing or mis-sized.
  virtual void set_weights(WeightMap weights) {}
  // Multiply-adds per frame (comparisons and adds count for pooling and merges).
  virtual double macs() const { return 0; }
  // Weight bytes held in memory.
  std::size_t weight_bytes() const;

  // Computes the output for a batch. `out` is resized by the layer; it never aliases an input
  // unless in_place() is true, in which case out may be *in[0].
  virtual void forward(const std::vector<const Tensor*>& in, Tensor& out) const = 0;
  virtual bool in_place() const { return false; }
  // forward(), writing the output in parts of positions (`parts`: bounds over the batch's
  // frames x rows x columns positions) and calling part_done(j, fraction) as soon as part j is
  // final, with the fraction of the layer's work done by then, so that a caller can send it
  // while the rest computes. By default the whole output is computed first.
  virtual void forward_in_parts(const std::vector<const Tensor*>& in, Tensor& out,
                                const std::vector<std::int64_t>& parts,
                                FunctionRef<void(int, double)> part_done) const;
  // The same for a batch of one position (a dense layer on one frame's vector), in parts of its
  // output channels: [parts[j], parts[j + 1]). By default the whole output is computed first.
  virtual void forward_channels_in_parts(const std::vector<const Tensor*>& in, Tensor& out,
                                         const std::vector<std::int64_t>& parts,
                                         FunctionRef<void(int, double)> part_done) const;
  // The fraction of the work forward_in_parts (and forward_channels_in_parts) does part by part
  // (the rest comes first): 0 for layers that compute their output whole.
  virtual double partwise_fraction() const { return 0.0; }
  // Whether every output position reads only the same position of its inputs (dense layers on
  // tokens, layer norm, element-wise layers), so that forward_positions computes any run of
  // positions: a split stage computes such layers part by part behind a reduction
  // (plan::part_runs).
  virtual bool positionwise() const { return false; }
  // Output positions [p0, p1) of a batch (its frames' positions back to back) from the same
  // positions of the inputs, into an `out` already sized. Only for positionwise() layers.
  virtual void forward_positions(const std::vector<const Tensor*>& in, Tensor& out, std::int64_t p0,
                                 std::int64_t p1) const;

  // The activation a producer can absorb (conv, dense, batch norm, add); null when none.
  virtual Activation* fusable_activation() { return nullptr; }
  // A short description of settings for `chorus info` ("3x3/1 same, relu").
  virtual std::string describe() const { return ""; }
  // A layer that reads every position but can take its input part by part (self-attention:
  // each position's projections): consume_positions does that share of its work for positions
  // [p0, p1) of a batch as they arrive, and once every position is consumed,
  // forward_consumed_in_parts does the rest, writing its output in parts as forward_in_parts
  // does. A split stage ends a parted run with such a layer (plan::PartRun::consumer).
  // consumable_fraction() is the share of the work consumed (0: the layer cannot).
  virtual double consumable_fraction() const { return 0.0; }
  virtual void consume_positions(const std::vector<const Tensor*>& in, std::int64_t p0, std::int64_t p1) const;
  virtual void forward_consumed_in_parts(const std::vector<const Tensor*>& in, Tensor& out,
                                         const std::vector<std::int64_t>& parts,
                                         FunctionRef<void(int, double)> part_done) const;
  // Which input rows its output rows read (known once built).
  virtual RowWindow row_window() const { return {}; }
  // The same along the columns (`pad_top` is then the left pad), for tiles of rows and columns.
  virtual RowWindow column_window() const { return {}; }

 protected:
  // Checks the input shapes, caches derived geometry, returns the output shape.
  virtual Shape infer_shape(const std::vector<Shape>& inputs) = 0;
  // Throws a chorus::Error that begins with "<type> '<name>': ".
  template <typename... Args>
  [[noreturn]] void fail_layer(const Args&... args) const {
    fail(type(), " '", name_, "': ", args...);
  }
  // Moves weight `spec.name` out of `weights` after checking its element count.
  std::vector<float> take_weight(WeightMap& weights, const WeightSpec& spec) const;

 private:
  std::string name_;
  std::vector<Shape> inputs_;
  Shape output_;
};

}  // namespace chorus::layers
