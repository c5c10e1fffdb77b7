// ONNX operators that change only shapes and layout. Chorus keeps NHWC frames where ONNX keeps
// NCHW, so a shape change is free only where both orders agree in memory (vectors, one channel,
// one pixel); flattening an image permutes to ONNX's (c, h, w) order; the rest is refused.
#include "io/onnx/onnx_operators.h"
#include "layers/merge.h"
#include "layers/padding.h"
#include "layers/reshape.h"
#include "layers/tokens.h"

namespace chorus::io {

using namespace chorus::layers;

namespace {

std::int64_t count_of(const std::vector<std::int64_t>& dims) {
  std::int64_t n = 1;
  for (auto d : dims) n *= d;
  return n;
}

// Gives x the ONNX dims `target` (same element count, same memory order in ONNX).
void reshape_to(OnnxNode& n, const OnnxValue& x, const std::vector<std::int64_t>& target) {
  if (target.size() < 2 || target.size() > 5)
    n.fail("result ", dims_str(target), " has rank ", target.size(),
           "; Chorus holds 2-D (N, D), 3-D (N, L, D), 4-D (N, C, H, W) and 5-D (N, C, D, H, W) values");
  if (count_of(target) != count_of(x.dims))
    n.fail("cannot reshape ", dims_str(x.dims), " to ", dims_str(target), ": the element counts differ");
  if (target[0] != x.dims[0])
    n.fail("reshaping ", dims_str(x.dims), " to ", dims_str(target), " changes the batch axis");
  for (auto d : target)
    if (d < 1 || d > (1 << 30)) n.fail("result ", dims_str(target), " has an empty or huge dimension");
  if (x.rank() == 4 && target.size() == 3 && target[1] == x.dims[1] && target[2] == x.dims[2] * x.dims[3] &&
      !same_order(x.dims)) {
    // (N, C, H, W) to (N, C, H*W): the pixels become a sequence, in Chorus' order already
    // (H*W, C); the value is marked swapped until a Transpose makes it (N, H*W, C).
    auto layer = std::make_unique<Reshape>(n.name(), std::vector<int>{1, static_cast<int>(target[2]),
                                                                      static_cast<int>(target[1])});
    OnnxValue v = n.add_layer(std::move(layer), {x}, 3);
    v.dims = target;
    v.swapped = true;
    return n.set_output(v);
  }
  if (same_order(x.dims) && same_order(target)) {
    const Shape to = frame_of(target);
    if (to == frame_of(x.dims)) return n.set_output(OnnxValue{x.node, target});
    if (to.is_clip() || frame_of(x.dims).is_clip())
      n.fail("reshaping ", dims_str(x.dims), " to ", dims_str(target), " of a clip is not supported (only flattening)");
    auto layer = std::make_unique<Reshape>(n.name(), std::vector<int>{to.h, to.w, to.c});
    return n.set_output(n.add_layer(std::move(layer), {x}, static_cast<int>(target.size())));
  }
  if ((x.rank() == 4 || x.rank() == 5) && target.size() == 2)  // an image (a clip) flattened in ONNX's (c, [d,] h, w) order
    return n.set_output(n.add_layer(std::make_unique<Flatten>(n.name(), /*channels_first=*/true), {x}, 2));
  n.fail("reshaping ", dims_str(x.dims), " to ", dims_str(target),
         " reorders data in Chorus' NHWC layout; only flattening to (N, C*H*W) and reshapes that keep the memory "
         "order are supported");
}

}  // namespace

void convert_flatten(OnnxNode& n) {
  const OnnxValue& x = n.activation(0);
  std::int64_t axis = n.attr_int("axis", 1);
  if (axis < 0) axis += x.rank();
  if (axis != 1) n.fail("axis ", axis, " is not supported (only 1, which keeps the batch axis)");
  reshape_to(n, x, {x.dims[0], count_of(x.dims) / x.dims[0]});
}

void convert_reshape(OnnxNode& n) {
  const OnnxValue& x = n.activation(0);
  std::vector<std::int64_t> target = n.constant_ints(1);
  const bool allow_zero = n.attr_int("allowzero", 0) != 0;
  int unknown = -1;
  std::int64_t known = 1;
  for (std::size_t i = 0; i < target.size(); ++i) {
    if (target[i] == 0 && !allow_zero) {
      if (i >= x.dims.size()) n.fail("shape ", dims_str(target), " copies dimension ", i, " of ", dims_str(x.dims));
      target[i] = x.dims[i];
    }
    if (target[i] == -1) {
      if (unknown >= 0) n.fail("shape ", dims_str(target), " has more than one -1");
      unknown = static_cast<int>(i);
    } else if (target[i] < 1 || target[i] > (1 << 30)) {
      n.fail("shape ", dims_str(target), " holds ", target[i]);
    } else {
      known *= target[i];
    }
  }
  if (unknown >= 0) {
    if (count_of(x.dims) % known != 0) n.fail("cannot reshape ", dims_str(x.dims), " to ", dims_str(target));
    target[unknown] = count_of(x.dims) / known;
  }
  reshape_to(n, x, target);
}

// A transpose that moves only axes of size 1 leaves memory as it is: a reshape.
void convert_transpose(OnnxNode& n) {
  const OnnxValue& x = n.activation(0, /*swapped_ok=*/true);
  std::vector<std::int64_t> perm;
  for (int i = x.rank() - 1; i >= 0; --i) perm.push_back(i);
  perm = n.attr_ints("perm", perm);
  if (x.swapped) {  // (N, C, L) held as (L, C): the transpose to (N, L, C) moves nothing
    if (perm != std::vector<std::int64_t>{0, 2, 1})
      n.fail("perm ", dims_str(perm), " on the pixels of an image as a sequence ", dims_str(x.dims),
             " is not supported (only (0, 2, 1), which makes them tokens)");
    return n.set_output(OnnxValue{x.node, {x.dims[0], x.dims[2], x.dims[1]}});
  }
  std::vector<bool> seen(x.rank(), false);
  if (static_cast<int>(perm.size()) != x.rank()) n.fail("perm ", dims_str(perm), " does not match ", dims_str(x.dims));
  for (auto p : perm) {
    if (p < 0 || p >= x.rank() || seen[p]) n.fail("perm ", dims_str(perm), " is not a permutation");
    seen[p] = true;
  }
  std::vector<std::int64_t> out;
  std::int64_t last = -1;
  for (auto p : perm) {
    out.push_back(x.dims[p]);
    if (x.dims[p] == 1) continue;
    if (p < last)
      n.fail("perm ", dims_str(perm), " on ", dims_str(x.dims),
             " moves data, which Chorus does not support (only transposes that are layout no-ops)");
    last = p;
  }
  reshape_to(n, x, out);
}

void convert_concat(OnnxNode& n) {
  n.require_one_output();
  if (!n.has_attr("axis")) n.fail("attribute 'axis' is missing");
  if (n.inputs() == 2 && n.is_constant(0) && !n.is_constant(1)) {  // learned tokens before a sequence
    const OnnxValue& x = n.activation(1);
    const auto cd = n.constant_dims(0);
    std::int64_t axis = n.attr_int("axis", 1);
    if (axis < 0) axis += x.rank();
    if (x.rank() != 3 || axis != 1 || cd.size() != 3 || cd[0] != 1 || cd[2] != x.dims[2])
      n.fail("joining the constant '", n.input_name(0), "' ", dims_str(cd), " before ", dims_str(x.dims),
             " along axis ", axis, " is not supported (only tokens (1, k, D) before an (N, L, D) sequence)",
             cd.size() == 3 && cd[0] > 1 && axis == 1
                 ? cat("; the tokens were expanded to a batch of ", cd[0],
                       ": export the model with a batch of 1 or a dynamic batch axis (dynamic_axes)")
                 : std::string());
    // Exported with a dynamic batch, the tokens are an Expand over the input's batch, folded here
    // from the shapes the import computed, which a weight reader (it reads the file alone) could
    // not fold again: their few values travel in the recipe.
    const std::vector<float> tokens = n.graph().constants().floats(n.input_name(0), n.name());
    std::map<std::string, OnnxWeightRecipe> r{
        {"token", [tokens](const OnnxConstants&, const WeightSlice&) { return tokens; }}};
    auto layer = std::make_unique<ClassToken>(n.name(), static_cast<int>(cd[1]));
    return n.set_output(n.add_layer(std::move(layer), {x}, 3, std::move(r)));
  }
  std::vector<OnnxValue> values;
  for (int i = 0; i < n.inputs(); ++i) {
    if (n.is_constant(i))
      n.fail("input ", i, " ('", n.input_name(i), "') is a constant, which Concat cannot join here");
    values.push_back(n.activation(i));
  }
  if (values.empty()) n.fail("has no inputs");
  const int rank = values[0].rank();
  for (const auto& v : values)
    if (v.rank() != rank) n.fail("inputs ", dims_str(values[0].dims), " and ", dims_str(v.dims), " differ in rank");
  std::int64_t axis = n.attr_int("axis", 1);
  if (axis < 0) axis += rank;
  if (values.size() == 1) return n.set_output(values[0]);
  int frame_axis = -1;  // Chorus frame axis: 0 rows, 1 columns, 2 channels
  if (rank == 4 && axis >= 1 && axis <= 3) frame_axis = axis == 1 ? 2 : static_cast<int>(axis) - 2;
  if (rank == 2 && axis == 1) frame_axis = 2;
  if (rank == 3 && (axis == 1 || axis == 2)) frame_axis = static_cast<int>(axis);
  if (frame_axis < 0) n.fail("joining ", rank, "-D values along axis ", axis, " is not supported");
  n.set_output(n.add_layer(std::make_unique<Concatenate>(n.name(), frame_axis), values, rank));
}

// Constant zero padding of rows and columns (negative pads crop).
void convert_pad(OnnxNode& n) {
  const OnnxValue& x = n.activation(0);
  if (x.rank() != 4) n.fail("expects a 4-D (N, C, H, W) input, found ", dims_str(x.dims));
  const std::string mode = n.attr_string("mode", "constant");
  if (mode != "constant") n.fail("mode '", mode, "' is not supported (only constant zero padding)");
  std::vector<std::int64_t> p;
  float value = 0.0f;
  if (n.opset() < 11) {
    p = n.attr_ints("pads", {});
    value = n.attr_float("value", 0.0f);
  } else {
    p = n.constant_ints(1);
    if (n.has_input(2)) {
      auto v = n.constant_floats(2);
      if (v.size() != 1) n.fail("constant_value has ", v.size(), " values, expected a scalar");
      value = v[0];
    }
    if (n.has_input(3)) n.fail("the 'axes' input is not supported");
  }
  if (value != 0.0f) n.fail("padding with ", value, " is not supported (only zeros)");
  if (p.size() != 8) n.fail("pads ", dims_str(p), " has ", p.size(), " values, expected 8 for a 4-D input");
  if (p[0] || p[1] || p[4] || p[5])
    n.fail("pads ", dims_str(p), " pad the batch or channel axis (only rows and columns)");
  for (auto v : p)
    if (v < -(1 << 20) || v > (1 << 20)) n.fail("pads ", dims_str(p), " holds ", v);
  Pads pads{static_cast<int>(p[2]), static_cast<int>(p[6]), static_cast<int>(p[3]), static_cast<int>(p[7])};
  const bool grows = pads.top >= 0 && pads.bottom >= 0 && pads.left >= 0 && pads.right >= 0;
  const bool crops = pads.top <= 0 && pads.bottom <= 0 && pads.left <= 0 && pads.right <= 0;
  std::unique_ptr<Layer> layer;
  if (grows) {
    layer = std::make_unique<ZeroPadding2D>(n.name(), pads);
  } else if (crops) {
    layer = std::make_unique<Cropping2D>(n.name(), Pads{-pads.top, -pads.bottom, -pads.left, -pads.right});
  } else {
    n.fail("pads ", dims_str(p), " mix padding and cropping");
  }
  n.set_output(n.add_layer(std::move(layer), {x}, 4));
}

// Identity and Dropout (the identity at inference): the output is the input.
void convert_passthrough(OnnxNode& n) {
  n.require_one_output();
  if (n.is_constant(0)) return;  // an alias of a constant, which OnnxConstants resolves
  if (n.op() == "Dropout" && n.opset() >= 12 && n.has_input(2)) {
    auto training = n.constant_floats(2);
    if (training.size() == 1 && training[0] != 0.0f) n.fail("training_mode is true (Chorus runs inference only)");
  }
  n.set_output(n.activation(0));
}

void convert_constant(OnnxNode& n) {
  if (!n.defines_constant())
    n.fail("holds a sparse or string value, or none, which Chorus does not support (only dense tensors)");
}

}  // namespace chorus::io
