#include "plan/strategies.h"

#include <algorithm>
#include <limits>

#include "core/error.h"
#include "plan/band_geometry.h"
#include "plan/validate.h"

namespace chorus::plan {

namespace {

std::vector<int> all_ranks(int ranks) {
  std::vector<int> r(ranks);
  for (int i = 0; i < ranks; ++i) r[i] = i;
  return r;
}

// Contiguous cuts minimising the largest stage cost (dynamic programming over cut points).
Plan pipeline_plan(const model::Model& m, int ranks) {
  const int n = static_cast<int>(m.nodes().size());
  if (n < ranks) fail("strategy pipeline: the model has ", n, " layers, fewer than the ", ranks, " ranks");
  std::vector<double> prefix(n + 1, 0.0);
  // Cost of a layer: its multiply-adds, plus its weights, which dense layers stream from memory
  // once per frame at about 1/25 of the GEMM rate (6 MAC-equivalents per byte); +1: no free stages.
  for (int i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + m.cost(i).macs + 6.0 * m.cost(i).weight_bytes + 1.0;
  const double inf = std::numeric_limits<double>::infinity();
  // best[k][j]: smallest bottleneck cutting the first j layers into k stages.
  std::vector<std::vector<double>> best(ranks + 1, std::vector<double>(n + 1, inf));
  std::vector<std::vector<int>> cut(ranks + 1, std::vector<int>(n + 1, 0));
  best[0][0] = 0;
  for (int k = 1; k <= ranks; ++k)
    for (int j = k; j <= n; ++j)
      for (int i = k - 1; i < j; ++i) {
        double v = std::max(best[k - 1][i], prefix[j] - prefix[i]);
        if (v < best[k][j]) best[k][j] = v, cut[k][j] = i;
      }
  std::vector<int> starts(ranks);
  for (int k = ranks, j = n; k >= 1; --k) starts[k - 1] = cut[k][j], j = cut[k][j];
  Plan p;
  p.ranks = ranks;
  for (int k = 0; k < ranks; ++k) {
    int first = starts[k], last = k + 1 < ranks ? starts[k + 1] - 1 : n - 1;
    p.stages.push_back({m.node(first).name(), m.node(last).name(), StageMode::single, {k}, {}, {}});
  }
  return p;
}

// Runs of layers that the mode can split over all ranks become split stages; the rest run on rank 0.
Plan split_plan(const model::Model& m, int ranks, StageMode mode) {
  const int n = static_cast<int>(m.nodes().size());
  const std::vector<double> even(ranks, 1.0 / ranks);
  // A layer's role as if its stage ran from it to the end: what matters here is whether it
  // splits (a split-tensor pair's second layer is found from the first).
  const auto roles = mode == StageMode::split_spatial ? std::vector<SplitRole>(n, SplitRole::whole)
                                                      : split_roles(m, 0, n - 1, mode);
  auto splits = [&](int i) {
    const auto& l = *m.node(i).layer;
    if (roles[i] == SplitRole::whole) return false;
    auto b = split_bounds(split_extent(l, roles[i]), even);
    for (int r = 0; r < ranks; ++r)
      if (b[r] == b[r + 1]) return false;
    return true;
  };
  auto rides_along = [&](int i) {
    return m.node(i).layer->weight_specs().empty() || (mode == StageMode::split_tensor && computable_in_full(*m.node(i).layer));
  };
  Plan p;
  p.ranks = ranks;
  int i = 0;
  while (i < n) {
    int j = i;
    bool any = false;
    int columns = 1;
    if (mode == StageMode::split_spatial) {
      // The longest range from i that runs as one band (a residual block is one only once its
      // branches have joined, so look past ranges that are not), in the grid of tiles nearest a
      // square (DeepThings' fused tiles), else in row bands.
      const Shape in = m.shape_of(m.node(i).inputs.at(0));
      const auto longest = [&](int grid_columns) {
        const int rows = ranks / grid_columns;
        const std::vector<double> down(rows, 1.0 / rows), across(grid_columns, 1.0 / grid_columns);
        int end = i;
        for (int k = i; k < n && can_split_spatial(*m.node(k).layer); ++k) {
          const Shape out = m.node(k).layer->output_shape();
          if (out.h < rows || out.w < grid_columns) break;
          if (is_band_graph(m, i, k) && bands_are_feasible(m, i, k, split_bounds(out.h, down)) &&
              bands_are_feasible(m, i, k, split_bounds(out.w, across), Axis::columns))
            end = k + 1;
        }
        return end;
      };
      columns = nearest_square_columns(ranks, in.w > in.h);
      j = longest(columns);
      if (j == i && columns > 1) j = longest(columns = 1);
      // A global pooling of the bands ends the stage: each member pools its own rows.
      if (j > i && j < n && pools_bands(m, i, j)) ++j;
      for (int k = i; k < j; ++k) any |= !rides_along(k) || m.cost(k).macs > 0;
    } else {
      while (j < n && (splits(j) || rides_along(j))) any |= splits(j++);
    }
    if (any && j > i) {
      p.stages.push_back({m.node(i).name(), m.node(j - 1).name(), mode, all_ranks(ranks), {}, {}});
      p.stages.back().columns = columns;
      i = j;
      continue;
    }
    // Not splittable here: extend the rank-0 stage (or start one).
    int end = std::max(i, j - 1);
    if (!p.stages.empty() && p.stages.back().mode == StageMode::single)
      p.stages.back().last = m.node(end).name();
    else
      p.stages.push_back({m.node(i).name(), m.node(end).name(), StageMode::single, {0}, {}, {}});
    i = end + 1;
  }
  return p;
}

}  // namespace

std::string strategy_note(const std::string& strategy, const model::Model& m, int ranks) {
  StageMode mode;
  if (strategy == "split-output")
    mode = StageMode::split_output;
  else if (strategy == "split-input")
    mode = StageMode::split_input;
  else if (strategy == "split-tensor")
    mode = StageMode::split_tensor;
  else
    return {};  // pipeline and replicate split nothing; split-spatial splits rows
  if (ranks < 2) return {};
  const int n = static_cast<int>(m.nodes().size());
  const auto roles = split_roles(m, 0, n - 1, mode);
  std::string names;
  int whole = 0;
  for (int i = 0; i < n; ++i) {
    if (roles[i] == SplitRole::whole) continue;
    const int parts = split_extent(*m.node(i).layer, roles[i]);
    if (parts >= ranks) continue;
    if (++whole <= 3) names += cat(names.empty() ? "" : ", ", m.node(i).name(), " has ", parts);
  }
  if (whole == 0) return {};
  return cat(strategy, " leaves ", whole, " layer(s) whole on rank 0, with fewer parts to split than the ", ranks,
             " ranks (", names, whole > 3 ? ", ..." : "", ")");
}

std::vector<std::string> strategy_names() {
  return {"pipeline", "replicate", "split-output", "split-input", "split-spatial", "split-tensor"};
}

Plan make_strategy_plan(const std::string& strategy, const model::Model& m, int ranks) {
  if (ranks < 1) fail("strategy ", strategy, ": needs at least one rank");
  if (ranks > kMostRanks) fail("strategy ", strategy, ": ", ranks, " ranks; at most ", kMostRanks);
  Plan p;
  if (strategy == "pipeline") p = pipeline_plan(m, ranks);
  else if (strategy == "replicate") {
    p.ranks = ranks;
    p.stages.push_back({m.node(0).name(), m.nodes().back().name(), StageMode::replicate, all_ranks(ranks), {}, {}});
  } else if (strategy == "split-output") p = split_plan(m, ranks, StageMode::split_output);
  else if (strategy == "split-input") p = split_plan(m, ranks, StageMode::split_input);
  else if (strategy == "split-spatial") p = split_plan(m, ranks, StageMode::split_spatial);
  else if (strategy == "split-tensor") p = split_plan(m, ranks, StageMode::split_tensor);
  else fail("unknown strategy '", strategy, "' (pipeline, replicate, split-output, split-input, split-spatial, split-tensor)");
  for (auto& s : p.stages)
    if (s.ranks.size() == 1) s.mode = StageMode::single;
  // A split strategy that found nothing to split would run the whole model on rank 0 while the
  // other ranks wait: say so rather than run that.
  const bool splits = strategy.rfind("split-", 0) == 0;
  if (splits && ranks > 1 &&
      std::none_of(p.stages.begin(), p.stages.end(), [](const Stage& s) { return s.ranks.size() > 1; }))
    fail("strategy ", strategy, ": no layer of this model can be split that way over ", ranks, " ranks");
  return p;
}

}  // namespace chorus::plan
