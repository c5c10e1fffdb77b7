#include "plan/band_geometry.h"

#include <algorithm>
#include <limits>

#include "core/error.h"
#include "core/function_ref.h"
#include "layers/layers3d.h"
#include "layers/pooling.h"
#include "plan/validate.h"

namespace chorus::plan {

using namespace chorus::layers;

RowNeed rows_needed(const Layer& l, int a, int b, Axis axis) {
  const int in_h = axis == Axis::rows ? l.input_shapes()[0].h : l.input_shapes()[0].w;
  const RowWindow w = axis == Axis::rows ? l.row_window() : l.column_window();
  switch (w.kind) {
    case RowWindow::Kind::window: {
      const int effective = (w.kernel - 1) * w.dilation + 1;
      const int raw_begin = a * w.stride - w.pad_top;
      const int raw_end = (b - 1) * w.stride - w.pad_top + effective;
      const int begin = std::max(0, raw_begin), end = std::min(in_h, raw_end);
      return {begin, end, begin - raw_begin, raw_end - end};
    }
    case RowWindow::Kind::shift: {
      const int top = w.pad_top;
      const int begin = std::clamp(a - top, 0, in_h), end = std::clamp(b - top, 0, in_h);
      const int pad_top = std::max(0, std::min(b, top) - a);
      const int pad_bottom = std::max(0, b - std::max(a, top + in_h));
      return {begin, end, pad_top, pad_bottom};
    }
    case RowWindow::Kind::row_for_row:
      break;
  }
  return {a, b, 0, 0};
}

bool is_band_graph(const model::Model& m, int first, int last) {
  if (m.node(first).inputs.size() != 1) return false;
  const int outside = m.node(first).inputs[0];
  for (int n = first; n <= last; ++n) {
    for (int v : m.node(n).inputs)
      if (v != outside && (v < first || v >= n)) return false;
    if (n < last && std::count(m.outputs().begin(), m.outputs().end(), n) > 0) return false;
  }
  // Every node but the last is read only inside the range: readers come after what they read
  // (the nodes are in topological order), so it is enough that no node after the range reads
  // one. The planner asks this of every range of the model.
  for (int j = last + 1; j < static_cast<int>(m.nodes().size()); ++j)
    for (int v : m.node(j).inputs)
      if (v >= first && v < last) return false;
  return true;
}

bool pools_bands(const model::Model& m, int first, int last) {
  if (last <= first) return false;
  const Layer& l = *m.node(last).layer;
  if (!dynamic_cast<const GlobalPool2D*>(&l) && !dynamic_cast<const GlobalPool3D*>(&l)) return false;
  return m.node(last).inputs == std::vector<int>{last - 1} && is_band_graph(m, first, last);
}

int band_last(const model::Model& m, int first, int last) { return pools_bands(m, first, last) ? last - 1 : last; }

namespace {

// band_rows into `rows`, so that a caller asking for many bands reuses one vector. A node no
// reader needs is marked by out_begin == kNotNeeded until it is reached.
constexpr int kNotNeeded = std::numeric_limits<int>::max();
void fill_band_rows(const model::Model& m, int first, int last, int out_begin, int out_end,
                    std::vector<BandNodeRows>& rows, Axis axis) {
  rows.assign(last - first + 1, BandNodeRows{kNotNeeded, std::numeric_limits<int>::min(), {0, 0, 0, 0}});
  rows.back().out_begin = out_begin;
  rows.back().out_end = out_end;
  // Readers come after what they read: walking back, a node's rows are complete when reached.
  for (int n = last; n >= first; --n) {
    BandNodeRows& r = rows[n - first];
    if (r.out_begin == kNotNeeded) {  // no reader needs a row of it: it computes nothing
      r.out_begin = r.out_end = 0;
      continue;
    }
    r.need = rows_needed(*m.node(n).layer, r.out_begin, r.out_end, axis);
    if (r.need.begin >= r.need.end) continue;
    for (int v : m.node(n).inputs) {
      if (v < first || v > last) continue;
      BandNodeRows& in = rows[v - first];
      in.out_begin = std::min(in.out_begin, r.need.begin);
      in.out_end = std::max(in.out_end, r.need.end);
    }
  }
}

}  // namespace

bool hands_tiles_on(const model::Model& m, int first, int last, StageMode mode, int members) {
  if (mode != StageMode::split_spatial || members < 2 || pools_bands(m, first, last)) return false;
  // Nothing made before the stage's last layer is read after it, or is an output.
  for (int n = last + 1; n < static_cast<int>(m.nodes().size()); ++n)
    for (int v : m.node(n).inputs)
      if (v < last) return false;
  for (int v : m.outputs())
    if (v < last) return false;
  return true;
}

bool hands_tiles_on(const model::Model& m, const ResolvedStage& st) {
  return hands_tiles_on(m, st.first, st.last, st.mode, static_cast<int>(st.ranks.size()));
}

void band_rows_into(const model::Model& m, int first, int last, int out_begin, int out_end, Axis axis,
                    std::vector<BandNodeRows>& rows) {
  fill_band_rows(m, first, last, out_begin, out_end, rows, axis);
}

std::vector<BandNodeRows> band_rows(const model::Model& m, int first, int last, int out_begin, int out_end, Axis axis) {
  std::vector<BandNodeRows> rows;
  fill_band_rows(m, first, last, out_begin, out_end, rows, axis);
  return rows;
}

std::pair<int, int> band_reads(const model::Model& m, int first, int last, const std::vector<BandNodeRows>& rows) {
  return band_reads(m, first, last, rows.data());
}

std::pair<int, int> band_reads(const model::Model& m, int first, int last, const BandNodeRows* rows) {
  const int outside = m.node(first).inputs.at(0);
  std::pair<int, int> reads{0, 0};
  bool any = false;
  for (int n = first; n <= last; ++n) {
    const RowNeed& need = rows[n - first].need;
    const auto& inputs = m.node(n).inputs;
    if (need.begin >= need.end || std::count(inputs.begin(), inputs.end(), outside) == 0) continue;
    reads = any ? std::pair<int, int>{std::min(reads.first, need.begin), std::max(reads.second, need.end)}
                : std::pair<int, int>{need.begin, need.end};
    any = true;
  }
  return reads;
}

namespace {

// band_interior's search, given what one output row reads.
std::pair<int, int> interior_of_reads(FunctionRef<std::pair<int, int>(int)> reads, int in_extent, int out_begin,
                                      int out_end, int own_begin, int own_end) {
  // A member that holds all of the input along this axis (a band's columns) reads only its own.
  if (own_begin <= 0 && own_end >= in_extent) return {out_begin, out_end};
  // The rows one output row reads only move down as the row does, at both ends: binary searches.
  int lo = out_begin, hi = out_end;  // the first row whose reads start at own_begin or after
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (reads(mid).first >= own_begin)
      hi = mid;
    else
      lo = mid + 1;
  }
  const int begin = lo;
  lo = begin, hi = out_end;  // one past the last row whose reads end by own_end
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (reads(mid).second <= own_end)
      lo = mid + 1;
    else
      hi = mid;
  }
  return {begin, std::max(begin, lo)};
}

int input_extent(const model::Model& m, int first, Axis axis) {
  const Shape in = m.shape_of(m.node(first).inputs.at(0));
  return axis == Axis::rows ? in.h : in.w;
}

}  // namespace

std::pair<int, int> band_interior(const model::Model& m, int first, int last, int out_begin, int out_end, int own_begin,
                                  int own_end, Axis axis) {
  std::vector<BandNodeRows> rows;
  const auto reads = [&](int row) {
    fill_band_rows(m, first, last, row, row + 1, rows, axis);
    return band_reads(m, first, last, rows);
  };
  return interior_of_reads(reads, input_extent(m, first, axis), out_begin, out_end, own_begin, own_end);
}

std::pair<int, int> band_interior(const std::vector<std::pair<int, int>>& row_reads, int in_extent, int out_begin,
                                  int out_end, int own_begin, int own_end) {
  return interior_of_reads([&](int row) { return row_reads.at(row); }, in_extent, out_begin, out_end, own_begin,
                           own_end);
}

std::vector<std::pair<int, int>> band_row_reads(const model::Model& m, int first, int last, Axis axis) {
  const Shape out = m.node(last).layer->output_shape();
  std::vector<std::pair<int, int>> reads(axis == Axis::rows ? out.h : out.w);
  std::vector<BandNodeRows> rows;
  for (int r = 0; r < static_cast<int>(reads.size()); ++r) {
    fill_band_rows(m, first, last, r, r + 1, rows, axis);
    reads[r] = band_reads(m, first, last, rows);
  }
  return reads;
}

Tile tile_interior(const model::Model& m, int first, int last, const Tile& out, const Tile& own) {
  Tile t{band_interior(m, first, last, out.rows.first, out.rows.second, own.rows.first, own.rows.second, Axis::rows),
         band_interior(m, first, last, out.columns.first, out.columns.second, own.columns.first, own.columns.second,
                       Axis::columns)};
  if (t.size() == 0) t = {{out.rows.first, out.rows.first}, {out.columns.first, out.columns.first}};
  return t;
}

std::vector<Tile> tile_edges(const Tile& out, const Tile& in) {
  std::vector<Tile> edges;
  const auto add = [&](Tile t) {
    if (t.size() > 0) edges.push_back(t);
  };
  if (in.size() == 0) {
    add(out);
    return edges;
  }
  add({{out.rows.first, in.rows.first}, out.columns});
  add({{in.rows.second, out.rows.second}, out.columns});
  add({in.rows, {out.columns.first, in.columns.first}});
  add({in.rows, {in.columns.second, out.columns.second}});
  return edges;
}

bool band_overlaps_halo(const model::Model& m, int first, int last) {
  if (m.shape_of(m.node(first).inputs.at(0)).is_clip()) return false;
  for (int n = first; n <= last; ++n)
    if (dynamic_cast<const Conv3D*>(m.node(n).layer.get())) return false;
  return true;
}

std::vector<std::pair<int, int>> band_input_rows(const model::Model& m, int first, int last, int out_begin, int out_end,
                                                 Axis axis) {
  std::vector<std::pair<int, int>> reads;
  for (const BandNodeRows& r : band_rows(m, first, last, out_begin, out_end, axis))
    reads.emplace_back(r.need.begin, r.need.end);
  return reads;
}

bool bands_are_feasible(const model::Model& m, int first, int last, const std::vector<int>& bounds, Axis axis) {
  std::vector<BandNodeRows> rows;
  for (std::size_t r = 0; r + 1 < bounds.size(); ++r) {
    if (bounds[r] >= bounds[r + 1]) return false;
    fill_band_rows(m, first, last, bounds[r], bounds[r + 1], rows, axis);
    for (const BandNodeRows& node : rows)
      if (node.need.begin >= node.need.end) return false;
  }
  return true;
}

std::string span_text(const std::string& unit, int begin, int end) {
  if (end - begin == 1) return cat(unit.substr(0, unit.size() - 1), " ", begin);
  return cat(unit, " ", begin, "-", end - 1);
}

int nearest_square_columns(int parts, bool wide) {
  int nearest = 1;
  for (int c = 2; c * c <= parts; ++c)
    if (parts % c == 0) nearest = c;
  return wide ? parts / nearest : nearest;
}

std::pair<std::vector<double>, std::vector<double>> grid_shares(const std::vector<double>& fractions, int columns) {
  const int members = static_cast<int>(fractions.size());
  std::vector<double> rows(members / columns, 0.0), cols(columns, 0.0);
  for (int p = 0; p < members; ++p) {
    rows[p / columns] += fractions[p];
    cols[p % columns] += fractions[p];
  }
  return {rows, cols};
}

BandGroup grid_tiles(const model::Model& m, int n, const std::vector<double>& fractions, int columns) {
  const auto [row_shares, column_shares] = grid_shares(fractions, columns);
  BandGroup g;
  g.first = g.last = n;
  g.columns = columns;
  const Shape out = m.node(n).layer->output_shape();
  g.bounds = split_bounds(out.h, row_shares);
  g.column_bounds = split_bounds(out.w, column_shares);
  for (std::size_t p = 0; p < fractions.size(); ++p) {
    const std::size_t i = p / columns, j = p % columns;
    g.tiles.push_back({{g.bounds[i], g.bounds[i + 1]}, {g.column_bounds[j], g.column_bounds[j + 1]}});
  }
  return g;
}

std::vector<BandGroup> band_groups(const model::Model& m, int first, const std::vector<int>& ends,
                                   const std::vector<double>& fractions, int columns, bool* feasible,
                                   const BandRowsSource* source) {
  std::vector<BandGroup> groups;
  std::vector<BandNodeRows> filled;
  const auto rows_of = [&](int first, int last, Span out, Axis axis) -> const BandNodeRows* {
    if (source) return (*source)(first, last, out, axis);
    fill_band_rows(m, first, last, out.first, out.second, filled, axis);
    return filled.data();
  };
  if (feasible) *feasible = true;
  const auto check = [&](const BandNodeRows* rows, int nodes, Span band) {
    if (!feasible) return;
    if (band.first >= band.second) *feasible = false;
    for (int k = 0; k < nodes; ++k)
      if (rows[k].need.begin >= rows[k].need.end) *feasible = false;
  };
  for (int last : ends) {
    BandGroup g = grid_tiles(m, last, fractions, columns);
    g.first = first;
    // Rows and columns are needed apart: a tile's reads are its rows' reads by its columns'.
    std::vector<Span> row_reads, column_reads;
    const int nodes = last - first + 1;
    for (std::size_t i = 0; i + 1 < g.bounds.size(); ++i) {
      const Span band{g.bounds[i], g.bounds[i + 1]};
      const BandNodeRows* rows = rows_of(first, last, band, Axis::rows);
      check(rows, nodes, band);
      row_reads.push_back(band_reads(m, first, last, rows));
    }
    for (std::size_t j = 0; j + 1 < g.column_bounds.size(); ++j) {
      const Span band{g.column_bounds[j], g.column_bounds[j + 1]};
      const BandNodeRows* rows = rows_of(first, last, band, Axis::columns);
      if (columns > 1) check(rows, nodes, band);  // as grid_feasible
      column_reads.push_back(band_reads(m, first, last, rows));
    }
    for (std::size_t p = 0; p < fractions.size(); ++p)
      g.input_tiles.push_back({row_reads[p / columns], column_reads[p % columns]});
    groups.push_back(std::move(g));
    first = last + 1;
  }
  return groups;
}

std::vector<HaloTransfer> halo_transfers(const BandGroup& before, const BandGroup& after) {
  std::vector<HaloTransfer> transfers;
  const int members = static_cast<int>(after.input_tiles.size());
  for (int to = 0; to < members; ++to)
    for (int from = 0; from < members; ++from) {
      if (from == to) continue;
      const Tile &need = after.input_tiles[to], &made = before.tiles[from];
      const int begin = std::max(need.rows.first, made.rows.first), end = std::min(need.rows.second, made.rows.second);
      const int col_begin = std::max(need.columns.first, made.columns.first);
      const int col_end = std::min(need.columns.second, made.columns.second);
      if (begin < end && col_begin < col_end) transfers.push_back({from, to, begin, end, col_begin, col_end});
    }
  return transfers;
}

}  // namespace chorus::plan
