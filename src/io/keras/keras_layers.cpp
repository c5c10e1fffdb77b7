#include "io/keras/keras_layers.h"

#include <array>
#include <functional>
#include <limits>
#include <map>

#include "core/error.h"
#include "layers/activation_layer.h"
#include "layers/attention.h"
#include "layers/batch_norm.h"
#include "layers/channel_affine.h"
#include "layers/conv2d.h"
#include "layers/layers3d.h"
#include "layers/dense.h"
#include "layers/depthwise_conv2d.h"
#include "layers/layer_norm.h"
#include "layers/lrn.h"
#include "layers/merge.h"
#include "layers/padding.h"
#include "layers/pooling.h"
#include "layers/reshape.h"
#include "layers/resizing.h"
#include "layers/separable_conv2d.h"
#include "layers/tokens.h"

namespace chorus::io {

using nlohmann::json;
using namespace chorus::layers;

namespace {

// Reads settings out of one layer's config, with messages naming the layer.
class ConfigReader {
 public:
  ConfigReader(const KerasLayerSpec& spec, const KerasLayerContext& ctx) : spec_(spec), ctx_(ctx), c_(spec.config) {}

  template <typename... Args>
  [[noreturn]] void error(const Args&... args) const {
    fail(ctx_.source, ": layer '", spec_.name, "' (", spec_.class_name, "): ", args...);
  }

  bool channels_first() const { return ctx_.channels_first; }
  int input_rank() const { return ctx_.input_rank; }
  bool has(const char* key) const { return c_.is_object() && c_.contains(key) && !c_[key].is_null(); }
  // The value as written (has(key) must hold).
  const json& raw(const char* key) const { return c_[key]; }

  int integer(const char* key, int fallback) const {
    if (!has(key)) return fallback;
    if (!c_[key].is_number_integer()) error("'", key, "' should be an integer, found ", c_[key].dump());
    return c_[key].get<int>();
  }
  // A number, or a list (nested lists flattened) of numbers, as Rescaling and Normalization
  // write their constants; `fallback` when absent.
  std::vector<float> numbers(const char* key, std::vector<float> fallback) const {
    if (!has(key)) return fallback;
    return numbers_of(c_[key], key);
  }
  // The numbers of a value: a number or (nested) lists of them, flattened; `what` names it in
  // errors.
  std::vector<float> numbers_of(const json& value, const char* what) const {
    std::vector<float> out;
    std::function<bool(const json&)> add = [&](const json& v) {
      if (v.is_number()) out.push_back(v.get<float>());
      if (v.is_array())
        for (const auto& x : v)
          if (!add(x)) return false;
      return v.is_number() || v.is_array();
    };
    if (!add(value)) error("'", what, "' should be a number or a list of numbers, found ", value.dump());
    if (out.empty()) error("'", what, "' is an empty list");
    return out;
  }
  float number(const char* key, float fallback) const {
    if (!has(key)) return fallback;
    if (!c_[key].is_number()) error("'", key, "' should be a number, found ", c_[key].dump());
    return c_[key].get<float>();
  }
  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!c_[key].is_boolean()) error("'", key, "' should be true or false, found ", c_[key].dump());
    return c_[key].get<bool>();
  }
  std::string text(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    if (!c_[key].is_string()) error("'", key, "' should be a string, found ", c_[key].dump());
    return c_[key].get<std::string>();
  }
  // An int or a pair, as kernel_size, strides, dilation_rate and pool_size are written.
  std::pair<int, int> pair(const char* key, std::pair<int, int> fallback) const {
    if (!has(key)) return fallback;
    const json& v = c_[key];
    if (v.is_number_integer()) return {v.get<int>(), v.get<int>()};
    if (v.is_array() && v.size() == 2 && v[0].is_number_integer() && v[1].is_number_integer())
      return {v[0].get<int>(), v[1].get<int>()};
    error("'", key, "' should be an integer or a pair of integers, found ", v.dump());
  }
  // An int or three, as Conv3D's kernel_size, strides, dilation_rate and pool_size are written.
  std::array<int, 3> triple(const char* key, std::array<int, 3> fallback) const {
    if (!has(key)) return fallback;
    const json& v = c_[key];
    if (v.is_number_integer()) return {v.get<int>(), v.get<int>(), v.get<int>()};
    if (v.is_array() && v.size() == 3 && v[0].is_number_integer() && v[1].is_number_integer() &&
        v[2].is_number_integer())
      return {v[0].get<int>(), v[1].get<int>(), v[2].get<int>()};
    error("'", key, "' should be an integer or three integers, found ", v.dump());
  }
  // ZeroPadding3D amounts: n, (depth, rows, cols) or three (before, after) pairs.
  std::array<int, 6> pads_3d(const char* key) const {
    if (!has(key)) return {1, 1, 1, 1, 1, 1};
    const json& v = c_[key];
    if (v.is_number_integer()) {
      const int p = v.get<int>();
      return {p, p, p, p, p, p};
    }
    if (v.is_array() && v.size() == 3) {
      std::array<int, 6> out{};
      for (int a = 0; a < 3; ++a) {
        if (v[a].is_number_integer()) {
          out[2 * a] = out[2 * a + 1] = v[a].get<int>();
        } else if (v[a].is_array() && v[a].size() == 2 && v[a][0].is_number_integer() && v[a][1].is_number_integer()) {
          out[2 * a] = v[a][0].get<int>();
          out[2 * a + 1] = v[a][1].get<int>();
        } else {
          error("'", key, "' should be an int, three ints or three pairs of ints, found ", v.dump());
        }
      }
      return out;
    }
    error("'", key, "' should be an int, three ints or three pairs of ints, found ", v.dump());
  }
  // ZeroPadding2D / Cropping2D amounts: n, (rows, cols) or ((top, bottom), (left, right)).
  Pads pads(const char* key) const {
    if (!has(key)) return {1, 1, 1, 1};
    const json& v = c_[key];
    auto is_int = [](const json& x) { return x.is_number_integer(); };
    if (is_int(v)) {
      int p = v.get<int>();
      return {p, p, p, p};
    }
    if (v.is_array() && v.size() == 2) {
      if (is_int(v[0]) && is_int(v[1])) return {v[0].get<int>(), v[0].get<int>(), v[1].get<int>(), v[1].get<int>()};
      if (v[0].is_array() && v[1].is_array() && v[0].size() == 2 && v[1].size() == 2 && is_int(v[0][0]) &&
          is_int(v[0][1]) && is_int(v[1][0]) && is_int(v[1][1]))
        return {v[0][0].get<int>(), v[0][1].get<int>(), v[1][0].get<int>(), v[1][1].get<int>()};
    }
    error("'", key, "' should be an int, a pair or a pair of pairs of ints, found ", v.dump());
  }
  Padding padding() const {
    std::string p = text("padding", "valid");
    if (p == "valid") return Padding::valid;
    if (p == "same") return Padding::same;
    error("padding '", p, "' is not supported (valid, same)");
  }
  Activation activation(const char* key = "activation") const {
    if (!has(key)) return {};
    const json& v = c_[key];
    std::string name;
    if (v.is_string())
      name = v.get<std::string>();
    else if (v.is_object() && v.contains("config") && v["config"].is_string())
      name = v["config"].get<std::string>();
    else if (v.is_object() && v.contains("class_name") && v["class_name"].is_string())
      name = v["class_name"].get<std::string>();
    else
      error("'", key, "' is not an activation name: ", v.dump());
    try {
      return activation_from_name(name, ctx_.keras3);
    } catch (const Error& e) {
      error(e.what());
    }
  }
  // Maps a Keras axis to the frame axis Chorus uses (0 rows, 1 columns, 2 channels).
  int frame_axis(int axis) const {
    const int rank = ctx_.input_rank;
    if (axis < 0) axis += rank;
    if (axis <= 0 || axis >= rank) error("axis ", axis, " is out of range for a rank-", rank, " input");
    if (rank == 4 && ctx_.channels_first) return axis == 1 ? 2 : axis - 2;
    if (rank == 5) {  // a clip: only its channels have a frame axis of their own
      if (axis == (ctx_.channels_first ? 1 : 4)) return 2;
      error("axis ", axis, " of a clip (rank 5) is not supported (only its channel axis)");
    }
    return axis + 3 - rank;  // right-aligned: the last Keras axis is channels
  }
  void require_channels_axis(const char* key, int fallback) const {
    int axis = fallback;
    if (has(key)) {
      const json& v = c_[key];
      if (v.is_array() && v.size() == 1 && v[0].is_number_integer())
        axis = v[0].get<int>();
      else if (v.is_number_integer())
        axis = v.get<int>();
      else
        error("'", key, "' must be one axis, found ", v.dump());
    }
    if (frame_axis(axis) != 2) error("normalising over axis ", axis, " is not supported (only the channel axis)");
  }
  void check_data_format() const {
    std::string f = text("data_format", ctx_.channels_first ? "channels_first" : "channels_last");
    if ((f == "channels_first") != ctx_.channels_first)
      error("data_format ", f, " differs from the rest of the model (mixed formats are not supported)");
  }

 private:
  const KerasLayerSpec& spec_;
  const KerasLayerContext& ctx_;
  const json& c_;
};

using Factory = std::function<std::unique_ptr<Layer>(const KerasLayerSpec&, const ConfigReader&)>;

std::unique_ptr<Layer> make_conv2d(const KerasLayerSpec& spec, const ConfigReader& r) {
  r.check_data_format();
  Conv2DSettings s;
  s.filters = r.integer("filters", 0);
  std::tie(s.kernel_h, s.kernel_w) = r.pair("kernel_size", {0, 0});
  std::tie(s.stride_h, s.stride_w) = r.pair("strides", {1, 1});
  std::tie(s.dilation_h, s.dilation_w) = r.pair("dilation_rate", {1, 1});
  s.padding = r.padding();
  s.groups = r.integer("groups", 1);
  s.use_bias = r.boolean("use_bias", true);
  s.activation = r.activation();
  if (s.filters < 1 || s.kernel_h < 1) r.error("filters and kernel_size must be positive");
  if ((s.stride_h > 1 || s.stride_w > 1) && (s.dilation_h > 1 || s.dilation_w > 1))
    r.error("strides > 1 together with dilation_rate > 1 (Keras rejects this too)");
  return std::make_unique<Conv2D>(spec.name, s);
}

DepthwiseConv2DSettings depthwise_settings(const ConfigReader& r) {
  r.check_data_format();
  DepthwiseConv2DSettings s;
  std::tie(s.kernel_h, s.kernel_w) = r.pair("kernel_size", {0, 0});
  std::tie(s.stride_h, s.stride_w) = r.pair("strides", {1, 1});
  std::tie(s.dilation_h, s.dilation_w) = r.pair("dilation_rate", {1, 1});
  s.depth_multiplier = r.integer("depth_multiplier", 1);
  s.padding = r.padding();
  s.use_bias = r.boolean("use_bias", true);
  s.activation = r.activation();
  if (s.kernel_h < 1 || s.depth_multiplier < 1) r.error("kernel_size and depth_multiplier must be positive");
  return s;
}

std::unique_ptr<Layer> make_depthwise(const KerasLayerSpec& spec, const ConfigReader& r) {
  return std::make_unique<DepthwiseConv2D>(spec.name, depthwise_settings(r));
}

std::unique_ptr<Layer> make_separable(const KerasLayerSpec& spec, const ConfigReader& r) {
  SeparableConv2DSettings s;
  s.depthwise = depthwise_settings(r);
  s.filters = r.integer("filters", 0);
  s.use_bias = r.boolean("use_bias", true);
  s.activation = s.depthwise.activation;
  if (s.filters < 1) r.error("filters must be positive");
  return std::make_unique<SeparableConv2D>(spec.name, s);
}

std::unique_ptr<Layer> make_dense(const KerasLayerSpec& spec, const ConfigReader& r) {
  DenseSettings s;
  s.units = r.integer("units", 0);
  s.use_bias = r.boolean("use_bias", true);
  s.activation = r.activation();
  if (s.units < 1) r.error("units must be positive");
  return std::make_unique<Dense>(spec.name, s);
}

// Keras' axis -1, or the input's last axis given explicitly (an int or a one-element list).
void require_last_axis(const ConfigReader& r, const char* key) {
  if (!r.has(key)) return;
  const json& a = r.raw(key);
  const json& v = a.is_array() && a.size() == 1 ? a[0] : a;
  if (!v.is_number_integer() || (v.get<int>() != -1 && v.get<int>() != r.input_rank() - 1))
    r.error("'", key, "' is ", a.dump(), "; Chorus supports the last axis only (-1)");
}

std::unique_ptr<Layer> make_layer_norm(const KerasLayerSpec& spec, const ConfigReader& r) {
  require_last_axis(r, "axis");
  LayerNormSettings s;
  s.epsilon = r.number("epsilon", 1e-3f);
  s.center = r.boolean("center", true);
  s.scale = r.boolean("scale", true);
  if (r.boolean("rms_scaling", false)) r.error("rms_scaling is not supported");
  return std::make_unique<LayerNormalization>(spec.name, s);
}

std::unique_ptr<Layer> make_attention(const KerasLayerSpec& spec, const ConfigReader& r) {
  AttentionSettings s;
  s.heads = r.integer("num_heads", 0);
  s.key_dim = r.integer("key_dim", 0);
  s.value_dim = r.integer("value_dim", s.key_dim);
  s.use_bias = r.boolean("use_bias", true);
  if (s.heads < 1 || s.key_dim < 1 || s.value_dim < 1) r.error("num_heads, key_dim and value_dim must be positive");
  if (r.has("attention_axes")) r.error("attention_axes is not supported (only attention over the sequence)");
  if (r.has("output_shape")) {
    const json& o = r.raw("output_shape");
    const json& v = o.is_array() && o.size() == 1 ? o[0] : o;
    if (!v.is_number_integer() || v.get<int>() < 1)
      r.error("output_shape ", o.dump(), " is not supported (only a number of features)");
    s.output_dim = v.get<int>();
  }
  return std::make_unique<MultiHeadAttention>(spec.name, s);
}

std::unique_ptr<Layer> make_embedding(const KerasLayerSpec& spec, const ConfigReader& r) {
  if (r.boolean("mask_zero", false)) r.error("mask_zero=True is not supported (Chorus runs no masks)");
  return std::make_unique<Embedding>(spec.name, r.integer("input_dim", 0), r.integer("output_dim", 0));
}

// GlobalAveragePooling1D and GlobalMaxPooling1D: over the tokens of a (1, L, D) frame.
Factory global_pool_1d(PoolKind kind) {
  return [kind](const KerasLayerSpec& spec, const ConfigReader& r) -> std::unique_ptr<Layer> {
    if (r.has("data_format") && r.raw("data_format") != "channels_last")
      r.error("data_format ", r.raw("data_format").dump(), " is not supported (channels_last only)");
    if (r.boolean("keepdims", false)) r.error("keepdims=True is not supported");
    return std::make_unique<GlobalPool2D>(spec.name, kind, 1);
  };
}

Factory pool(PoolKind kind) {
  return [kind](const KerasLayerSpec& spec, const ConfigReader& r) -> std::unique_ptr<Layer> {
    r.check_data_format();
    Pool2DSettings s;
    s.kind = kind;
    std::tie(s.pool_h, s.pool_w) = r.pair("pool_size", {2, 2});
    std::tie(s.stride_h, s.stride_w) = r.pair("strides", {s.pool_h, s.pool_w});
    s.padding = r.padding();
    return std::make_unique<Pool2D>(spec.name, s);
  };
}

Factory global_pool(PoolKind kind) {
  return [kind](const KerasLayerSpec& spec, const ConfigReader& r) -> std::unique_ptr<Layer> {
    r.check_data_format();
    return std::make_unique<GlobalPool2D>(spec.name, kind);
  };
}

std::unique_ptr<Layer> make_batch_norm(const KerasLayerSpec& spec, const ConfigReader& r) {
  r.require_channels_axis("axis", -1);
  BatchNormSettings s;
  s.epsilon = r.number("epsilon", 1e-3f);
  s.center = r.boolean("center", true);
  s.scale = r.boolean("scale", true);
  return std::make_unique<BatchNorm>(spec.name, s);
}

std::unique_ptr<Layer> make_activation(const KerasLayerSpec& spec, const ConfigReader& r) {
  return std::make_unique<ActivationLayer>(spec.name, "Activation", r.activation());
}

std::unique_ptr<Layer> make_relu(const KerasLayerSpec& spec, const ConfigReader& r) {
  Activation a;
  a.kind = ActivationKind::relu;
  a.max_value = r.number("max_value", std::numeric_limits<float>::infinity());
  a.alpha = r.number("negative_slope", 0.0f);
  a.threshold = r.number("threshold", 0.0f);
  return std::make_unique<ActivationLayer>(spec.name, "ReLU", a);
}

std::unique_ptr<Layer> make_leaky_relu(const KerasLayerSpec& spec, const ConfigReader& r) {
  Activation a;
  a.kind = ActivationKind::relu;
  a.alpha = r.number("alpha", r.number("negative_slope", 0.3f));
  return std::make_unique<ActivationLayer>(spec.name, "LeakyReLU", a);
}

std::unique_ptr<Layer> make_elu(const KerasLayerSpec& spec, const ConfigReader& r) {
  Activation a;
  a.kind = ActivationKind::elu;
  a.alpha = r.number("alpha", 1.0f);
  return std::make_unique<ActivationLayer>(spec.name, "ELU", a);
}

std::unique_ptr<Layer> make_softmax(const KerasLayerSpec& spec, const ConfigReader& r) {
  r.require_channels_axis("axis", -1);
  Activation a;
  a.kind = ActivationKind::softmax;
  return std::make_unique<ActivationLayer>(spec.name, "Softmax", a);
}

Window3D window_3d(const ConfigReader& r, const char* size_key, std::array<int, 3> size_fallback,
                   bool strides_default_to_size) {
  Window3D w;
  const auto size = r.triple(size_key, size_fallback);
  const auto strides = r.triple("strides", strides_default_to_size ? size : std::array<int, 3>{1, 1, 1});
  const auto dilation = r.triple("dilation_rate", {1, 1, 1});
  for (int a = 0; a < 3; ++a) {
    w.kernel[a] = size[a];
    w.stride[a] = strides[a];
    w.dilation[a] = dilation[a];
    if (size[a] < 1 || strides[a] < 1 || dilation[a] < 1)
      r.error("'", size_key, "', strides and dilation_rate must be positive");
  }
  w.padding = r.padding();
  return w;
}

std::unique_ptr<Layer> make_conv3d(const KerasLayerSpec& spec, const ConfigReader& r) {
  r.check_data_format();
  Conv3DSettings s;
  s.filters = r.integer("filters", 0);
  s.window = window_3d(r, "kernel_size", {0, 0, 0}, false);
  s.use_bias = r.boolean("use_bias", true);
  s.activation = r.activation();
  if (s.filters < 1) r.error("filters must be positive");
  if (r.integer("groups", 1) != 1) r.error("groups > 1 is not supported for Conv3D");
  for (int a = 0; a < 3; ++a)
    if (s.window.stride[a] > 1 && s.window.dilation[a] > 1)
      r.error("strides > 1 together with dilation_rate > 1 (Keras rejects this too)");
  return std::make_unique<Conv3D>(spec.name, s);
}

Factory pool_3d(PoolKind kind) {
  return [kind](const KerasLayerSpec& spec, const ConfigReader& r) -> std::unique_ptr<Layer> {
    r.check_data_format();
    return std::make_unique<Pool3D>(spec.name, kind, window_3d(r, "pool_size", {2, 2, 2}, true));
  };
}

Factory global_pool_3d(PoolKind kind) {
  return [kind](const KerasLayerSpec& spec, const ConfigReader& r) -> std::unique_ptr<Layer> {
    r.check_data_format();
    if (r.boolean("keepdims", false)) r.error("keepdims=True is not supported");
    return std::make_unique<GlobalPool3D>(spec.name, kind);
  };
}

std::unique_ptr<Layer> make_zero_padding_3d(const KerasLayerSpec& spec, const ConfigReader& r) {
  r.check_data_format();
  return std::make_unique<ZeroPadding3D>(spec.name, r.pads_3d("padding"));
}

std::unique_ptr<Layer> make_zero_padding(const KerasLayerSpec& spec, const ConfigReader& r) {
  r.check_data_format();
  return std::make_unique<ZeroPadding2D>(spec.name, r.pads("padding"));
}

std::unique_ptr<Layer> make_cropping(const KerasLayerSpec& spec, const ConfigReader& r) {
  r.check_data_format();
  Pads crops = r.has("cropping") ? r.pads("cropping") : Pads{};
  return std::make_unique<Cropping2D>(spec.name, crops);
}

// Keras 2.1 on writes data_format into Flatten's config and, when it says channels_first,
// moves the channels last before flattening: features in (h, w, c) order, Chorus' own. Without
// it (Keras 2.0, and data_format channels_last) Flatten takes its input in memory order, which
// after channels_first layers is (c, h, w): the layer must permute to match.
std::unique_ptr<Layer> make_flatten(const KerasLayerSpec& spec, const ConfigReader& r) {
  const bool moves_channels_last = r.text("data_format", "") == "channels_first";
  return std::make_unique<Flatten>(spec.name, r.channels_first() && !moves_channels_last);
}

std::unique_ptr<Layer> make_reshape(const KerasLayerSpec& spec, const ConfigReader& r) {
  if (!spec.config.contains("target_shape") || !spec.config["target_shape"].is_array())
    r.error("'target_shape' is missing or not a list");
  std::vector<int> target;
  for (const auto& d : spec.config["target_shape"]) {
    if (!d.is_number_integer()) r.error("target_shape holds ", d.dump(), ", expected integers");
    target.push_back(d.get<int>());
  }
  // Keras reshapes channels_first data in (c, h, w) order; Chorus keeps frames NHWC, so only
  // reshapes between vectors agree.
  if (r.channels_first() && (r.input_rank() != 2 || target.size() != 1))
    r.error("Reshape of image tensors in a channels_first model is not supported (vectors only)");
  return std::make_unique<Reshape>(spec.name, target);
}

std::unique_ptr<Layer> make_identity(const KerasLayerSpec& spec, const ConfigReader&) {
  return std::make_unique<Identity>(spec.name, spec.class_name);
}

std::unique_ptr<Layer> make_resizing(const KerasLayerSpec& spec, const ConfigReader& r) {
  r.check_data_format();
  const bool crop = r.boolean("crop_to_aspect_ratio", false), pad = r.boolean("pad_to_aspect_ratio", false);
  if (crop && pad) r.error("crop_to_aspect_ratio and pad_to_aspect_ratio are both true; Keras refuses that too");
  if (pad && r.text("fill_mode", "constant") != "constant")
    r.error("fill_mode '", r.text("fill_mode", "constant"), "' is not supported (constant)");
  const std::string how = r.text("interpolation", "bilinear");
  if (how != "bilinear" && how != "nearest") r.error("interpolation '", how, "' is not supported (bilinear, nearest)");
  return std::make_unique<Resizing>(
      spec.name, r.integer("height", 0), r.integer("width", 0),
      how == "nearest" ? Resizing::Interpolation::nearest : Resizing::Interpolation::bilinear,
      crop ? Resizing::Framing::crop : pad ? Resizing::Framing::pad : Resizing::Framing::none,
      r.number("fill_value", 0.0f));
}

std::unique_ptr<Layer> make_center_crop(const KerasLayerSpec& spec, const ConfigReader& r) {
  r.check_data_format();
  return std::make_unique<CenterCrop>(spec.name, r.integer("height", 0), r.integer("width", 0));
}


// A Keras 3 operation on a tensor and a constant (keras_config.cpp's constant_operand):
// x / c, c / x, x - c, c - x, x + c, x * c, with c one value or one per channel.
std::unique_ptr<Layer> make_constant_operation(const KerasLayerSpec& spec, const ConfigReader& r) {
  const json& operand = spec.config.at("__constant_operand");
  const bool first = operand.at("first").get<bool>();
  const std::vector<float> c = r.numbers_of(operand.at("value"), "constant operand");
  const std::string& op = spec.class_name;
  std::vector<float> scale(c.size(), 1.0f), offset(c.size(), 0.0f);
  if (op == "Add") {
    offset = c;
  } else if (op == "Multiply") {
    scale = c;
  } else if (op == "Subtract") {
    for (std::size_t i = 0; i < c.size(); ++i) scale[i] = first ? -1.0f : 1.0f, offset[i] = first ? c[i] : -c[i];
  } else if ((op == "TrueDivide" || op == "Divide") && !first) {
    for (std::size_t i = 0; i < c.size(); ++i) {
      if (c[i] == 0.0f) r.error("divides by zero");
      scale[i] = 1.0f / c[i];
    }
  } else if (op == "TrueDivide" || op == "Divide") {
    return ChannelAffine::reciprocal(spec.name, op, c);  // c / x: what x / 0 gives where x is 0, as Keras
  } else {
    r.error("operation ", op, " with a constant ", first ? "first" : "second",
            " is not supported (x / c, c / x, x - c, c - x, x + c and x * c are)");
  }
  return std::make_unique<ChannelAffine>(spec.name, op, std::move(scale), std::move(offset));
}

std::unique_ptr<Layer> make_rescaling(const KerasLayerSpec& spec, const ConfigReader& r) {
  return std::make_unique<ChannelAffine>(spec.name, "Rescaling", r.numbers("scale", {1.0f}),
                                         r.numbers("offset", {0.0f}));
}

// Normalization with its statistics in the config, or (after adapt()) in its weights.
std::unique_ptr<Layer> make_normalization(const KerasLayerSpec& spec, const ConfigReader& r) {
  const bool invert = r.boolean("invert", false);
  r.require_channels_axis("axis", -1);
  if (r.has("mean") != r.has("variance")) r.error("has 'mean' or 'variance' without the other");
  if (!r.has("mean")) return ChannelAffine::normalization_from_weights(spec.name, invert);
  return ChannelAffine::normalization(spec.name, r.numbers("mean", {}), r.numbers("variance", {}), invert);
}

Factory elementwise(ElementwiseOp op) {
  return [op](const KerasLayerSpec& spec, const ConfigReader&) -> std::unique_ptr<Layer> {
    return std::make_unique<Elementwise>(spec.name, op);
  };
}

std::unique_ptr<Layer> make_concatenate(const KerasLayerSpec& spec, const ConfigReader& r) {
  return std::make_unique<Concatenate>(spec.name, r.frame_axis(r.integer("axis", -1)));
}

std::unique_ptr<Layer> make_lrn(const KerasLayerSpec& spec, const ConfigReader& r) {
  LRNSettings s;
  s.depth_radius = r.integer("depth_radius", 2);
  s.bias = r.number("bias", 1.0f);
  s.alpha = r.number("alpha", 1e-4f);
  s.beta = r.number("beta", 0.75f);
  return std::make_unique<LRN>(spec.name, s);
}

// The one explicit table of Keras class names. Aliases are the older or shorter names
// Keras also writes.
const std::map<std::string, Factory>& factories() {
  static const std::map<std::string, Factory> table{
      {"Conv2D", make_conv2d},
      {"Convolution2D", make_conv2d},
      {"DepthwiseConv2D", make_depthwise},
      {"SeparableConv2D", make_separable},
      {"SeparableConvolution2D", make_separable},
      {"Dense", make_dense},
      {"LayerNormalization", make_layer_norm},
      {"Embedding", make_embedding},
      {"MultiHeadAttention", make_attention},
      {"GlobalAveragePooling1D", global_pool_1d(PoolKind::average)},
      {"GlobalAvgPool1D", global_pool_1d(PoolKind::average)},
      {"GlobalMaxPooling1D", global_pool_1d(PoolKind::max)},
      {"GlobalMaxPool1D", global_pool_1d(PoolKind::max)},
      {"MaxPooling2D", pool(PoolKind::max)},
      {"MaxPool2D", pool(PoolKind::max)},
      {"AveragePooling2D", pool(PoolKind::average)},
      {"AvgPool2D", pool(PoolKind::average)},
      {"GlobalAveragePooling2D", global_pool(PoolKind::average)},
      {"GlobalAvgPool2D", global_pool(PoolKind::average)},
      {"GlobalMaxPooling2D", global_pool(PoolKind::max)},
      {"GlobalMaxPool2D", global_pool(PoolKind::max)},
      {"BatchNormalization", make_batch_norm},
      {"Activation", make_activation},
      {"ReLU", make_relu},
      {"LeakyReLU", make_leaky_relu},
      {"ELU", make_elu},
      {"Softmax", make_softmax},
      {"ZeroPadding2D", make_zero_padding},
      {"Conv3D", make_conv3d},
      {"MaxPooling3D", pool_3d(PoolKind::max)},
      {"AveragePooling3D", pool_3d(PoolKind::average)},
      {"GlobalAveragePooling3D", global_pool_3d(PoolKind::average)},
      {"GlobalMaxPooling3D", global_pool_3d(PoolKind::max)},
      {"ZeroPadding3D", make_zero_padding_3d},
      {"Cropping2D", make_cropping},
      {"Flatten", make_flatten},
      {"Reshape", make_reshape},
      {"Dropout", make_identity},
      {"SpatialDropout2D", make_identity},
      {"GaussianDropout", make_identity},
      {"GaussianNoise", make_identity},
      {"AlphaDropout", make_identity},
      {"ActivityRegularization", make_identity},
      // Augmentation: the identity at inference.
      {"RandomFlip", make_identity},
      {"RandomRotation", make_identity},
      {"RandomZoom", make_identity},
      {"RandomContrast", make_identity},
      {"RandomTranslation", make_identity},
      {"RandomBrightness", make_identity},
      {"Rescaling", make_rescaling},
      {"Resizing", make_resizing},
      {"CenterCrop", make_center_crop},
      // Keras 3 operations: on a tensor and a constant (make_constant_operation) or on two tensors;
      // Keras' merge layers of the same names.
      {"TrueDivide", elementwise(ElementwiseOp::divide)},
      {"Divide", elementwise(ElementwiseOp::divide)},
      {"Subtract", elementwise(ElementwiseOp::subtract)},
      {"Maximum", elementwise(ElementwiseOp::maximum)},
      {"Minimum", elementwise(ElementwiseOp::minimum)},
      {"Average", elementwise(ElementwiseOp::average)},
      {"Normalization", make_normalization},
      {"Add", elementwise(ElementwiseOp::add)},
      {"Multiply", elementwise(ElementwiseOp::multiply)},
      {"Concatenate", make_concatenate},
      {"LRN", make_lrn},
      {"LocalResponseNormalization", make_lrn},
  };
  return table;
}

}  // namespace

std::vector<std::string> supported_keras_layers() {
  std::vector<std::string> names{"InputLayer", "Sequential", "Functional", "Model"};
  for (const auto& [name, factory] : factories()) names.push_back(name);
  return names;
}

std::unique_ptr<Layer> make_keras_layer(const KerasLayerSpec& spec, const KerasLayerContext& context) {
  auto it = factories().find(spec.class_name);
  if (it == factories().end()) {
    std::string list;
    for (const auto& n : supported_keras_layers()) list += (list.empty() ? "" : ", ") + n;
    fail(context.source, ": layer '", spec.name, "' has unknown type '", spec.class_name, "' (supported: ", list, ")");
  }
  ConfigReader reader(spec, context);
  try {
    if (spec.config.is_object() && spec.config.contains("__constant_operand"))
      return make_constant_operation(spec, reader);
    return it->second(spec, reader);
  } catch (const json::exception& e) {
    // A setting of an unexpected JSON type that no check above caught: still name the layer.
    fail(context.source, ": layer '", spec.name, "' (", spec.class_name, "): malformed config: ", e.what());
  }
}

int keras_output_rank(const KerasLayerSpec& spec, int input_rank) {
  const std::string& cls = spec.class_name;
  if (cls == "Flatten") return 2;
  if (cls == "Embedding") return input_rank + 1;
  if (cls.rfind("Global", 0) == 0) return spec.config.value("keepdims", false) ? 4 : 2;
  if (cls == "Reshape" && spec.config.contains("target_shape") && spec.config["target_shape"].is_array())
    return static_cast<int>(spec.config["target_shape"].size()) + 1;
  return input_rank;
}

}  // namespace chorus::io
