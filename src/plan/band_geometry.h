#pragma once
// Row-band geometry for split-spatial stages: which input rows a layer needs for a band of its
// output rows (the halo), and the padding the band applies at the image edges only.
#include <utility>
#include <vector>

#include "model/model.h"

namespace chorus::plan {

// Input rows [begin, end) needed for output rows [a, b), and the band's own top/bottom padding.
struct RowNeed {
  int begin, end, pad_top, pad_bottom;
};
RowNeed rows_needed(const layers::Layer& layer, int a, int b);

// The input rows each layer of the chain [first, last] needs for output rows
// [out_begin, out_end) of the last (index k is node first + k).
std::vector<std::pair<int, int>> band_input_rows(const model::Model& model, int first, int last, int out_begin,
                                                 int out_end);

// True when every member's band needs at least one row of every layer's input (a band made only
// of a ZeroPadding2D's padding rows would not).
bool bands_are_feasible(const model::Model& model, int first, int last, const std::vector<int>& row_bounds);

// A split-spatial stage runs as groups of consecutive layers (Stage::exchange_after cuts them):
// each group as fused row bands, its halo recomputed by each member (DeepThings' fused tiles),
// and between groups the members swap only the rows their neighbours' next bands read.
struct BandGroup {
  int first = 0, last = 0;                      // node indices, inclusive
  std::vector<int> bounds;                      // member p computes output rows [bounds[p], bounds[p + 1])
  std::vector<std::pair<int, int>> input_rows;  // per member: the rows of the group's input its band reads
};
// `ends`: the last node of each group, ascending, the stage's last node at the end.
std::vector<BandGroup> band_groups(const model::Model& model, int first, const std::vector<int>& ends,
                                   const std::vector<double>& fractions);

// Rows [begin, end) of the value between two groups that member `from` computed (its band of
// `before`) and member `to` reads (for its band of `after`); a member's own rows stay with it.
struct HaloTransfer {
  int from = 0, to = 0, begin = 0, end = 0;
};
std::vector<HaloTransfer> halo_transfers(const BandGroup& before, const BandGroup& after);

}  // namespace chorus::plan
