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

// What a member of a stage takes of one value entering it: rows [begin, end) of each of
// `images` images (a clip's; 1 for an image) of `height` rows of `row` floats each; in a grid
// of tiles, only columns [col_begin, col_end) of rows `width` pixels wide (width 0: whole rows).
struct InputRows {
  int begin = 0, end = 0;
  int height = 0, images = 1;
  std::size_t row = 0;
  int col_begin = 0, col_end = 0, width = 0;
  std::size_t row_floats() const { return width == 0 ? row : row / width * (col_end - col_begin); }
  std::size_t floats() const { return static_cast<std::size_t>(end - begin) * images * row_floats(); }
  bool operator==(const InputRows& o) const {
    return begin == o.begin && end == o.end && height == o.height && images == o.images && row == o.row &&
           col_begin == o.col_begin && col_end == o.col_end && width == o.width;
  }
};
// Copies what `r` takes of one frame of its value (`whole`) into `packed`, or back.
void pack_input_rows(const InputRows& r, const float* whole, float* packed);
void unpack_input_rows(const InputRows& r, const float* packed, float* whole);

// What member `member` of stage `stage` takes of each value entering it (live_values(stage - 1)
// order): all its rows, except
// - in a split-spatial stage, whose members take only the rows their band reads (its halo
//   included) of the value the band starts from, and nothing else but what member 0 hands on to
//   the next stage whole;
// - in a split-input stage whose members read slices of their input (plan::input_slices: of a
//   vector, or a convolution's input channels): then a member takes the floats of its slice, as
//   rows of one float, or its channels of every position, as rows of one float of images one
//   position each.
std::vector<InputRows> stage_input_rows(const model::Model& model, const plan::ResolvedPlan& plan, int stage,
                                        int member);
// Floats per frame of those rows.
std::size_t input_rows_floats(const std::vector<InputRows>& rows);

}  // namespace chorus::partition
