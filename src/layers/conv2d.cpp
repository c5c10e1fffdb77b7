#include "layers/conv2d.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/parallel.h"
#include "layers/gemm.h"
#include "layers/packed_gemm.h"
#include "layers/scratch.h"
#include "layers/small_gemm.h"
#include "layers/vec8.h"
#include "layers/winograd.h"

namespace chorus::layers {

namespace {
// Columns of the im2col block per GEMM: about 1 MB of columns, so the block stays in cache
// instead of materialising the whole (often >100 MB) patch matrix...
constexpr std::size_t kColumnBlockFloats = 256 * 1024;
// ...but at least 512 columns (up to 8 MB): OpenBLAS packs the whole weight matrix once per
// call, and with k = 3*3*512 a 1 MB block is only 56 columns wide, so the 9 MB kernel would
// be re-packed every 56 columns (VGG16 block 4 ran at half speed).
constexpr int kMinColumns = 512;
constexpr std::size_t kMaxColumnBlockFloats = 2 * 1024 * 1024;
// Fewer pixels than this per thread and the threads share each block (one GEMM split by rows)
// instead of taking their own: narrower blocks would have every thread re-pack the whole weight
// matrix, and a block per thread would hold a second 8 MB scratch buffer (VGG16's 28x28x512
// layers at 2 threads: peak RSS 642 MB against a 637 MB budget).
constexpr int kMinColumnsPerThread = kMinColumns;
// Pixels per thread on the small_gemm and packed_gemm paths; below it threads split filters.
constexpr int kMinPixelsPerThread = 64;
// Pixels per im2col block on the small_gemm path.
constexpr int kSmallGemmBlock = 256;

// Winograd only where the transformed kernel stays small: 6x6 tiles hold 36/9 of a 3x3 kernel
// (F(4x4)) or 36/25 of a 5x5 one (F(2x2)), 4x4 tiles 16/9 of a 3x3 kernel, which it replaces.
// Larger layers (VGG16's 512-channel ones) keep im2col, so peak memory stays near weights +
// activations.
constexpr double kWinograd6x6MaxBytes = 5e6;
constexpr double kWinograd4x4MaxBytes = 9e6;
// Below this many input or output channels the transforms cost more than they save.
constexpr int kWinogradMinChannels = 32;
}  // namespace

Conv2D::~Conv2D() = default;

Conv2D::Conv2D(std::string name, Conv2DSettings settings)
    : Layer(std::move(name)), settings_(settings), w_(std::make_shared<Conv2DWeights>()) {
  const auto& s = settings_;
  if (s.filters < 1 || s.kernel_h < 1 || s.kernel_w < 1 || s.stride_h < 1 || s.stride_w < 1 || s.dilation_h < 1 ||
      s.dilation_w < 1 || s.groups < 1)
    fail_layer("filters, kernel size, strides, dilation and groups must be positive");
  if (s.filters % s.groups != 0) fail_layer("filters (", s.filters, ") not divisible by groups (", s.groups, ")");
}

Shape Conv2D::infer_shape(const std::vector<Shape>& in) {
  const auto& s = settings_;
  if (in[0].c % s.groups != 0) fail_layer("input channels (", in[0].c, ") not divisible by groups (", s.groups, ")");
  Shape out;
  out.c = s.filters;
  auto g = window_geometry(in[0], {s.kernel_h, s.kernel_w, s.stride_h, s.stride_w, s.dilation_h, s.dilation_w,
                                   s.padding, s.explicit_pads, s.pads});
  out.h = g.out_h;
  out.w = g.out_w;
  pads_ = g.pads;
  if (out.h <= 0 || out.w <= 0) fail_layer("kernel ", s.kernel_h, "x", s.kernel_w, " does not fit input ", in[0].str());
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
  w_->kernel = take_weight(weights, specs[0]);
  w_->bias = settings_.use_bias ? take_weight(weights, specs[1]) : std::vector<float>{};
  w_->winograd.reset();
  const int k = settings_.kernel_h * settings_.kernel_w * (input_shapes()[0].c / settings_.groups);
  w_->packed.reset();
  w_->use_direct_kernel = settings_.groups == 1 && prefer_small_gemm(k, settings_.filters);
  if (int tile = choose_winograd_tile()) {
    // The transformed kernel replaces the plain one, so memory grows by 36/25, 16/9 or 36/9, not more.
    w_->winograd =
        std::make_unique<Winograd>(settings_.kernel_h, tile, w_->kernel, input_shapes()[0].c, settings_.filters);
    std::vector<float>().swap(w_->kernel);
  }
  if (!w_->winograd && settings_.groups == 1 && prefer_packed_gemm(k, settings_.filters)) {
    // Packed once here rather than by sgemm on every call, and read in contiguous panels where
    // small_gemm's rows of 256 filters fall into few L1 sets; the packed copy replaces the kernel.
    w_->packed = std::make_unique<PackedWeights>(std::move(w_->kernel), k, settings_.filters);  // and frees it
    w_->use_direct_kernel = true;
  }
}

void Conv2D::share_weights(const Conv2D& owner) {
  CHORUS_ASSERT(owner.settings_.filters == settings_.filters && owner.settings_.kernel_h == settings_.kernel_h &&
                    owner.settings_.kernel_w == settings_.kernel_w && owner.settings_.groups == settings_.groups &&
                    owner.input_shapes()[0].c == input_shapes()[0].c,
                "share_weights: ", name(), " differs from ", owner.name());
  w_ = owner.w_;
}

int Conv2D::winograd_tile() const { return w_->winograd ? w_->winograd->tile() : 0; }

int Conv2D::choose_winograd_tile() const {
  const auto& s = settings_;
  if (s.kernel_h != s.kernel_w || (s.kernel_h != 3 && s.kernel_h != 5) || s.stride_h != 1 || s.stride_w != 1 ||
      s.dilation_h != 1 || s.dilation_w != 1 || s.groups != 1)
    return 0;
  const int cin = input_shapes()[0].c;
  if (cin < kWinogradMinChannels || s.filters < kWinogradMinChannels) return 0;
  const double plane_bytes = 4.0 * cin * s.filters;
  if (s.kernel_h == 5) return 36 * plane_bytes <= kWinograd6x6MaxBytes ? 2 : 0;
  const Shape& o = output_shape();
  // F(4x4) wastes most of its edge tiles on small outputs.
  if (36 * plane_bytes <= kWinograd6x6MaxBytes && o.h >= 8 && o.w >= 8) return 4;
  if (16 * plane_bytes <= kWinograd4x4MaxBytes) return 2;
  return 0;
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
  for (std::size_t i = 0; i < w_->kernel.size(); ++i) w_->kernel[i] *= scale[i % f];
  if (w_->winograd) w_->winograd->scale_filters(scale);
  if (w_->packed) w_->packed->scale_filters(scale);
  if (w_->bias.empty()) w_->bias.assign(f, 0.0f);
  for (int co = 0; co < f; ++co) w_->bias[co] = w_->bias[co] * scale[co] + shift[co];
  settings_.use_bias = true;
}

bool Conv2D::is_pointwise() const {
  const auto& s = settings_;
  return s.kernel_h == 1 && s.kernel_w == 1 && s.stride_h == 1 && s.stride_w == 1 && s.groups == 1 && pads_.top == 0 &&
         pads_.bottom == 0 && pads_.left == 0 && pads_.right == 0;
}

void Conv2D::forward_im2col(const float* in, float* out) const {
  const auto& s = settings_;
  const Shape& is = input_shapes()[0];
  const Shape& os = output_shape();
  const int k = s.kernel_h * s.kernel_w * (is.c / s.groups);
  const int pixels = os.h * os.w;
  const std::size_t min_cols = std::min<std::size_t>(kMinColumns, kMaxColumnBlockFloats / k);
  int block = std::min<std::size_t>(pixels, std::max<std::size_t>({std::size_t{16}, min_cols, kColumnBlockFloats / k}));
  // small_gemm packs nothing, so short blocks cost it nothing and keep the columns in L1/L2.
  if (w_->use_direct_kernel) block = std::min(block, kSmallGemmBlock);
  const int threads = parallel_threads();
  if (threads == 1 || pixels < threads * kMinColumnsPerThread) {
    // One thread, or too few pixels to give each thread its own blocks: blocks one after the
    // other, each gathered, multiplied and finished by all threads together.
    float* cols = conv_scratch(static_cast<std::size_t>(k) * block);
    for (int p0 = 0; p0 < pixels; p0 += block) {
      const int count = std::min(block, pixels - p0);
      if (splits_by_filters(count, s.activation)) {
        // Gathered together, then multiplied by filters: split by pixels, every thread would
        // stream all the weights (ResNet-50's 7x7 layers, 9 MB).
        parallel_range(count, 16, [&](std::int64_t first, std::int64_t last) {
          gather_columns(in, 0, p0 + static_cast<int>(first), static_cast<int>(last - first), cols + first * k);
        });
        multiply_direct(cols, count, out + static_cast<std::size_t>(p0) * s.filters);
        continue;
      }
      for (int g = 0; g < s.groups; ++g) {
        parallel_range(count, 16, [&](std::int64_t first, std::int64_t last) {
          gather_columns(in, g, p0 + static_cast<int>(first), static_cast<int>(last - first), cols + first * k);
          if (w_->use_direct_kernel)
            multiply_direct(cols + first * k, static_cast<int>(last - first), out + (p0 + first) * s.filters);
        });
        if (!w_->use_direct_kernel) multiply_group(g, cols, count, out + static_cast<std::size_t>(p0) * s.filters);
      }
      if (!w_->use_direct_kernel)
        parallel_range(count, 16, [&](std::int64_t first, std::int64_t last) {
          finish_block(out + static_cast<std::size_t>(p0 + first) * s.filters, static_cast<int>(last - first));
        });
    }
    return;
  }
  // Each thread takes whole blocks in its own scratch, gathered, multiplied and finished while
  // in its cache; as many blocks as a multiple of the threads, so that none waits at the end.
  int blocks = (pixels + block - 1) / block;
  blocks = (blocks + threads - 1) / threads * threads;
  block = (pixels + blocks - 1) / blocks;
  blocks = (pixels + block - 1) / block;
  // Each thread a contiguous run of blocks, as the next layer splits its rows or pixels: what
  // a thread writes here, the same thread reads there, from its own cache.
  parallel_range(blocks, 1, [&](std::int64_t first, std::int64_t last) {
    for (auto b = first; b < last; ++b) {
      const int p0 = static_cast<int>(b) * block, count = std::min(block, pixels - p0);
      float* cols = conv_scratch(static_cast<std::size_t>(k) * block);
      float* block_out = out + static_cast<std::size_t>(p0) * s.filters;
      for (int g = 0; g < s.groups; ++g) {
        gather_columns(in, g, p0, count, cols);
        if (w_->use_direct_kernel)
          multiply_direct(cols, count, block_out);
        else
          multiply_group(g, cols, count, block_out);
      }
      if (!w_->use_direct_kernel) finish_block(block_out, count);
    }
  });
}

namespace {

// GCC recognises copy loops and replaces them with calls to memmove ("loop distribution
// patterns"), even a loop of 8-float vectors; for rows of 9 floats the call cost more than the
// copy. Both functions below carry this, so that one still inlines into the other.
#if defined(__GNUC__) && !defined(__clang__)
#define CHORUS_NO_MEMMOVE_CALLS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define CHORUS_NO_MEMMOVE_CALLS
#endif

// A copy of a few floats (a kernel row of taps, or one tap's channels), inline: a call to
// memmove per row cost more than the copy (MobileNetV2's first layer: 37632 rows of 9, before
// gather_inside_run took those). The tail is a switch because GCC turns a tail loop back into
// such a call.
CHORUS_NO_MEMMOVE_CALLS inline void copy_floats(const float* __restrict src, std::size_t n, float* __restrict dst) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) store8(dst + i, load8(src + i));
  switch (n - i) {
    case 7:
      dst[i + 6] = src[i + 6];
      [[fallthrough]];
    case 6:
      dst[i + 5] = src[i + 5];
      [[fallthrough]];
    case 5:
      dst[i + 4] = src[i + 4];
      [[fallthrough]];
    case 4:
      dst[i + 3] = src[i + 3];
      [[fallthrough]];
    case 3:
      dst[i + 2] = src[i + 2];
      [[fallthrough]];
    case 2:
      dst[i + 1] = src[i + 1];
      [[fallthrough]];
    case 1:
      dst[i] = src[i];
      break;
    default:
      break;
  }
}

// Columns of `n` adjacent output pixels whose taps all lie inside the input, for the 3-channel
// first layers (kernel rows of RowFloats = 3 x Kh floats): rows[ky] is kernel row ky's input
// for the first pixel, `step` floats on to the next. The row pointers and sizes are fixed for
// the run, where the per-pixel loop recomputed and checked them for every row.
template <int Kh, int RowFloats>
void gather_inside_run(const float* const* rows, std::size_t step, int n, int k, float* col) {
  for (int i = 0; i < n; ++i, col += k)
    for (int ky = 0; ky < Kh; ++ky) std::memcpy(col + ky * RowFloats, rows[ky] + i * step, RowFloats * sizeof(float));
}

}  // namespace

CHORUS_NO_MEMMOVE_CALLS
void Conv2D::gather_columns(const float* in, int group, int p0, int count, float* cols) const {
  // Locals, not members: stores through `cols` would otherwise make the compiler reload them.
  const Shape is = input_shapes()[0];
  const int ow = output_shape().w;
  const int kh = settings_.kernel_h, kw = settings_.kernel_w, sh = settings_.stride_h, sw = settings_.stride_w;
  const int dh = settings_.dilation_h, dw = settings_.dilation_w, top = pads_.top, left = pads_.left;
  const int cin_g = is.c / settings_.groups, k = kh * kw * cin_g;
  // Column p of `cols` is the receptive field of output pixel p0+p, in (ky, kx, ci) order.
  // Without groups or dilation the taps of one kernel row are adjacent in the NHWC input: one
  // copy per row instead of one per tap (MobileNetV2's first layer has 3 channels per tap).
  const bool rows_contiguous = settings_.groups == 1 && dw == 1;
  const std::size_t row_floats = static_cast<std::size_t>(kw) * cin_g;
  const std::size_t in_row = static_cast<std::size_t>(is.w) * is.c;
  // 3x3, 7x7 and 11x11 kernels on 3 channels take runs of inside pixels at once.
  const bool runs = rows_contiguous && cin_g == 3 && kh == kw && (kh == 3 || kh == 7 || kh == 11);
  const int ox_inside_lo = (left + sw - 1) / sw, ox_inside_hi = (is.w - kw + left) / sw;  // inclusive
  int oy = p0 / ow, ox = p0 % ow;
  for (int p = 0; p < count; ++p, ++ox) {
    if (ox == ow) {
      ox = 0;
      ++oy;
    }
    float* col = cols + static_cast<std::size_t>(p) * k;
    const int iy0 = oy * sh - top;
    if (runs && ox >= ox_inside_lo && ox <= ox_inside_hi && iy0 >= 0 && iy0 + (kh - 1) * dh < is.h) {
      const int n = std::min(count - p, ox_inside_hi + 1 - ox);
      const float* rows[11];
      for (int ky = 0; ky < kh; ++ky)
        rows[ky] = in + static_cast<std::size_t>(iy0 + ky * dh) * in_row + group * cin_g +
                   static_cast<std::size_t>(ox * sw - left) * is.c;
      const std::size_t step = static_cast<std::size_t>(sw) * is.c;
      if (kh == 3)
        gather_inside_run<3, 9>(rows, step, n, k, col);
      else if (kh == 7)
        gather_inside_run<7, 21>(rows, step, n, k, col);
      else
        gather_inside_run<11, 33>(rows, step, n, k, col);
      p += n - 1;  // the loop adds the last one
      ox += n - 1;
      continue;
    }
    const int ix0 = ox * sw - left;
    const bool inside_w = rows_contiguous && ix0 >= 0 && ix0 + kw <= is.w;
    for (int ky = 0; ky < kh; ++ky) {
      const int iy = oy * sh - top + ky * dh;
      float* dst = col + static_cast<std::size_t>(ky) * row_floats;
      if (iy < 0 || iy >= is.h) {
        std::fill(dst, dst + row_floats, 0.0f);
        continue;
      }
      const float* src_row = in + static_cast<std::size_t>(iy) * in_row + group * cin_g;
      if (inside_w) {
        copy_floats(src_row + static_cast<std::size_t>(ix0) * is.c, row_floats, dst);
        continue;
      }
      for (int kx = 0; kx < kw; ++kx) {
        const int ix = ix0 + kx * dw;
        float* tap = dst + kx * cin_g;
        if (ix < 0 || ix >= is.w)
          std::fill(tap, tap + cin_g, 0.0f);
        else
          copy_floats(src_row + static_cast<std::size_t>(ix) * is.c, cin_g, tap);
      }
    }
  }
}

void Conv2D::multiply_group(int group, const float* cols, int count, float* out) const {
  const auto& s = settings_;
  const int cout_g = s.filters / s.groups, k = s.kernel_h * s.kernel_w * (input_shapes()[0].c / s.groups);
  // out[:, group channels] = W_g * cols, written straight into the NHWC output (ldc = filters).
  gemm(cout_g, count, k, w_->kernel.data() + group * cout_g, s.filters, cols, k, out + group * cout_g, s.filters);
}

void Conv2D::multiply_direct(const float* cols, int count, float* out, const float* residual,
                             const Activation* act) const {
  const int k = settings_.kernel_h * settings_.kernel_w * input_shapes()[0].c;
  const float* bias = w_->bias.empty() ? nullptr : w_->bias.data();
  const Activation& activation = act ? *act : settings_.activation;
  if (w_->packed) {
    if (splits_by_filters(count, activation)) {
      const int tile = packed_gemm_tile_panels();
      parallel_range(
          w_->packed->panels(), tile,
          [&](std::int64_t first, std::int64_t last) {
            packed_gemm(cols, k, count, *w_->packed, bias, activation, out, static_cast<int>(first),
                        static_cast<int>(last), residual);
          },
          tile);
      return;
    }
    packed_gemm(cols, k, count, *w_->packed, bias, activation, out, 0, -1, residual);
  } else {
    CHORUS_ASSERT(!residual && !act, "small_gemm adds no residual");
    small_gemm(cols, k, count, k, w_->kernel.data(), settings_.filters, bias, settings_.activation, out);
  }
}

bool Conv2D::splits_by_filters(int count, const Activation& activation) const {
  // Threads take panels of filters, all reading the same inputs, where a range of pixels each
  // would be too short (7x7 layers, or a part of a block) or where the weights outweigh the
  // inputs (more filters than pixels: 14x14 and 7x7 layers), which every thread would otherwise
  // stream whole.
  const int threads = parallel_threads();
  float lo, hi;
  return w_->packed && threads > 1 && w_->packed->panels() >= 2 * threads && activation.as_clamp(lo, hi) &&
         (count < threads * kMinPixelsPerThread || settings_.filters > count);
}

bool Conv2D::adds_residual_by_pixels() const {
  return runs_by_pixels() && w_->packed && settings_.activation.is_linear();
}

void Conv2D::forward_adding(const Tensor& in, const Tensor& residual, const Activation& act, Tensor& out) const {
  CHORUS_ASSERT(adds_residual_by_pixels(), "forward_adding on a layer that cannot");
  const int frames = in.frames();
  out.resize(frames, output_shape());
  CHORUS_ASSERT(residual.frames() == frames && residual.shape() == output_shape(), "residual shape");
  const int pixels = frames * output_shape().h * output_shape().w;
  const int cin = input_shapes()[0].c, f = settings_.filters;
  if (splits_by_filters(pixels, act)) {
    multiply_direct(in.data(), pixels, out.data(), residual.data(), &act);
    return;
  }
  parallel_range(
      pixels, kMinPixelsPerThread,
      [&](std::int64_t first, std::int64_t last) {
        multiply_direct(in.data() + first * cin, static_cast<int>(last - first), out.data() + first * f,
                        residual.data() + first * f, &act);
      },
      6);
}

void Conv2D::finish_block(float* block, int pixels) const {
  const int f = settings_.filters;
  if (!w_->bias.empty())
    for (int p = 0; p < pixels; ++p)
      for (int co = 0; co < f; ++co) block[static_cast<std::size_t>(p) * f + co] += w_->bias[co];
  settings_.activation.apply(block, static_cast<std::size_t>(pixels) * f, f);
}

void Conv2D::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const Tensor& x = *in[0];
  const int frames = x.frames();
  out.resize(frames, output_shape());
  if (is_pointwise()) {
    // 1x1 convolution over the whole batch: one GEMM straight on the NHWC input, no im2col.
    // (Pixel blocks with the epilogue in cache measured no faster at 1 thread, so one thread
    // makes one call.)
    const int pixels = frames * output_shape().h * output_shape().w;
    const int cin = input_shapes()[0].c, f = settings_.filters;
    if (w_->use_direct_kernel && splits_by_filters(pixels, settings_.activation)) {
      multiply_direct(x.data(), pixels, out.data());
      return;
    }
    if (w_->use_direct_kernel) {
      parallel_range(
          pixels, kMinPixelsPerThread,
          [&](std::int64_t first, std::int64_t last) {
            multiply_direct(x.data() + first * cin, static_cast<int>(last - first), out.data() + first * f);
          },
          6);  // whole tiles of 6 pixels per thread
      return;
    }
    if (pixels > f && parallel_threads() > 1) {
      // Each thread a range of pixels, finished while in its cache.
      parallel_range(
          pixels, kMinColumnsPerThread,
          [&](std::int64_t first, std::int64_t last) {
            gemm(f, static_cast<int>(last - first), cin, w_->kernel.data(), f, x.data() + first * cin, cin,
                 out.data() + first * f, f);
            finish_block(out.data() + first * f, static_cast<int>(last - first));
          },
          16);
      return;
    }
    gemm(f, pixels, cin, w_->kernel.data(), f, x.data(), cin, out.data(), f);
    parallel_range(pixels, 16, [&](std::int64_t first, std::int64_t last) {
      finish_block(out.data() + first * f, static_cast<int>(last - first));
    });
    return;
  }
  if (w_->winograd) {
    const Shape& is = input_shapes()[0];
    const Shape& os = output_shape();
    w_->winograd->forward(x.data(), frames, is.h, is.w, pads_, os.h, os.w, w_->bias.empty() ? nullptr : w_->bias.data(),
                          settings_.activation, out.data());
    return;
  }
  for (int n = 0; n < frames; ++n) forward_im2col(x.frame(n), out.frame(n));
}

}  // namespace chorus::layers
