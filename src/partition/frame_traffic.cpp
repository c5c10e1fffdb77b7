#include "partition/frame_traffic.h"

#include <memory>
#include <tuple>

#include "layers/depthwise_conv2d.h"
#include "partition/hand_off.h"
#include "partition/live_values.h"
#include "partition/stage_worker.h"
#include "plan/band_geometry.h"
#include "plan/replica_turns.h"

namespace chorus::partition {

using plan::StageMode;

nlohmann::json FrameTraffic::to_json() const {
  nlohmann::json matrix = nlohmann::json::array();
  for (int from = 0; from < ranks; ++from) {
    std::vector<double> row;
    for (int to = 0; to < ranks; ++to) row.push_back(at(from, to));
    matrix.push_back(row);
  }
  return matrix;
}

std::vector<std::size_t> split_part_floats(const model::Model& m, int node, plan::SplitRole role,
                                           const std::vector<int>& bounds) {
  const auto& layer = *m.node(node).layer;
  const Shape out = layer.output_shape();
  const std::size_t pixels = static_cast<std::size_t>(out.rows()) * out.w;
  const bool depthwise = dynamic_cast<const layers::DepthwiseConv2D*>(&layer) != nullptr;
  const int multiplier = depthwise ? out.c / layer.input_shapes()[0].c : 1;
  std::vector<std::size_t> floats;
  for (std::size_t r = 0; r + 1 < bounds.size(); ++r)
    floats.push_back(role == plan::SplitRole::output_slice ? pixels * (bounds[r + 1] - bounds[r]) * multiplier : 0);
  return floats;
}

FrameTraffic frame_traffic(const model::Model& m, const plan::ResolvedPlan& p, int frames, std::size_t header_bytes) {
  FrameTraffic traffic;
  traffic.ranks = p.plan.ranks;
  traffic.bytes.assign(static_cast<std::size_t>(traffic.ranks) * traffic.ranks, 0.0);
  if (frames <= 0) return traffic;
  const int S = static_cast<int>(p.stages.size());
  const auto add = [&](int from, int to, double bytes) {
    if (from != to) traffic.bytes[static_cast<std::size_t>(from) * traffic.ranks + to] += bytes / frames;
  };
  std::vector<plan::ReplicaTurns> turns;
  for (const auto& st : p.stages) turns.emplace_back(st.fractions);
  const auto producer = [&](int s, int i) {
    if (s < 0) return p.plan.source;
    const auto& st = p.stages[s];
    return st.mode == StageMode::replicate ? st.ranks[turns[s].member_of(i)] : st.ranks[0];
  };
  // The swaps of a split stage, per frame: member m's part to every other member (or, for the
  // stage's last layer and a split-spatial stage's bands, to member 0, which hands the output
  // on); and its reductions: member a's shares of each part of the partial sums to member b, and
  // b's sums.
  std::vector<std::vector<std::size_t>> swaps(S);     // [s]: floats per member, summed over the swaps
  std::vector<std::vector<std::size_t>> to_first(S);  // [s]: floats per member, gathered to member 0
  std::vector<std::vector<std::size_t>> sums(S);   // [s][a * members + b]: floats a sends b, summed
  // Halo rows swapped between a split-spatial stage's groups: (from member, to member, floats).
  std::vector<std::vector<std::tuple<int, int, std::size_t>>> halos(S);
  for (int s = 0; s < S; ++s) {
    const auto& st = p.stages[s];
    if (st.ranks.size() < 2) continue;
    auto& per_member = swaps[s];
    per_member.assign(st.ranks.size(), 0);
    to_first[s].assign(st.ranks.size(), 0);
    sums[s].assign(st.ranks.size() * st.ranks.size(), 0);
    if (st.mode == StageMode::split_spatial) {
      // Each member's tile (its rows, in bands), or its pool of it where a global pooling ends
      // the stage.
      const bool pooled = plan::pools_bands(m, st.first, st.last);
      const Shape out = m.node(st.group_ends.back()).layer->output_shape();
      const auto groups = plan::band_groups(m, st.first, st.group_ends, st.fractions, st.columns);
      const bool hands_on = plan::hands_tiles_on(m, st);  // then nothing is gathered
      for (std::size_t k = 0; k < st.ranks.size() && !hands_on; ++k)
        to_first[s][k] = pooled ? m.node(st.last).layer->output_shape().size()
                                : static_cast<std::size_t>(groups.back().tiles[k].size()) * out.c * out.d;
      for (std::size_t g = 1; g < groups.size(); ++g) {
        const Shape between = m.node(groups[g - 1].last).layer->output_shape();
        for (const auto& h : plan::halo_transfers(groups[g - 1], groups[g]))
          halos[s].emplace_back(h.from, h.to, static_cast<std::size_t>(h.size()) * between.c * between.d);
      }
    } else if (st.parity) {
      continue;  // no swaps: each member's slice goes straight to the consumers (below)
    } else if (st.mode == StageMode::split_output || st.mode == StageMode::split_input ||
               st.mode == StageMode::split_tensor) {
      const auto roles = plan::split_roles(m, st.first, st.last, st.mode);
      for (int n = st.first; n <= st.last; ++n) {
        const auto role = roles[n - st.first];
        if (role == plan::SplitRole::whole) continue;
        const auto bounds = plan::split_bounds(plan::split_extent(*m.node(n).layer, role), st.fractions);
        if (role == plan::SplitRole::input_slice || role == plan::SplitRole::heads) {
          const layers::Layer& layer = *m.node(n).layer;
          const auto shares = role == plan::SplitRole::input_slice
                                  ? plan::scatter_shares(m, st.first, st.last, roles, st.fractions, n)
                                  : std::vector<std::size_t>{};
          const bool scattered = !shares.empty();
          const auto parts = plan::sum_parts(layer.output_shape(), 1, layer.partwise_fraction() > 0, scattered);
          const int members = static_cast<int>(st.ranks.size());
          const int root = scattered ? plan::kSumsScattered : plan::split_root(n, st.last);
          for (int a = 0; a < members; ++a)
            for (int b = 0; b < members; ++b)
              sums[s][a * members + b] +=
                  plan::sum_floats_to_peer(parts, members, a, b, root, scattered ? &shares : nullptr);
          continue;
        }
        const auto parts = split_part_floats(m, n, role, bounds);
        auto& into = plan::split_root(n, st.last) == 0 ? to_first[s] : per_member;
        for (std::size_t k = 0; k < parts.size(); ++k) into[k] += parts[k];
      }
    }
  }
  // [s][member]: a message into stage s (S: the sink) for that member: the header and the rows
  // it takes of every value.
  std::vector<std::vector<double>> message(S + 1);
  for (int s = 0; s <= S; ++s) {
    const auto values = live_values(m, p, s - 1);
    const int members = s == S ? 1 : static_cast<int>(p.stages[s].ranks.size());
    for (int g = 0; g < members; ++g)
      message[s].push_back(header_bytes + input_rows_floats(stage_input_rows(m, p, s, g)) * sizeof(float));
  }
  // Receivers of role s (S: the sink) for frame i.
  const auto receivers = [&](int s, int i) -> std::vector<int> {
    if (s == S) return {p.plan.sink};
    if (p.stages[s].mode == StageMode::replicate) return {p.stages[s].ranks[turns[s].member_of(i)]};
    return p.stages[s].ranks;
  };
  // A split-spatial stage that hands its tiles on: each member's pieces to each receiver.
  std::vector<std::unique_ptr<TileHandOff>> hand_offs(S);
  for (int s = 0; s < S; ++s)
    if (plan::hands_tiles_on(m, p.stages[s])) hand_offs[s] = std::make_unique<TileHandOff>(tile_hand_off(m, p, s));
  for (int i = 0; i < frames; ++i) {
    for (int s = 0; s <= S; ++s) {
      // Into role s: the producer's message to each receiver (the members of a split-spatial
      // stage each their rows), or every member's slice of a parity stage (the parity's as wide
      // as the widest) to each.
      const std::vector<int> to = receivers(s, i);
      if (s > 0 && p.stages[s - 1].parity) {
        const auto& st = p.stages[s - 1];
        const Shape out = m.node(st.last).layer->output_shape();
        const auto bounds = plan::split_bounds(out.c, st.fractions);
        for (std::size_t g = 0; g < st.ranks.size(); ++g) {
          const int width =
              static_cast<int>(g) < st.data_members() ? bounds[g + 1] - bounds[g] : plan::widest_part(bounds);
          const double bytes = header_bytes + static_cast<double>(width) * (out.size() / out.c) * sizeof(float);
          for (int r : to) add(st.ranks[g], r, bytes);
        }
      } else if (s > 0 && hand_offs[s - 1]) {
        const auto& st = p.stages[s - 1];
        for (std::size_t g = 0; g < st.ranks.size(); ++g)
          for (std::size_t k = 0; k < to.size(); ++k) {
            const int member =
                s < S && p.stages[s].mode == StageMode::replicate ? turns[s].member_of(i) : static_cast<int>(k);
            const std::size_t floats = hand_offs[s - 1]->floats(static_cast<int>(g), member);
            if (floats > 0) add(st.ranks[g], to[k], header_bytes + static_cast<double>(floats) * sizeof(float));
          }
      } else {
        const int from = producer(s - 1, i);
        for (std::size_t g = 0; g < to.size(); ++g) {
          const int member = s < S && p.stages[s].mode == StageMode::replicate ? turns[s].member_of(i) : static_cast<int>(g);
          add(from, to[g], message[s][member]);
        }
      }
      if (s == S || p.stages[s].mode == StageMode::replicate) continue;
      // Inside the stage: split layers' parts go to every member, bands and the last layer's
      // parts to member 0 only (it hands the stage's output on).
      const auto& ranks = p.stages[s].ranks;
      for (std::size_t a = 0; a < swaps[s].size(); ++a)
        for (std::size_t b = 0; b < ranks.size(); ++b)
          if (a != b) add(ranks[a], ranks[b], (b == 0 ? swaps[s][a] + to_first[s][a] : swaps[s][a]) * sizeof(float));
      for (std::size_t a = 0; a < ranks.size() && !sums[s].empty(); ++a)
        for (std::size_t b = 0; b < ranks.size(); ++b) add(ranks[a], ranks[b], sums[s][a * ranks.size() + b] * sizeof(float));
      for (const auto& [a, b, floats] : halos[s]) add(ranks[a], ranks[b], floats * sizeof(float));
    }
    if (p.plan.sink != p.plan.source) add(p.plan.sink, p.plan.source, header_bytes);  // the credit
  }
  return traffic;
}

}  // namespace chorus::partition
