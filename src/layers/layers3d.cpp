#include "layers/layers3d.h"

#include <algorithm>
#include <limits>

#include "core/parallel.h"
#include "layers/gemm.h"
#include "layers/scratch.h"

namespace chorus::layers {

namespace {

// The clip's extent on window axis a (0 depth, 1 rows, 2 columns).
int extent(Shape s, int a) { return a == 0 ? s.d : a == 1 ? s.h : s.w; }

std::string window_text(const Window3D& w) {
  std::string s = cat(w.kernel[0], "x", w.kernel[1], "x", w.kernel[2], "/", w.stride[0]);
  if (w.stride[1] != w.stride[0] || w.stride[2] != w.stride[0]) s += cat(",", w.stride[1], ",", w.stride[2]);
  if (w.explicit_pads) return s + " pads";
  return s + (w.padding == Padding::same ? " same" : " valid");
}

}  // namespace

Geometry3D window_geometry_3d(Shape in, const Window3D& w) {
  Geometry3D g;
  for (int a = 0; a < 3; ++a) {
    if (w.explicit_pads) {
      const int padded = extent(in, a) + w.pad_before[a] + w.pad_after[a], effective = (w.kernel[a] - 1) * w.dilation[a] + 1;
      g.out[a] = padded >= effective ? (padded - effective) / w.stride[a] + 1 : 0;
      g.pad[a] = w.pad_before[a];
      g.pad_after[a] = w.pad_after[a];
      continue;
    }
    const AxisGeometry axis = axis_geometry(extent(in, a), w.kernel[a], w.stride[a], w.dilation[a], w.padding);
    g.out[a] = axis.out;
    g.pad[a] = axis.pad_before;
    g.pad_after[a] = axis.pad_after;
  }
  return g;
}

// ---- Conv3D ----------------------------------------------------------------------------------

Shape Conv3D::infer_shape(const std::vector<Shape>& in) {
  const Window3D& w = settings_.window;
  for (int a = 0; a < 3; ++a)
    if (w.kernel[a] < 1 || w.stride[a] < 1 || w.dilation[a] < 1)
      fail_layer("kernel, strides and dilation must be positive");
  if (settings_.filters < 1) fail_layer("filters must be positive");
  geometry_ = window_geometry_3d(in[0], w);
  if (geometry_.out[0] < 1 || geometry_.out[1] < 1 || geometry_.out[2] < 1)
    fail_layer("a ", window_text(w), " window does not fit the input ", in[0].str());
  return Shape{geometry_.out[1], geometry_.out[2], settings_.filters, geometry_.out[0]};
}

std::vector<WeightSpec> Conv3D::weight_specs() const {
  const Window3D& w = settings_.window;
  std::vector<WeightSpec> specs{
      {"kernel", {w.kernel[0], w.kernel[1], w.kernel[2], input_shapes()[0].c, settings_.filters}}};
  if (settings_.use_bias) specs.push_back({"bias", {settings_.filters}});
  return specs;
}

void Conv3D::set_weights(WeightMap weights) {
  const auto specs = weight_specs();
  kernel_ = take_weight(weights, specs[0]);
  bias_ = settings_.use_bias ? take_weight(weights, specs[1]) : std::vector<float>(settings_.filters, 0.0f);
}

double Conv3D::macs() const {
  const Window3D& w = settings_.window;
  return static_cast<double>(output_shape().size()) * w.kernel[0] * w.kernel[1] * w.kernel[2] * input_shapes()[0].c;
}

std::string Conv3D::describe() const {
  return window_text(settings_.window) + (settings_.activation.is_linear() ? "" : ", " + settings_.activation.str());
}

void Conv3D::gather_columns(const float* in, std::int64_t p0, int count, float* cols) const {
  const Shape& s = input_shapes()[0];
  const Window3D& w = settings_.window;
  const int c = s.c, oh = geometry_.out[1], ow = geometry_.out[2];
  const std::size_t k = static_cast<std::size_t>(w.kernel[0]) * w.kernel[1] * w.kernel[2] * c;
  for (int i = 0; i < count; ++i) {
    const std::int64_t p = p0 + i;
    const int ox = static_cast<int>(p % ow), oy = static_cast<int>(p / ow % oh), oz = static_cast<int>(p / ow / oh);
    float* col = cols + i * k;
    for (int kz = 0; kz < w.kernel[0]; ++kz) {
      const int z = oz * w.stride[0] + kz * w.dilation[0] - geometry_.pad[0];
      for (int ky = 0; ky < w.kernel[1]; ++ky) {
        const int y = oy * w.stride[1] + ky * w.dilation[1] - geometry_.pad[1];
        for (int kx = 0; kx < w.kernel[2]; ++kx, col += c) {
          const int x = ox * w.stride[2] + kx * w.dilation[2] - geometry_.pad[2];
          if (z < 0 || z >= s.d || y < 0 || y >= s.h || x < 0 || x >= s.w) {
            std::fill(col, col + c, 0.0f);
          } else {
            const float* src = in + ((static_cast<std::size_t>(z) * s.h + y) * s.w + x) * c;
            std::copy(src, src + c, col);
          }
        }
      }
    }
  }
}

void Conv3D::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const Window3D& w = settings_.window;
  const Shape& os = output_shape();
  const int filters = settings_.filters;
  const int k = w.kernel[0] * w.kernel[1] * w.kernel[2] * input_shapes()[0].c;
  const std::int64_t pixels = static_cast<std::int64_t>(os.d) * os.h * os.w;
  out.resize(in[0]->frames(), os);
  // Blocks of output pixels across the threads, each gathered into its thread's scratch and
  // multiplied by the whole kernel: (filters x k) * (k x block).
  constexpr std::int64_t kBlock = 256;
  for (int n = 0; n < in[0]->frames(); ++n) {
    const float* src = in[0]->frame(n);
    float* dst = out.frame(n);
    parallel_range(
        pixels, kBlock,
        [&](std::int64_t begin, std::int64_t end) {
          for (std::int64_t p0 = begin; p0 < end; p0 += kBlock) {
            const int count = static_cast<int>(std::min(kBlock, end - p0));
            float* cols = conv_scratch(static_cast<std::size_t>(count) * k);
            gather_columns(src, p0, count, cols);
            float* y = dst + p0 * filters;
            gemm(filters, count, k, kernel_.data(), filters, cols, k, y, filters);
            for (int i = 0; i < count; ++i)
              for (int f = 0; f < filters; ++f) y[static_cast<std::size_t>(i) * filters + f] += bias_[f];
            settings_.activation.apply(y, static_cast<std::size_t>(count) * filters, filters);
          }
        },
        kBlock);  // pieces of whole blocks
  }
}

// ---- Pool3D ----------------------------------------------------------------------------------

Shape Pool3D::infer_shape(const std::vector<Shape>& in) {
  for (int a = 0; a < 3; ++a)
    if (window_.kernel[a] < 1 || window_.stride[a] < 1) fail_layer("pool_size and strides must be positive");
  geometry_ = window_geometry_3d(in[0], window_);
  if (geometry_.out[0] < 1 || geometry_.out[1] < 1 || geometry_.out[2] < 1)
    fail_layer("a ", window_text(window_), " window does not fit the input ", in[0].str());
  return Shape{geometry_.out[1], geometry_.out[2], in[0].c, geometry_.out[0]};
}

double Pool3D::macs() const {
  return static_cast<double>(output_shape().size()) * window_.kernel[0] * window_.kernel[1] * window_.kernel[2];
}

std::string Pool3D::describe() const { return window_text(window_); }

void Pool3D::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const Shape& s = input_shapes()[0];
  const Shape& os = output_shape();
  const int c = s.c;
  const bool max = kind_ == PoolKind::max;
  out.resize(in[0]->frames(), os);
  for (int n = 0; n < in[0]->frames(); ++n) {
    const float* src = in[0]->frame(n);
    float* dst = out.frame(n);
    const std::int64_t rows = static_cast<std::int64_t>(os.d) * os.h;
    parallel_range(rows, 4, [&](std::int64_t r0, std::int64_t r1) {
      for (std::int64_t r = r0; r < r1; ++r) {
        const int oz = static_cast<int>(r / os.h), oy = static_cast<int>(r % os.h);
        for (int ox = 0; ox < os.w; ++ox) {
          float* o = dst + ((r * os.w) + ox) * c;
          std::fill(o, o + c, max ? -std::numeric_limits<float>::infinity() : 0.0f);
          int cells = 0;
          for (int kz = 0; kz < window_.kernel[0]; ++kz) {
            const int z = oz * window_.stride[0] + kz - geometry_.pad[0];
            if (z < 0 || z >= s.d) continue;
            for (int ky = 0; ky < window_.kernel[1]; ++ky) {
              const int y = oy * window_.stride[1] + ky - geometry_.pad[1];
              if (y < 0 || y >= s.h) continue;
              for (int kx = 0; kx < window_.kernel[2]; ++kx) {
                const int x = ox * window_.stride[2] + kx - geometry_.pad[2];
                if (x < 0 || x >= s.w) continue;
                const float* v = src + ((static_cast<std::size_t>(z) * s.h + y) * s.w + x) * c;
                ++cells;
                if (max)
                  for (int ch = 0; ch < c; ++ch) o[ch] = std::max(o[ch], v[ch]);
                else
                  for (int ch = 0; ch < c; ++ch) o[ch] += v[ch];
              }
            }
          }
          if (!max)
            for (int ch = 0; ch < c; ++ch) o[ch] /= static_cast<float>(cells);
        }
      }
    });
  }
}

// ---- GlobalPool3D ----------------------------------------------------------------------------

void GlobalPool3D::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const Shape& s = input_shapes()[0];
  const int c = s.c;
  const std::size_t pixels = s.size() / c;
  out.resize(in[0]->frames(), output_shape());
  for (int n = 0; n < in[0]->frames(); ++n) {
    float* o = out.frame(n);
    pool_positions(in[0]->frame(n), pixels, c, kind_, o);
    if (kind_ == PoolKind::average)
      for (int ch = 0; ch < c; ++ch) o[ch] /= static_cast<float>(pixels);
  }
}

// ---- ZeroPadding3D ---------------------------------------------------------------------------

Shape ZeroPadding3D::infer_shape(const std::vector<Shape>& in) {
  for (int p : pads_)
    if (p < 0) fail_layer("padding must not be negative");
  const Shape& s = in[0];
  return Shape{s.h + pads_[2] + pads_[3], s.w + pads_[4] + pads_[5], s.c, s.d + pads_[0] + pads_[1]};
}

std::string ZeroPadding3D::describe() const {
  return cat("(", pads_[0], ",", pads_[1], ") (", pads_[2], ",", pads_[3], ") (", pads_[4], ",", pads_[5], ")");
}

void ZeroPadding3D::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const Shape& s = input_shapes()[0];
  const Shape& os = output_shape();
  out.resize(in[0]->frames(), os);
  const std::size_t row = static_cast<std::size_t>(s.w) * s.c;
  for (int n = 0; n < in[0]->frames(); ++n) {
    float* dst = out.frame(n);
    std::fill(dst, dst + os.size(), 0.0f);
    const float* src = in[0]->frame(n);
    for (int z = 0; z < s.d; ++z)
      for (int y = 0; y < s.h; ++y)
        std::copy(src + (static_cast<std::size_t>(z) * s.h + y) * row, src + (static_cast<std::size_t>(z) * s.h + y + 1) * row,
                  dst + ((static_cast<std::size_t>(z + pads_[0]) * os.h + y + pads_[2]) * os.w + pads_[4]) * s.c);
  }
}

}  // namespace chorus::layers
