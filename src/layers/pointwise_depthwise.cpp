#include "layers/pointwise_depthwise.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/parallel.h"
#include "layers/scratch.h"

namespace chorus::layers {

namespace {

// Floats of expanded rows per thread (512 KB, this machine's L2). MobileNetV2 at 1 thread, min
// of 4 processes: 11.7 ms with 512 KB, 11.1 with 1 MB, 14.8 with 192 KB, against 15.6 unfused.
constexpr std::size_t kWindowFloats = 128 * 1024;

// Expanded outputs smaller than this (256 KB a frame: MobileNetV2's 7x7 blocks) stay in cache
// between the two layers anyway; fused, their bands of 3 or 4 rows would compute half as many
// expanded rows again where threads' bands meet. The 14x14 and 28x28 blocks gain from fusing at
// 2 threads (each thread keeps its band's rows in its own core's cache, and three layers take one
// parallel step): MobileNetV2 2.65-2.90 ms against 2.88-3.14 with a 1 MB floor, level at 1 thread.
constexpr std::size_t kMinFusedFloats = 64 * 1024;

// Floats of depthwise output rows per projection call (64 KB): written and read again in L1/L2.
constexpr std::size_t kProjectFloats = 16 * 1024;

}  // namespace

bool can_fuse_pointwise_depthwise(const Layer& producer, const Layer& consumer) {
  const auto* pw = dynamic_cast<const Conv2D*>(&producer);
  return pw && pw->runs_by_pixels() && dynamic_cast<const DepthwiseConv2D*>(&consumer) &&
         pw->output_shape().size() >= kMinFusedFloats;
}

bool can_fuse_depthwise_pointwise(const Layer& producer, const Layer& consumer) {
  const auto* pw = dynamic_cast<const Conv2D*>(&consumer);
  return dynamic_cast<const DepthwiseConv2D*>(&producer) && pw && pw->runs_by_pixels() &&
         producer.output_shape().size() >= kMinFusedFloats;
}

void forward_depthwise_chain(const DepthwiseChain& chain, const Tensor& in, Tensor& out) {
  const DepthwiseConv2D& dw = *chain.depthwise;
  const Conv2D* project = chain.project;
  const Shape& is = chain.expand ? chain.expand->input_shapes()[0] : dw.input_shapes()[0];
  const Shape& mid = dw.input_shapes()[0];
  const Shape& ds = dw.output_shape();
  const Shape& os = project ? project->output_shape() : ds;
  out.resize(in.frames(), os);
  CHORUS_ASSERT(
      !chain.residual || (project && chain.residual->frames() == in.frames() && chain.residual->shape() == os),
      "residual of a depthwise chain");
  const auto& s = dw.settings();
  const std::size_t row_floats = static_cast<std::size_t>(mid.w) * mid.c;
  const std::size_t dw_row_floats = static_cast<std::size_t>(ds.w) * ds.c;
  // Output rows per band: as many as keep the band's window of expanded rows within
  // kWindowFloats (at least one output row's worth).
  const int span = (s.kernel_h - 1) * s.dilation_h + 1;
  const int window_rows = std::max<int>(span, static_cast<int>(kWindowFloats / row_floats));
  // Every thread gets rows.
  const int threads = parallel_threads();
  const int band = std::max(1, std::min((window_rows - span) / s.stride_h + 1, (ds.h + threads - 1) / threads));
  const std::size_t window_floats =
      chain.expand ? static_cast<std::size_t>((band - 1) * s.stride_h + span) * row_floats : 0;
  // Depthwise rows per projection call.
  const int sub = project ? std::max(1, std::min(band, static_cast<int>(kProjectFloats / dw_row_floats))) : 0;
  const std::size_t sub_floats = static_cast<std::size_t>(sub) * dw_row_floats;
  for (int n = 0; n < in.frames(); ++n) {
    const float* x = in.frame(n);
    float* y = out.frame(n);
    const float* residual = chain.residual ? chain.residual->frame(n) : nullptr;
    parallel_range(
        ds.h, band,
        [&](std::int64_t first, std::int64_t last) {
          float* window = conv_scratch(window_floats + sub_floats);
          float* rows = window + window_floats;
          // The window holds expanded rows [lo, hi); rows the next band shares are moved to its
          // front rather than computed again.
          int lo = 0, hi = 0;
          for (int oy = static_cast<int>(first); oy < last; oy += band) {
            const int end = std::min(static_cast<int>(last), oy + band);
            const float* src = x;  // the depthwise layer's input rows, from row src_row0 on
            int src_row0 = 0;
            if (chain.expand) {
              const auto [need_lo, need_hi] = dw.input_rows(oy, end);
              if (need_lo >= lo && need_lo < hi) {
                std::memmove(window, window + (need_lo - lo) * row_floats, (hi - need_lo) * row_floats * sizeof(float));
              } else {
                hi = need_lo;
              }
              lo = need_lo;
              if (need_hi > hi)
                chain.expand->forward_pixels(x + static_cast<std::size_t>(hi) * is.w * is.c, (need_hi - hi) * mid.w,
                                             window + (hi - lo) * row_floats);
              hi = std::max(hi, need_hi);
              src = window;
              src_row0 = lo;
            }
            if (!project) {
              dw.forward_rows(src, src_row0, y, oy, end);
              continue;
            }
            for (int r0 = oy; r0 < end; r0 += sub) {
              const int r1 = std::min(end, r0 + sub);
              dw.forward_rows(src, src_row0, rows, r0, r1, r0);
              const std::size_t at = static_cast<std::size_t>(r0) * os.w * os.c;
              project->forward_pixels(rows, (r1 - r0) * ds.w, y + at, residual ? residual + at : nullptr,
                                      residual ? &chain.add_activation : nullptr);
            }
          }
        },
        1, /*whole_ranges=*/true);  // a piece would expand its halo rows again
  }
}

}  // namespace chorus::layers
