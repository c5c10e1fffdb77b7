#include "plan/stage_exchanges.h"

#include "plan/band_geometry.h"
#include "plan/split_sums.h"

namespace chorus::plan {

namespace {

std::string value_name(const model::Model& m, int value) {
  return model::is_model_input(value) ? std::string("the model's input") : m.node(value).name();
}

}  // namespace

std::vector<LayerExchange> stage_exchanges(const model::Model& m, const ResolvedStage& s) {
  std::vector<LayerExchange> out;
  if (s.ranks.size() < 2 || s.mode == StageMode::single || s.mode == StageMode::replicate) return out;
  if (s.mode == StageMode::split_spatial) {
    const bool grid = s.columns > 1;
    for (std::size_t k = 0; k + 1 < s.group_ends.size(); ++k)
      out.push_back({s.group_ends[k],
                     grid ? "halo rows and columns swapped with the neighbouring tiles"
                          : "halo rows swapped with the neighbouring bands",
                     1});
    if (pools_bands(m, s.first, s.last))
      out.push_back(
          {s.last,
           grid ? "each tile pooled, the pools added at member 0" : "each band pooled, the pools added at member 0",
           1});
    else if (hands_tiles_on(m, s))
      out.push_back({s.group_ends.back(),
                     grid ? "tiles handed straight to the next stage's members (each its part of them)"
                          : "bands handed straight to the next stage's members (each its part of them)",
                     1});
    else
      out.push_back({s.group_ends.back(), grid ? "tiles gathered to member 0" : "bands gathered to member 0", 1});
    return out;
  }
  const std::vector<SplitRole> roles = split_roles(m, s.first, s.last, s.mode);
  for (int n = s.first; n <= s.last; ++n) {
    const SplitRole role = roles[n - s.first];
    const layers::Layer& layer = *m.node(n).layer;
    const bool to_first = split_root(n, s.last) == 0;
    if (s.parity) {
      if (role != SplitRole::whole) out.push_back({n, "slices and their parity sent to the consumers", 1});
      continue;
    }
    switch (role) {
      case SplitRole::whole:
        break;
      case SplitRole::kept_slice:
        out.push_back({n, "slice kept on its member for " + m.node(n + 1).name(), 1});
        break;
      case SplitRole::output_slice:
        out.push_back({n,
                       to_first ? "slices gathered to member 0"
                       : gather_overlaps_next(m, s.first, s.last, roles, n)
                           ? "all-gather of the slices, which " + m.node(n + 1).name() + " takes as they arrive"
                           : "all-gather of the slices",
                       1});
        break;
      case SplitRole::input_slice:
      case SplitRole::heads: {
        const auto shares = role == SplitRole::input_slice ? scatter_shares(m, s.first, s.last, roles, s.fractions, n)
                                                           : std::vector<std::size_t>{};
        if (!shares.empty()) {
          out.push_back({n, "reduce-scatter into " + m.node(n + 1).name() + "'s input slices", 1});
          break;
        }
        const int parts =
            static_cast<int>(sum_parts(layer.output_shape(), 1, layer.partwise_fraction() > 0).size()) - 1;
        out.push_back({n, to_first ? "partial sums reduced to member 0" : "all-reduce of the partial sums", parts});
        break;
      }
    }
  }
  return out;
}

std::string stage_input_kind(const model::Model& m, const ResolvedStage& s) {
  if (s.ranks.size() < 2) return "the whole input";
  if (s.mode == StageMode::replicate) return "its frames";
  if (s.mode == StageMode::split_spatial)
    return s.columns > 1 ? "its tile (rows and columns) and their halo" : "its rows and their halo";
  const InputSlices slices = input_slices(m, s.first, s.last, s.mode, s.fractions);
  if (slices.any())
    return std::string("its slice of ") + value_name(m, slices.value) +
           (slices.channels ? " (channels of every position)" : "");
  return "the whole input";
}

nlohmann::json stage_exchanges_json(const model::Model& m, const ResolvedStage& s) {
  nlohmann::json exchanges = nlohmann::json::array();
  for (const LayerExchange& e : stage_exchanges(m, s))
    exchanges.push_back({{"layer", m.node(e.node).name()}, {"how", e.how}, {"parts", e.parts}});
  return {{"input", stage_input_kind(m, s)}, {"exchanges", exchanges}};
}

}  // namespace chorus::plan
