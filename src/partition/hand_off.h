#pragma once
// A split-spatial stage's tiles handed straight to the role after it: each member sends each
// receiver (the next stage's members, or the sink) the part of its own output tile that the
// receiver takes (its rows and halo, its tile, its slice, or all of it), so no member gathers
// the stage's output first and sends it on. Plain geometry: runs of floats of one frame of the
// value, where they lie in the value and in the member's tile.
#include <cstddef>
#include <vector>

#include "model/model.h"
#include "plan/validate.h"

namespace chorus::partition {

// A run of floats of one frame: at `value_at` in the value (NHWC, images of a clip one after
// another), at `tile_at` in the member's tile (its rows and columns of each image).
struct HandOffPiece {
  std::size_t value_at = 0, tile_at = 0, floats = 0;
};

struct TileHandOff {
  // [producer member][receiver member]: the runs, in the value's order; a receiver is a member
  // of the next stage (a replica takes the frames of its turns), or the sink (one).
  std::vector<std::vector<std::vector<HandOffPiece>>> pieces;
  // Floats per frame of each of those messages (0: none is sent), summed once.
  std::vector<std::vector<std::size_t>> totals;
  std::size_t floats(int producer, int receiver) const { return totals.at(producer).at(receiver); }
};

// The hand-off of stage `stage` (plan::hands_tiles_on) to the role after it.
TileHandOff tile_hand_off(const model::Model& model, const plan::ResolvedPlan& plan, int stage);

// Copies the pieces of one frame out of a member's tile, one after another, or back into the
// receiver's frame of the whole value.
void pack_pieces(const std::vector<HandOffPiece>& pieces, const float* tile, float* packed);
void unpack_pieces(const std::vector<HandOffPiece>& pieces, const float* packed, float* value);

}  // namespace chorus::partition
