#include "layers/depthwise_conv2d.h"

#include <algorithm>

#include "core/error.h"
#include "core/parallel.h"
#include "layers/vec8.h"

namespace chorus::layers {

DepthwiseConv2D::DepthwiseConv2D(std::string name, DepthwiseConv2DSettings settings)
    : Layer(std::move(name)), settings_(settings), w_(std::make_shared<DepthwiseConv2DWeights>()) {
  const auto& s = settings_;
  if (s.kernel_h < 1 || s.kernel_w < 1 || s.stride_h < 1 || s.stride_w < 1 || s.dilation_h < 1 || s.dilation_w < 1 ||
      s.depth_multiplier < 1)
    fail_layer("kernel size, strides, dilation and depth_multiplier must be positive");
}

Shape DepthwiseConv2D::infer_shape(const std::vector<Shape>& in) {
  const auto& s = settings_;
  Shape out;
  out.c = in[0].c * s.depth_multiplier;
  auto g = window_geometry(in[0], {s.kernel_h, s.kernel_w, s.stride_h, s.stride_w, s.dilation_h, s.dilation_w,
                                   s.padding, s.explicit_pads, s.pads});
  out.h = g.out_h;
  out.w = g.out_w;
  pads_ = g.pads;
  if (out.h <= 0 || out.w <= 0) fail_layer("kernel ", s.kernel_h, "x", s.kernel_w, " does not fit input ", in[0].str());
  return out;
}

std::vector<WeightSpec> DepthwiseConv2D::weight_specs() const {
  const auto& s = settings_;
  std::vector<WeightSpec> specs{{kernel_name_, {s.kernel_h, s.kernel_w, input_shapes()[0].c, s.depth_multiplier}}};
  if (s.use_bias) specs.push_back({"bias", {output_shape().c}});
  return specs;
}

void DepthwiseConv2D::set_weights(WeightMap weights) {
  auto specs = weight_specs();
  // Keras' (kh, kw, in, multiplier) flattened is already (kh, kw, out channel): no reordering.
  const auto kernel = take_weight(weights, specs[0]);
  w_->kernel.assign(kernel.begin(), kernel.end());
  w_->bias.clear();
  if (settings_.use_bias) {
    const auto bias = take_weight(weights, specs[1]);
    w_->bias.assign(bias.begin(), bias.end());
  }
}

double DepthwiseConv2D::macs() const {
  const Shape& o = output_shape();
  return static_cast<double>(o.h) * o.w * o.c * settings_.kernel_h * settings_.kernel_w;
}

std::string DepthwiseConv2D::describe() const {
  const auto& s = settings_;
  std::string d = cat(s.kernel_h, "x", s.kernel_w, "/", s.stride_h, s.padding == Padding::same ? " same" : " valid");
  if (s.depth_multiplier > 1) d += cat(" x", s.depth_multiplier);
  if (s.dilation_h > 1 || s.dilation_w > 1) d += cat(" dil ", s.dilation_h);
  if (!s.activation.is_linear()) d += ", " + s.activation.str();
  return d;
}

void DepthwiseConv2D::fold_scale_shift(const std::vector<float>& scale, const std::vector<float>& shift) {
  const int c = output_shape().c;
  CHORUS_ASSERT(static_cast<int>(scale.size()) == c);
  for (std::size_t i = 0; i < w_->kernel.size(); ++i) w_->kernel[i] *= scale[i % c];
  if (w_->bias.empty()) w_->bias.assign(c, 0.0f);
  for (int i = 0; i < c; ++i) w_->bias[i] = w_->bias[i] * scale[i] + shift[i];
  settings_.use_bias = true;
}

namespace {

// Channels accumulated together in registers (one AVX-512 or two AVX2 vectors); the fixed trip
// count lets the compiler keep `acc` in registers across all kernel taps, instead of loading and
// storing the output once per tap. 16 measured faster than 32 (bench_layers BM_DepthwiseConv2D:
// 112x112x96 stride 2 at 330 us against 450 with 32 and 480 before).
constexpr int kChannelChunk = 16;
// Kernel rows the whole-row path takes (its row pointers live on the stack).
constexpr int kMaxFastKernel = 8;

// One output pixel of a depth_multiplier-1 depthwise convolution: dst[c] = bias[c] +
// sum over the taps in [ky0, ky1) x [kx0, kx1) of src[tap][c] * w[tap][c].
// (iy0, ix0) is the input pixel of tap (0, 0), possibly outside the input; only the taps in
// range are read.
template <int Chunk>
inline void depthwise_pixel_chunk(const float* __restrict in, const float* __restrict kernel,
                                  const float* __restrict bias, float* __restrict dst, int c0, int cin,
                                  std::size_t row_stride, int kernel_w, int cout, int dil_h, int dil_w, int iy0,
                                  int ix0, int ky0, int ky1, int kx0, int kx1) {
  float acc[Chunk];
  for (int i = 0; i < Chunk; ++i) acc[i] = bias ? bias[c0 + i] : 0.0f;
  for (int ky = ky0; ky < ky1; ++ky) {
    const float* row = in + static_cast<std::size_t>(iy0 + ky * dil_h) * row_stride;
    for (int kx = kx0; kx < kx1; ++kx) {
      const float* __restrict src = row + static_cast<std::size_t>(ix0 + kx * dil_w) * cin + c0;
      const float* __restrict w = kernel + static_cast<std::size_t>(ky * kernel_w + kx) * cout + c0;
      for (int i = 0; i < Chunk; ++i) acc[i] += src[i] * w[i];
    }
  }
  for (int i = 0; i < Chunk; ++i) dst[c0 + i] = acc[i];
}

// The inner output pixels of one row, those whose taps all lie inside the input horizontally,
// for depth_multiplier 1 and 16 channels or more: `Pixels` adjacent pixels x 16 channels at a
// time, 2 x Pixels accumulators in registers across the taps, each weight load serving all the
// pixels. One call does the whole row, so address arithmetic is hoisted out of the tap loops.
// rows[r] is the input row of kernel row krow[r] (the rows inside the input);
// x0 is the input column of pixel `begin`'s first tap.
struct DepthwiseRow {
  const float* const* rows;
  const int* krow;
  int nrows;
  const float* kernel;  // (kh, kw, channels)
  const float* bias;    // or null
  float* out;           // the output row
  int channels, kernel_w, stride, dil_w;
  bool clamp;  // the activation is max(lo, min(hi, x)), applied before the store
  float lo, hi;
};

template <int Pixels, int KernelW>  // KernelW 0: known only at run time
inline void depthwise_pixels(const DepthwiseRow& r, int ox, int x0) {
  const int c = r.channels, taps = KernelW ? KernelW : r.kernel_w;
  const std::size_t step = static_cast<std::size_t>(r.stride) * c, tap_step = static_cast<std::size_t>(r.dil_w) * c;
  const Vec8 lo = Vec8{} + r.lo, hi = Vec8{} + r.hi;
  float* dst = r.out + static_cast<std::size_t>(ox) * c;
  for (int c0 = 0; c0 + 16 <= c; c0 += 16) {
    Vec8 acc[Pixels][2];
    for (int v = 0; v < 2; ++v) {
      const Vec8 b = r.bias ? load8(r.bias + c0 + 8 * v) : Vec8{};
      for (int q = 0; q < Pixels; ++q) acc[q][v] = b;
    }
    for (int i = 0; i < r.nrows; ++i) {
      const float* src = r.rows[i] + static_cast<std::size_t>(x0) * c + c0;
      const float* w = r.kernel + static_cast<std::size_t>(r.krow[i]) * taps * c + c0;
      for (int kx = 0; kx < taps; ++kx) {
        const Vec8 w0 = load8(w + static_cast<std::size_t>(kx) * c), w1 = load8(w + static_cast<std::size_t>(kx) * c + 8);
        const float* s = src + kx * tap_step;
        for (int q = 0; q < Pixels; ++q) {
          acc[q][0] += load8(s + q * step) * w0;
          acc[q][1] += load8(s + q * step + 8) * w1;
        }
      }
    }
    for (int q = 0; q < Pixels; ++q)
      for (int v = 0; v < 2; ++v) {
        Vec8 a = acc[q][v];
        if (r.clamp) {
          a = a < lo ? lo : a;
          a = a > hi ? hi : a;
        }
        store8(dst + static_cast<std::size_t>(q) * c + c0 + 8 * v, a);
      }
  }
}

// 3-wide kernels with the horizontal stride (1 or 2) known here and no dilation: each input
// vector of a row is loaded once, from one pointer stepped by the channel count, and feeds
// every pixel and tap that reads it, 16 channels in one vector with AVX-512. With the stride
// known only at run time the compiler kept a pointer or offset per pixel and tap (12 for 4
// pixels x 3 taps), more than x86 has general registers for.
template <int Pixels, int Stride>
inline void depthwise_pixels_3wide(const DepthwiseRow& r, int ox, int x0) {
  constexpr int V = 16 / kVecWLanes, L = kVecWLanes, Taps = 3;
  const int c = r.channels;
  const VecW lo = VecW{} + r.lo, hi = VecW{} + r.hi;
  float* dst = r.out + static_cast<std::size_t>(ox) * c;
  for (int c0 = 0; c0 + 16 <= c; c0 += 16) {
    VecW acc[Pixels][V];
    for (int v = 0; v < V; ++v) {
      const VecW b = r.bias ? loadw(r.bias + c0 + L * v) : VecW{};
      for (int q = 0; q < Pixels; ++q) acc[q][v] = b;
    }
    for (int i = 0; i < r.nrows; ++i) {
      const float* p = r.rows[i] + static_cast<std::size_t>(x0) * c + c0;
      const float* w = r.kernel + static_cast<std::size_t>(r.krow[i]) * Taps * c + c0;
      VecW wv[Taps][V];
      for (int kx = 0; kx < Taps; ++kx)
        for (int v = 0; v < V; ++v) wv[kx][v] = loadw(w + static_cast<std::size_t>(kx) * c + L * v);
#pragma GCC unroll 32
      for (int m = 0; m < (Pixels - 1) * Stride + Taps; ++m, p += c) {
        VecW x[V];
        for (int v = 0; v < V; ++v) x[v] = loadw(p + L * v);
#pragma GCC unroll 16
        for (int q = 0; q < Pixels; ++q) {
          const int kx = m - q * Stride;  // the tap of pixel q that reads input m
          if (kx >= 0 && kx < Taps)
            for (int v = 0; v < V; ++v) acc[q][v] += x[v] * wv[kx][v];
        }
      }
    }
    for (int q = 0; q < Pixels; ++q)
      for (int v = 0; v < V; ++v) {
        VecW a = acc[q][v];
        if (r.clamp) {
          a = a < lo ? lo : a;
          a = a > hi ? hi : a;
        }
        storew(dst + static_cast<std::size_t>(q) * c + c0 + L * v, a);
      }
  }
}

// Pixels at a time on depthwise_pixels_3wide's path: 8 accumulators.
constexpr int k3WidePixels = 8 * kVecWLanes / 16;

// The next pixels' output lines are asked for while these compute: in a model the output
// buffer is cold, and stores waited for their lines (BM_DepthwiseConv2D with cold outputs,
// min of 3: 56x56x144 582 -> 500 us, 28x28x192 214 -> 173, 14x14x576 116 -> 101).
inline void prefetch_pixels(const DepthwiseRow& r, int ox, int pixels) {
  const float* next = r.out + static_cast<std::size_t>(ox) * r.channels;
  const std::size_t floats = static_cast<std::size_t>(pixels) * r.channels;
  for (std::size_t f = 0; f < floats; f += 16) __builtin_prefetch(next + f, 1);
}

template <int Stride>
void depthwise_inner_row_3wide(const DepthwiseRow& r, int begin, int end, int x0) {
  int ox = begin;
  for (; ox + k3WidePixels <= end; ox += k3WidePixels, x0 += k3WidePixels * Stride) {
    prefetch_pixels(r, ox + k3WidePixels, k3WidePixels);
    depthwise_pixels_3wide<k3WidePixels, Stride>(r, ox, x0);
  }
  if constexpr (k3WidePixels > 4)
    for (; ox + 4 <= end; ox += 4, x0 += 4 * Stride) depthwise_pixels_3wide<4, Stride>(r, ox, x0);
  for (; ox < end; ++ox, x0 += Stride) depthwise_pixels_3wide<1, Stride>(r, ox, x0);
}

template <int KernelW>
void depthwise_inner_row(const DepthwiseRow& r, int begin, int end, int x0) {
  if (KernelW == 3 && r.dil_w == 1 && r.stride == 1) return depthwise_inner_row_3wide<1>(r, begin, end, x0);
  if (KernelW == 3 && r.dil_w == 1 && r.stride == 2) return depthwise_inner_row_3wide<2>(r, begin, end, x0);
  int ox = begin;
  for (; ox + 4 <= end; ox += 4, x0 += 4 * r.stride) {
    prefetch_pixels(r, ox + 4, 4);
    depthwise_pixels<4, KernelW>(r, ox, x0);
  }
  for (; ox < end; ++ox, x0 += r.stride) depthwise_pixels<1, KernelW>(r, ox, x0);
}

}  // namespace

void DepthwiseConv2D::forward_rows(const float* in, int in_row0, float* out, int first_row, int end_row,
                                   int out_row0) const {
  const auto& s = settings_;
  const Shape& is = input_shapes()[0];
  const Shape& os = output_shape();
  const int cin = is.c, cout = os.c, dm = s.depth_multiplier;
  const float* bias = w_->bias.empty() ? nullptr : w_->bias.data();
  const std::size_t row_stride = static_cast<std::size_t>(is.w) * cin;
  float lo = 0.0f, hi = 0.0f;
  const bool clamp = s.activation.as_clamp(lo, hi);
  for (int oy = first_row; oy < end_row; ++oy) {
    // Taps inside the input for this row: ky in [ky0, ky1).
    const int iy0 = oy * s.stride_h - pads_.top;
    int ky0 = 0, ky1 = s.kernel_h;
    while (ky0 < ky1 && iy0 + ky0 * s.dilation_h < 0) ++ky0;
    while (ky1 > ky0 && iy0 + (ky1 - 1) * s.dilation_h >= is.h) --ky1;
    const int ry0 = iy0 - in_row0;  // row of tap 0 in `in`
    // Columns whose taps all lie inside the input, from ox_begin to ox_end.
    int ox_begin = 0, ox_end = os.w;
    while (ox_begin < os.w && ox_begin * s.stride_w - pads_.left < 0) ++ox_begin;
    while (ox_end > ox_begin && (ox_end - 1) * s.stride_w - pads_.left + (s.kernel_w - 1) * s.dilation_w >= is.w)
      --ox_end;
    // Inner pixels, 16 channels at a time; the channels past the last 16 and the edge pixels
    // one by one below.
    const bool fast = dm == 1 && cout >= 16 && ox_end > ox_begin && s.kernel_h <= kMaxFastKernel;
    if (fast) {
      const float* rows[kMaxFastKernel];
      int krow[kMaxFastKernel];
      int nrows = 0;
      for (int ky = ky0; ky < ky1; ++ky) {
        rows[nrows] = in + static_cast<std::size_t>(ry0 + ky * s.dilation_h) * row_stride;
        krow[nrows++] = ky;
      }
      float* out_row = out + static_cast<std::size_t>(oy - out_row0) * os.w * cout;
      DepthwiseRow r{rows,  krow, nrows, w_->kernel.data(), bias, out_row, cout, s.kernel_w, s.stride_w, s.dilation_w,
                     clamp, lo,   hi};
      const int x0 = ox_begin * s.stride_w - pads_.left;
      if (s.kernel_w == 3)
        depthwise_inner_row<3>(r, ox_begin, ox_end, x0);
      else
        depthwise_inner_row<0>(r, ox_begin, ox_end, x0);
    }
    for (int ox = 0; ox < os.w; ++ox) {
      float* __restrict dst = out + (static_cast<std::size_t>(oy - out_row0) * os.w + ox) * cout;
      if (fast && ox >= ox_begin && ox < ox_end) {
        const int ix0 = ox * s.stride_w - pads_.left;
        for (int c1 = cout / 16 * 16; c1 < cout; ++c1)
          depthwise_pixel_chunk<1>(in, w_->kernel.data(), bias, dst, c1, cin, row_stride, s.kernel_w, cout,
                                   s.dilation_h, s.dilation_w, ry0, ix0, ky0, ky1, 0, s.kernel_w);
        if (cout % 16 != 0 && clamp)  // the fast part is clamped already; these were not
          for (int c1 = cout / 16 * 16; c1 < cout; ++c1) dst[c1] = std::min(hi, std::max(lo, dst[c1]));
        continue;
      }
      const int ix0 = ox * s.stride_w - pads_.left;
      int kx0 = 0, kx1 = s.kernel_w;
      while (kx0 < kx1 && ix0 + kx0 * s.dilation_w < 0) ++kx0;
      while (kx1 > kx0 && ix0 + (kx1 - 1) * s.dilation_w >= is.w) --kx1;
      if (dm == 1) {
        int c = 0;
        for (; c + kChannelChunk <= cout; c += kChannelChunk)
          depthwise_pixel_chunk<kChannelChunk>(in, w_->kernel.data(), bias, dst, c, cin, row_stride, s.kernel_w, cout,
                                               s.dilation_h, s.dilation_w, ry0, ix0, ky0, ky1, kx0, kx1);
        for (; c + 8 <= cout; c += 8)
          depthwise_pixel_chunk<8>(in, w_->kernel.data(), bias, dst, c, cin, row_stride, s.kernel_w, cout, s.dilation_h,
                                   s.dilation_w, ry0, ix0, ky0, ky1, kx0, kx1);
        for (; c < cout; ++c)
          depthwise_pixel_chunk<1>(in, w_->kernel.data(), bias, dst, c, cin, row_stride, s.kernel_w, cout, s.dilation_h,
                                   s.dilation_w, ry0, ix0, ky0, ky1, kx0, kx1);
        continue;
      }
      if (bias)
        std::copy(bias, bias + cout, dst);
      else
        std::fill(dst, dst + cout, 0.0f);
      for (int ky = ky0; ky < ky1; ++ky) {
        const int iy = ry0 + ky * s.dilation_h;
        for (int kx = kx0; kx < kx1; ++kx) {
          const int ix = ix0 + kx * s.dilation_w;
          const float* __restrict src = in + (static_cast<std::size_t>(iy) * is.w + ix) * cin;
          const float* __restrict w = w_->kernel.data() + static_cast<std::size_t>(ky * s.kernel_w + kx) * cout;
          for (int c = 0; c < cin; ++c)
            for (int m = 0; m < dm; ++m) dst[c * dm + m] += src[c] * w[c * dm + m];
        }
      }
    }
    if (!fast || !clamp)
      s.activation.apply(out + static_cast<std::size_t>(oy - out_row0) * os.w * cout,
                         static_cast<std::size_t>(os.w) * cout, cout);
    else  // only the edge pixels still need it
      for (int ox = 0; ox < os.w; ++ox)
        if (ox < ox_begin || ox >= ox_end)
          s.activation.apply(out + (static_cast<std::size_t>(oy - out_row0) * os.w + ox) * cout, cout, cout);
  }
}

void DepthwiseConv2D::share_weights(const DepthwiseConv2D& owner) {
  CHORUS_ASSERT(owner.settings_.kernel_h == settings_.kernel_h && owner.settings_.kernel_w == settings_.kernel_w &&
                    owner.settings_.depth_multiplier == settings_.depth_multiplier &&
                    owner.input_shapes()[0].c == input_shapes()[0].c,
                "share_weights: ", name(), " differs from ", owner.name());
  w_ = owner.w_;
}

std::pair<int, int> DepthwiseConv2D::input_rows(int first_row, int end_row) const {
  const auto& s = settings_;
  const int h = input_shapes()[0].h;
  const int first = first_row * s.stride_h - pads_.top;
  const int last = (end_row - 1) * s.stride_h - pads_.top + (s.kernel_h - 1) * s.dilation_h + 1;
  return {std::clamp(first, 0, h), std::clamp(last, 0, h)};
}

void DepthwiseConv2D::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const Shape& os = output_shape();
  out.resize(in[0]->frames(), os);
  // Rows per task: some 50k multiply-adds, so small layers stay on one thread.
  const double row_macs = static_cast<double>(os.w) * os.c * settings_.kernel_h * settings_.kernel_w;
  const auto grain = static_cast<std::int64_t>(std::max(1.0, 5e4 / row_macs));
  for (int n = 0; n < in[0]->frames(); ++n)
    parallel_range(os.h, grain, [&](std::int64_t first, std::int64_t last) {
      forward_rows(in[0]->frame(n), 0, out.frame(n), static_cast<int>(first), static_cast<int>(last));
    });
}

}  // namespace chorus::layers
