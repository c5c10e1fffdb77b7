#include "layers/pointwise_depthwise.h"

#include <algorithm>
#include <cstring>

#include "core/parallel.h"
#include "layers/scratch.h"

namespace chorus::layers {

namespace {

// Floats of expanded rows per thread (512 KB, this machine's L2). MobileNetV2 at 1 thread, min
// of 4 processes: 11.7 ms with 512 KB, 11.1 with 1 MB, 14.8 with 192 KB, against 15.6 unfused.
constexpr std::size_t kWindowFloats = 128 * 1024;

// Expanded outputs smaller than this (1 MB a frame) stay in cache between the two layers
// anyway; fused, they would only add rows computed twice where threads' bands meet.
constexpr std::size_t kMinFusedFloats = 256 * 1024;

}  // namespace

bool can_fuse_pointwise_depthwise(const Layer& producer, const Layer& consumer) {
  const auto* pw = dynamic_cast<const Conv2D*>(&producer);
  return pw && pw->runs_by_pixels() && dynamic_cast<const DepthwiseConv2D*>(&consumer) &&
         pw->output_shape().size() >= kMinFusedFloats;
}

void forward_pointwise_depthwise(const Conv2D& pw, const DepthwiseConv2D& dw, const Tensor& in, Tensor& out) {
  const Shape& is = pw.input_shapes()[0];
  const Shape& mid = pw.output_shape();
  const Shape& os = dw.output_shape();
  out.resize(in.frames(), os);
  const auto& s = dw.settings();
  const std::size_t row_floats = static_cast<std::size_t>(mid.w) * mid.c;
  // Output rows per band: as many as keep the band's window of expanded rows within
  // kWindowFloats (at least one output row's worth).
  const int span = (s.kernel_h - 1) * s.dilation_h + 1;
  const int window_rows = std::max<int>(span, static_cast<int>(kWindowFloats / row_floats));
  // Every thread gets rows.
  const int threads = parallel_threads();
  const int band = std::max(1, std::min((window_rows - span) / s.stride_h + 1, (os.h + threads - 1) / threads));
  const std::size_t window_floats = static_cast<std::size_t>((band - 1) * s.stride_h + span) * row_floats;
  for (int n = 0; n < in.frames(); ++n) {
    const float* x = in.frame(n);
    float* y = out.frame(n);
    parallel_range(os.h, band, [&](std::int64_t first, std::int64_t last) {
      // The window holds expanded rows [lo, hi); rows the next band shares are moved to its
      // front rather than computed again.
      float* window = conv_scratch(window_floats);
      int lo = 0, hi = 0;
      for (int oy = static_cast<int>(first); oy < last; oy += band) {
        const int end = std::min(static_cast<int>(last), oy + band);
        const auto [need_lo, need_hi] = dw.input_rows(oy, end);
        if (need_lo >= lo && need_lo < hi) {
          std::memmove(window, window + (need_lo - lo) * row_floats, (hi - need_lo) * row_floats * sizeof(float));
        } else {
          hi = need_lo;
        }
        lo = need_lo;
        if (need_hi > hi)
          pw.forward_pixels(x + static_cast<std::size_t>(hi) * is.w * is.c, (need_hi - hi) * mid.w,
                            window + (hi - lo) * row_floats);
        hi = std::max(hi, need_hi);
        dw.forward_rows(window, lo, y, oy, end);
      }
    });
  }
}

}  // namespace chorus::layers
