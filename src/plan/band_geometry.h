#pragma once
// Band geometry for split-spatial stages: which input rows a layer needs for a band of its
// output rows (the halo), and the padding the band applies at the image edges only. A band
// runs through a chain of layers or through a graph of them (residual blocks, branches joined
// by an element-wise merge or a channel concatenation): a node then computes the rows every
// reader of it inside the band needs. A stage may also cut its columns (a grid of tiles,
// Stage::columns): the columns a tile needs follow the same rules along the other axis, apart
// from its rows, so every function here takes the axis it walks.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "core/function_ref.h"
#include "model/model.h"
#include "plan/validate.h"

namespace chorus::plan {

enum class Axis { rows, columns };

// Input rows [begin, end) needed for output rows [a, b), and the band's own top/bottom padding
// (along the columns: columns, and the left/right padding).
struct RowNeed {
  int begin, end, pad_top, pad_bottom;
};
RowNeed rows_needed(const layers::Layer& layer, int a, int b, Axis axis = Axis::rows);

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

// Whether a split-spatial stage's members hand their output tiles straight to the role after
// it (partition::tile_hand_off: each receiver gets from each member the part of its tile that
// it takes): a stage of several members whose bands end it (no global pooling joins them) and
// whose output is the only value alive after it. Otherwise member 0 gathers the output and
// hands it on.
bool hands_tiles_on(const model::Model& model, const ResolvedStage& stage);
// The same for a candidate stage over nodes [first, last] of `members` members (the planner's).
bool hands_tiles_on(const model::Model& model, int first, int last, StageMode mode, int members);

// What node first + k of a band over [first, last] computes and reads for output rows
// [out_begin, out_end) of the last: the union of the rows its readers in the band need (an
// empty range, out_begin == out_end, where no reader needs any), and the rows of its inputs that
// takes, with the band's own padding at the image's edges.
struct BandNodeRows {
  int out_begin = 0, out_end = 0;
  RowNeed need{0, 0, 0, 0};
};
std::vector<BandNodeRows> band_rows(const model::Model& model, int first, int last, int out_begin, int out_end,
                                    Axis axis = Axis::rows);
// The same into `rows`, reusing its storage (the planner asks for many).
void band_rows_into(const model::Model& model, int first, int last, int out_begin, int out_end, Axis axis,
                    std::vector<BandNodeRows>& rows);

// Rows [begin, end) of the band's input (the first node's input) that its layers read, together.
std::pair<int, int> band_reads(const model::Model& model, int first, int last, const std::vector<BandNodeRows>& rows);
std::pair<int, int> band_reads(const model::Model& model, int first, int last, const BandNodeRows* rows);

// Where the rows of a band come from: band_rows_into by default; the planner, which asks for the
// same bands of many ranges, passes one that keeps them. It returns the rows of nodes first ..
// last for output rows (or columns) `out` of the last (index k: node first + k), valid until
// its next call.
using BandRowsSource = FunctionRef<const BandNodeRows*(int first, int last, std::pair<int, int> out, Axis axis)>;

// The input rows each layer of the band [first, last] reads for output rows [out_begin,
// out_end) of the last (index k is node first + k).
std::vector<std::pair<int, int>> band_input_rows(const model::Model& model, int first, int last, int out_begin,
                                                 int out_end, Axis axis = Axis::rows);

// True when every member's band needs at least one row of every layer's input (a band made only
// of a ZeroPadding2D's padding rows would not).
bool bands_are_feasible(const model::Model& model, int first, int last, const std::vector<int>& row_bounds,
                        Axis axis = Axis::rows);

// A split-spatial stage runs as groups of consecutive layers (Stage::exchange_after cuts them):
// each group as fused row bands, its halo recomputed by each member (DeepThings' fused tiles),
// and between groups the members swap only the rows their neighbours' next bands read.
//
// With columns, the members form a grid of tiles, row-major: member p is in the grid's row
// p / columns and column p % columns. The grid's rows and columns take the shares of the
// members in them (grid_shares), so equal members make equal tiles.
using Span = std::pair<int, int>;  // [first, second)
// "rows 3-7" for rows [3, 8), "row 7" for [7, 8): for messages and reports, which read as
// inclusive (`unit` is the plural, "rows" or "columns").
std::string span_text(const std::string& unit, int begin, int end);
struct Tile {
  Span rows, columns;
  int size() const { return std::max(0, rows.second - rows.first) * std::max(0, columns.second - columns.first); }
  bool operator==(const Tile& o) const { return rows == o.rows && columns == o.columns; }
};
struct BandGroup {
  int first = 0, last = 0;         // node indices, inclusive
  int columns = 1;                 // the grid's columns
  std::vector<int> bounds;         // grid row i computes output rows [bounds[i], bounds[i + 1])
  std::vector<int> column_bounds;  // grid column j computes output columns [column_bounds[j], ... [j + 1])
  std::vector<Tile> tiles;         // per member: the output tile it computes
  std::vector<Tile> input_tiles;   // per member: the tile of the group's input its band reads
};
// The columns of the grid of `parts` members nearest a square (the largest divisor of `parts`
// no larger than its square root), turned on an image wider than tall so that the grid has
// at least as many columns as rows: 3 for nine, 2 for eight (4 when wide); 1 (bands) or
// `parts` (strips of columns, when wide) for a prime count. A tile's halo runs along its
// borders, whose length is least where the grid is nearest a square, and a border across a
// wide image is longer than one down it.
int nearest_square_columns(int parts, bool wide);
// The shares of a grid's rows and of its columns: the sums of its members' fractions.
std::pair<std::vector<double>, std::vector<double>> grid_shares(const std::vector<double>& fractions, int columns);
// The grid's tiles of node n's output alone (bounds, column_bounds and tiles; no input tiles).
BandGroup grid_tiles(const model::Model& model, int n, const std::vector<double>& fractions, int columns);
// `ends`: the last node of each group, ascending, the stage's last node at the end.
// With `feasible`, it says whether every band (and column of tiles) reads some rows of every
// layer of its group (bands_are_feasible's test, for the planner, which asks both).
std::vector<BandGroup> band_groups(const model::Model& model, int first, const std::vector<int>& ends,
                                   const std::vector<double>& fractions, int columns = 1, bool* feasible = nullptr,
                                   const BandRowsSource* source = nullptr);

// The output rows [begin, end) of a band [out_begin, out_end) of the group [first, last] that
// read only rows [own_begin, own_end) of its input: what a member computes from the rows it
// made itself while its neighbours' halo rows are in flight (empty, begin == end, where none).
std::pair<int, int> band_interior(const model::Model& model, int first, int last, int out_begin, int out_end,
                                  int own_begin, int own_end, Axis axis = Axis::rows);
// The same from the input rows each output row reads (row_reads[r], as band_reads gives them for
// the band [r, r + 1): band_row_reads), and the input's extent along the axis: the planner,
// which asks for many bands of one group, works them out once.
std::pair<int, int> band_interior(const std::vector<std::pair<int, int>>& row_reads, int in_extent, int out_begin,
                                  int out_end, int own_begin, int own_end);
std::vector<std::pair<int, int>> band_row_reads(const model::Model& model, int first, int last, Axis axis);
// The same for a tile: the tile of `out` that reads only tile `own` of the group's input (an
// empty tile where none), and the parts of `out` around it, which wait for the halo (up to
// four: the rows above and below, then the columns left and right of it, none empty).
Tile tile_interior(const model::Model& model, int first, int last, const Tile& out, const Tile& own);
std::vector<Tile> tile_edges(const Tile& out, const Tile& interior);

// Whether a group's members compute their interiors while the halo travels: bands of images
// (not clips) through layers whose band variants share weights (not Conv3D).
bool band_overlaps_halo(const model::Model& model, int first, int last);

// Rows [begin, end) and columns [col_begin, col_end) of the value between two groups that
// member `from` computed (its tile of `before`) and member `to` reads (for its tile of
// `after`); a member's own rows stay with it.
struct HaloTransfer {
  int from = 0, to = 0, begin = 0, end = 0, col_begin = 0, col_end = 0;
  int size() const { return (end - begin) * (col_end - col_begin); }
};
std::vector<HaloTransfer> halo_transfers(const BandGroup& before, const BandGroup& after);

}  // namespace chorus::plan
