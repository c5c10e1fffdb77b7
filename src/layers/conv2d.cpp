#include "layers/conv2d.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "layers/gemm.h"

namespace chorus::layers {

namespace {
// Columns of the im2col block per GEMM: keeps the block near 1 MB so it stays in L2/L3
// instead of materialising the whole (often >100 MB) patch matrix.
constexpr std::size_t kColumnBlockFloats = 256 * 1024;
}  // namespace

Conv2D::Conv2D(std::string name, Conv2DSettings settings) : Layer(std::move(name)), settings_(settings) {
  const auto& s = settings_;
  if (s.filters < 1 || s.kernel_h < 1 || s.kernel_w < 1 || s.stride_h < 1 || s.stride_w < 1 || s.dilation_h < 1 ||
      s.dilation_w < 1 || s.groups < 1)
    fail_layer("filters, kernel size, strides, dilation and groups must be positive");
  if (s.filters % s.groups != 0) fail_layer("filters (", s.filters, ") not divisible by groups (", s.groups, ")");
}

Shape Conv2D::infer_shape(const std::vector<Shape>& in) {
  const auto& s = settings_;
  if (in[0].c % s.groups != 0)
    fail_layer("input channels (", in[0].c, ") not divisible by groups (", s.groups, ")");
  Shape out;
  out.c = s.filters;
  auto g = window_geometry(in[0], {s.kernel_h, s.kernel_w, s.stride_h, s.stride_w, s.dilation_h, s.dilation_w,
                                   s.padding, s.explicit_pads, s.pads});
  out.h = g.out_h;
  out.w = g.out_w;
  pads_ = g.pads;
  if (out.h <= 0 || out.w <= 0)
    fail_layer("kernel ", s.kernel_h, "x", s.kernel_w, " does not fit input ", in[0].str());
  return out;
}

std::vector<WeightSpec> Conv2D::weight_specs() const {
  const auto& s = settings_;
  std::vector<WeightSpec> specs{{"kernel", {s.kernel_h, s.kernel_w, input_shapes()[0].c / s.groups, s.filters}}};
  if (s.use_bias) specs.push_back({"bias", {s.filters}});
  return specs;
}

void Conv2D::set_weights(WeightMap weights) {
  auto specs = weight_specs();
  kernel_ = take_weight(weights, specs[0]);
  bias_ = settings_.use_bias ? take_weight(weights, specs[1]) : std::vector<float>{};
}

double Conv2D::macs() const {
  const auto& s = settings_;
  const Shape& o = output_shape();
  return static_cast<double>(o.h) * o.w * s.filters * s.kernel_h * s.kernel_w * (input_shapes()[0].c / s.groups);
}

std::string Conv2D::describe() const {
  const auto& s = settings_;
  std::string d = cat(s.kernel_h, "x", s.kernel_w, "/", s.stride_h);
  d += s.explicit_pads ? " pads" : (s.padding == Padding::same ? " same" : " valid");
  if (s.dilation_h > 1 || s.dilation_w > 1) d += cat(" dil ", s.dilation_h);
  if (s.groups > 1) d += cat(" groups ", s.groups);
  if (!s.activation.is_linear()) d += ", " + s.activation.str();
  return d;
}

void Conv2D::fold_scale_shift(const std::vector<float>& scale, const std::vector<float>& shift) {
  const int f = settings_.filters;
  CHORUS_ASSERT(static_cast<int>(scale.size()) == f && static_cast<int>(shift.size()) == f);
  for (std::size_t i = 0; i < kernel_.size(); ++i) kernel_[i] *= scale[i % f];
  if (bias_.empty()) bias_.assign(f, 0.0f);
  for (int co = 0; co < f; ++co) bias_[co] = bias_[co] * scale[co] + shift[co];
  settings_.use_bias = true;
}

bool Conv2D::is_pointwise() const {
  const auto& s = settings_;
  return s.kernel_h == 1 && s.kernel_w == 1 && s.stride_h == 1 && s.stride_w == 1 && s.groups == 1 &&
         pads_.top == 0 && pads_.bottom == 0 && pads_.left == 0 && pads_.right == 0;
}

void Conv2D::forward_im2col(const float* in, float* out) const {
  const auto& s = settings_;
  const Shape& is = input_shapes()[0];
  const Shape& os = output_shape();
  const int cin_g = is.c / s.groups, cout_g = s.filters / s.groups;
  const int k = s.kernel_h * s.kernel_w * cin_g;
  const int pixels = os.h * os.w;
  const int block = std::max<int>(16, std::min<std::size_t>(pixels, kColumnBlockFloats / k));
  thread_local std::vector<float> cols;
  cols.resize(static_cast<std::size_t>(k) * block);

  for (int p0 = 0; p0 < pixels; p0 += block) {
    const int count = std::min(block, pixels - p0);
    for (int g = 0; g < s.groups; ++g) {
      // Gather: column p of `cols` is the receptive field of output pixel p0+p, in (ky, kx, ci) order.
      for (int p = 0; p < count; ++p) {
        const int oy = (p0 + p) / os.w, ox = (p0 + p) % os.w;
        float* col = cols.data() + static_cast<std::size_t>(p) * k;
        for (int ky = 0; ky < s.kernel_h; ++ky) {
          const int iy = oy * s.stride_h - pads_.top + ky * s.dilation_h;
          for (int kx = 0; kx < s.kernel_w; ++kx) {
            const int ix = ox * s.stride_w - pads_.left + kx * s.dilation_w;
            float* dst = col + (ky * s.kernel_w + kx) * cin_g;
            if (iy < 0 || iy >= is.h || ix < 0 || ix >= is.w)
              std::memset(dst, 0, sizeof(float) * cin_g);
            else
              std::memcpy(dst, in + (static_cast<std::size_t>(iy) * is.w + ix) * is.c + g * cin_g,
                          sizeof(float) * cin_g);
          }
        }
      }
      // out[:, group g channels] = W_g * cols, written straight into the NHWC output (ldc = filters).
      gemm(cout_g, count, k, kernel_.data() + g * cout_g, s.filters, cols.data(), k,
           out + static_cast<std::size_t>(p0) * s.filters + g * cout_g, s.filters);
    }
    // Epilogue while the block is in cache: bias, then activation.
    float* block_out = out + static_cast<std::size_t>(p0) * s.filters;
    if (!bias_.empty())
      for (int p = 0; p < count; ++p)
        for (int co = 0; co < s.filters; ++co) block_out[p * s.filters + co] += bias_[co];
    s.activation.apply(block_out, static_cast<std::size_t>(count) * s.filters, s.filters);
  }
}

void Conv2D::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const Tensor& x = *in[0];
  const int frames = x.frames();
  out.resize(frames, output_shape());
  if (is_pointwise()) {
    // 1x1 convolution over the whole batch: one GEMM, no im2col.
    const int pixels = frames * output_shape().h * output_shape().w;
    const int cin = input_shapes()[0].c;
    gemm(settings_.filters, pixels, cin, kernel_.data(), settings_.filters, x.data(), cin, out.data(),
         settings_.filters);
    float* o = out.data();
    if (!bias_.empty())
      for (int p = 0; p < pixels; ++p)
        for (int co = 0; co < settings_.filters; ++co) o[static_cast<std::size_t>(p) * settings_.filters + co] += bias_[co];
    settings_.activation.apply(o, out.size(), settings_.filters);
    return;
  }
  for (int n = 0; n < frames; ++n) forward_im2col(x.frame(n), out.frame(n));
}

}  // namespace chorus::layers
