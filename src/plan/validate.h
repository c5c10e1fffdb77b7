#pragma once
// Checks a plan against a model and resolves layer names to node indices. Every error names
// the stage, the layer and what is wrong, so rank 0 can print it before anything runs.
#include <vector>

#include "model/model.h"
#include "plan/plan.h"

namespace chorus::plan {

struct ResolvedStage {
  int first = 0, last = 0;        // node indices, inclusive
  StageMode mode = StageMode::single;
  std::vector<int> ranks;
  std::vector<double> fractions;  // one per rank, summing to 1
};

struct ResolvedPlan {
  Plan plan;
  std::vector<ResolvedStage> stages;
  int max_in_flight = 0;
  // Frames the sink trails behind the stage work when the sink rank also computes (a replica,
  // say): it then collects outputs that already arrived instead of blocking its own compute on
  // the frame a peer is still working on.
  int sink_lag = 0;
  // Frames that arrive downstream of replicated stages in one burst (their members, summed).
  int burst_frames = 0;
};

// Throws chorus::Error for unknown layers, ranges that overlap or leave gaps, a world size
// other than plan.ranks, a split on a layer that cannot be split that way, bad fractions...
// `world_size` 0 skips the world-size check (for `chorus plan`).
ResolvedPlan validate_plan(const Plan& plan, const model::Model& model, int world_size);

// What a layer allows.
bool can_split_output(const layers::Layer& layer);
bool can_split_input(const layers::Layer& layer);
bool can_split_spatial(const layers::Layer& layer);

// The channels (or rows) a split divides for this layer and mode: output channels, input
// channels, or (for depthwise) input channels, whose outputs follow with their multiplier.
int split_extent(const layers::Layer& layer, StageMode mode);

// Cuts `extent` units into parts by fractions: part r is [bounds[r], bounds[r+1]).
std::vector<int> split_bounds(int extent, const std::vector<double>& fractions);

// True when nodes [first, last] form a chain: each reads only the one before it (the first
// reads one value) and each but the last is read only by the next.
bool is_chain(const model::Model& model, int first, int last);

}  // namespace chorus::plan
