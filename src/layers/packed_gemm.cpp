#include "layers/packed_gemm.h"

#include <algorithm>
#include <cstddef>
#include <type_traits>

#include "core/error.h"
#include "core/memory.h"
#include "layers/vec8.h"

namespace chorus::layers {

namespace {

// A panel's 16 filters in vectors: one with AVX-512, two with AVX2 or NEON.
constexpr int kPanelVecs = 16 / kVecWLanes;
// Rows of k per pass. With 6-pixel tiles of one panel (AVX2 machine) 512 rows beat 256: fewer
// passes over the partial sums paid for the panel's share (32 KB) leaving L1 (49 x 512 -> 2048
// 1358 -> 1248 us, 49 x 2048 -> 512 1313 -> 1258, ResNet-50 104.9 -> 100.5 ms). With 12-pixel
// tiles of two panels (AVX-512, Zen 5) 12 x 512 rows of input beside a 32 KB chunk overflowed
// the 48 KB L1, and 256 won (49 x 4608 -> 512 144 -> 171 GFLOP/s).
constexpr int kChunk = kPanelVecs == 1 ? 256 : 512;
// Pixels per tile: 12 accumulators a panel, of AVX2's 16 registers or AVX-512's 32.
constexpr int kTile = 12 / kPanelVecs;
// Panels a tile takes at once: four with AVX-512, in tiles of 6 pixels (24 accumulators), so
// that each broadcast input feeds four multiply-adds and each weight vector six. With 12
// pixels x 2 panels GCC ran out of general registers for the 12 input rows and reloaded their
// offsets from the stack on every row of k (ResNet-50 34.4 -> 32.6 ms, ResNet-18 13.0 -> 11.7).
// Two panels (12 pixels) or one take what is left; the last may be partial.
constexpr int kTilePanels = kPanelVecs == 1 ? 4 : 1;
template <int Panels>
constexpr int kPixelsFor = kPanelVecs == 1 && Panels == 4 ? 6 : kTile;
// Floats of a block's input chunk (256 KB), in L2 across the panels: 196-pixel layers with
// k up to 256 (MobileNetV2's, ResNet-50's expansions) take one block, so the weights pass once.
constexpr std::size_t kBlockFloats = 64 * 1024;
// Floats of partial sums (128 KB) kept in L2 between chunks of k when k is chunked: filters
// are then taken in groups (ResNet-50's 49 x 2048 -> 512: 1.73 -> 1.37 ms).
constexpr std::size_t kPartialFloats = 32 * 1024;
// Packed weights up to this many floats (64 KB): tiles go over all the panels in turn, so the
// tile's inputs stay in L1 and each pixel's outputs are written at once, while the panels come
// from L2. ResNet-50's 64 -> 256 and 256 -> 64 layers at 56x56 took 2.1-2.4 ms with blocks
// of pixels for each panel, 1.5-1.6 ms this way (per-layer minima of 4 processes in rotated
// order; with 256 KB of weights this way the layers were level, 100 against 95 ms in all).
constexpr std::size_t kTileOuterFloats = 16 * 1024;

// What a tile does before it stores: bias on the first chunk, clamp on the last.
struct Epilogue {
  const float* bias;  // the panel's 16 (or `width`) biases, or null
  bool first, last;
  bool clamp;  // activation is max(lo, min(hi, x)), applied in registers on the last chunk
  VecW lo, hi;
};

inline VecW clampw(VecW x, VecW lo, VecW hi) {
  x = x < lo ? lo : x;
  return x > hi ? hi : x;
}

// `Pixels` pixels x `Panels` panels of 16 filters (`stride` floats apart; their outputs, biases
// and residuals are adjacent) over rows [0, rows) of the chunk. The accumulators start from the
// bias on the first chunk and from the partial sums in `out` after it. Only full panels come
// here, so that the sums stay in registers through the epilogue.
template <int Pixels, int Panels = 1>
inline void tile(const float* __restrict in, int ldi, int rows, const float* __restrict panel, std::size_t stride,
                 float* __restrict out, const float* __restrict residual, int ldo, const Epilogue& e) {
  constexpr int V = kPanelVecs * Panels, L = kVecWLanes;
  // Vector v of a row: panel v / kPanelVecs, at L * (v % kPanelVecs) within its 16 floats.
  const auto row_at = [&](int i, int v) {
    return panel + (v / kPanelVecs) * stride + 16 * static_cast<std::size_t>(i) + L * (v % kPanelVecs);
  };
  VecW acc[Pixels][V];
  for (int p = 0; p < Pixels; ++p)
    for (int v = 0; v < V; ++v)
      acc[p][v] =
          e.first ? (e.bias ? loadw(e.bias + L * v) : VecW{}) : loadw(out + static_cast<std::size_t>(p) * ldo + L * v);
  int i = 0;
  if constexpr (Pixels * V <= 6) {
    // Too few sums to hide the multiply-add's latency: odd rows of k go to a second set.
    VecW odd[Pixels][V] = {};
    for (; i + 2 <= rows; i += 2) {
      VecW w[V], u[V];
      for (int v = 0; v < V; ++v) {
        w[v] = loadw(row_at(i, v));
        u[v] = loadw(row_at(i + 1, v));
      }
      for (int p = 0; p < Pixels; ++p) {
        const float a = in[static_cast<std::size_t>(p) * ldi + i], b = in[static_cast<std::size_t>(p) * ldi + i + 1];
        for (int v = 0; v < V; ++v) {
          acc[p][v] += a * w[v];
          odd[p][v] += b * u[v];
        }
      }
    }
    for (int p = 0; p < Pixels; ++p)
      for (int v = 0; v < V; ++v) acc[p][v] += odd[p][v];
  }
  for (; i < rows; ++i) {
    VecW w[V];
    for (int v = 0; v < V; ++v) w[v] = loadw(row_at(i, v));
    for (int p = 0; p < Pixels; ++p) {
      const float a = in[static_cast<std::size_t>(p) * ldi + i];
      for (int v = 0; v < V; ++v) acc[p][v] += a * w[v];
    }
  }
  if (e.last && residual)
    for (int p = 0; p < Pixels; ++p)
      for (int v = 0; v < V; ++v) acc[p][v] += loadw(residual + static_cast<std::size_t>(p) * ldo + L * v);
  if (e.last && e.clamp)
    for (int p = 0; p < Pixels; ++p)
      for (int v = 0; v < V; ++v) acc[p][v] = clampw(acc[p][v], e.lo, e.hi);
  for (int p = 0; p < Pixels; ++p)
    for (int v = 0; v < V; ++v) storew(out + static_cast<std::size_t>(p) * ldo + L * v, acc[p][v]);
}

// Panels whose last one holds fewer than 16 filters (`width` in all): the tile works on
// 16-wide copies of their outputs, residual and bias, zero past the last filter.
template <int Pixels, int Panels>
void edge_tile(const float* in, int ldi, int rows, const float* panel, std::size_t stride, float* out,
               const float* residual, int ldo, int width, const Epilogue& e) {
  constexpr int F = 16 * Panels;
  float part[Pixels][F] = {}, res[Pixels][F] = {}, bias[F] = {};
  for (int p = 0; p < Pixels; ++p) {
    if (!e.first)
      std::copy(out + static_cast<std::size_t>(p) * ldo, out + static_cast<std::size_t>(p) * ldo + width, part[p]);
    if (residual)
      std::copy(residual + static_cast<std::size_t>(p) * ldo, residual + static_cast<std::size_t>(p) * ldo + width,
                res[p]);
  }
  Epilogue padded = e;
  if (e.bias) {
    std::copy(e.bias, e.bias + width, bias);
    padded.bias = bias;
  }
  tile<Pixels, Panels>(in, ldi, rows, panel, stride, part[0], residual ? res[0] : nullptr, F, padded);
  for (int p = 0; p < Pixels; ++p) std::copy(part[p], part[p] + width, out + static_cast<std::size_t>(p) * ldo);
}

// `Panels` panels holding `width` filters in all (fewer than 16 x Panels: the last is partial).
template <int Pixels, int Panels>
inline void panel_tile(const float* in, int ldi, int rows, const float* panel, std::size_t stride, float* out,
                       const float* residual, int ldo, int width, const Epilogue& e) {
  if (width == 16 * Panels)
    tile<Pixels, Panels>(in, ldi, rows, panel, stride, out, residual, ldo, e);
  else
    edge_tile<Pixels, Panels>(in, ldi, rows, panel, stride, out, residual, ldo, width, e);
}

// panel_tile<n, Panels> for a run-time n in [1, Pixels].
template <int Pixels, int Panels>
inline void narrower_tile(int n, const float* in, int ldi, int rows, const float* panel, std::size_t stride,
                          float* out, const float* residual, int ldo, int width, const Epilogue& e) {
  if constexpr (Pixels >= 1) {
    if (n == Pixels)
      panel_tile<Pixels, Panels>(in, ldi, rows, panel, stride, out, residual, ldo, width, e);
    else
      narrower_tile<Pixels - 1, Panels>(n, in, ldi, rows, panel, stride, out, residual, ldo, width, e);
  }
}

// Asks for the lines that pixels [p, end) of panel j will store to (and add from), while the
// tile before them computes. A panel's 16 outputs of consecutive pixels lie a row of filters
// apart, pages apart in wide layers, where the hardware prefetcher does not follow; in a model
// the output buffer is cold, and each store waited for its line (784 x 128 -> 512, cold
// output: 1.55 -> 1.28 ms).
inline void prefetch_outputs(float* out, const float* residual, int filters, int p, int end, int j) {
  for (; p < end; ++p) {
    const std::size_t at = static_cast<std::size_t>(p) * filters + 16 * j;
    __builtin_prefetch(out + at, 1);
    __builtin_prefetch(out + at + 15, 1);  // rows need not start a line
    if (residual) {
      __builtin_prefetch(residual + at);
      __builtin_prefetch(residual + at + 15);
    }
  }
}

}  // namespace

PackedWeights::PackedWeights(const std::vector<float>& w, int k, int filters) : PackedWeights(w.data(), k, filters) {
  CHORUS_ASSERT(w.size() == static_cast<std::size_t>(k) * filters);
}

PackedWeights::PackedWeights(const float* w, int k, int filters)
    : k_(k), filters_(filters), data_(allocate_aligned_floats(floats())) {
  pack_rows(w, 0, k);
}

PackedWeights::PackedWeights(std::vector<float>&& w, int k, int filters)
    : k_(k), filters_(filters), data_(allocate_aligned_floats(floats())) {
  CHORUS_ASSERT(w.size() == static_cast<std::size_t>(k) * filters);
  // Blocks of about 1 MB of rows: each block's pages of `w` are released once packed, while the
  // packed panels' pages are first written.
  const int rows = std::max(1, static_cast<int>((1 << 18) / std::max(1, filters)));
  for (int i0 = 0; i0 < k; i0 += rows) {
    const int i1 = std::min(k, i0 + rows);
    pack_rows(w.data(), i0, i1);
    release_pages(w.data() + static_cast<std::size_t>(i0) * filters, static_cast<std::size_t>(i1 - i0) * filters * 4);
  }
  std::vector<float>().swap(w);
}

void PackedWeights::pack_rows(const float* w, int i0, int i1) {
  for (int j = 0; j < panels(); ++j) {
    float* panel = data_.get() + static_cast<std::size_t>(j) * k_ * 16;
    const int width = std::min(16, filters_ - 16 * j);
    for (int i = i0; i < i1; ++i) {
      const float* row = w + static_cast<std::size_t>(i) * filters_ + 16 * j;
      std::copy(row, row + width, panel + 16 * i);
      std::fill(panel + 16 * i + width, panel + 16 * i + 16, 0.0f);
    }
  }
}

void PackedWeights::scale_filters(const std::vector<float>& scale) {
  CHORUS_ASSERT(static_cast<int>(scale.size()) == filters_);
  for (int j = 0; j < panels(); ++j) {
    float* panel = data_.get() + static_cast<std::size_t>(j) * k_ * 16;
    const int width = std::min(16, filters_ - 16 * j);
    for (int i = 0; i < k_; ++i)
      for (int f = 0; f < width; ++f) panel[16 * i + f] *= scale[16 * j + f];
  }
}

bool prefer_packed_gemm(int k, int filters) {
  // With 16-float vectors a tile of 12 pixels x 16 filters beat small_gemm on every shape of
  // BM_PointwiseKernel (Zen 5, 2026-11-27: 16 -> 96 at 112x112 112 against 55 GFLOP/s, 144 -> 24
  // at 56x56 135 against 64); with 8-float vectors small_gemm wins where k < 64 or there are
  // fewer than 32 filters.
  if (kVecWLanes == 16) return true;
  return k >= 64 && filters >= 32;
}

namespace {

// Partial sums per filter in a vector's product, one for each row mod kGemvSums, so that the
// multiply-adds do not all wait on one another.
constexpr int kGemvSums = kPanelVecs == 1 ? 2 : 1;

// sums (16 x Panels) = the product of x with rows [k0, k0 + rows) of panels [j, j + Panels).
// Each panel's rows are one contiguous run, so this reads Panels streams at once: four were
// fastest (a stand-alone loop over AlexNet's three dense layers on one core: 9.1 ms one panel
// at a time, 7.4 ms four, 7.9 ms eight).
template <int Panels>
void gemv_panels(const float* __restrict x, const PackedWeights& w, int k0, int rows, int j, float* __restrict sums) {
  constexpr int L = kVecWLanes, A = kGemvSums;
  const float* panel[Panels];
  for (int q = 0; q < Panels; ++q) panel[q] = w.panel(j + q) + static_cast<std::size_t>(k0) * 16;
  VecW acc[Panels][A][kPanelVecs] = {};
  int i = 0;
  for (; i + A <= rows; i += A)
    for (int q = 0; q < Panels; ++q)
      for (int u = 0; u < A; ++u)
        for (int v = 0; v < kPanelVecs; ++v) acc[q][u][v] += x[i + u] * loadw(panel[q] + (i + u) * 16 + v * L);
  for (; i < rows; ++i)
    for (int q = 0; q < Panels; ++q)
      for (int v = 0; v < kPanelVecs; ++v) acc[q][0][v] += x[i] * loadw(panel[q] + i * 16 + v * L);
  for (int q = 0; q < Panels; ++q)
    for (int v = 0; v < kPanelVecs; ++v) {
      VecW sum = acc[q][0][v];
      for (int u = 1; u < A; ++u) sum += acc[q][u][v];
      storew(sums + q * 16 + v * L, sum);
    }
}

}  // namespace

int packed_gemm_tile_panels() { return kTilePanels; }

void packed_gemv(const float* x, const PackedWeights& w, int k0, int k1, float* out, int f0, int f1, bool accumulate) {
  CHORUS_ASSERT(0 <= k0 && k0 <= k1 && k1 <= w.k() && 0 <= f0 && f0 <= f1 && f1 <= w.filters(), "packed_gemv rows ", k0,
                "..", k1, " filters ", f0, "..", f1);
  constexpr int kGroup = 4;
  float sums[16 * kGroup];
  for (int j = f0 / 16, end = (f1 + 15) / 16; j < end;) {
    const int n = end - j >= kGroup ? kGroup : 1;
    if (n == kGroup)
      gemv_panels<kGroup>(x, w, k0, k1 - k0, j, sums);
    else
      gemv_panels<1>(x, w, k0, k1 - k0, j, sums);
    for (int f = std::max(f0, 16 * j), last = std::min(f1, 16 * (j + n)); f < last; ++f)
      out[f] = accumulate ? out[f] + sums[f - 16 * j] : sums[f - 16 * j];
    j += n;
  }
}

void packed_gemm(const float* in, int ldi, int pixels, const PackedWeights& w, const float* bias,
                 const Activation& act, float* out, int first_panel, int end_panel, const float* residual) {
  const int k = w.k(), filters = w.filters();
  if (end_panel < 0) end_panel = w.panels();
  float lo = 0.0f, hi = 0.0f;
  Epilogue e{nullptr, true, true, act.as_clamp(lo, hi), VecW{} + lo, VecW{} + hi};
  CHORUS_ASSERT(e.clamp || (first_panel == 0 && end_panel == w.panels()), "panel range with ", act.str());
  // Tiles of `n` pixels from pixel p0, of Panels panels from panel j, rows [k0, k0 + rows) of k.
  const auto run_tiles_of = [&](auto panels_per_tile, int p0, int n, int k0, int rows, int j) {
    constexpr int Panels = decltype(panels_per_tile)::value;
    const float* panel = w.panel(j) + static_cast<std::size_t>(k0) * 16;
    const std::size_t stride = static_cast<std::size_t>(k) * 16;
    const int width = std::min(16 * Panels, filters - 16 * j);
    const auto at = [&](int p) { return static_cast<std::size_t>(p0 + p) * filters + 16 * j; };
    const auto tile_in = [&](int p) { return in + static_cast<std::size_t>(p0 + p) * ldi + k0; };
    const auto tile_res = [&](int p) { return residual ? residual + at(p) : nullptr; };
    // Tiles of equal size, as few as Pixels allows: a short last tile would wait on the latency
    // of its few multiply-adds (49 pixels: 10,10,10,10,9 rather than 12,12,12,12,1).
    constexpr int Pixels = kPixelsFor<Panels>;
    const int tiles = (n + Pixels - 1) / Pixels;
    for (int t = 0, p = 0; t < tiles; ++t) {
      const int size = n / tiles + (t < n % tiles ? 1 : 0);
      for (int q = 0; q < Panels; ++q)
        prefetch_outputs(out, residual, filters, p0 + p + size, p0 + std::min(n, p + size + Pixels), j + q);
      narrower_tile<Pixels, Panels>(size, tile_in(p), ldi, rows, panel, stride, out + at(p), tile_res(p), filters,
                                    width, e);
      p += size;
    }
  };
  // Panels [j, end) by tiles of kTilePanels panels, then of two, then of one (the last may be
  // partial: 24 filters take one tile of two); returns the panels done.
  const auto run_tiles = [&](int p0, int n, int k0, int rows, int j, int end) {
    if constexpr (kTilePanels > 2) {
      if (j + kTilePanels <= end) {
        run_tiles_of(std::integral_constant<int, kTilePanels>{}, p0, n, k0, rows, j);
        return kTilePanels;
      }
    }
    if constexpr (kTilePanels > 1) {
      if (j + 2 <= end) {
        run_tiles_of(std::integral_constant<int, 2>{}, p0, n, k0, rows, j);
        return 2;
      }
    }
    run_tiles_of(std::integral_constant<int, 1>{}, p0, n, k0, rows, j);
    return 1;
  };
  const int panels = end_panel - first_panel;
  if (static_cast<std::size_t>(panels) * k * 16 <= kTileOuterFloats) {
    const int tiles = (pixels + kTile - 1) / kTile;  // of equal size, as in run_tiles
    for (int t = 0, p0 = 0; t < tiles; ++t) {
      const int n = pixels / tiles + (t < pixels % tiles ? 1 : 0);
      for (int j = first_panel; j < end_panel;) {
        e.bias = bias ? bias + 16 * j : nullptr;
        // The next tile's lines, a panel at a time (3136 x 64 -> 256, cold output: 1.63 -> 1.43 ms).
        prefetch_outputs(out, residual, filters, p0 + n, std::min(pixels, p0 + n + kTile), j);
        j += run_tiles(p0, n, 0, k, j, end_panel);
      }
      p0 += n;
    }
    if (!e.clamp) act.apply(out, static_cast<std::size_t>(pixels) * filters, filters);
    return;
  }
  // k in chunks, and the block as many pixels as a chunk of input keeps in L2 (all of a 7x7
  // layer's): each panel's chunk then comes from memory once and serves every tile of the
  // block from L2. Unchunked, a 7x7 layer's blocks were of 12 pixels (k = 4608) and each block
  // read all the weights again (Xeon with AVX-512, cold weights: 49 x 4608 -> 512 64 -> 111
  // GFLOP/s, 49 x 2048 -> 512 80 -> 113; ResNet-50 63-65 -> 57-58 ms, ResNet-18 25 -> 21). On
  // the Zen 5 machine a whole pass per pair of panels had measured faster (49 x 960 -> 320
  // 176 -> 145 us), with tiles of two panels.
  const int chunk = std::min(k, kChunk);
  const int block = std::max(kTile, static_cast<int>(kBlockFloats / chunk) / kTile * kTile);
  for (int p0 = 0; p0 < pixels; p0 += block) {
    const int n = std::min(block, pixels - p0);
    float* block_out = out + static_cast<std::size_t>(p0) * filters;
    // Panels per pass: with k in several chunks, the pass' partial sums stay in L2 from one
    // chunk to the next.
    const int group = k <= chunk ? panels : std::max(1, static_cast<int>(kPartialFloats / (16 * n)));
    for (int j0 = first_panel; j0 < end_panel; j0 += group) {
      const int j1 = std::min(end_panel, j0 + group);
      for (int k0 = 0; k0 < k; k0 += chunk) {
        const int rows = std::min(chunk, k - k0);
        e.first = k0 == 0;
        e.last = k0 + rows == k;
        for (int j = j0; j < j1;) {
          e.bias = bias ? bias + 16 * j : nullptr;
          j += run_tiles(p0, n, k0, rows, j, j1);
        }
      }
    }
    if (!e.clamp) act.apply(block_out, static_cast<std::size_t>(n) * filters, filters);
  }
}

}  // namespace chorus::layers
