#pragma once
// The values that cross a cut between stages: everything produced at or before the cut that a
// later layer reads (skip connections included), in a fixed order every rank agrees on.
#include <vector>

#include "model/model.h"
#include "plan/validate.h"

namespace chorus::partition {

// Values (nodes, or model inputs) alive after stage `cut`, sorted; cut -1 is the model's
// inputs in their order, the last stage's cut its outputs in their order.
std::vector<int> live_values(const model::Model& model, const plan::ResolvedPlan& plan, int cut);

// Floats per frame of those values together.
std::size_t live_floats(const model::Model& model, const std::vector<int>& values);

}  // namespace chorus::partition
