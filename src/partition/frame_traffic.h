#pragma once
// The bytes a run moves between ranks, as the runtime sends them: the values alive at each cut
// (a header and the values) from the producer of a stage's input to each rank that takes it
// (every member of a split stage, a split-spatial member only its band's rows, the turn's
// replica of a replicated stage, the sink; from each member of a split-spatial stage that hands
// its tiles on, the pieces each receiver takes: partition::tile_hand_off); the swaps inside
// split stages (after each split layer each member's part to every other member; a stage's row
// bands once, to member 0, where it gathers them); and
// the sink's credit to the source for each frame. The report of a run gives the same figures
// measured per peer, so the two can be compared.
#include <cstddef>
#include <nlohmann/json.hpp>
#include <vector>

#include "model/model.h"
#include "plan/validate.h"

namespace chorus::partition {

struct FrameTraffic {
  int ranks = 0;
  std::vector<double> bytes;  // [from * ranks + to]: bytes per frame, averaged over the frames
  double at(int from, int to) const { return bytes.at(static_cast<std::size_t>(from) * ranks + to); }
  // [from][to], as reports and predictions carry it.
  nlohmann::json to_json() const;
};

// Over frames 0 .. frames - 1 (replicas take their turns as the runtime gives them), with
// messages of `header_bytes` plus their values.
FrameTraffic frame_traffic(const model::Model& model, const plan::ResolvedPlan& plan, int frames,
                           std::size_t header_bytes);

// Floats each member contributes per frame to the all-gather after split layer `node` (bounds
// from plan::split_bounds of the layer's split extent): its output slice; nothing for a slice its
// member keeps, and nothing for partial sums, which are reduced part by part (plan::sum_floats_to_peer).
std::vector<std::size_t> split_part_floats(const model::Model& model, int node, plan::SplitRole role,
                                           const std::vector<int>& bounds);

}  // namespace chorus::partition
