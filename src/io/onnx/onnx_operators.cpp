#include "io/onnx/onnx_operators.h"

#include <cmath>
#include <functional>
#include <limits>
#include <map>

#include "layers/activation_layer.h"
#include "layers/batch_norm.h"
#include "layers/conv2d.h"
#include "layers/layers3d.h"
#include "layers/dense.h"
#include "layers/depthwise_conv2d.h"
#include "layers/layer_norm.h"
#include "layers/lrn.h"
#include "layers/merge.h"
#include "layers/pooling.h"
#include "layers/tokens.h"

namespace chorus::io {

using namespace chorus::layers;

namespace {

void require_rank(const OnnxNode& n, const OnnxValue& x, int rank) {
  if (x.rank() != rank)
    n.fail("expects a ", rank == 4 ? "4-D (N, C, H, W)" : "2-D (N, D)", " input, found ", dims_str(x.dims));
}

// ---- Weight layouts -------------------------------------------------------------------------

// Conv weight (O, I, k...) to Keras' (k..., I, O): (kH, kW, I, O) for Conv2D, (kD, kH, kW, I, O)
// for Conv3D, and for a depthwise layer (`depth_multiplier` m > 0; I = 1, O = C * m) Keras'
// (kH, kW, C, m), which is the same array. Laid out as it is read, so the file's copy is never
// held beside it; a slice of the filters (of the channels, depthwise) reads only their rows of
// the file, and a slice of the inputs keeps only theirs. Other slices come whole and the reader
// cuts them.
OnnxWeightRecipe conv_kernel(std::string tensor, std::string node, std::vector<std::int64_t> d,
                             std::int64_t depth_multiplier = 0) {
  return [=](const OnnxConstants& c, const WeightSlice& slice) {
    const std::size_t o_n = d[0], i_n = d[1];
    std::size_t k_n = 1;  // kernel positions
    for (std::size_t a = 2; a < d.size(); ++a) k_n *= static_cast<std::size_t>(d[a]);
    // Keras' axes: kernel positions, then I (C, depthwise), then O (m).
    const int i_axis = static_cast<int>(d.size()) - 2, o_axis = i_axis + 1;
    std::size_t o0 = 0, o1 = o_n, i0 = 0, i1 = i_n;
    if (depth_multiplier > 0 && slice.axis == i_axis) {
      o0 = slice.begin * depth_multiplier;
      o1 = slice.end * depth_multiplier;
    } else if (depth_multiplier == 0 && slice.axis == o_axis) {
      o0 = slice.begin, o1 = slice.end;
    } else if (depth_multiplier == 0 && slice.axis == i_axis) {
      i0 = slice.begin, i1 = slice.end;
    }
    CHORUS_ASSERT(o0 <= o1 && o1 <= o_n && i0 <= i1 && i1 <= i_n, "conv kernel ", tensor, ": slice ", slice.begin, "..",
                  slice.end, " of axis ", slice.axis);
    const std::size_t out_o = o1 - o0, out_i = i1 - i0;
    std::vector<float> out(k_n * out_i * out_o);
    c.stream_floats(
        tensor, node,
        [&](std::size_t first, const float* v, std::size_t n) {
          std::size_t o = first / (i_n * k_n), i = first / k_n % i_n, k = first % k_n;
          CHORUS_ASSERT(o >= o0 && first + n <= o1 * i_n * k_n, "conv kernel ", tensor, ": values ", first, "+", n);
          for (std::size_t j = 0; j < n; ++j) {
            if (i >= i0 && i < i1) out[(k * out_i + (i - i0)) * out_o + (o - o0)] = v[j];
            if (++k == k_n) {
              k = 0;
              if (++i == i_n) i = 0, ++o;
            }
          }
        },
        o0 * i_n * k_n, out_o * i_n * k_n);
    return out;
  };
}

// A matrix (rows, cols), transposed if asked, every value times `scale`: Keras' (in, units).
// Laid out as it is read, so that the largest weights (VGG16's first Dense: 411 MB) are held once,
// and for a slice only its part is laid out: a split member never holds the whole. A slice of the
// file's rows reads only those rows.
OnnxWeightRecipe matrix(std::string tensor, std::string node, std::int64_t rows, std::int64_t cols, bool transpose,
                        float scale) {
  return [=](const OnnxConstants& c, const WeightSlice& slice) {
    const std::size_t r_n = static_cast<std::size_t>(rows), c_n = static_cast<std::size_t>(cols);
    // Output (d0, d1) = (rows, cols), or (cols, rows) transposed; the slice keeps [lo, hi) of
    // output axis `axis` (axis -1: all of it).
    const std::size_t d1 = transpose ? r_n : c_n;
    const int axis = slice.axis;
    const std::size_t lo = axis < 0 ? 0 : static_cast<std::size_t>(slice.begin);
    const std::size_t hi = axis < 0 ? 0 : static_cast<std::size_t>(slice.end);
    const std::size_t out_d1 = axis == 1 ? hi - lo : d1;
    const std::size_t out_d0 = axis == 0 ? hi - lo : (transpose ? c_n : r_n);
    CHORUS_ASSERT(axis < 0 || (axis <= 1 && lo <= hi && hi <= (axis == 0 ? (transpose ? c_n : r_n) : d1)), "matrix ",
                  tensor, ": slice ", lo, "..", hi, " of axis ", axis);
    std::vector<float> m(out_d0 * out_d1);
    // The file's row r is output row r, or output column r when transposed.
    const bool rows_sliced = axis == (transpose ? 1 : 0);
    const std::size_t first_row = rows_sliced ? lo : 0, end_row = rows_sliced ? hi : r_n;
    c.stream_floats(
        tensor, node,
        [&](std::size_t first, const float* v, std::size_t n) {
          CHORUS_ASSERT(first + n <= r_n * c_n, "matrix ", tensor, " has more than ", r_n * c_n, " values");
          std::size_t r = first / c_n, k = first % c_n;
          for (std::size_t i = 0; i < n; ++i) {
            std::size_t i0 = transpose ? k : r, i1 = transpose ? r : k;
            const bool kept = axis < 0 || (axis == 0 ? i0 >= lo && i0 < hi : i1 >= lo && i1 < hi);
            if (kept) {
              if (axis == 0) i0 -= lo;
              if (axis == 1) i1 -= lo;
              m[i0 * out_d1 + i1] = v[i] * scale;
            }
            if (++k == c_n) {
              k = 0;
              ++r;
            }
          }
        },
        first_row * c_n, (end_row - first_row) * c_n);
    return m;
  };
}

// A constant of 1 or `n` values as `n` values, each `scale * f(v)`.
OnnxWeightRecipe per_channel(std::string tensor, std::string node, int n, std::function<float(float)> f) {
  return [=](const OnnxConstants& c, const WeightSlice&) {
    std::vector<float> v = c.floats(tensor, node);
    std::vector<float> out(n);
    for (int i = 0; i < n; ++i) out[i] = f(v.size() == 1 ? v[0] : v.at(i));
    return out;
  };
}

OnnxWeightRecipe filled(int n, float value) {
  return [=](const OnnxConstants&, const WeightSlice&) { return std::vector<float>(n, value); };
}


// True when a constant of dims `c` broadcasts over `x` along the channel axis only.
bool is_per_channel(const std::vector<std::int64_t>& c, const std::vector<std::int64_t>& x) {
  if (c.size() > x.size()) return false;
  const std::size_t offset = x.size() - c.size(), axis = channel_axis(static_cast<int>(x.size()));
  for (std::size_t j = 0; j < c.size(); ++j)
    if (c[j] != 1 && !(j + offset == axis && c[j] == x[axis])) return false;
  return true;
}

// True when a constant of dims `c` has the shape of one frame of the sequence `x` (N, L, D):
// (L, D) or (1, L, D), as position embeddings have.
bool is_per_frame(const std::vector<std::int64_t>& c, const std::vector<std::int64_t>& x) {
  if (x.size() != 3) return false;
  return c == std::vector<std::int64_t>{x[1], x[2]} || c == std::vector<std::int64_t>{1, x[1], x[2]};
}

std::int64_t count_of(const std::vector<std::int64_t>& dims) {
  std::int64_t n = 1;
  for (auto d : dims) n *= d;
  return n;
}

// ---- Sliding windows ------------------------------------------------------------------------

struct Window {
  int kernel_h, kernel_w, stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
  Pads pads;
};

std::vector<std::int64_t> pair_attr(const OnnxNode& n, const char* name, std::vector<std::int64_t> fallback,
                                    std::size_t size = 2) {
  auto v = n.attr_ints(name, std::move(fallback));
  if (v.size() != size) n.fail("'", name, "' has ", v.size(), " values, expected ", size);
  for (auto x : v)
    if (x < 0 || x > 1 << 20) n.fail("'", name, "' holds ", x);
  return v;
}

// A window over `axes` spatial axes: kernel, strides, dilations, and pads before and after.
struct WindowAxes {
  std::vector<int> kernel, stride, dilation, before, after;
};

// Kernel, strides, dilations and padding (pads or auto_pad, and ceil_mode for pools) over the
// spatial axes of x (dims 2 on), as explicit pads.
WindowAxes read_window_axes(const OnnxNode& n, const OnnxValue& x, std::vector<std::int64_t> kernel, bool ceil_mode) {
  const std::size_t axes = x.dims.size() - 2;
  if (n.has_attr("kernel_shape")) {
    auto k = pair_attr(n, "kernel_shape", {}, axes);
    if (!kernel.empty() && k != kernel)
      n.fail("kernel_shape ", dims_str(k), " differs from the weight's ", dims_str(kernel));
    kernel = k;
  }
  if (kernel.size() != axes) n.fail("kernel_shape is missing");
  const auto s = pair_attr(n, "strides", std::vector<std::int64_t>(axes, 1), axes);
  const auto d = pair_attr(n, "dilations", std::vector<std::int64_t>(axes, 1), axes);
  WindowAxes w;
  for (std::size_t a = 0; a < axes; ++a) {
    w.kernel.push_back(static_cast<int>(kernel[a]));
    w.stride.push_back(static_cast<int>(s[a]));
    w.dilation.push_back(static_cast<int>(d[a]));
    if (w.kernel[a] < 1 || w.stride[a] < 1 || w.dilation[a] < 1) n.fail("kernel, strides and dilations must be positive");
  }
  std::vector<int> in, &k = w.kernel, &st = w.stride, &dl = w.dilation, &before = w.before, &after = w.after;
  for (std::size_t a = 0; a < axes; ++a) in.push_back(static_cast<int>(x.dims[2 + a]));
  before.assign(axes, 0);
  after.assign(axes, 0);
  const std::string auto_pad = n.attr_string("auto_pad", "NOTSET");
  if (auto_pad == "NOTSET") {
    auto p = pair_attr(n, "pads", std::vector<std::int64_t>(2 * axes, 0), 2 * axes);  // [begins..., ends...]
    for (std::size_t a = 0; a < axes; ++a) {
      before[a] = static_cast<int>(p[a]);
      after[a] = static_cast<int>(p[axes + a]);
    }
  } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    for (std::size_t a = 0; a < axes; ++a) {
      const int out = (in[a] + st[a] - 1) / st[a];
      const int total = std::max((out - 1) * st[a] + (k[a] - 1) * dl[a] + 1 - in[a], 0);
      const int small = total / 2;
      before[a] = auto_pad == "SAME_UPPER" ? small : total - small;
      after[a] = total - before[a];
    }
  } else if (auto_pad != "VALID") {
    n.fail("auto_pad '", auto_pad, "' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID");
  }
  if (ceil_mode && auto_pad == "NOTSET") {
    // Output sizes rounded up, as PyTorch and ONNX Runtime do: a last window may start past the
    // input's end only if it starts inside the padding; the extra cells become bottom/right pads.
    for (std::size_t a = 0; a < axes; ++a) {
      const int span = in[a] + before[a] + after[a] - ((k[a] - 1) * dl[a] + 1);
      if (span < 0) continue;
      int out = (span + st[a] - 1) / st[a] + 1;
      if ((out - 1) * st[a] >= in[a] + before[a]) --out;
      after[a] += std::max((out - 1) * st[a] - span, 0);
    }
  }
  return w;
}

// The same over an image's rows and columns.
Window read_window(const OnnxNode& n, const OnnxValue& x, std::vector<std::int64_t> kernel, bool ceil_mode) {
  const WindowAxes a = read_window_axes(n, x, std::move(kernel), ceil_mode);
  Window w;
  w.kernel_h = a.kernel[0], w.kernel_w = a.kernel[1];
  w.stride_h = a.stride[0], w.stride_w = a.stride[1];
  w.dilation_h = a.dilation[0], w.dilation_w = a.dilation[1];
  w.pads = {a.before[0], a.after[0], a.before[1], a.after[1]};
  return w;
}

// The same over a clip's depth, rows and columns, as a Window3D with explicit pads.
Window3D read_window_3d(const OnnxNode& n, const OnnxValue& x, std::vector<std::int64_t> kernel, bool ceil_mode) {
  const WindowAxes a = read_window_axes(n, x, std::move(kernel), ceil_mode);
  Window3D w;
  w.explicit_pads = true;
  for (int i = 0; i < 3; ++i) {
    w.kernel[i] = a.kernel[i];
    w.stride[i] = a.stride[i];
    w.dilation[i] = a.dilation[i];
    w.pad_before[i] = a.before[i];
    w.pad_after[i] = a.after[i];
  }
  return w;
}

// ---- Convolution and matrix products --------------------------------------------------------

// Conv on a clip (N, C, D, H, W): Conv3D, weight (M, C, kD, kH, kW), no groups.
void convert_conv_3d(OnnxNode& n, const OnnxValue& x) {
  const auto wd = n.constant_dims(1);
  if (wd.size() != 5 || wd[1] != x.dims[1])
    n.fail("weight '", n.input_name(1), "' is ", dims_str(wd), ", expected (M, ", x.dims[1], ", kD, kH, kW) for input ",
           dims_str(x.dims));
  if (n.attr_int("group", 1) != 1) n.fail("group ", n.attr_int("group", 1), " is not supported on a 5-D input");
  Conv3DSettings s;
  s.filters = static_cast<int>(wd[0]);
  s.window = read_window_3d(n, x, {wd[2], wd[3], wd[4]}, false);
  s.use_bias = n.has_input(2);
  std::map<std::string, OnnxWeightRecipe> recipes;
  if (s.use_bias) {
    const auto bd = n.constant_dims(2);
    if (count_of(bd) != wd[0] || bd.size() != 1)
      n.fail("bias '", n.input_name(2), "' is ", dims_str(bd), ", expected (", wd[0], ")");
    recipes["bias"] = copied_constant(n.input_name(2), n.name());
  }
  recipes["kernel"] = conv_kernel(n.input_name(1), n.name(), wd);
  n.set_output(n.add_layer(std::make_unique<Conv3D>(n.name(), s), {x}, 5, std::move(recipes)));
}

void convert_conv(OnnxNode& n) {
  n.require_one_output();
  const OnnxValue& x = n.activation(0);
  if (x.rank() == 5) return convert_conv_3d(n, x);
  require_rank(n, x, 4);
  const auto wd = n.constant_dims(1);
  if (wd.size() != 4) n.fail("weight '", n.input_name(1), "' is ", dims_str(wd), ", expected (M, C/group, kH, kW)");
  const std::int64_t group = n.attr_int("group", 1), channels = x.dims[1], filters = wd[0];
  if (group < 1 || channels % group != 0 || filters % group != 0)
    n.fail("group ", group, " does not divide the input's ", channels, " channels and the weight's ", filters,
           " filters");
  if (wd[1] != channels / group)
    n.fail("weight '", n.input_name(1), "' is ", dims_str(wd), ", expected ", channels / group,
           " input channels per group for input ", dims_str(x.dims), " and group ", group);
  const Window w = read_window(n, x, {wd[2], wd[3]}, false);
  const bool bias = n.has_input(2);
  std::map<std::string, OnnxWeightRecipe> recipes;
  if (bias) {
    const auto bd = n.constant_dims(2);
    if (count_of(bd) != filters || bd.size() != 1)
      n.fail("bias '", n.input_name(2), "' is ", dims_str(bd), ", expected (", filters, ")");
    recipes["bias"] = copied_constant(n.input_name(2), n.name());
  }
  std::unique_ptr<Layer> layer;
  if (group > 1 && group == channels) {
    DepthwiseConv2DSettings s;
    s.kernel_h = w.kernel_h, s.kernel_w = w.kernel_w, s.stride_h = w.stride_h, s.stride_w = w.stride_w;
    s.dilation_h = w.dilation_h, s.dilation_w = w.dilation_w;
    s.depth_multiplier = static_cast<int>(filters / channels);
    s.explicit_pads = true;
    s.pads = w.pads;
    s.use_bias = bias;
    layer = std::make_unique<DepthwiseConv2D>(n.name(), s);
    recipes["depthwise_kernel"] = conv_kernel(n.input_name(1), n.name(), wd, s.depth_multiplier);
  } else {
    Conv2DSettings s;
    s.filters = static_cast<int>(filters);
    s.kernel_h = w.kernel_h, s.kernel_w = w.kernel_w, s.stride_h = w.stride_h, s.stride_w = w.stride_w;
    s.dilation_h = w.dilation_h, s.dilation_w = w.dilation_w;
    s.explicit_pads = true;
    s.pads = w.pads;
    s.groups = static_cast<int>(group);
    s.use_bias = bias;
    layer = std::make_unique<Conv2D>(n.name(), s);
    recipes["kernel"] = conv_kernel(n.input_name(1), n.name(), wd);
  }
  n.set_output(n.add_layer(std::move(layer), {x}, 4, std::move(recipes)));
}

// Y = alpha * A * B' + beta * C, with A computed (N, K) and B, C constants: a Dense layer.
void convert_gemm(OnnxNode& n) {
  const OnnxValue& a = n.activation(0);
  require_rank(n, a, 2);
  if (n.attr_int("transA", 0) != 0) n.fail("transA=1 on a computed input A is not supported");
  const bool trans_b = n.attr_int("transB", 0) != 0;
  const float alpha = n.attr_float("alpha", 1.0f), beta = n.attr_float("beta", 1.0f);
  const auto bd = n.constant_dims(1);
  if (bd.size() != 2) n.fail("B '", n.input_name(1), "' is ", dims_str(bd), ", expected a matrix");
  const std::int64_t k = trans_b ? bd[1] : bd[0], units = trans_b ? bd[0] : bd[1];
  if (k != a.dims[1])
    n.fail("B '", n.input_name(1), "' is ", dims_str(bd), (trans_b ? " (transB=1)" : ""), ", which takes ", k,
           " inputs, but A is ", dims_str(a.dims));
  std::map<std::string, OnnxWeightRecipe> recipes;
  recipes["kernel"] = matrix(n.input_name(1), n.name(), bd[0], bd[1], trans_b, alpha);
  DenseSettings s;
  s.units = static_cast<int>(units);
  s.use_bias = n.has_input(2) && beta != 0.0f;
  if (s.use_bias) {
    const auto cd = n.constant_dims(2);
    if (!is_per_channel(cd, {1, units}))
      n.fail("C '", n.input_name(2), "' is ", dims_str(cd), ", expected (", units, ") or (1, ", units,
             ") (a bias; per-row C is not supported)");
    recipes["bias"] = per_channel(n.input_name(2), n.name(), s.units, [beta](float v) { return beta * v; });
  }
  n.set_output(n.add_layer(std::make_unique<Dense>(n.name(), s), {a}, 2, std::move(recipes)));
}

// A (N, K) or (N, L, K) computed times B (K, M) constant: a Dense layer without bias (on each
// token of a sequence).
void convert_matmul(OnnxNode& n) {
  if (n.is_constant(0)) n.fail("a constant A times a computed B is not supported (only activations x weights)");
  const OnnxValue& a = n.activation(0);
  if (a.rank() != 2 && a.rank() != 3) n.fail("expects a 2-D (N, D) or 3-D (N, L, D) input, found ", dims_str(a.dims));
  if (!n.is_constant(1))
    n.fail("both inputs are computed: Chorus multiplies two computed values only inside an attention block it "
           "recognises (nn.MultiheadAttention as PyTorch exports it)");
  const auto bd = n.constant_dims(1);
  const std::int64_t k = a.dims.back();
  if (bd.size() != 2 || bd[0] != k)
    n.fail("B '", n.input_name(1), "' is ", dims_str(bd), ", expected (", k, ", M) for A ", dims_str(a.dims));
  DenseSettings s;
  s.units = static_cast<int>(bd[1]);
  s.use_bias = false;
  std::map<std::string, OnnxWeightRecipe> recipes{{"kernel", copied_constant(n.input_name(1), n.name())}};
  n.set_output(n.add_layer(std::make_unique<Dense>(n.name(), s), {a}, a.rank(), std::move(recipes)));
}

// ---- Elementwise ----------------------------------------------------------------------------

// Add, Mul, Sub, Div. Two computed inputs: an Elementwise layer (broadcasting (N, C, 1, 1)).
// A computed input and a scalar or per-channel constant: a per-channel affine map, which is a
// batch normalisation with mean 0, variance 1 and epsilon 0 (the optimiser folds it into a
// preceding convolution or dense layer, so MatMul + Add becomes one Dense with bias).
void convert_arithmetic(OnnxNode& n) {
  n.require_one_output();
  const std::string& op = n.op();
  if (n.inputs() != 2) n.fail("expects 2 inputs, found ", n.inputs());
  if (n.is_constant(0) && n.is_constant(1)) n.fail("both inputs are constants (constant folding is not supported)");
  if (!n.is_constant(0) && !n.is_constant(1)) {
    const OnnxValue &a = n.activation(0), &b = n.activation(1);
    if (a.rank() != b.rank()) n.fail("inputs ", dims_str(a.dims), " and ", dims_str(b.dims), " differ in rank");
    const ElementwiseOp kind = op == "Add"   ? ElementwiseOp::add
                               : op == "Mul" ? ElementwiseOp::multiply
                               : op == "Sub" ? ElementwiseOp::subtract
                                             : ElementwiseOp::divide;
    auto layer = std::make_unique<Elementwise>(n.name(), kind);
    // The layer broadcasts a (1, 1, c) input over the other: put the full-size one first where
    // the order does not matter.
    const bool swap = (op == "Add" || op == "Mul") && frame_of(a.dims).size() < frame_of(b.dims).size();
    n.set_output(
        n.add_layer(std::move(layer), swap ? std::vector<OnnxValue>{b, a} : std::vector<OnnxValue>{a, b}, a.rank()));
    return;
  }
  const int ci = n.is_constant(0) ? 0 : 1;
  if (ci == 0 && (op == "Sub" || op == "Div"))
    n.fail("a constant first input of ", op, " is not supported (only x ", op == "Sub" ? "-" : "/", " constant)");
  const OnnxValue& x = n.activation(1 - ci);
  const auto cd = n.constant_dims(ci);
  if (op == "Add" && is_per_frame(cd, x.dims) && !is_per_channel(cd, x.dims)) {  // position embeddings
    std::map<std::string, OnnxWeightRecipe> r{{"constant", copied_constant(n.input_name(ci), n.name())}};
    n.set_output(n.add_layer(std::make_unique<AddConstant>(n.name()), {x}, 3, std::move(r)));
    return;
  }
  if (!is_per_channel(cd, x.dims))
    n.fail("constant '", n.input_name(ci), "' ", dims_str(cd), " does not broadcast per channel over ",
           dims_str(x.dims), " (Chorus supports scalars, per-channel constants and, added to a sequence, one of ",
           "its frame's shape)");
  const int c = static_cast<int>(x.dims[channel_axis(x.rank())]);
  const std::string t = n.input_name(ci), node = n.name();
  std::map<std::string, OnnxWeightRecipe> r{{"moving_mean", filled(c, 0.0f)}, {"moving_variance", filled(c, 1.0f)}};
  if (op == "Add" || op == "Sub") {
    r["gamma"] = filled(c, 1.0f);
    if (op == "Sub")
      r["beta"] = per_channel(t, node, c, [](float v) { return -v; });
    else
      r["beta"] = per_channel(t, node, c, [](float v) { return v; });
  } else {
    if (op == "Mul")
      r["gamma"] = per_channel(t, node, c, [](float v) { return v; });
    else
      r["gamma"] = per_channel(t, node, c, [](float v) { return 1.0f / v; });
    r["beta"] = filled(c, 0.0f);
  }
  BatchNormSettings s;
  s.epsilon = 0.0f;
  n.set_output(n.add_layer(std::make_unique<BatchNorm>(n.name(), s), {x}, x.rank(), std::move(r)));
}

// ---- Activations ----------------------------------------------------------------------------

void add_activation(OnnxNode& n, const char* keras_type, Activation a) {
  n.require_one_output();
  const OnnxValue& x = n.activation(0);
  n.set_output(n.add_layer(std::make_unique<ActivationLayer>(n.name(), keras_type, a), {x}, x.rank()));
}

Activation of_kind(ActivationKind kind) {
  Activation a;
  a.kind = kind;
  return a;
}

void convert_relu(OnnxNode& n) { add_activation(n, "Activation", of_kind(ActivationKind::relu)); }
void convert_sigmoid(OnnxNode& n) { add_activation(n, "Activation", of_kind(ActivationKind::sigmoid)); }
void convert_tanh(OnnxNode& n) { add_activation(n, "Activation", of_kind(ActivationKind::tanh)); }
void convert_hard_swish(OnnxNode& n) { add_activation(n, "Activation", of_kind(ActivationKind::hard_swish)); }

void convert_leaky_relu(OnnxNode& n) {
  Activation a = of_kind(ActivationKind::relu);
  a.alpha = n.attr_float("alpha", 0.01f);
  add_activation(n, "LeakyReLU", a);
}

void convert_hard_sigmoid(OnnxNode& n) {
  Activation a = of_kind(ActivationKind::hard_sigmoid);
  a.alpha = n.attr_float("alpha", 0.2f);
  a.beta = n.attr_float("beta", 0.5f);
  add_activation(n, "Activation", a);
}

// Clip: bounds as attributes before opset 11, as optional constant inputs from 11 on.
void convert_clip(OnnxNode& n) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  float lo = -kInf, hi = kInf;
  if (n.opset() < 11) {
    lo = n.attr_float("min", -kInf);
    hi = n.attr_float("max", kInf);
  } else {
    auto bound = [&](int i, float fallback) {
      if (!n.has_input(i)) return fallback;
      auto v = n.constant_floats(i);
      if (v.size() != 1) n.fail("bound '", n.input_name(i), "' has ", v.size(), " values, expected a scalar");
      return v[0];
    };
    lo = bound(1, -kInf);
    hi = bound(2, kInf);
  }
  if (std::isnan(lo) || std::isnan(hi) || lo > hi) n.fail("bounds [", lo, ", ", hi, "] are not an interval");
  Activation a;
  if (lo == 0.0f) {  // ReLU / ReLU6: the relu kernel's fast path
    a.kind = ActivationKind::relu;
    a.max_value = hi;
  } else {
    a.kind = ActivationKind::clip;
    a.min_value = lo;
    a.max_value = hi;
  }
  add_activation(n, "Activation", a);
}

void convert_softmax(OnnxNode& n) {
  const OnnxValue& x = n.activation(0);
  std::int64_t axis = n.attr_int("axis", n.opset() < 13 ? 1 : -1);
  if (axis < 0) axis += x.rank();
  // Before opset 13 Softmax flattens the axes from `axis` on; from 13 it works on one axis.
  const bool channels = x.rank() == 2   ? axis == 1
                        : x.rank() == 3 ? axis == 2
                                        : x.rank() == 4 && axis == 1 && (n.opset() >= 13 || x.dims[2] * x.dims[3] == 1);
  if (!channels)
    n.fail("softmax over axis ", axis, " of ", dims_str(x.dims), " at opset ", n.opset(),
           " is not supported (only over the channels, axis 1)");
  add_activation(n, "Softmax", of_kind(ActivationKind::softmax));
}

// ---- Sequences ------------------------------------------------------------------------------

// Gather of one token (a constant scalar index) along the sequence axis: (N, L, D) to (N, D).
void convert_gather(OnnxNode& n) {
  const OnnxValue& x = n.activation(0);
  std::int64_t axis = n.attr_int("axis", 0);
  if (axis < 0) axis += x.rank();
  const auto idx_dims = n.constant_dims(1);
  const auto idx = n.constant_ints(1);
  if (x.rank() != 3 || axis != 1 || !idx_dims.empty() || idx.size() != 1)
    n.fail("gathering ", dims_str(idx_dims), " indices along axis ", axis, " of ", dims_str(x.dims),
           " is not supported (only one token, a scalar index, of an (N, L, D) sequence)");
  std::int64_t i = idx[0] < 0 ? idx[0] + x.dims[1] : idx[0];
  if (i < 0 || i >= x.dims[1]) n.fail("index ", idx[0], " is outside the ", x.dims[1], " tokens");
  n.set_output(n.add_layer(std::make_unique<TakeToken>(n.name(), static_cast<int>(i)), {x}, 2));
}

// LayerNormalization (opset 17) over the last axis.
void convert_layer_norm(OnnxNode& n) {
  n.require_one_output();
  const OnnxValue& x = n.activation(0);
  std::int64_t axis = n.attr_int("axis", -1);
  if (axis < 0) axis += x.rank();
  if ((x.rank() != 3 && x.rank() != 2) || axis != x.rank() - 1)
    n.fail("normalising ", dims_str(x.dims), " from axis ", axis,
           " is not supported (only the last axis of (N, D) or (N, L, D))");
  if (n.attr_int("stash_type", 1) != 1) n.fail("stash_type other than float is not supported");
  const std::int64_t c = x.dims.back();
  LayerNormSettings s;
  s.epsilon = n.attr_float("epsilon", 1e-5f);
  s.center = n.has_input(2);
  std::map<std::string, OnnxWeightRecipe> recipes;
  for (int i = 1; i <= (s.center ? 2 : 1); ++i) {
    const auto d = n.constant_dims(i);
    if (d != std::vector<std::int64_t>{c})
      n.fail("input ", i, " '", n.input_name(i), "' is ", dims_str(d), ", expected (", c, ")");
    recipes[i == 1 ? "gamma" : "beta"] = copied_constant(n.input_name(i), n.name());
  }
  n.set_output(n.add_layer(std::make_unique<LayerNormalization>(n.name(), s), {x}, x.rank(), std::move(recipes)));
}

// ---- Pooling and normalisation --------------------------------------------------------------

void convert_pool(OnnxNode& n) {
  n.require_one_output();
  const OnnxValue& x = n.activation(0);
  const bool is_max = n.op() == "MaxPool";
  if (x.rank() == 5) {  // a clip
    const Window3D w = read_window_3d(n, x, {}, n.attr_int("ceil_mode", 0) != 0);
    for (int a = 0; a < 3; ++a)
      if (w.dilation[a] != 1) n.fail("dilations other than 1 are not supported for pooling");
    if (!is_max && n.attr_int("count_include_pad", 0) != 0)
      n.fail("count_include_pad=1 is not supported on a 5-D input");
    return n.set_output(
        n.add_layer(std::make_unique<Pool3D>(n.name(), is_max ? PoolKind::max : PoolKind::average, w), {x}, 5));
  }
  require_rank(n, x, 4);
  const Window w = read_window(n, x, {}, n.attr_int("ceil_mode", 0) != 0);
  if (w.dilation_h != 1 || w.dilation_w != 1) n.fail("dilations other than 1 are not supported for pooling");
  Pool2DSettings s;
  s.kind = is_max ? PoolKind::max : PoolKind::average;
  s.pool_h = w.kernel_h, s.pool_w = w.kernel_w, s.stride_h = w.stride_h, s.stride_w = w.stride_w;
  s.explicit_pads = true;
  s.pads = w.pads;
  s.count_include_pad = !is_max && n.attr_int("count_include_pad", 0) != 0;
  if (s.count_include_pad && n.attr_int("ceil_mode", 0) != 0) {
    const Window plain = read_window(n, x, {}, false);
    if (plain.pads.bottom != w.pads.bottom || plain.pads.right != w.pads.right)
      n.fail("count_include_pad=1 together with ceil_mode=1 that adds windows is not supported");
  }
  n.set_output(n.add_layer(std::make_unique<Pool2D>(n.name(), s), {x}, 4));
}

void convert_global_pool(OnnxNode& n) {
  const OnnxValue& x = n.activation(0);
  const PoolKind kind = n.op() == "GlobalMaxPool" ? PoolKind::max : PoolKind::average;
  if (x.rank() == 5) return n.set_output(n.add_layer(std::make_unique<GlobalPool3D>(n.name(), kind), {x}, 5));
  require_rank(n, x, 4);
  n.set_output(n.add_layer(std::make_unique<GlobalPool2D>(n.name(), kind), {x}, 4));
}

void convert_batch_norm(OnnxNode& n) {
  n.require_one_output();
  if (n.attr_int("training_mode", 0) != 0) n.fail("training_mode=1 is not supported (inference only)");
  const OnnxValue& x = n.activation(0);
  if (x.rank() != 2 && x.rank() != 4 && x.rank() != 5) n.fail("input ", dims_str(x.dims), " is not 2-D, 4-D or 5-D");
  if (n.inputs() != 5) n.fail("expects 5 inputs (X, scale, B, mean, var), found ", n.inputs());
  const std::int64_t c = x.dims[1];
  const char* keras[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
  std::map<std::string, OnnxWeightRecipe> recipes;
  for (int i = 1; i <= 4; ++i) {
    const auto d = n.constant_dims(i);
    if (d.size() != 1 || d[0] != c)
      n.fail("input ", i, " '", n.input_name(i), "' is ", dims_str(d), ", expected (", c, ")");
    recipes[keras[i - 1]] = copied_constant(n.input_name(i), n.name());
  }
  BatchNormSettings s;
  s.epsilon = n.attr_float("epsilon", 1e-5f);
  n.set_output(n.add_layer(std::make_unique<BatchNorm>(n.name(), s), {x}, x.rank(), std::move(recipes)));
}

// ONNX divides alpha by the window size and sums over channels c - (size-1)/2 .. c + size/2.
void convert_lrn(OnnxNode& n) {
  const OnnxValue& x = n.activation(0);
  require_rank(n, x, 4);
  if (!n.has_attr("size")) n.fail("attribute 'size' is missing");
  const std::int64_t size = n.attr_int("size", 0);
  if (size < 1 || size % 2 == 0 || size > (1 << 20))
    n.fail("size ", size, " is not supported (odd sizes only: a centred window)");
  LRNSettings s;
  s.depth_radius = static_cast<int>((size - 1) / 2);
  s.alpha = n.attr_float("alpha", 1e-4f) / static_cast<float>(size);
  s.beta = n.attr_float("beta", 0.75f);
  s.bias = n.attr_float("bias", 1.0f);
  n.set_output(n.add_layer(std::make_unique<LRN>(n.name(), s), {x}, 4));
}

// The one explicit table of ONNX operator types.
const std::map<std::string, void (*)(OnnxNode&)>& converters() {
  static const std::map<std::string, void (*)(OnnxNode&)> table{
      {"Conv", convert_conv},
      {"Gemm", convert_gemm},
      {"MatMul", convert_matmul},
      {"Add", convert_arithmetic},
      {"Sub", convert_arithmetic},
      {"Mul", convert_arithmetic},
      {"Div", convert_arithmetic},
      {"Relu", convert_relu},
      {"LeakyRelu", convert_leaky_relu},
      {"Clip", convert_clip},
      {"Sigmoid", convert_sigmoid},
      {"HardSigmoid", convert_hard_sigmoid},
      {"HardSwish", convert_hard_swish},
      {"Tanh", convert_tanh},
      {"Softmax", convert_softmax},
      {"MaxPool", convert_pool},
      {"AveragePool", convert_pool},
      {"GlobalAveragePool", convert_global_pool},
      {"GlobalMaxPool", convert_global_pool},
      {"BatchNormalization", convert_batch_norm},
      {"LRN", convert_lrn},
      {"Concat", convert_concat},
      {"Gather", convert_gather},
      {"LayerNormalization", convert_layer_norm},
      {"Flatten", convert_flatten},
      {"Reshape", convert_reshape},
      {"Transpose", convert_transpose},
      {"Pad", convert_pad},
      {"Dropout", convert_passthrough},
      {"Identity", convert_passthrough},
      {"Constant", convert_constant},
  };
  return table;
}

}  // namespace

OnnxWeightRecipe copied_constant(std::string tensor, std::string node) {
  return [=](const OnnxConstants& c, const WeightSlice&) { return c.floats(tensor, node); };
}

void convert_onnx_node(OnnxNode& node) {
  auto it = converters().find(node.op());
  if (it == converters().end())
    chorus::fail(node.source(), ": node '", node.name(), "' uses operator '", node.op(),
                 "', which Chorus does not support");
  it->second(node);
}

std::vector<std::string> supported_onnx_operators() {
  std::vector<std::string> names;
  for (const auto& [name, f] : converters()) names.push_back(name);
  return names;
}

}  // namespace chorus::io
