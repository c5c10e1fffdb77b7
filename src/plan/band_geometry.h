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

}  // namespace chorus::plan
