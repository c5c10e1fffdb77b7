#pragma once
// What the members of a split stage send each other, layer by layer, as the worker does it:
// gathers, reductions (in how many parts), slices kept on their members, halo swaps, and what
// of its input each member is sent. Plain data for the planner's prediction and `chorus plan`,
// so a user sees how a plan moves a frame, not only its figures.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/model.h"
#include "plan/validate.h"

namespace chorus::plan {

struct LayerExchange {
  int node = 0;
  std::string how;  // "all-gather", "reduce to member 0", "reduce-scatter into fc2's input slices", ...
  int parts = 1;    // messages per peer in which a reduction travels (split_sums.h)
};

// One entry per layer of stage `s` that moves data between its members; none for a stage of
// one member or of replicas.
std::vector<LayerExchange> stage_exchanges(const model::Model& model, const ResolvedStage& s);
// What each member of stage `s` is sent of the stage's input: "the whole input", "its rows and
// their halo", "its slice of <value>" or "its frames" (replicas).
std::string stage_input_kind(const model::Model& model, const ResolvedStage& s);

// {"input": ..., "exchanges": [{"layer", "how", "parts"}...]} for a prediction's stage entry.
nlohmann::json stage_exchanges_json(const model::Model& model, const ResolvedStage& s);

}  // namespace chorus::plan
