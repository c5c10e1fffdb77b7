#include "layers/winograd.h"

#include <algorithm>
#include <atomic>

#include "core/error.h"
#include "core/parallel.h"
#include "layers/scratch.h"

namespace chorus::layers {

namespace {

// Transformed inputs plus products of one block of tiles: 8 MB at most (the im2col blocks'
// size, as both share one scratch buffer). Larger blocks give the sgemm calls more columns per
// packed weight matrix; smaller ones stay closer in cache.
constexpr std::size_t kBlockFloats = 2 * 1024 * 1024;
// With several threads and many tiles, each thread's block of tiles: V and P of 96 Ki floats
// (384 KB) stay in a core's L2 between the phases. At least this many blocks per thread, or the
// threads share each block instead (few tiles: 14x14 and 7x7 layers).
constexpr std::size_t kLocalBlockFloats = 96 * 1024;
constexpr int kLocalBlocksPerThread = 4;
// A transformed kernel above this size is read from L3 by every block: blocks of at least
// kMinLocalBlockFromL3 tiles then (V and P may outgrow L2). With 8-14 tiles VGG16's first layer
// of blocks 2 and 4 (1.2 and 8.4 MB) ran 1.4x faster on 2 threads than on 1; with 32, 1.9x
// (BM_Winograd/112/64/128/4/3: 2.29-2.59 -> 1.78-1.91 ms).
constexpr std::size_t kKernelInL2Bytes = 1024 * 1024;
constexpr int kMinLocalBlockFromL3 = 32;
// Tiles per task of the transforms: enough to amortise a task, few enough to balance.
constexpr int kTileGrain = 8;
// Few tiles on several threads: each thread transforms every tile itself and takes a share of
// the filters, where each share keeps at least this many (the duplicated input transform is
// then a small part of a thread's work).
constexpr int kFewestFiltersPerThread = 32;
// Channels transformed at a time, so a tile's intermediate rows stay in L1.
constexpr int kChannelChunk = 64;

// Kernel transforms G (alpha x r), applied in double before rounding to float. Rows are the
// points 0, 1, -1 (, 2, -2) and infinity; with 6 points, row j of G is (1, p, p^2, ...) / f_j,
// f_j the product of p_j minus the other finite points, which leaves B^T (input_f4) the same
// for F(4x4, 3x3) and F(2x2, 5x5): only G and A^T tell them apart.
constexpr double kG2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
constexpr double kG4[6][3] = {{1.0 / 4, 0, 0},
                              {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                              {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                              {1.0 / 24, 1.0 / 12, 1.0 / 6},
                              {1.0 / 24, -1.0 / 12, 1.0 / 6},
                              {0, 0, 1}};
constexpr double kG25[6][5] = {{1.0 / 4, 0, 0, 0, 0},
                               {-1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6},
                               {-1.0 / 6, 1.0 / 6, -1.0 / 6, 1.0 / 6, -1.0 / 6},
                               {1.0 / 24, 2.0 / 24, 4.0 / 24, 8.0 / 24, 16.0 / 24},
                               {1.0 / 24, -2.0 / 24, 4.0 / 24, -8.0 / 24, 16.0 / 24},
                               {0, 0, 0, 0, 1}};

double kernel_transform(int r, int m, int row, int col) {
  if (r == 5) return kG25[row][col];
  return m == 2 ? kG2[row][col] : kG4[row][col];
}

// One-dimensional transforms over n channels, written out so that no zero coefficient costs a
// multiplication; restrict lets the compiler vectorise over channels. Input: o = B^T d.
void input_f2(const float* __restrict d0, const float* __restrict d1, const float* __restrict d2,
              const float* __restrict d3, float* __restrict o0, float* __restrict o1, float* __restrict o2,
              float* __restrict o3, int n) {
  for (int c = 0; c < n; ++c) {
    o0[c] = d0[c] - d2[c];
    o1[c] = d1[c] + d2[c];
    o2[c] = d2[c] - d1[c];
    o3[c] = d1[c] - d3[c];
  }
}

void input_f4(const float* __restrict d0, const float* __restrict d1, const float* __restrict d2,
              const float* __restrict d3, const float* __restrict d4, const float* __restrict d5, float* __restrict o0,
              float* __restrict o1, float* __restrict o2, float* __restrict o3, float* __restrict o4,
              float* __restrict o5, int n) {
  for (int c = 0; c < n; ++c) {
    const float a = d4[c] - 4.0f * d2[c], b = d3[c] - 4.0f * d1[c];
    const float e = d4[c] - d2[c], f = 2.0f * (d3[c] - d1[c]);
    o0[c] = 4.0f * d0[c] - 5.0f * d2[c] + d4[c];
    o1[c] = a + b;
    o2[c] = a - b;
    o3[c] = e + f;
    o4[c] = e - f;
    o5[c] = 4.0f * d1[c] - 5.0f * d3[c] + d5[c];
  }
}

// Output: y = A^T p + bias.
void output_f2(const float* __restrict p0, const float* __restrict p1, const float* __restrict p2,
               const float* __restrict p3, const float* __restrict bias, float* __restrict y0, float* __restrict y1,
               int n) {
  for (int c = 0; c < n; ++c) {
    y0[c] = p0[c] + p1[c] + p2[c] + bias[c];
    y1[c] = p1[c] - p2[c] - p3[c] + bias[c];
  }
}

void output_f4(const float* __restrict p0, const float* __restrict p1, const float* __restrict p2,
               const float* __restrict p3, const float* __restrict p4, const float* __restrict p5,
               const float* __restrict bias, float* __restrict y0, float* __restrict y1, float* __restrict y2,
               float* __restrict y3, int n) {
  for (int c = 0; c < n; ++c) {
    const float s12 = p1[c] + p2[c], d12 = p1[c] - p2[c];
    const float s34 = p3[c] + p4[c], d34 = p3[c] - p4[c];
    y0[c] = p0[c] + s12 + s34 + bias[c];
    y1[c] = d12 + 2.0f * d34 + bias[c];
    y2[c] = s12 + 4.0f * s34 + bias[c];
    y3[c] = d12 + 8.0f * d34 + p5[c] + bias[c];
  }
}

// F(2x2, 5x5): A^T's rows are (1, 1, 1, 1, 1, 0) and (0, 1, -1, 2, -2, 1).
void output_f25(const float* __restrict p0, const float* __restrict p1, const float* __restrict p2,
                const float* __restrict p3, const float* __restrict p4, const float* __restrict p5,
                const float* __restrict bias, float* __restrict y0, float* __restrict y1, int n) {
  for (int c = 0; c < n; ++c) {
    y0[c] = p0[c] + p1[c] + p2[c] + p3[c] + p4[c] + bias[c];
    y1[c] = p1[c] - p2[c] + 2.0f * (p3[c] - p4[c]) + p5[c] + bias[c];
  }
}

// Pointer-array forms: d/p hold alpha pointers, o/y alpha (input) or m (output) pointers.
void input_1d(int alpha, const float* const* d, float* const* o, int n) {
  if (alpha == 4)
    input_f2(d[0], d[1], d[2], d[3], o[0], o[1], o[2], o[3], n);
  else
    input_f4(d[0], d[1], d[2], d[3], d[4], d[5], o[0], o[1], o[2], o[3], o[4], o[5], n);
}

void output_1d(int r, int m, const float* const* p, const float* bias, float* const* y, int n) {
  if (r == 5)
    output_f25(p[0], p[1], p[2], p[3], p[4], p[5], bias, y[0], y[1], n);
  else if (m == 2)
    output_f2(p[0], p[1], p[2], p[3], bias, y[0], y[1], n);
  else
    output_f4(p[0], p[1], p[2], p[3], p[4], p[5], bias, y[0], y[1], y[2], y[3], n);
}

}  // namespace

Winograd::Winograd(int kernel_size, int tile, const std::vector<float>& kernel, int channels, int filters)
    : r_(kernel_size), m_(tile), alpha_(tile + kernel_size - 1), channels_(channels), filters_(filters) {
  CHORUS_ASSERT((r_ == 3 && (m_ == 2 || m_ == 4)) || (r_ == 5 && m_ == 2), "Winograd F(", m_, ", ", r_, ")");
  const std::size_t taps = static_cast<std::size_t>(r_) * r_;
  CHORUS_ASSERT(kernel.size() == taps * channels * filters);
  const std::size_t plane = static_cast<std::size_t>(channels) * filters;
  // U = G g G^T for every channel pair k = ci * filters + co (Keras' order within a tap), one row
  // i of G at a time and one position (i, j) packed at a time, so that loading holds the kernel
  // and its packed positions but never all positions unpacked as well.
  std::vector<double> gg(static_cast<std::size_t>(r_) * plane);  // (G g)[i][b] for every k
  for (int i = 0; i < alpha_; ++i) {
    for (std::size_t k = 0; k < plane; ++k)
      for (int b = 0; b < r_; ++b) {
        double sum = 0;
        for (int a = 0; a < r_; ++a) sum += kernel_transform(r_, m_, i, a) * kernel[(a * r_ + b) * plane + k];
        gg[b * plane + k] = sum;
      }
    for (int j = 0; j < alpha_; ++j) {
      std::vector<float> u(plane);
      for (std::size_t k = 0; k < plane; ++k) {
        double sum = 0;
        for (int b = 0; b < r_; ++b) sum += gg[b * plane + k] * kernel_transform(r_, m_, j, b);
        u[k] = static_cast<float>(sum);
      }
      // Packed for packed_gemm (OpenBLAS packed U again on every call: its copy and zeroing
      // routines were 4.5 % of a ResNet-50 profile).
      u_.emplace_back(std::move(u), channels, filters);
    }
  }
  // Each block reads the whole transformed kernel; one beyond L2 comes from L3 and needs more
  // tiles to pay for it.
  fewest_local_tiles_ = floats() * sizeof(float) > kKernelInL2Bytes ? kMinLocalBlockFromL3 : kTileGrain;
}

std::size_t Winograd::floats() const {
  std::size_t n = 0;
  for (const auto& p : u_) n += p.floats();
  return n;
}

void Winograd::scale_filters(const std::vector<float>& scale) {
  CHORUS_ASSERT(static_cast<int>(scale.size()) == filters_);
  for (auto& p : u_) p.scale_filters(scale);
}

namespace {
const Activation kLinear;
}  // namespace

void Winograd::forward(const float* in, int frames, int in_h, int in_w, Pads pads, int out_h, int out_w,
                       const float* bias, const Activation& activation, float* out) const {
  const int r = r_, m = m_, alpha = alpha_, c_in = channels_, c_out = filters_;
  const int positions = alpha * alpha;
  const int tiles_h = (out_h + m - 1) / m, tiles_w = (out_w + m - 1) / m;
  const int per_frame = tiles_h * tiles_w, total = frames * per_frame;
  const float* zero = zero_floats(std::max(c_in, c_out));  // the padding, and a missing bias
  if (!bias) bias = zero;
  const std::size_t tile_floats = static_cast<std::size_t>(positions) * (c_in + c_out);

  // Tiles [t0, t0 + count) through the input transform, the products and the output transform,
  // in `v` (V, then P): each phase split among the threads by `split` (tiles) and `for_each`
  // (positions), or run inline; products and outputs for the filters of panels [first_panel,
  // end_panel) only.
  const int all_panels = u_.front().panels();
  const auto run_block = [&](int t0, int count, float* v, auto split, auto for_each, int first_panel = 0,
                             int end_panel = -1) {
    if (end_panel < 0) end_panel = all_panels;
    const int f0 = first_panel * 16, f1 = std::min(c_out, end_panel * 16);
    const bool all_filters = f0 == 0 && f1 == c_out;
    const std::size_t v_stride = static_cast<std::size_t>(c_in) * count,
                      p_stride = static_cast<std::size_t>(c_out) * count;
    float* const prod = v + positions * v_stride;
    // Input tiles: V[i*alpha+j] (channels x count) = (B^T d B)[i][j], d read in place from the
    // NHWC input (zeros outside it).
    split(count, [&](std::int64_t first, std::int64_t last) {
      float tmp[36 * kChannelChunk];  // one tile's intermediate rows, kept in L1
      for (int t = static_cast<int>(first); t < last; ++t) {
        const int tile = t0 + t, n = tile / per_frame, ty = tile % per_frame / tiles_w, tx = tile % tiles_w;
        const float* frame = in + static_cast<std::size_t>(n) * in_h * in_w * c_in;
        const float* src[6][6];
        for (int k = 0; k < alpha; ++k) {
          const int iy = ty * m - pads.top + k;
          for (int l = 0; l < alpha; ++l) {
            const int ix = tx * m - pads.left + l;
            src[k][l] = (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w)
                            ? zero
                            : frame + (static_cast<std::size_t>(iy) * in_w + ix) * c_in;
          }
        }
        for (int c0 = 0; c0 < c_in; c0 += kChannelChunk) {
          const int n_c = std::min(kChannelChunk, c_in - c0);
          const float* d[6];
          float* o[6];
          for (int l = 0; l < alpha; ++l) {  // columns: tmp[i][l] = sum_k B^T[i][k] d[k][l]
            for (int k = 0; k < alpha; ++k) {
              d[k] = src[k][l] + c0;
              o[k] = tmp + (k * alpha + l) * kChannelChunk;
            }
            input_1d(alpha, d, o, n_c);
          }
          for (int i = 0; i < alpha; ++i) {  // rows: V[i][j] = sum_l tmp[i][l] B[l][j]
            for (int l = 0; l < alpha; ++l) {
              d[l] = tmp + (i * alpha + l) * kChannelChunk;
              o[l] = v + (i * alpha + l) * v_stride + static_cast<std::size_t>(t) * c_in + c0;
            }
            input_1d(alpha, d, o, n_c);
          }
        }
      }
    });
    // One product per position: P (count x filters) = V (count x channels) * U (channels x
    // filters), the positions shared out among the threads.
    for_each(positions, [&](int pos) {
      packed_gemm(v + pos * v_stride, c_in, count, u_[pos], nullptr, kLinear, prod + pos * p_stride, first_panel,
                  end_panel);
    });
    // Output tiles: Y = A^T P A + bias, written into the NHWC output (cut at its edges), then the
    // activation while the tile is in cache.
    split(count, [&](std::int64_t first, std::int64_t last) {
      float tmp[(36 + 4) * kChannelChunk];  // intermediate rows, then a sink for edge tiles
      float* const junk = tmp + positions * kChannelChunk;
      for (int t = static_cast<int>(first); t < last; ++t) {
        const int tile = t0 + t, n = tile / per_frame, ty = tile % per_frame / tiles_w, tx = tile % tiles_w;
        float* frame = out + static_cast<std::size_t>(n) * out_h * out_w * c_out;
        const int rows = std::min(m, out_h - ty * m), cols = std::min(m, out_w - tx * m);
        for (int c0 = f0; c0 < f1; c0 += kChannelChunk) {
          const int n_c = std::min(kChannelChunk, f1 - c0);
          const float* p[6];
          float* y[4];
          for (int l = 0; l < alpha; ++l) {  // columns: tmp[i][l] = sum_k A^T[i][k] P[k][l]
            for (int k = 0; k < alpha; ++k)
              p[k] = prod + (k * alpha + l) * p_stride + static_cast<std::size_t>(t) * c_out + c0;
            for (int i = 0; i < m; ++i) y[i] = tmp + (i * alpha + l) * kChannelChunk;
            output_1d(r, m, p, zero, y, n_c);
          }
          for (int i = 0; i < m; ++i) {  // rows: Y[i][j] = sum_l tmp[i][l] A[l][j] + bias
            for (int l = 0; l < alpha; ++l) p[l] = tmp + (i * alpha + l) * kChannelChunk;
            for (int j = 0; j < m; ++j)
              y[j] = (i < rows && j < cols)
                         ? frame + (static_cast<std::size_t>(ty * m + i) * out_w + tx * m + j) * c_out + c0
                         : junk + j * kChannelChunk;
            output_1d(r, m, p, bias + c0, y, n_c);
          }
        }
        if (!activation.is_linear())
          for (int i = 0; i < rows; ++i) {
            float* row = frame + (static_cast<std::size_t>(ty * m + i) * out_w + tx * m) * c_out;
            if (all_filters)
              activation.apply(row, static_cast<std::size_t>(cols) * c_out, c_out);
            else  // elementwise kinds only (see forward)
              for (int j = 0; j < cols; ++j) activation.apply(row + j * c_out + f0, f1 - f0, f1 - f0);
          }
      }
    });
  };

  const int threads = parallel_threads();
  const int local = std::max(fewest_local_tiles_, static_cast<int>(kLocalBlockFloats / tile_floats));
  if (threads > 1 && total >= kLocalBlocksPerThread * threads * local) {
    // Many tiles: each thread takes whole blocks through all three phases in its own scratch,
    // sized to stay in its core's L2. Sharing one large block by phases sent V and P through
    // L3 between the phases, and a second core sped VGG16's 224x224 layer up only 1.44x.
    const int blocks = (total + local - 1) / local;
    const auto inline_split = [](std::int64_t n, auto body) { body(0, n); };
    const auto inline_for_each = [](int n, auto body) {
      for (int i = 0; i < n; ++i) body(i);
    };
    // Each thread a contiguous run of blocks, as the next layer splits its rows or pixels: what
    // a thread writes here, the same thread reads there, from its own cache.
    parallel_range(blocks, 1, [&](std::int64_t first, std::int64_t last) {
      for (auto b = first; b < last; ++b) {
        const int t0 = static_cast<int>(b) * local, count = std::min(local, total - t0);
        run_block(t0, count, conv_scratch(static_cast<std::size_t>(local) * tile_floats), inline_split,
                  inline_for_each);
      }
    });
    return;
  }
  // One block at a time. No larger than one frame's im2col matrix, so that this path needs no
  // more scratch than the one it replaces (AlexNet's 5x5 layer: 4.7 MB, not 7.2).
  const std::size_t im2col_floats = static_cast<std::size_t>(r) * r * c_in * out_h * out_w;
  const int block = std::max(1, std::min<int>(total, std::min(kBlockFloats, im2col_floats) / tile_floats));
  if (threads > 1 && c_out >= kFewestFiltersPerThread * threads && activation.kind != ActivationKind::softmax) {
    // Few tiles (ResNet's 28x28 and 14x14 layers: 49): each thread transforms every tile into
    // its own V and runs the products and the output transform of its own filters. Splitting
    // the phases by tiles and positions instead sent V and P between the cores at every phase,
    // and a second thread sped those layers up 1.0-1.3x.
    const int align = std::max(1, std::min(packed_gemm_tile_panels(), all_panels / threads));
    const auto inline_split = [](std::int64_t n, auto body) { body(0, n); };
    const auto inline_for_each = [](int n, auto body) {
      for (int i = 0; i < n; ++i) body(i);
    };
    parallel_range(
        all_panels, align,
        [&](std::int64_t first_panel, std::int64_t end_panel) {
          float* const own = conv_scratch(static_cast<std::size_t>(block) * tile_floats);
          for (int t0 = 0; t0 < total; t0 += block)
            run_block(t0, std::min(block, total - t0), own, inline_split, inline_for_each,
                      static_cast<int>(first_panel), static_cast<int>(end_panel));
        },
        align, /*whole_ranges=*/true);
    return;
  }
  // Each phase split among the threads; the scratch (transformed inputs V and products P) is
  // shared by them.
  float* const v = conv_scratch(static_cast<std::size_t>(block) * tile_floats);
  const auto threaded_split = [&](std::int64_t n, auto body) {
    parallel_range(n, kTileGrain, [&](std::int64_t a, std::int64_t b) { body(a, b); });
  };
  const auto threaded_for_each = [&](int n, auto body) { parallel_for(n, [&](int i) { body(i); }); };
  for (int t0 = 0; t0 < total; t0 += block)
    run_block(t0, std::min(block, total - t0), v, threaded_split, threaded_for_each);
}

}  // namespace chorus::layers
