#pragma once
// The values that cross a cut between stages: everything produced at or before the cut that a
// later layer reads (skip connections included), in a fixed order every rank agrees on.
#include <utility>
#include <vector>

#include "model/model.h"
#include "plan/validate.h"

namespace chorus::partition {

// Values (nodes, or model inputs) alive after stage `cut`, sorted; cut -1 is the model's
// inputs in their order, the last stage's cut its outputs in their order.
std::vector<int> live_values(const model::Model& model, const plan::ResolvedPlan& plan, int cut);

// Floats per frame of those values together.
std::size_t live_floats(const model::Model& model, const std::vector<int>& values);

// The rows [begin, end) of each value entering stage `stage` (live_values(stage - 1) order)
// that member `member` needs, of each image of a clip: all of them, except in a split-spatial stage, whose members take
// only the rows their band reads (its halo included) of the value the band starts from, and
// nothing else but what member 0 hands on to the next stage whole.
std::vector<std::pair<int, int>> stage_input_rows(const model::Model& model, const plan::ResolvedPlan& plan,
                                                  int stage, int member);
// Floats per frame of those rows.
std::size_t input_rows_floats(const model::Model& model, const std::vector<int>& values,
                              const std::vector<std::pair<int, int>>& rows);

}  // namespace chorus::partition
