#include "plan/planner.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <deque>
#include <limits>
#include <map>
#include <tuple>
#include <unordered_map>

#include "core/error.h"
#include "plan/band_geometry.h"
#include "plan/parity.h"
#include "plan/split_sums.h"
#include "plan/stage_exchanges.h"
#include "plan/validate.h"

namespace chorus::plan {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The most members a stage [first, last] may have in `mode` (0: the mode does not apply), and
// for channel and tensor splits each layer's role, worked out once for every member count. A
// split-spatial stage also needs its bands feasible for the count (BandsAllow).
int most_parts(const model::Model& m, int first, int last, StageMode mode, std::vector<SplitRole>& roles) {
  roles.clear();
  if (mode == StageMode::single) return 1;
  if (mode == StageMode::replicate) return std::numeric_limits<int>::max();
  if (mode == StageMode::split_spatial) {
    const int bands_end = band_last(m, first, last);  // a global pooling may end the stage
    for (int n = first; n <= bands_end; ++n)
      if (!can_split_spatial(*m.node(n).layer)) return 0;
    if (!is_band_graph(m, first, last)) return 0;
    const Shape out = m.node(bands_end).layer->output_shape();
    return out.h * out.w;  // a tile a pixel at most (BandsAllow says which counts and grids work)
  }
  bool any = false;
  int most = std::numeric_limits<int>::max();
  roles = split_roles(m, first, last, mode);
  for (int n = first; n <= last; ++n) {
    const auto& l = *m.node(n).layer;
    const SplitRole role = roles[n - first];
    if (role != SplitRole::whole) {
      most = std::min(most, split_extent(l, role));
      any = true;
    } else if (!computable_in_full(l)) {
      return 0;
    }
  }
  return any ? most : 0;
}

// Whether a split-spatial stage [first, last] can cut its rows (or columns) into `parts` equal
// parts, each reading some of every layer's input; asked once per range, axis and count (a grid
// of r x c asks for r rows and c columns: what bands of r and c members asked before).
class BandsAllow {
 public:
  BandsAllow(const model::Model& m, int first, int last) : m_(m), first_(first), last_(band_last(m, first, last)) {}
  bool operator()(int parts, int columns) {
    return allows(parts / columns, Axis::rows) && allows(columns, Axis::columns);
  }

 private:
  bool allows(int parts, Axis axis) {
    if (parts == 1) return true;
    std::vector<signed char>& known = axis == Axis::rows ? rows_ : columns_;
    if (known.size() <= static_cast<std::size_t>(parts)) known.resize(parts + 1, -1);
    if (known[parts] < 0) {
      const Shape out = m_.node(last_).layer->output_shape();
      known[parts] = bands_are_feasible(
          m_, first_, last_, split_bounds(axis == Axis::rows ? out.h : out.w, std::vector<double>(parts, 1.0 / parts)),
          axis);
    }
    return known[parts] > 0;
  }
  const model::Model& m_;
  int first_, last_;
  std::vector<signed char> rows_, columns_;  // by part count: -1 not asked yet
};

// Whether a split stage's own fractions (by speed: unequal on unlike devices) give every
// member some of every split layer, as validate_plan requires: a channel (or head) of each, or
// in a split-spatial stage some rows and columns of each group's output that read some of
// every layer's input. Equal fractions are checked once per count (most_parts, BandsAllow).
// Whether the output of node n splits into the grid's rows and columns (by `share`), each
// reading some of the input of the group [first, n].
bool grid_feasible(const model::Model& m, int first, int n, const std::vector<double>& share, int columns) {
  const auto shares = grid_shares(share, columns);  // of the grid's rows, then of its columns
  const Shape out = m.node(n).layer->output_shape();
  return bands_are_feasible(m, first, n, split_bounds(out.h, shares.first)) &&
         (columns == 1 || bands_are_feasible(m, first, n, split_bounds(out.w, shares.second), Axis::columns));
}

bool fractions_fit(const model::Model& m, int first, int last, StageMode mode, const std::vector<double>& share,
                   int columns, const std::vector<int>& group_ends, const std::vector<SplitRole>& roles) {
  if (mode == StageMode::split_spatial) {
    int group_first = first;
    for (int group_last : group_ends.empty() ? std::vector<int>{band_last(m, first, last)} : group_ends) {
      if (!grid_feasible(m, group_first, group_last, share, columns)) return false;
      group_first = group_last + 1;
    }
    return true;
  }
  for (int n = first; n <= last; ++n) {
    const SplitRole role = roles[n - first];
    if (role == SplitRole::whole) continue;
    const std::vector<int> bounds = split_bounds(split_extent(*m.node(n).layer, role), share);
    for (std::size_t p = 0; p + 1 < bounds.size(); ++p)
      if (bounds[p] == bounds[p + 1]) return false;
  }
  return true;
}

// The grids a split-spatial stage of `parts` members may take, by their columns: row bands (1),
// and the grid nearest a square (nearest_square_columns); a grid and its transpose cost alike
// on a square image. Bands have two neighbours where a tile has up to eight, so they stay a
// choice. On an image wider than tall each choice is turned: strips of columns (`parts`), and
// the grid with more columns than rows.
std::vector<int> grid_columns(int parts, bool wide) {
  const int bands = wide ? parts : 1, grid = nearest_square_columns(parts, wide);
  return grid != bands ? std::vector<int>{bands, grid} : std::vector<int>{bands};
}

// Every rank's profile time for every layer, looked up once (a profile looks layers up by
// name), with prefix sums so that a range's time costs one subtraction: the planner asks for
// millions of ranges on large clusters. Also, once, what the cost model reads of every node:
// its weights, and the bytes alive at the cut before it.
class LayerTimes {
 public:
  LayerTimes(const model::Model& m, const cluster::Cluster& c, const std::string& key) {
    const int n = static_cast<int>(m.nodes().size());
    for (int k = 0; k < n; ++k) weight_bytes_.push_back(static_cast<double>(m.node(k).weight_bytes()));
    std::map<const layers::Layer*, int> first_call;
    first_call_of_.assign(n, -1);
    for (int k = 0; k < n; ++k) {
      const auto [it, added] = first_call.emplace(m.node(k).layer.get(), k);
      if (!added && m.node(k).folded.empty()) later_calls_.emplace_back(k, it->second), first_call_of_[k] = it->second;
    }
    weight_prefix_.assign(n + 1, 0.0);
    for (int k = 0; k < n; ++k) weight_prefix_[k + 1] = weight_prefix_[k] + weight_bytes_[k];
    for (int k = 0; k < n; ++k) output_bytes_.push_back(static_cast<double>(m.cost(k).output_bytes));
    // A sparse table of the largest output in ranges of 2^level layers.
    largest_.push_back(output_bytes_);
    for (int span = 2; span <= n; span *= 2) {
      const auto& below = largest_.back();
      std::vector<double> level(n - span + 1);
      for (int k = 0; k + span <= n; ++k) level[k] = std::max(below[k], below[k + span / 2]);
      largest_.push_back(std::move(level));
    }
    for (int r = 0; r < c.ranks(); ++r) memory_bytes_.push_back(c.device_of(r).memory_bytes);
    for (int first = 0; first < n; ++first) {
      std::vector<int> live;
      for (int k = first; k < n; ++k)
        for (int v : m.node(k).inputs)
          if (v < first && std::find(live.begin(), live.end(), v) == live.end()) live.push_back(v);
      double bytes = 0;
      for (int v : live) bytes += static_cast<double>(m.shape_of(v).size()) * sizeof(float);
      input_bytes_.push_back(bytes);
    }
    std::map<const cluster::DeviceClass*, int> row_of;
    for (int r = 0; r < c.ranks(); ++r) {
      const cluster::DeviceClass* cls = &c.device_of(r);
      auto it = row_of.find(cls);
      if (it == row_of.end()) {
        std::vector<double> prefix(n + 1, 0.0);
        for (int k = 0; k < n; ++k) prefix[k + 1] = prefix[k] + cls->profile.layer_time(m, key, k);
        prefix_.push_back(std::move(prefix));
        it = row_of.emplace(cls, static_cast<int>(prefix_.size()) - 1).first;
      }
      row_.push_back(it->second);
    }
  }
  double layer(int rank, int node) const { return range(rank, node, node); }
  double range(int rank, int first, int last) const {
    const auto& p = prefix_[row_.at(rank)];
    return p[last + 1] - p[first];
  }
  double weight_bytes(int node) const { return weight_bytes_[node]; }
  // A range's weights, a shared layer's once where it holds several of its calls (a rank loads
  // them once: partition::StageWorker).
  double weight_bytes(int first, int last) const {
    double bytes = weight_prefix_[last + 1] - weight_prefix_[first];
    for (const auto& [call, first_call] : later_calls_)
      if (call >= first && call <= last && first_call >= first) bytes -= weight_bytes_[call];
    return bytes;
  }
  // Whether node n is a later call of a shared layer whose first call is in [first, n).
  bool repeats_call(int n, int first) const { return first_call_of_[n] >= first; }
  double output_bytes(int node) const { return output_bytes_[node]; }
  // The largest output of the layers [first, last].
  double largest_output(int first, int last) const {
    int level = 0;
    while ((2 << level) <= last - first + 1) ++level;
    return std::max(largest_[level][first], largest_[level][last + 1 - (1 << level)]);
  }
  bool same_device(int rank_a, int rank_b) const { return row_[rank_a] == row_[rank_b]; }
  double memory_bytes(int rank) const { return memory_bytes_[rank]; }
  // Bytes entering a stage that starts at `first`: the values alive at its input cut.
  double input_bytes(int first) const { return input_bytes_[first]; }

 private:
  std::vector<double> weight_bytes_, weight_prefix_, input_bytes_, output_bytes_, memory_bytes_;
  std::vector<std::pair<int, int>> later_calls_;  // (node, the node of its layer's first call)
  std::vector<int> first_call_of_;                // by node: that first call, or -1
  std::vector<std::vector<double>> largest_;
  std::vector<std::vector<double>> prefix_;  // per distinct device class
  std::vector<int> row_;                     // per rank: its class' row
};

// The devices of a stage: ranks [first, first + count) as the planner places them, or a plan's
// own list (any order).
struct Devices {
  int first = 0, count = 1;
  const std::vector<int>* ranks = nullptr;
  int operator[](int g) const { return ranks ? (*ranks)[g] : first + g; }
  bool holds(int rank) const {
    for (int g = 0; g < count; ++g)
      if ((*this)[g] == rank) return true;
    return false;
  }
};

// Each member's time for the whole range, and its share of split work (proportional to speed).
struct GroupSpeed {
  std::vector<double> full, share;
  double inverse_sum = 0;  // frames per second of the group together
};

GroupSpeed group_speed(const LayerTimes& times, int first, int last, const Devices& devices) {
  GroupSpeed g;
  g.full.assign(devices.count, 0.0);
  for (int k = 0; k < devices.count; ++k) g.full[k] = times.range(devices[k], first, last);
  for (double t : g.full) g.inverse_sum += 1.0 / std::max(t, 1e-12);
  for (double t : g.full) g.share.push_back(1.0 / std::max(t, 1e-12) / g.inverse_sum);
  return g;
}

// Per node of a band group, the share of its output that a span of the last node's output rows
// (or columns) computes: the span plus the halo the group recomputes; in a residual block, what
// every reader of the node needs. Each span is worked out once: a grid's members share their
// grid row's rows and their grid column's columns.
class SpanShares {
 public:
  // `source`, where given, supplies the bands' rows (BandGroupChooser keeps them).
  SpanShares(const model::Model& m, const BandGroup& group, Axis axis, const BandRowsSource* source = nullptr)
      : m_(m), group_(group), axis_(axis), source_(source) {}
  const std::vector<double>& of(Span span) {
    // A few spans a group (a grid's rows or columns, their interiors and edges): a list will do.
    for (const auto& [known, shares] : cache_)
      if (known == span) return shares;
    cache_.emplace_back(span, std::vector<double>{});
    std::vector<double>& shares = cache_.back().second;
    const int count = group_.last - group_.first + 1;
    const Shape out = m_.node(group_.last).layer->output_shape();
    if (axis_ == Axis::columns && span == Span{0, out.w}) {
      shares.assign(count, 1.0);  // whole rows: a band's columns are all of them
      return shares;
    }
    if (!source_) band_rows_into(m_, group_.first, group_.last, span.first, span.second, axis_, rows_);
    const BandNodeRows* rows = source_ ? (*source_)(group_.first, group_.last, span, axis_) : rows_.data();
    shares.reserve(count);
    for (int n = group_.first; n <= group_.last; ++n) {
      const BandNodeRows& r = rows[n - group_.first];
      const Shape s = m_.node(n).layer->output_shape();
      shares.push_back(std::clamp((r.out_end - r.out_begin) / double(axis_ == Axis::rows ? s.h : s.w), 0.0, 1.0));
    }
    return shares;
  }

 private:
  const model::Model& m_;
  const BandGroup& group_;
  Axis axis_;
  const BandRowsSource* source_;
  std::deque<std::pair<Span, std::vector<double>>> cache_;  // grows without moving what it holds
  std::vector<BandNodeRows> rows_;
};

// A member's time for output tile `tile` of a band group: each layer's time scaled by the share
// of its output the tile computes (SpanShares, of its rows by its columns).
double band_time(const LayerTimes& times, const BandGroup& group, SpanShares& rows, SpanShares& columns,
                 const Tile& tile, int rank) {
  if (tile.size() == 0) return 0.0;
  const std::vector<double>& by_rows = rows.of(tile.rows);
  const std::vector<double>& by_columns = columns.of(tile.columns);
  double t = 0;
  for (int n = group.first; n <= group.last; ++n)
    t += times.layer(rank, n) * by_rows[n - group.first] * by_columns[n - group.first];
  return t;
}

// A band group's members' times, in two parts: what each computes from its own rows of the
// group before's output (`before`; null for the stage's first group, whose input comes whole)
// while the halo travels, and the edges that wait for the halo. A member with no interior, or
// a group that cannot overlap (plan::band_overlaps_halo), has all its time in the edges.
struct BandTimes {
  std::vector<double> interior, edges;
};

// The input rows each output row of a band group reads (plan::band_row_reads), by group and axis,
// each worked out once: the planner costs a group's bands for every count of members.
class RowReadsCache {
 public:
  const std::vector<Span>& of(const model::Model& m, int first, int last, Axis axis) {
    const std::uint64_t key = (static_cast<std::uint64_t>(first) << 33) | (static_cast<std::uint64_t>(last) << 1) |
                              (axis == Axis::columns ? 1u : 0u);
    auto it = cache_.find(key);
    if (it == cache_.end()) it = cache_.emplace(key, band_row_reads(m, first, last, axis)).first;
    return it->second;
  }

 private:
  std::unordered_map<std::uint64_t, std::vector<Span>> cache_;
};

// `row_reads`, where given, finds the members' interiors from the rows each output row reads;
// `source` supplies the bands' rows.
BandTimes band_group_times(const model::Model& m, const LayerTimes& times, const BandGroup& group,
                           const Devices& devices, const BandGroup* before, RowReadsCache* row_reads = nullptr,
                           const BandRowsSource* source = nullptr) {
  const int count = static_cast<int>(group.tiles.size());
  BandTimes t{std::vector<double>(count, 0.0), std::vector<double>(count, 0.0)};
  const bool overlaps = before && band_overlaps_halo(m, group.first, group.last);
  SpanShares rows(m, group, Axis::rows, source), columns(m, group, Axis::columns, source);
  // tile_interior, an axis at a time: a grid's members share their grid row's and column's.
  std::map<std::tuple<Axis, Span, Span>, Span> interiors;
  const auto interior_of = [&](Axis axis, Span out, Span own) {
    auto [it, added] = interiors.try_emplace({axis, out, own});
    if (added && row_reads) {
      const Shape in = m.shape_of(m.node(group.first).inputs.at(0));
      it->second = band_interior(row_reads->of(m, group.first, group.last, axis), axis == Axis::rows ? in.h : in.w,
                                 out.first, out.second, own.first, own.second);
    } else if (added) {
      it->second = band_interior(m, group.first, group.last, out.first, out.second, own.first, own.second, axis);
    }
    return it->second;
  };
  for (int g = 0; g < count; ++g) {
    const Tile& tile = group.tiles[g];
    Tile interior{tile.rows, {0, 0}};  // none: the whole tile waits for the halo
    if (overlaps) {
      const Tile& own = before->tiles[g];
      interior = {interior_of(Axis::rows, tile.rows, own.rows), interior_of(Axis::columns, tile.columns, own.columns)};
    }
    if (interior.size() == 0) {
      t.edges[g] = band_time(times, group, rows, columns, tile, devices[g]);
      continue;
    }
    t.interior[g] = band_time(times, group, rows, columns, interior, devices[g]);
    for (const Tile& edge : tile_edges(tile, interior))
      t.edges[g] += band_time(times, group, rows, columns, edge, devices[g]);
  }
  return t;
}

// Bytes of one pixel of a value (of every image of a clip).
double pixel_bytes(const Shape& s) { return static_cast<double>(s.c) * s.d * sizeof(float); }

// Seconds the members spend swapping halo rows between two band groups (they wait for each
// other), and the bytes on the medium.
std::pair<double, double> halo_swap(const model::Model& m, const cluster::NetworkModel& net, const BandGroup& before,
                                    const BandGroup& after) {
  const double pixel = pixel_bytes(m.node(before.last).layer->output_shape());
  std::vector<double> sent(before.tiles.size(), 0.0);
  double total = 0;
  for (const HaloTransfer& h : halo_transfers(before, after)) {
    sent[h.from] += h.size() * pixel;
    total += h.size() * pixel;
  }
  if (total == 0) return {0.0, 0.0};
  const double busiest = *std::max_element(sent.begin(), sent.end());
  return {net.transfer_seconds(net.shared ? total : busiest) + net.latency_s, total};
}

// What a stage's input costs per frame when `holder` already has it: seconds on the medium and
// seconds until every member has its part.
struct StageInput {
  double medium_s = 0, input_s = 0;
  // Seconds per frame the sender's own link is busy with it: on a switched network a holder
  // sends every member's part through its one link (tiles handed on come from several).
  double link_s = 0;
  // Per member: seconds until it holds its part (0 for the holder's own); the holder sends them
  // in member order, as the runtime does, one after another on a shared medium.
  std::vector<double> arrival;
};

// Of what a member takes of value `v`, the floats per frame its own device holds already: its
// tile `held` of v, made in the stage before, which handed its tiles on (hands_tiles_on). The
// member takes all of v (`take` null, no slices), a tile of it (`take`), or a slice (`slice`:
// a run of floats, or of channels).
double held_floats(const Shape& v, const Tile& held, const Tile* take, const std::pair<int, int>* slice,
                   bool channels) {
  if (held.size() == 0) return 0;
  const double images = v.d, c = v.c;
  if (slice && channels) return images * held.size() * std::max(0, slice->second - slice->first);
  if (slice) {
    // The tile's runs (a row of it, all channels) against the slice's floats, image by image.
    double floats = 0;
    for (int z = 0; z < v.d; ++z)
      for (int y = held.rows.first; y < held.rows.second; ++y) {
        const double begin = ((double(z) * v.h + y) * v.w + held.columns.first) * c;
        const double end = begin + (held.columns.second - held.columns.first) * c;
        floats += std::max(0.0, std::min(end, double(slice->second)) - std::max(begin, double(slice->first)));
      }
    return floats;
  }
  if (!take) return images * held.size() * c;
  const Tile both{
      {std::max(held.rows.first, take->rows.first), std::min(held.rows.second, take->rows.second)},
      {std::max(held.columns.first, take->columns.first), std::min(held.columns.second, take->columns.second)}};
  return images * both.size() * c;
}

// `first_band`: a split-spatial stage's first band group (its members' input rows); `slices`: a
// split-input stage's slices of its input (input_slices), or null. `held`: where the stage
// before handed its tiles on, the tile of the input each member's device made there (none: an
// empty tile), which it takes without the network.
StageInput stage_input(const model::Model& m, const cluster::NetworkModel& net, const LayerTimes& times, int first,
                       int last, const BandGroup* first_band, const InputSlices* slices, const Devices& devices,
                       StageMode mode, int holder, const std::vector<Tile>* held = nullptr) {
  StageInput result;
  const int count = devices.count;
  // Bytes entering the stage per frame: the live values at its input cut, to each receiver.
  const double in_bytes = times.input_bytes(first);
  const bool source_inside = devices.holds(holder);
  if (mode == StageMode::replicate) {
    const double receivers = source_inside ? (count - 1.0) / count : 1.0;
    result.medium_s = result.link_s = receivers * net.transfer_seconds(in_bytes);
    if (receivers > 0) result.input_s = net.transfer_seconds(in_bytes) + net.latency_s;
    return result;
  }
  // Each member takes the whole input, except in a split-spatial stage: there a member takes
  // only its band's rows (with the halo) of the value the band starts from, and the values the
  // stage hands on go whole to its first member, as the runtime sends them.
  double total = 0, longest = 0;
  result.arrival.assign(count, 0.0);
  // What member g takes of the value handed on (the stage before's output) that its own device
  // made (see held_floats).
  const auto own = [&](int g, const Tile* take, const std::pair<int, int>* slice, bool channels) {
    if (!held) return 0.0;
    return held_floats(m.node(first - 1).layer->output_shape(), (*held)[g], take, slice, channels) * sizeof(float);
  };
  const auto add = [&](int g, double bytes) {
    if (source_inside && devices[g] == holder) return;
    if (bytes <= 0) return;
    total += net.transfer_seconds(bytes);
    longest = std::max(longest, net.transfer_seconds(bytes));
    result.arrival[g] = (net.shared ? total : net.transfer_seconds(bytes)) + net.latency_s;
  };
  if (mode == StageMode::split_spatial && count > 1) {
    const int band_input = m.node(first).inputs.at(0);
    const Shape band_shape = m.shape_of(band_input);
    const double band_whole = static_cast<double>(band_shape.size()) * sizeof(float);
    // Also read after the stage, or a model output: member 0 takes it whole and passes it on.
    bool passes_through = std::count(m.outputs().begin(), m.outputs().end(), band_input) > 0;
    for (int n = last + 1; n < static_cast<int>(m.nodes().size()) && !passes_through; ++n)
      passes_through = std::count(m.node(n).inputs.begin(), m.node(n).inputs.end(), band_input) > 0;
    for (int g = 0; g < count; ++g) {
      // Its tile of each image of a clip; a band takes whole rows (as stage_input_rows sends them).
      const Tile& reads = first_band->input_tiles[g];
      const double band =
          (first_band->columns > 1 ? reads.size() : std::max(0, reads.rows.second - reads.rows.first) * band_shape.w) *
          pixel_bytes(band_shape);
      const Tile take{{reads.rows.first, reads.rows.second},
                      first_band->columns > 1 ? reads.columns : Span{0, band_shape.w}};
      add(g, g == 0 && passes_through ? in_bytes - own(g, nullptr, nullptr, false)
                                      : (g == 0 ? in_bytes - band_whole : 0.0) + band - own(g, &take, nullptr, false));
    }
  } else if (slices && slices->any() && count > 1) {
    // A split-input stage that reads slices of its input (of a vector, or a convolution's
    // channels): each member takes only its slice of it.
    const double whole = static_cast<double>(m.shape_of(slices->value).size()) * sizeof(float);
    for (int g = 0; g < count; ++g)
      add(g, in_bytes - whole + static_cast<double>(slices->floats(m, g)) * sizeof(float) -
                 own(g, nullptr, &slices->parts[g], slices->channels));
  } else {
    for (int g = 0; g < count; ++g) add(g, in_bytes - own(g, nullptr, nullptr, false));
  }
  // The medium is busy for the bytes; the latency delays arrival without occupying it.
  result.medium_s = total;
  result.link_s = held ? longest : total;
  if (total > 0) result.input_s = (net.shared ? total : longest) + net.latency_s;
  return result;
}

// A stage's input costs twice over: from the holder the plan gives, and from its first member.
struct InputVariants {
  StageInput given, first;
};

// The time a split stage's reductions of partial sums add to its members' compute, followed
// part by part as the runtime does it (split_sums.h, part_runs): a layer's parts go onto the
// links as it writes them, one part's reduction after another (`link_s[n]`: node n's whole
// reduction, -1 for layers without one), and a part is summed two latencies after its bytes
// are through. Behind a reduction that a parted run follows, the run computes part j once part
// j is summed (and its consumer takes its share of part j); any other reduction is waited for
// in full before the next layer. Layer times are the slowest member's.
double exposed_sum_seconds(const model::Model& m, const LayerTimes& times, int first, int last,
                           const std::vector<SplitRole>& roles, const Devices& devices,
                           const std::vector<double>& share, const std::vector<double>& link_s, double latency_s) {
  std::vector<double> layer_times(last - first + 1, 0.0);  // by node, on the slowest member
  for (int n = first; n <= last; ++n)
    for (int g = 0; g < devices.count; ++g)
      layer_times[n - first] = std::max(
          layer_times[n - first], times.layer(devices[g], n) * (roles[n - first] == SplitRole::whole ? 1.0 : share[g]));
  const auto layer_s = [&](int n) { return layer_times[n - first]; };
  const std::vector<PartRun> runs = part_runs(m, first, last, roles);
  std::vector<char> deferred(last - first + 1, 0);
  std::vector<double> consumed(last - first + 1, 0.0);  // the share of a run's consumer done in its run
  for (const PartRun& r : runs) {
    deferred[r.reduced - first] = 1;
    if (r.consumer >= 0) consumed[r.consumer - first] = m.node(r.consumer).layer->consumable_fraction();
  }
  std::vector<std::vector<double>> summed(last - first + 1);  // by node: when each part is summed
  double cpu = 0, link = 0, busy = 0;                         // busy: compute alone
  std::vector<char> scattered(last - first + 1, 0);           // by node: its sums reduce-scattered
  for (int n = first; n <= last; ++n) scattered[n - first] = scatters_sums(m, first, last, roles, n);
  const auto parts_of = [&](int n) {
    const double partwise = m.node(n).layer->partwise_fraction();
    return static_cast<int>(sum_parts(m.node(n).layer->output_shape(), 1, partwise > 0, scattered[n - first]).size()) -
           1;
  };
  // Part j of node n's sums, written now: onto the link after the parts before it, summed once
  // its contributions are in and, but in a reduce-scatter, once the sums are back.
  const auto send_part = [&](int n, int parts) {
    link = std::max(link, cpu) + link_s[n - first] / parts;
    summed[n - first].push_back(link + (scattered[n - first] ? 1 : 2) * latency_s);
  };
  std::size_t next_run = 0;
  for (int n = first; n <= last; ++n) {
    if (next_run < runs.size() && runs[next_run].first == n) {
      const PartRun& r = runs[next_run++];
      const std::vector<double>& ready = summed[r.reduced - first];
      const int parts = static_cast<int>(ready.size());
      for (int j = 0; j < parts; ++j) {
        cpu = std::max(cpu, ready[j]);
        for (int k = r.first; k <= r.last; ++k) {
          const double t = layer_s(k) / parts;
          cpu += t, busy += t;
          if (link_s[k - first] >= 0) send_part(k, parts);
        }
        if (r.consumer >= 0) {
          const double t = layer_s(r.consumer) * consumed[r.consumer - first] / parts;
          cpu += t, busy += t;
        }
      }
      if (link_s[r.last - first] >= 0 && !deferred[r.last - first]) cpu = std::max(cpu, summed[r.last - first].back());
      n = r.last;
      continue;
    }
    const double t = layer_s(n);
    const double done = consumed[n - first];  // in the run before it
    busy += t * (1 - done);
    if (link_s[n - first] < 0) {
      cpu += t * (1 - done);
      continue;
    }
    const int parts = parts_of(n);
    const double partwise = parts > 1 ? m.node(n).layer->partwise_fraction() : 0.0;
    cpu += t * (1 - done - partwise);
    for (int j = 0; j < parts; ++j) {
      cpu += t * partwise / parts;
      send_part(n, parts);
    }
    if (!deferred[n - first]) cpu = std::max(cpu, summed[n - first].back());
  }
  return std::max(0.0, cpu - busy);
}

StageCost stage_cost(const model::Model& m, const cluster::Cluster& c, const LayerTimes& times, int first, int last,
                     const Devices& devices, StageMode mode, int input_rank, const std::vector<int>& group_ends,
                     const std::vector<SplitRole>* known_roles = nullptr, InputVariants* first_holds = nullptr,
                     bool parity = false, int columns = 1, const std::vector<Tile>* held = nullptr) {
  StageCost cost;
  const int count = devices.count;
  const std::vector<int> ends = group_ends.empty() ? std::vector<int>{band_last(m, first, last)} : group_ends;
  const auto& net = c.network;
  // Members that hand their tiles straight to the next stage (hands_tiles_on) gather nothing:
  // the next stage's input counts their pieces (stage_input's `held`). The model's last stage
  // hands them to the sink, for which its gather to member 0 stands (the sink is rank 0 unless
  // the plan says otherwise).
  const bool hands_on =
      hands_tiles_on(m, first, last, mode, devices.count) && last + 1 < static_cast<int>(m.nodes().size());
  const GroupSpeed speed = group_speed(times, first, last, devices);
  const auto& full = speed.full;
  const auto& share = speed.share;
  const double inv_sum = speed.inverse_sum;

  // A member that already holds the stage's input (the source, for the first stage; the
  // previous stage's producer, when it is a member) takes it without the network.
  // A split-spatial stage's band groups, worked out once for its input and its compute.
  const std::vector<BandGroup> groups =
      mode == StageMode::split_spatial ? band_groups(m, first, ends, share, columns) : std::vector<BandGroup>{};
  const BandGroup* first_band = groups.empty() ? nullptr : &groups.front();
  const InputSlices slices = mode == StageMode::split_input ? input_slices(m, first, last, mode, share) : InputSlices{};
  const StageInput input =
      stage_input(m, net, times, first, last, first_band, &slices, devices, mode, input_rank, held);
  cost.medium_s = input.medium_s;
  cost.input_s = input.input_s;
  if (!net.shared) cost.link_s = input.link_s;
  if (parity && mode == StageMode::split_output) {
    // The parity rank (not among `devices`) takes the whole input too, from the same sender.
    const double copy_s = net.transfer_seconds(times.input_bytes(first));
    cost.medium_s += copy_s;
    if (!net.shared) cost.link_s += copy_s;
  }
  if (first_holds) {
    // The same stage taking its input from its own first member (a latency plan that reuses
    // devices), for the planner: only the input differs.
    first_holds->given = input;
    first_holds->first = stage_input(m, net, times, first, last, first_band, &slices, devices, mode, devices[0]);
  }

  const double activations = times.largest_output(first, last) * 2.0;
  const double weights = times.weight_bytes(first, last);

  if (mode == StageMode::single || mode == StageMode::replicate) {
    // A replicated stage delivers one frame per full time across its members.
    cost.compute_s = mode == StageMode::single ? full[0] : 1.0 / inv_sum;
    cost.member_s.assign(count, cost.compute_s);
    cost.latency_s = *std::max_element(full.begin(), full.end());
    cost.memory_bytes = weights + activations;
  } else {
    double worst = 0, exchange_bytes = 0, exchanges = 0, part_weights = 0, ring_bytes = 0, ring_s = 0;
    double link_bytes = 0;  // of the exchanges, what the busiest member's link carries (switched)
    double hidden_s = 0;    // of the exchanges' time, what the compute hides (gather_overlaps_next)
    std::vector<SplitRole> own_roles;
    if (!known_roles && mode != StageMode::split_spatial) own_roles = split_roles(m, first, last, mode);
    const std::vector<SplitRole>& roles = known_roles ? *known_roles : own_roles;
    double gather_s = -1;  // split-spatial: the stage's time includes its band gather (simulated)
    if (mode == StageMode::split_spatial) {
      // A member computes, of every layer of a group, the output rows its band needs: its share
      // plus the halo, which grows towards the start of the group with the receptive field.
      // Between groups each member sends its halo rows when it finishes and starts the next
      // group when its own rows have arrived; messages take the medium in turn (a shared
      // network) or their sender's link. Members finish at different times (a band at the
      // image's edge recomputes half the halo), so this follows each member through the stage.
      //
      // A member starts once its own part of the stage's input is in (`start`; the holder's
      // own at once), which the holder sends in member order: on a shared medium the first
      // member computes while the last one's part still travels, and the halos wait for the
      // medium behind the input (`medium_busy`). Followed from zero for the stage's compute (its
      // period), and from the input's arrivals for a frame's latency.
      std::vector<BandTimes> group_times;
      std::vector<std::vector<HaloTransfer>> halos(groups.size());  // [k]: the swap before group k
      for (std::size_t k = 0; k < groups.size(); ++k) {
        group_times.push_back(band_group_times(m, times, groups[k], devices, k > 0 ? &groups[k - 1] : nullptr));
        if (k > 0) halos[k] = halo_transfers(groups[k - 1], groups[k]);
      }
      const BandGroup& final_group = groups.back();
      const bool pooled = final_group.last < last;
      const Shape banded = m.node(final_group.last).layer->output_shape();
      std::vector<double> finish(count), link_free(count), ready(count);
      std::vector<int> order(count);
      cost.member_s.assign(count, 0.0);
      // The time the last member's part reaches member 0 (which hands the output on); counts
      // each member's compute and the halos' bytes when `account`.
      const auto simulate = [&](const std::vector<double>* start, double medium_busy, bool account) {
        for (int g = 0; g < count; ++g) finish[g] = start ? (*start)[g] : 0.0;
        std::fill(link_free.begin(), link_free.end(), 0.0);
        double medium_free = medium_busy;
        const auto arrival = [&](int from, double at, double bytes) {
          double& free = net.shared ? medium_free : link_free[from];
          free = std::max(at, free) + net.transfer_seconds(bytes);
          return free + net.latency_s;
        };
        const auto by_finish = [&] {  // members in the order they finish
          for (int g = 0; g < count; ++g) order[g] = g;
          std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return finish[a] < finish[b]; });
        };
        for (std::size_t k = 0; k < groups.size(); ++k) {
          ready = finish;
          if (k > 0) {
            const double pixel = pixel_bytes(m.node(groups[k - 1].last).layer->output_shape());
            by_finish();
            for (int from : order)
              for (const HaloTransfer& h : halos[k]) {
                if (h.from != from) continue;
                const double bytes = h.size() * pixel;
                ready[h.to] = std::max(ready[h.to], arrival(from, finish[from], bytes));
                if (account) ring_bytes += bytes;  // on the medium, as the reductions' bytes are
              }
          }
          // A member's interior computes from its own rows as soon as it finished the group
          // before; its edges wait for the halo too.
          const BandTimes& t = group_times[k];
          for (int g = 0; g < count; ++g) {
            finish[g] = std::max(finish[g] + t.interior[g], ready[g]) + t.edges[g];
            if (account) cost.member_s[g] += t.interior[g] + t.edges[g];
          }
        }
        // The bands are gathered to member 0, which hands the stage's output on; or, where a
        // global pooling ends the stage, each member pools its rows and sends member 0 the pool.
        const double pixel = pixel_bytes(banded);
        if (pooled)
          for (int g = 0; g < count; ++g) {
            const double t =
                times.layer(devices[g], last) * final_group.tiles[g].size() / (double(banded.h) * banded.w);
            finish[g] += t;
            if (account) cost.member_s[g] += t;
          }
        double done = finish[0];
        by_finish();
        if (hands_on) return finish[order.back()];  // no gather: the next stage's input counts the tiles
        for (int g : order)
          if (g != 0)
            done = std::max(
                done, arrival(g, finish[g], pooled ? times.output_bytes(last) : final_group.tiles[g].size() * pixel));
        return done;
      };
      worst = simulate(nullptr, 0, true);
      gather_s = worst - *std::max_element(finish.begin(), finish.end());
      // The input counts for the time it adds to the stage's end, which a member that starts
      // early may hide in part.
      const auto input_delay = [&](const StageInput& in) {
        const double busy = in.arrival.empty() ? 0 : *std::max_element(in.arrival.begin(), in.arrival.end());
        return busy > 0 ? simulate(&in.arrival, net.shared ? busy - net.latency_s : 0, false) - worst : 0.0;
      };
      cost.input_s = input_delay(input);
      if (first_holds) first_holds->first.input_s = input_delay(first_holds->first);
    } else {
      double split = 0, whole = 0;  // the layers' times on this member's kind of device
      for (int g = 0; g < count; ++g) {
        if (g == 0 || !times.same_device(devices[g], devices[g - 1])) {
          split = whole = 0;
          for (int n = first; n <= last; ++n)
            (roles[n - first] != SplitRole::whole ? split : whole) += times.layer(devices[g], n);
        }
        const double t = split * share[g] + whole;
        worst = std::max(worst, t);
        cost.member_s.push_back(t);
      }
    }
    if (mode == StageMode::split_spatial) {
      // The gather to member 0: all but its own tile (or the others' pools); none where the
      // tiles are handed on.
      const Shape banded = m.node(groups.back().last).layer->output_shape();
      const double own = groups.back().tiles[0].size() / (double(banded.h) * banded.w);
      exchange_bytes = hands_on                    ? 0.0
                       : groups.back().last < last ? static_cast<double>(m.cost(last).output_bytes) * (count - 1)
                                                   : static_cast<double>(m.cost(last).output_bytes) * (1 - own);
      link_bytes = exchange_bytes;
      part_weights = weights;
    } else {
      const double largest_share = *std::max_element(share.begin(), share.end());
      std::vector<double> sum_link_s;  // by node: its reduction's time on a link, or -1
      for (int n = first; n <= last; ++n) {
        const SplitRole role = roles[n - first];
        if (role == SplitRole::whole) {
          if (!times.repeats_call(n, first)) part_weights += times.weight_bytes(n);
          continue;
        }
        // A later call of a shared layer may take the earlier call's part (shared_split_part).
        if (!times.repeats_call(n, first) || shared_split_part(m, first, last, roles, n) < 0)
          part_weights += times.weight_bytes(n) * largest_share;
        if (role == SplitRole::kept_slice) continue;  // the slice stays with its member
        const double out = times.output_bytes(n);
        if (role == SplitRole::output_slice && parity) {
          // Coded: no all-gather; the slices go straight to the consumer (the next stage's input
          // counts the output once), and the parity's, the widest slice, goes with them.
          const double parity_bytes = out * largest_share;
          ring_bytes += parity_bytes;
          ring_s += net.transfer_seconds(parity_bytes);
        } else if (role == SplitRole::output_slice && split_root(n, last) == 0) {
          // The stage's last layer: its parts are gathered to member 0 alone, which hands the
          // output on (all of them into its link).
          exchange_bytes += out * (1 - share[0]);
          link_bytes += out * (1 - share[0]);
          exchanges += count - 1;
        } else if (role == SplitRole::output_slice) {
          // All-gather: every member sends its part to every other: k - 1 copies of every part
          // on a shared medium; on a switched one each link at once, the busiest sending its
          // part k - 1 times or taking all the others'.
          exchange_bytes += (count - 1) * out;
          double busiest = 0;
          for (int g = 0; g < count; ++g) busiest = std::max({busiest, (count - 1) * share[g], 1 - share[g]});
          link_bytes += busiest * out;
          exchanges += count * (count - 1);
          if (gather_overlaps_next(m, first, last, roles, n)) {
            // The next layer multiplies each member's own slice while the others' travel
            // (gather_overlaps_next): that much of the gather is hidden, on the member that
            // hides least.
            double own = kInf;
            for (int g = 0; g < count; ++g) own = std::min(own, times.layer(devices[g], n + 1) * share[g] * share[g]);
            hidden_s += std::min(own, net.transfer_seconds(net.shared ? (count - 1) * out : busiest * out));
          }
        } else {
          // Partial sums, reduced part by part (split_sums.h): each member sends 2 (k - 1) / k of
          // them, every link at once (on a shared medium, one after another), in two steps per
          // part. A part's reduction starts when every member has written it, so the compute of
          // the later parts hides all but the last part's, or what outlasts that compute. The
          // stage's last layer is reduced to member 0 alone: the shares' sums go to it only, so
          // the medium carries (k - 1) (1 + 1 / k) of them, while member 0's own link still takes
          // 2 (k - 1) / k.
          // A reduce-scatter (scatter_shares: fc1 into fc2, both split by input) sends no sums
          // back: (k - 1) / k of them per member.
          const bool scattered = scatters_sums(m, first, last, roles, n);
          const double per_link = (scattered ? 1.0 : 2.0) * (count - 1) * out / count;
          const double moved = split_root(n, last) == 0 ? (count - 1) * out * (1.0 + 1.0 / count) : per_link * count;
          ring_bytes += moved;
          if (sum_link_s.empty()) sum_link_s.assign(last - first + 1, -1.0);
          sum_link_s[n - first] = net.transfer_seconds(net.shared ? moved : per_link);
        }
      }
      if (!sum_link_s.empty())
        ring_s += exposed_sum_seconds(m, times, first, last, roles, devices, share, sum_link_s, net.latency_s);
    }
    const double exchange_s = gather_s >= 0 ? gather_s
                                            : net.transfer_seconds(net.shared ? exchange_bytes : link_bytes) +
                                                  (exchanges > 0 ? net.latency_s : 0) + ring_s - hidden_s;
    // Parts are swapped inside the stage, on its critical path (a band stage's `worst` already
    // ends with its gather).
    cost.compute_s = gather_s >= 0 ? worst : worst + exchange_s;
    for (double& t : cost.member_s) t += exchange_s;
    cost.latency_s = cost.compute_s;
    cost.medium_s += net.transfer_seconds(exchange_bytes + ring_bytes);
    cost.memory_bytes = part_weights + activations * 2;
  }
  for (int g = 0; g < count; ++g)
    if (cost.memory_bytes > times.memory_bytes(devices[g])) cost.fits = false;
  if (!net.shared) cost.medium_s = 0;  // a switched network: transfers overlap
  // The parity rank computes the widest slice beside the others (`devices` are the others).
  if (parity) cost.member_s.push_back(*std::max_element(cost.member_s.begin(), cost.member_s.end()));
  return cost;
}

// The cost of a validated plan's stage i, on the devices its plan lists (in any order): its
// input comes from the source (stage 0) or from the previous stage's producer (its first
// member; a replicated stage's changes from frame to frame).
StageCost resolved_stage_cost(const model::Model& m, const cluster::Cluster& c, const LayerTimes& times,
                              const ResolvedPlan& r, std::size_t i) {
  const ResolvedStage& s = r.stages[i];
  int input_rank = r.plan.source;
  // Tiles handed straight on come from every member of the stage before: no rank holds them
  // whole, and a member whose device made a tile of them holds that part.
  std::vector<Tile> held;
  if (i > 0 && hands_tiles_on(m, r.stages[i - 1])) {
    const ResolvedStage& before = r.stages[i - 1];
    const std::vector<BandGroup> groups =
        band_groups(m, before.first, before.group_ends, before.fractions, before.columns);
    held.assign(s.ranks.size(), Tile{{0, 0}, {0, 0}});
    for (std::size_t g = 0; g < s.ranks.size(); ++g)
      for (std::size_t b = 0; b < before.ranks.size(); ++b)
        if (before.ranks[b] == s.ranks[g]) held[g] = groups.back().tiles[b];
    input_rank = -1;
  } else if (i > 0) {
    input_rank = r.stages[i - 1].mode == StageMode::replicate ? -1 : r.stages[i - 1].ranks[0];
  }
  // A parity stage is costed on the ranks that compute slices; its parity rank works beside them.
  return stage_cost(m, c, times, s.first, s.last, Devices{s.ranks[0], s.data_members(), &s.ranks}, s.mode, input_rank,
                    s.group_ends, nullptr, nullptr, s.parity > 0, s.columns, held.empty() ? nullptr : &held);
}

}  // namespace

StageCost stage_cost(const model::Model& m, const cluster::Cluster& c, const std::string& key, int first, int last,
                     int rank, int count, StageMode mode, int input_rank, const std::vector<int>& group_ends) {
  return stage_cost(m, c, LayerTimes(m, c, key), first, last, Devices{rank, count}, mode, input_rank, group_ends);
}

namespace {

// The totals of a StageCost that the search reads.
struct ChoiceCost {
  double compute_s = 0, latency_s = 0, medium_s = 0, input_s = 0, link_s = 0;
  bool fits = true;
  ChoiceCost() = default;
  explicit ChoiceCost(const StageCost& c)
      : compute_s(c.compute_s),
        latency_s(c.latency_s),
        medium_s(c.medium_s),
        input_s(c.input_s),
        link_s(c.link_s),
        fits(c.fits) {}
  // The least period the stage allows: its compute, and on a switched network its input's link.
  double period_s() const { return std::max(compute_s, link_s); }
};

// A candidate stage. A large cluster has hundreds of thousands (MobileNetV2 on 64 devices), so it
// keeps only what the search reads: per-member times are worked out again for the plan picked.
struct Choice {
  int first = 0, last = 0, rank = 0, count = 1;
  StageMode mode = StageMode::single;
  ChoiceCost cost;
  ChoiceCost reuse_cost;        // the same stage taking its input from its own first member
  std::vector<int> group_ends;  // split-spatial: its band groups
  int columns = 1;              // split-spatial: its grid's columns
};

// The band groups of a split-spatial stage that make it fastest for one frame: a DP over where
// the groups end, each group costing its slowest member plus the halo swap before it (fusing
// recomputes halos; swapping costs the network). Groups are looked up in a cache shared by the
// planner's candidates, keyed by their layers, devices and (on a cluster of mixed devices, where
// a stage's fractions depend on its layers) fractions.
class BandGroupChooser {
 public:
  // `one_kind`: every device alike, so a group's fractions follow from its member count.
  BandGroupChooser(const model::Model& m, const cluster::Cluster& c, const LayerTimes& times, bool one_kind)
      : m_(m), c_(c), times_(times), one_kind_(one_kind && c.ranks() < (1 << 11) && m.nodes().size() < (1u << 20)) {
    // What every group must have (is_band_graph), looked up before the cache: one input into its
    // first node, and nothing made before its last node read after it (alive_before_[b]: the
    // latest value made before node b that a node after b reads, or an output is; a group
    // [a, b] needs a > that).
    const int n = static_cast<int>(m.nodes().size());
    one_input_.resize(n);
    alive_before_.assign(n, std::numeric_limits<int>::min());
    const auto read_at = [&](int v, int reader) {  // v read by `reader` (n: an output)
      for (int b = std::max(v + 1, 0); b < reader; ++b) alive_before_[b] = std::max(alive_before_[b], v);
    };
    for (int j = 0; j < n; ++j) {
      one_input_[j] = m.node(j).inputs.size() == 1;
      for (int v : m.node(j).inputs) read_at(v, j);
    }
    for (int v : m.outputs()) read_at(v, n);
  }

  // The planner asks for the ranges [first, j] of growing j, one device group after another, and
  // a range's DP over where its groups end repeats the shorter range's: each group (rank, count,
  // columns) keeps its DP from `first` on, and a call recomputes only the ends past the last
  // call's, or past the first node whose cuts its fractions changed (mixed devices).
  std::vector<int> choose(int first, int last, int rank, int count, const std::vector<double>& share, int columns) {
    const int length = last - first + 1;
    if (first != progress_first_) progress_.clear(), progress_first_ = first;
    Progress& p = progress_[(static_cast<std::uint64_t>(rank) << 40) | (static_cast<std::uint64_t>(count) << 20) |
                            static_cast<std::uint64_t>(columns)];
    int kept = std::min(p.length, length);  // ends [0, kept) as the last call left them
    if (!one_kind_) {
      // The rows and columns these fractions cut of each node's output, once per call (the
      // cache's key on mixed devices): [k] for node first - 1 + k.
      const auto shares = grid_shares(share, columns);  // of the grid's rows, then of its columns
      cuts_.resize(length + 1);
      for (int k = 0; k <= length; ++k) {
        cuts_[k].clear();
        if (first - 1 + k < 0) continue;
        const Shape out = m_.node(first - 1 + k).layer->output_shape();
        for (const auto& bounds : {split_bounds(out.h, shares.first), split_bounds(out.w, shares.second)})
          cuts_[k].insert(cuts_[k].end(), bounds.begin(), bounds.end());
      }
      // End b reads the cuts of nodes first - 1 .. first + b.
      for (int k = 0; k <= kept && p.length > 0; ++k)
        if (cuts_[k] != p.cuts[k]) {
          kept = std::max(0, k - 1);
          break;
        }
      p.cuts.swap(cuts_);
    }
    p.best.resize(length + 1);
    p.from.resize(length + 1);
    std::fill(p.best.begin() + kept + 1, p.best.end(), kInf);
    std::fill(p.from.begin() + kept + 1, p.from.end(), -1);
    p.best[0] = 0;
    p.length = length;
    std::vector<double>& best = p.best;
    std::vector<int>& from = p.from;
    for (int b = kept; b < length; ++b)
      for (int a = 0; a <= b; ++a) {
        if (best[a] == kInf || !one_input_[first + a] || first + a <= alive_before_[first + b]) continue;
        const Entry& e = entry(first + a, first + b, rank, count, share, a > 0, columns,
                               one_kind_ ? nullptr : &p.cuts[b + 1], one_kind_ ? nullptr : &p.cuts[a]);
        if (!e.ok) continue;
        const double value = best[a] + e.seconds;
        if (value < best[b + 1]) best[b + 1] = value, from[b + 1] = a;
      }
    std::vector<int> ends;
    if (best[length] == kInf) return {last};  // no grouping works: one fused band (validation says why)
    for (int b = length; b > 0; b = from[b]) ends.push_back(first + b - 1);
    std::reverse(ends.begin(), ends.end());
    return ends;
  }

 private:
  struct Entry {
    bool ok = false;
    double seconds = 0;  // the slowest member's band, plus the swap before it
  };
  // `cuts_b`, `cuts_before`: on mixed devices, what the fractions cut of b's output and of
  // a - 1's (choose() works them out).
  const Entry& entry(int a, int b, int rank, int count, const std::vector<double>& share, bool swap_before, int columns,
                     const std::vector<int>* cuts_b, const std::vector<int>* cuts_before) {
    // Alike devices: the key packs into one integer and a hash table finds it (choose() looks up
    // every pair of a range's layers, millions of times on a large cluster; a tree of tuples
    // spent most of the planner's time there).
    if (one_kind_) {
      const std::uint64_t key = (static_cast<std::uint64_t>(a) << 44) | (static_cast<std::uint64_t>(b) << 24) |
                                (static_cast<std::uint64_t>(rank) << 12) | (static_cast<std::uint64_t>(count) << 1) |
                                (swap_before ? 1u : 0u);
      auto& cache = alike_cache_[columns];
      auto it = cache.find(key);
      if (it != cache.end()) return it->second;
      return cache.emplace(key, compute(a, b, rank, count, share, swap_before, columns)).first->second;
    }
    // Mixed devices: a group's cost depends on its fractions only through the rows and columns
    // they cut (b's output, and a - 1's before a swap), which nearby fractions share; keyed by
    // those, stages of other ranges whose fractions differ a little find it too. A hash of the
    // key finds a short list, whose keys are compared in full (a tree of such keys, and the
    // vectors made to look one up, took most of MobileNetV2's 14 s on nine mixed devices).
    const std::vector<int>& before = swap_before ? *cuts_before : no_cuts_;
    std::uint64_t h = 1469598103934665603ull;
    const auto mix = [&h](std::uint64_t v) { h = (h ^ v) * 1099511628211ull; };
    for (int v : {a, b, rank, count, swap_before ? 1 : 0, columns}) mix(static_cast<std::uint64_t>(v));
    for (int v : *cuts_b) mix(static_cast<std::uint64_t>(v));
    mix(~0ull);
    for (int v : before) mix(static_cast<std::uint64_t>(v));
    std::vector<MixedEntry>& bucket = mixed_cache_[h];
    for (const MixedEntry& e : bucket)
      if (e.a == a && e.b == b && e.rank == rank && e.count == count && e.swap_before == swap_before &&
          e.columns == columns && e.cuts_b == *cuts_b && e.cuts_before == before)
        return e.entry;
    bucket.push_back({a, b, rank, count, swap_before, columns, *cuts_b, before,
                      compute(a, b, rank, count, share, swap_before, columns)});
    return bucket.back().entry;
  }
  Entry compute(int a, int b, int rank, int count, const std::vector<double>& share, bool swap_before, int columns) {
    Entry e;
    if (!is_band_graph(m_, a, b)) return e;
    const auto tail = [this](int first, int last, Span out, Axis axis) { return tail_rows(first, last, out, axis); };
    const BandRowsSource tails = tail;  // refers to `tail`, which outlives it
    bool feasible = false;
    const BandGroup group = band_groups(m_, a, {b}, share, columns, &feasible, &tails).front();
    if (feasible) {
      e.ok = true;
      if (!swap_before) {
        const BandTimes t = band_group_times(m_, times_, group, Devices{rank, count}, nullptr, nullptr, &tails);
        e.seconds = *std::max_element(t.edges.begin(), t.edges.end());
      } else {
        const BandGroup before = grid_tiles(m_, a - 1, share, columns);
        if (!grid_feasible(m_, a - 1, a - 1, share, columns)) {
          e.ok = false;
        } else {
          // Each member's interior computes while the halo travels; its edges after.
          const double swap = halo_swap(m_, c_.network, before, group).first;
          const BandTimes t = band_group_times(m_, times_, group, Devices{rank, count}, &before, &row_reads_, &tails);
          for (std::size_t g = 0; g < t.edges.size(); ++g)
            e.seconds = std::max(e.seconds, std::max(t.interior[g], swap) + t.edges[g]);
        }
      }
    }
    return e;
  }

  // The rows of nodes a .. b for band `out` of b's output. A node's rows depend only on the nodes
  // after it that read it, so they are the same for every start a of the range: choose()'s DP
  // tries every a for one end b, and the rows filled from the DP's first node to b serve them
  // all. Kept until the DP moves to another end.
  const BandNodeRows* tail_rows(int a, int b, Span out, Axis axis) {
    if (b != tails_last_ || progress_first_ != tails_first_) {
      for (auto& [key, rows] : tails_) spare_.push_back(std::move(rows));
      tails_.clear();
      tails_last_ = b;
      tails_first_ = progress_first_;
    }
    const std::uint64_t key = (static_cast<std::uint64_t>(static_cast<std::uint32_t>(out.first)) << 32) |
                              (static_cast<std::uint64_t>(static_cast<std::uint32_t>(out.second)) << 1) |
                              (axis == Axis::columns ? 1u : 0u);
    auto it = tails_.find(key);
    if (it == tails_.end()) {
      std::vector<BandNodeRows> rows;
      if (!spare_.empty()) rows = std::move(spare_.back()), spare_.pop_back();
      band_rows_into(m_, tails_first_, b, out.first, out.second, axis, rows);
      it = tails_.emplace(key, std::move(rows)).first;
    }
    return it->second.data() + (a - tails_first_);
  }

  const model::Model& m_;
  const cluster::Cluster& c_;
  const LayerTimes& times_;
  const bool one_kind_;
  RowReadsCache row_reads_;
  int tails_first_ = -1, tails_last_ = -1;
  std::unordered_map<std::uint64_t, std::vector<BandNodeRows>> tails_;  // by band and axis, for end tails_last_
  std::vector<std::vector<BandNodeRows>> spare_;                        // their storage, reused
  struct MixedEntry {
    int a, b, rank, count;
    bool swap_before;
    int columns;
    std::vector<int> cuts_b, cuts_before;
    Entry entry;
  };
  std::unordered_map<std::uint64_t, std::vector<MixedEntry>> mixed_cache_;  // by a hash of the key and the cuts
  // choose()'s DP over the ends of [first, ...] for one group of devices: best[b], from[b] for
  // ends [0, length], and on mixed devices the cuts it read ([k]: node first - 1 + k's).
  struct Progress {
    int length = 0;
    std::vector<double> best;
    std::vector<int> from;
    std::vector<std::vector<int>> cuts;
  };
  int progress_first_ = -1;
  std::unordered_map<std::uint64_t, Progress> progress_;  // by rank, count and columns
  std::vector<std::vector<int>> cuts_;                    // a call's cuts, kept to reuse their memory
  const std::vector<int> no_cuts_;
  std::vector<char> one_input_;                                          // by node
  std::vector<int> alive_before_;                                        // by node
  std::map<int, std::unordered_map<std::uint64_t, Entry>> alike_cache_;  // by columns; a, b < 2^20; rank, count < 2^11
};

const StageMode kModes[] = {StageMode::single,      StageMode::replicate,     StageMode::split_output,
                            StageMode::split_input, StageMode::split_spatial, StageMode::split_tensor};

}  // namespace

namespace {
Plan plan_for_objective(const model::Model& m, const cluster::Cluster& c, const PlannerOptions& o);

// Whether the devices are all alike and each holds the whole model.
bool alike_devices_each_hold_the_model(const model::Model& m, const cluster::Cluster& c, const std::string& key) {
  for (int g = 1; g < c.ranks(); ++g)
    if (c.device_of(g).name != c.device_of(0).name) return false;
  Plan whole;
  whole.ranks = 1;
  whole.stages.push_back(
      Stage{m.node(0).name(), m.node(static_cast<int>(m.nodes().size()) - 1).name(), StageMode::single, {0}, {}, {}});
  try {
    check_plan_fits(m, c, key, whole);
  } catch (const Error&) {
    return false;
  }
  return true;
}

Plan plan_without_parity(const model::Model& m, const cluster::Cluster& c, const PlannerOptions& o) {
  Plan p = plan_for_objective(m, c, o);
  if (o.objective != Objective::throughput) return p;
  // The latency search also tries every stage on the devices from rank 0 on, which the
  // throughput search's disjoint stages cannot express. Where memory is short (VGG16 on two
  // 512 MB Pi 3s: 0.233 against 0.140 frames/s) or the devices differ, that plan may be the
  // faster one too. Alike devices that each hold the model do better with their own frames
  // (replicas, or stages when the network is the limit), so the search is skipped for them,
  // which keeps a large cluster's planning time.
  if (alike_devices_each_hold_the_model(m, c, o.model_key)) return p;
  PlannerOptions latency = o;
  latency.objective = Objective::latency;
  Plan shared;
  try {
    shared = plan_for_objective(m, c, latency);
  } catch (const Error&) {
    return p;
  }
  if (shared.prediction["throughput_fps"].get<double>() <= p.prediction["throughput_fps"].get<double>() * (1 + 1e-9))
    return p;
  shared.prediction["objective"] = "throughput";
  return shared;
}
}  // namespace

Plan make_planned_plan(const model::Model& m, const cluster::Cluster& c, const PlannerOptions& o) {
  Plan p = plan_without_parity(m, c, o);
  if (!o.offer_parity || !any_unreliable(c)) return p;
  const int devices = c.ranks();
  const nlohmann::json without = {{"throughput_fps", p.prediction["throughput_fps"]},
                                  {"latency_ms", p.prediction["latency_ms"]}};
  std::vector<std::string> skipped;
  if (devices >= 3) {
    // The last device is kept for the parities: plan on the others, then add it.
    Plan coded;
    try {
      coded = plan_without_parity(m, cluster::first_devices(c, devices - 1), o);
    } catch (const Error& e) {
      skipped.push_back(cat("the model does not fit ", devices - 1, " devices: ", e.what()));
    }
    if (!coded.stages.empty()) {
      coded.ranks = devices;
      const int made = add_parity(coded, m, c, devices - 1, skipped);
      if (made > 0) {
        coded.prediction = prediction_json(m, c, o.model_key, coded);
        coded.prediction["objective"] = p.prediction["objective"];
        coded.prediction["parity"] = {
            {"stages", made}, {"rank", devices - 1}, {"without_parity", without}, {"not_coded", skipped}};
        return coded;
      }
      if (skipped.empty()) skipped.push_back("no split-output stage holds an unreliable device");
    }
  } else {
    skipped.push_back("a parity needs a third device");
  }
  p.prediction["parity"] = {{"stages", 0}, {"not_coded", skipped}};
  return p;
}

namespace {

Plan plan_for_objective(const model::Model& m, const cluster::Cluster& c, const PlannerOptions& o) {
  const int n = static_cast<int>(m.nodes().size());
  const int devices = c.ranks();
  const int max_group = o.max_group > 0 ? std::min(o.max_group, devices) : devices;
  const LayerTimes times(m, c, o.model_key);

  // Every candidate stage, once: (first, last, rank, count, mode) with its cost.
  std::deque<Choice> choices;  // grows without moving what it holds
  bool homogeneous = true;
  for (int g = 1; g < devices; ++g) homogeneous &= c.device_of(g).name == c.device_of(0).name;
  BandGroupChooser band_chooser(m, c, times, homogeneous);
  // On mixed devices a stage costs the same on any run of devices of the same kinds in the same
  // order: twin[k][r] is the first r' whose k devices match those from r (a cluster of two
  // kinds in turn has two such runs per k), and a candidate there is copied, not costed again.
  std::vector<std::vector<int>> twin;
  if (!homogeneous) {
    std::vector<int> kind(devices);  // each device's kind: the first device of its class
    for (int g = 0; g < devices; ++g)
      for (kind[g] = 0; kind[g] < g; ++kind[g])
        if (c.device_of(kind[g]).name == c.device_of(g).name) break;
    twin.assign(max_group + 1, std::vector<int>(devices, 0));
    for (int k = 1; k <= max_group; ++k)
      for (int r = 0; r + k <= devices; ++r) {
        int& first = twin[k][r];
        for (first = 0; first < r; ++first)
          if (std::equal(kind.begin() + first, kind.begin() + first + k, kind.begin() + r)) break;
      }
  }
  std::vector<int> costed;  // by rank, for one count and grid: its choice, or kNotKept / kNotCosted
  constexpr int kNotKept = -1, kNotCosted = -2;
  std::vector<SplitRole> roles;
  for (int i = 0; i < n; ++i)
    for (int j = i; j < n; ++j)
      for (StageMode mode : kModes) {
        if (!o.allow_splits && mode != StageMode::single && mode != StageMode::replicate) continue;
        // One frame at a time uses one replica: a latency plan tries none.
        if (mode == StageMode::replicate && o.objective == Objective::latency) continue;
        const int most = std::min(max_group, most_parts(m, i, j, mode, roles));
        // Splits on alike devices: past the best member count, more members only add halos,
        // slices and messages; stop once three more in a row were worse at both latency and
        // period.
        const bool split = mode != StageMode::single && mode != StageMode::replicate;
        BandsAllow bands_allow(m, i, j);
        const Shape band_input = m.shape_of(m.node(i).inputs.at(0));
        const bool wide = band_input.w > band_input.h;
        double best_latency = kInf, best_period = kInf;
        int worse = 0;
        for (int k = mode == StageMode::single ? 1 : 2; k <= most; ++k) {
          if (split && homogeneous && worse >= 3) break;
          // A split-spatial stage tries each grid of its members (row bands: one column).
          const std::vector<int> grids = mode == StageMode::split_spatial ? grid_columns(k, wide) : std::vector<int>{1};
          double k_latency = kInf, k_period = kInf;
          for (int columns : grids) {
            if (mode == StageMode::split_spatial && !bands_allow(k, columns)) continue;
            if (!homogeneous) costed.assign(devices, kNotCosted);
            for (int r = 0; r + k <= devices; ++r) {
              // The first stage takes its input at rank 0: a run holding it is no twin of one
              // that does not.
              const int first_twin = homogeneous ? r : twin[k][r];
              if (first_twin != r && (i > 0 || first_twin > 0) && costed[first_twin] != kNotCosted) {
                if (costed[first_twin] != kNotKept) {
                  costed[r] = static_cast<int>(choices.size());
                  choices.push_back(choices[costed[first_twin]]);
                  choices.back().rank = r;
                } else {
                  costed[r] = kNotKept;
                }
                continue;
              }
              if (!homogeneous) costed[r] = kNotKept;
              Choice ch{i, j, r, k, mode, {}, {}, {}, columns};
              const std::vector<double> share =
                  split ? group_speed(times, i, j, Devices{r, k}).share : std::vector<double>{};
              if (mode == StageMode::split_spatial)
                ch.group_ends = band_chooser.choose(i, band_last(m, i, j), r, k, share, columns);
              if (split && !homogeneous && !fractions_fit(m, i, j, mode, share, columns, ch.group_ends, roles))
                continue;  // a slow device's share would be no channel, or no row
              const bool reuse = o.objective == Objective::latency && r == 0;
              InputVariants inputs;
              ch.cost = ChoiceCost(stage_cost(m, c, times, i, j, Devices{r, k}, mode, i == 0 ? 0 : -1, ch.group_ends,
                                              &roles, reuse ? &inputs : nullptr, false, columns));
              if (reuse) {
                // Rank 0, its first member, hands it its input: only the input's cost changes.
                ch.reuse_cost = ch.cost;
                ch.reuse_cost.input_s = inputs.first.input_s;
                if (c.network.shared)
                  ch.reuse_cost.medium_s += inputs.first.medium_s - inputs.given.medium_s;
                else
                  ch.reuse_cost.link_s = inputs.first.link_s;
              }
              k_latency = std::min(k_latency, ch.cost.latency_s);
              k_period = std::min(k_period, std::max(ch.cost.period_s(), ch.cost.medium_s));
              if (ch.cost.fits) {
                if (!homogeneous) costed[r] = static_cast<int>(choices.size());
                choices.push_back(std::move(ch));
              }
              if (homogeneous) break;  // groups cost the same wherever they sit: one position is enough
            }
          }
          // A count with no feasible grid says nothing while bands (or strips) still fit; past
          // the output's height (width) only grids do, and counts without one end the search
          // like worse ones.
          const Shape banded = m.node(band_last(m, i, j)).layer->output_shape();
          const bool beyond_bands = mode == StageMode::split_spatial && k > (wide ? banded.w : banded.h);
          if (split && (k_latency < kInf || beyond_bands)) {
            worse = k_latency > best_latency && k_period > best_period ? worse + 1 : 0;
            best_latency = std::min(best_latency, k_latency);
            best_period = std::min(best_period, k_period);
          }
        }
      }
  std::vector<std::vector<int>> by_first(n);
  for (std::size_t x = 0; x < choices.size(); ++x) by_first[choices[x].first].push_back(static_cast<int>(x));
  // What a stage adds to the DP's sum: network time (throughput) or its part of one frame's time.
  const auto score = [&](const Choice& ch) {
    return o.objective == Objective::throughput ? ch.cost.medium_s : ch.cost.latency_s + ch.cost.input_s;
  };
  // By range, then by devices: a choice that uses more devices than a usable one of the same
  // range and scores no better is never worth taking, so each solve keeps only the others.
  for (auto& list : by_first)
    std::stable_sort(list.begin(), list.end(), [&](int a, int b) {
      const Choice &x = choices[a], &y = choices[b];
      if (x.last != y.last) return x.last < y.last;
      if (x.count != y.count) return x.count < y.count;
      return score(x) < score(y);
    });
  // On unlike devices a choice extends only the plans that used exactly the ranks before its
  // own: each layer's list in rank order (stable: ties break as in by_first), rank d's choices
  // at [rank_begin[j][d], rank_begin[j][d + 1]).
  std::vector<std::vector<int>> rank_begin;
  if (!homogeneous) {
    rank_begin.assign(n, std::vector<int>(devices + 2, 0));
    for (int j = 0; j < n; ++j) {
      std::vector<int>& list = by_first[j];
      std::stable_sort(list.begin(), list.end(), [&](int a, int b) { return choices[a].rank < choices[b].rank; });
      for (int x : list) ++rank_begin[j][choices[x].rank + 1];
      for (int d = 0; d <= devices; ++d) rank_begin[j][d + 1] += rank_begin[j][d];
    }
  }
  std::vector<int> front;  // a solve's usable choices from one layer, kept to avoid allocating
  // Memory: every layer must fit somewhere on its own (some stage that fits covers it).
  std::vector<int> covering(n + 1, 0);
  for (const Choice& ch : choices) ++covering[ch.first], --covering[ch.last + 1];
  for (int i = 0, open = 0; i < n; ++i) {
    open += covering[i];
    if (open == 0) {
      double need = static_cast<double>(m.node(i).weight_bytes()) + 2.0 * m.cost(i).output_bytes;
      double most = 0;
      for (int r = 0; r < devices; ++r) most = std::max(most, c.device_of(r).memory_bytes);
      fail("plan: layer '", m.node(i).name(), "' needs about ", need / 1e6, " MB (weights and activations) and no stage ",
           "of up to ", max_group, " device(s) can hold it: the devices have ", most / 1e6, " MB each");
    }
  }
  // DP over (layers covered, devices used): stages take consecutive ranks.
  auto solve = [&](double period, std::vector<int>* picked) -> double {
    // best[j][d]: least medium time covering layers [0, j) with ranks [0, d).
    std::vector<std::vector<double>> best(n + 1, std::vector<double>(devices + 1, kInf));
    std::vector<std::vector<int>> from(n + 1, std::vector<int>(devices + 1, -1));
    best[0][0] = 0;
    // The plans over layers [0, j) on ranks [0, d), extended by choice x.
    const auto extend = [&](int j, int d, int x) {
      const Choice& ch = choices[x];
      if (d + ch.count > devices) return;
      const double value = o.objective == Objective::throughput ? best[j][d] + ch.cost.medium_s
                                                                : best[j][d] + ch.cost.latency_s + ch.cost.input_s;
      double& slot = best[ch.last + 1][d + ch.count];
      if (value < slot) slot = value, from[ch.last + 1][d + ch.count] = x;
    };
    for (int j = 0; j < n; ++j) {
      if (!homogeneous) {
        for (int d = 0; d < devices; ++d) {
          if (best[j][d] == kInf) continue;
          for (int at = rank_begin[j][d]; at < rank_begin[j][d + 1]; ++at) {
            const int x = by_first[j][at];
            if (o.objective == Objective::throughput && choices[x].cost.period_s() > period) continue;
            extend(j, d, x);
          }
        }
        continue;
      }
      front.clear();
      int last = -1;
      double best_score = kInf;
      for (int x : by_first[j]) {
        const Choice& ch = choices[x];
        if (o.objective == Objective::throughput && ch.cost.period_s() > period) continue;
        if (ch.last != last) last = ch.last, best_score = kInf;
        if (score(ch) >= best_score) continue;  // fewer devices do as well
        best_score = std::min(best_score, score(ch));
        front.push_back(x);
      }
      for (int d = 0; d <= devices; ++d) {
        if (best[j][d] == kInf) continue;
        for (int x : front) extend(j, d, x);
      }
    }
    int best_d = -1;
    for (int d = 1; d <= devices; ++d)
      if (best[n][d] < kInf && (best_d < 0 || best[n][d] < best[n][best_d])) best_d = d;
    if (best_d < 0) return kInf;
    if (picked) {
      picked->clear();
      for (int j = n, d = best_d; j > 0;) {
        int x = from[j][d];
        picked->push_back(x);
        j = choices[x].first;
        d -= choices[x].count;
      }
      std::reverse(picked->begin(), picked->end());
    }
    return best[n][best_d];
  };
  std::vector<int> picked;
  if (o.objective == Objective::throughput) {
    // Binary search on the period: feasible when every stage fits in it and the shared medium
    // carries a frame's messages within it.
    double lo = 0, hi = 0;
    for (const auto& ch : choices) hi = std::max(hi, ch.cost.period_s() + ch.cost.medium_s);
    hi = std::max(hi * n, 1e-6);
    auto feasible = [&](double p) { return solve(p, nullptr) <= p; };
    if (!feasible(hi)) fail("plan: no plan fits this cluster (memory or network too small)");
    // To a part in 10^4 of the period: closer than the cost model's own accuracy.
    for (int it = 0; it < 60 && hi - lo > 1e-4 * hi; ++it) {
      double mid = 0.5 * (lo + hi);
      (feasible(mid) ? hi : lo) = mid;
    }
    solve(hi, &picked);
  } else {
    if (solve(kInf, &picked) == kInf) fail("plan: no plan fits this cluster (memory too small)");
  }
  // The stages picked, on consecutive ranks (`reuse`: every stage from rank 0).
  auto make_plan = [&](const std::vector<int>& stages, bool reuse) {
    Plan p;
    p.ranks = devices;
    int next_rank = 0;
    for (int x : stages) {
      const Choice& ch = choices[x];
      if (reuse) next_rank = 0;
      if (reuse && ch.mode == StageMode::single && !p.stages.empty() && p.stages.back().mode == StageMode::single) {
        p.stages.back().last = m.node(ch.last).name();  // one stage on rank 0, not several
        continue;
      }
      Stage s{m.node(ch.first).name(), m.node(ch.last).name(), ch.mode, {}, {}, {}};
      for (int g = 0; g < ch.count; ++g) s.ranks.push_back(next_rank + g);
      const GroupSpeed speed = group_speed(times, ch.first, ch.last, Devices{next_rank, ch.count});
      for (double f : speed.share)
        if (std::fabs(f - 1.0 / ch.count) > 1e-6) s.fractions = speed.share;  // even shares stay implicit
      for (std::size_t g = 0; g + 1 < ch.group_ends.size(); ++g) s.exchange_after.push_back(m.node(ch.group_ends[g]).name());
      s.columns = ch.columns;
      next_rank += ch.count;
      p.stages.push_back(s);
    }
    p.prediction = prediction_json(m, c, o.model_key, p);
    p.prediction["objective"] = o.objective == Objective::throughput ? "throughput" : "latency";
    return p;
  };
  Plan p = make_plan(picked, false);
  if (o.objective == Objective::latency) {
    // One frame at a time leaves a stage's devices idle while the others work, so a latency plan
    // may run every stage on the devices from rank 0 on: each stage takes its input from the one
    // before on its own first device. Kept when it is faster and each device holds its stages.
    // A stage after one that hands its tiles on (hands_tiles_on) takes its input from all of
    // that stage's members, not from its own first device: [j][1] are the plans whose stage
    // ending before node j does so.
    struct Step {
      int choice = -1, state = 0;  // the stage that ends here, and the state before it
    };
    std::vector<std::array<double, 2>> best(n + 1, {kInf, kInf});
    std::vector<std::array<Step, 2>> from(n + 1);
    best[0][0] = 0;
    for (int j = 0; j < n; ++j)
      for (int handed = 0; handed < 2; ++handed) {
        if (best[j][handed] == kInf) continue;
        for (int x : by_first[j]) {
          const Choice& ch = choices[x];
          if (ch.rank != 0 || !ch.reuse_cost.fits) continue;
          const double input_s = handed ? ch.cost.input_s : ch.reuse_cost.input_s;
          const double value = best[j][handed] + ch.reuse_cost.latency_s + input_s;
          const int hands = hands_tiles_on(m, ch.first, ch.last, ch.mode, ch.count) ? 1 : 0;
          if (value < best[ch.last + 1][hands])
            best[ch.last + 1][hands] = value, from[ch.last + 1][hands] = {x, handed};
        }
      }
    const int end_state = best[n][1] < best[n][0] ? 1 : 0;
    if (best[n][end_state] < kInf) {
      std::vector<int> stages;
      for (int j = n, state = end_state; j > 0;) {
        const Step step = from[j][state];
        stages.push_back(step.choice);
        j = choices[step.choice].first;
        state = step.state;
      }
      std::reverse(stages.begin(), stages.end());
      Plan reused = make_plan(stages, true);
      bool fits = true;
      try {
        check_plan_fits(m, c, o.model_key, reused);
      } catch (const Error&) {
        fits = false;
      }
      if (fits && reused.prediction["latency_ms"].get<double>() < p.prediction["latency_ms"].get<double>())
        p = std::move(reused);
    }
  }
  return p;
}

}  // namespace

nlohmann::json prediction_json(const model::Model& m, const cluster::Cluster& c, const std::string& key,
                               const Plan& plan) {
  ResolvedPlan r = validate_plan(plan, m, 0);
  const LayerTimes times(m, c, key);
  nlohmann::json stages = nlohmann::json::array();
  double bottleneck = 0, medium = 0, latency = 0;
  int bottleneck_stage = 0;
  bool link_bound = false;  // the bottleneck is a switched network's link into a stage
  std::vector<StageCost> costs;
  for (std::size_t i = 0; i < r.stages.size(); ++i) costs.push_back(resolved_stage_cost(m, c, times, r, i));
  for (std::size_t i = 0; i < r.stages.size(); ++i) {
    const StageCost& cost = costs[i];
    if (cost.compute_s > bottleneck)
      bottleneck = cost.compute_s, bottleneck_stage = static_cast<int>(i), link_bound = false;
    if (cost.link_s > bottleneck) bottleneck = cost.link_s, bottleneck_stage = static_cast<int>(i), link_bound = true;
    medium += cost.medium_s;
    // A frame's own input reaches one replica, or every member of a split stage in turn.
    latency += cost.input_s + cost.latency_s;
    nlohmann::json stage = {{"stage", i},
                            {"compute_s", cost.compute_s},
                            {"communication_s", cost.medium_s},
                            {"input_link_s", cost.link_s},
                            {"memory_mb", cost.memory_bytes / 1e6},
                            {"fits", cost.fits}};
    stage.update(stage_exchanges_json(m, r.stages[i]));  // how the stage moves a frame
    stages.push_back(std::move(stage));
  }
  // A rank in several stages (built-in split strategies put the unsplit layers on rank 0) does
  // all their work for every frame.
  std::vector<double> busy(plan.ranks, 0.0);
  for (std::size_t i = 0; i < r.stages.size(); ++i)
    for (std::size_t g = 0; g < r.stages[i].ranks.size(); ++g) busy[r.stages[i].ranks[g]] += costs[i].member_s[g];
  const auto busiest = std::max_element(busy.begin(), busy.end());
  std::string bottleneck_name =
      link_bound ? cat("the network link into stage ", bottleneck_stage) : cat("stage ", bottleneck_stage);
  if (*busiest > bottleneck * (1 + 1e-9)) {
    bottleneck = *busiest;
    bottleneck_name = cat("rank ", busiest - busy.begin(), " (in several stages)");
  }
  const double period = std::max(bottleneck, medium);
  return {{"throughput_fps", 1.0 / period},
          {"latency_ms", latency * 1e3},
          {"period_s", period},
          {"bottleneck", c.network.shared && medium > bottleneck ? "shared network" : bottleneck_name},
          {"network_s_per_frame", medium},
          {"cluster", c.name},
          {"rank_busy_s", busy},
          {"stages", stages}};
}

void check_plan_fits(const model::Model& m, const cluster::Cluster& c, const std::string& key, const Plan& plan) {
  ResolvedPlan r = validate_plan(plan, m, 0);
  if (c.ranks() < plan.ranks) fail("plan: ", plan.ranks, " ranks, but the cluster has ", c.ranks(), " device slot(s)");
  std::vector<double> need(plan.ranks, 0.0);
  std::vector<std::string> held(plan.ranks);
  const LayerTimes times(m, c, key);
  for (std::size_t i = 0; i < r.stages.size(); ++i) {
    const auto& s = r.stages[i];
    const StageCost cost = resolved_stage_cost(m, c, times, r, i);
    for (int rank : s.ranks) {
      need[rank] += cost.memory_bytes;
      held[rank] += cat(held[rank].empty() ? "" : ", ", "stage ", i, " (", m.node(s.first).name(), "..",
                        m.node(s.last).name(), ")");
    }
  }
  for (int rank = 0; rank < plan.ranks; ++rank) {
    const auto& device = c.device_of(rank);
    if (need[rank] > device.memory_bytes)
      fail("plan: rank ", rank, " (a ", device.name, " with ", device.memory_bytes / 1e6, " MB for Chorus) would hold ",
           held[rank], ", needing about ", need[rank] / 1e6, " MB of weights and activations; refusing to start. ",
           "Spread those layers over more devices (chorus plan --cluster finds a plan that fits)");
  }
}

Prediction predict(const model::Model& m, const cluster::Cluster& c, const std::string& key, const Plan& plan) {
  const nlohmann::json j = prediction_json(m, c, key, plan);
  return {j["period_s"].get<double>(), j["latency_ms"].get<double>() / 1e3};
}

}  // namespace chorus::plan
