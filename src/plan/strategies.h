#pragma once
// Simple plans built without a file (`--strategy NAME`), so a newcomer can try Chorus first.
#include <string>
#include <vector>

#include "model/model.h"
#include "plan/plan.h"

namespace chorus::plan {

// "pipeline": one stage per rank, cut where the multiply-adds balance best;
// "replicate": the whole model on every rank;
// "split-output" / "split-input" / "split-spatial": every run of layers that allows it split
// over all ranks, the other layers on rank 0; a split-spatial stage is one fused group of
// tiles in the grid nearest a square (plan::nearest_square_columns), as DeepThings fuses its
// tiles, or row bands where no grid fits. Throws for unknown names or too few layers.
Plan make_strategy_plan(const std::string& strategy, const model::Model& model, int ranks);

std::vector<std::string> strategy_names();

// What a split strategy could not do as asked, for a note: the layers it would split in its
// mode but left whole on rank 0, since they have fewer parts (heads, channels, units) than the
// ranks ("" when there are none, or for other strategies).
std::string strategy_note(const std::string& strategy, const model::Model& model, int ranks);

}  // namespace chorus::plan
