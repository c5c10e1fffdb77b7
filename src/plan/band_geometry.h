#pragma once
// Row-band geometry for split-spatial stages: which input rows a layer needs for a band of its
// output rows (the halo), and the padding the band applies at the image edges only. A band
// runs through a chain of layers or through a graph of them (residual blocks, branches joined
// by an element-wise merge or a channel concatenation): a node then computes the rows every
// reader of it inside the band needs.
#include <utility>
#include <vector>

#include "model/model.h"

namespace chorus::plan {

// Input rows [begin, end) needed for output rows [a, b), and the band's own top/bottom padding.
struct RowNeed {
  int begin, end, pad_top, pad_bottom;
};
RowNeed rows_needed(const layers::Layer& layer, int a, int b);

// True when the layers [first, last] can run as one band: the first reads one value from
// outside, every other layer reads only that value or layers before it in the range, and every
// layer but the last is read only by later layers of the range (so one value enters and one
// leaves). A chain is the simplest such range.
bool is_band_graph(const model::Model& model, int first, int last);

// A split-spatial stage [first, last] may end in a global pooling (GlobalAveragePooling or
// GlobalMaxPooling, 2-D or 3-D) of the value its bands hand on: each member pools its own rows,
// and member 0 joins the members' pools (sums added in member order, then divided, or maxima),
// so a member sends the pooling's channels, not its rows. pools_bands says whether [first, last]
// is such a stage; band_last is the last node its bands run through (last - 1 then, else last).
bool pools_bands(const model::Model& model, int first, int last);
int band_last(const model::Model& model, int first, int last);

// What node first + k of a band over [first, last] computes and reads for output rows
// [out_begin, out_end) of the last: the union of the rows its readers in the band need (an
// empty range, out_begin == out_end, where no reader needs any), and the rows of its inputs that
// takes, with the band's own padding at the image's edges.
struct BandNodeRows {
  int out_begin = 0, out_end = 0;
  RowNeed need{0, 0, 0, 0};
};
std::vector<BandNodeRows> band_rows(const model::Model& model, int first, int last, int out_begin, int out_end);

// Rows [begin, end) of the band's input (the first node's input) that its layers read, together.
std::pair<int, int> band_reads(const model::Model& model, int first, int last, const std::vector<BandNodeRows>& rows);

// The input rows each layer of the band [first, last] reads for output rows [out_begin,
// out_end) of the last (index k is node first + k).
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

// The output rows [begin, end) of a band [out_begin, out_end) of the group [first, last] that
// read only rows [own_begin, own_end) of its input: what a member computes from the rows it
// made itself while its neighbours' halo rows are in flight (empty, begin == end, where none).
std::pair<int, int> band_interior(const model::Model& model, int first, int last, int out_begin, int out_end,
                                  int own_begin, int own_end);

// Whether a group's members compute their interiors while the halo travels: bands of images
// (not clips) through layers whose band variants share weights (not Conv3D).
bool band_overlaps_halo(const model::Model& model, int first, int last);

// Rows [begin, end) of the value between two groups that member `from` computed (its band of
// `before`) and member `to` reads (for its band of `after`); a member's own rows stay with it.
struct HaloTransfer {
  int from = 0, to = 0, begin = 0, end = 0;
};
std::vector<HaloTransfer> halo_transfers(const BandGroup& before, const BandGroup& after);

}  // namespace chorus::plan
