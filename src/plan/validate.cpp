#include "plan/validate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "core/error.h"
#include "layers/activation_layer.h"
#include "layers/attention.h"
#include "layers/batch_norm.h"
#include "layers/channel_affine.h"
#include "layers/conv2d.h"
#include "layers/dense.h"
#include "layers/depthwise_conv2d.h"
#include "layers/layer_norm.h"
#include "layers/layers3d.h"
#include "layers/lrn.h"
#include "layers/merge.h"
#include "layers/padding.h"
#include "layers/pooling.h"
#include "layers/reshape.h"
#include "layers/separable_conv2d.h"
#include "layers/tokens.h"
#include "plan/band_geometry.h"

namespace chorus::plan {

namespace {

// Where there are enough units for the parts but a part's fraction rounds to none of them
// (split_bounds rounds the running totals): which part, and what would do.
std::string rounds_to_none(const std::string& part, double fraction, int extent, int parts) {
  if (extent < parts) return "";
  return cat(" (the share of ", part, ", ", fraction, " of ", extent, ", rounds to none; give each part at least 1/",
             extent, ")");
}

const layers::Conv2D* as_plain_conv(const layers::Layer& l) {
  auto* conv = dynamic_cast<const layers::Conv2D*>(&l);
  return conv && conv->settings().groups == 1 ? conv : nullptr;
}

// Whether node n's output goes to node n + 1 alone, which reads nothing else, and is not a model
// output: n + 1 may then take n's slice as it stands.
bool feeds_only_next(const model::Model& m, int n) {
  if (n + 1 >= static_cast<int>(m.nodes().size())) return false;
  if (m.consumers(n) != std::vector<int>{n + 1} || m.node(n + 1).inputs != std::vector<int>{n}) return false;
  return std::count(m.outputs().begin(), m.outputs().end(), n) == 0;
}

// Whether a layer that keeps its output slice may apply its activation there (elementwise ones
// may; softmax mixes channels). Dense, convolutions and Conv3D.
bool activation_is_elementwise(const layers::Layer& l) {
  layers::ActivationKind kind = layers::ActivationKind::linear;
  if (auto* dense = dynamic_cast<const layers::Dense*>(&l))
    kind = dense->settings().activation.kind;
  else if (auto* conv = dynamic_cast<const layers::Conv2D*>(&l))
    kind = conv->settings().activation.kind;
  else if (auto* conv3d = dynamic_cast<const layers::Conv3D*>(&l))
    kind = conv3d->settings().activation.kind;
  return kind != layers::ActivationKind::softmax;
}

// A Dense layer (or a convolution) read only by the next node, a layer of the same kind: the
// pair shares one cut (the first's output slice is the second's input slice).
bool pairs_with_next(const model::Model& m, int n) {
  if (n + 1 >= static_cast<int>(m.nodes().size())) return false;
  const layers::Layer &a = *m.node(n).layer, &b = *m.node(n + 1).layer;
  const bool same_kind = (dynamic_cast<const layers::Dense*>(&a) && dynamic_cast<const layers::Dense*>(&b)) ||
                         (as_plain_conv(a) && as_plain_conv(b)) ||
                         (dynamic_cast<const layers::Conv3D*>(&a) && dynamic_cast<const layers::Conv3D*>(&b));
  // The layer kinds first: the planner asks for every range, and the graph check allocates.
  return same_kind && activation_is_elementwise(a) && feeds_only_next(m, n);
}

// A convolution read only by the next node, a pooling of its channels one by one: the pooling
// runs on each member's output slice and the slices are gathered after it (a 2x2 pooling: a
// quarter of the bytes).
bool pools_its_slice(const model::Model& m, int n) {
  if (n + 1 >= static_cast<int>(m.nodes().size())) return false;
  const layers::Layer &l = *m.node(n).layer, &next = *m.node(n + 1).layer;
  if (!as_plain_conv(l) && !dynamic_cast<const layers::Conv3D*>(&l)) return false;
  const bool pooling = dynamic_cast<const layers::Pool2D*>(&next) || dynamic_cast<const layers::Pool3D*>(&next) ||
                       dynamic_cast<const layers::GlobalPool2D*>(&next);
  return pooling && activation_is_elementwise(l) && feeds_only_next(m, n);
}

}  // namespace

bool computable_in_full(const layers::Layer& l) {
  return l.weight_specs().empty() || dynamic_cast<const layers::BatchNorm*>(&l) ||
         dynamic_cast<const layers::LayerNormalization*>(&l) || dynamic_cast<const layers::AddConstant*>(&l) ||
         dynamic_cast<const layers::ClassToken*>(&l);
}

bool can_split_output(const layers::Layer& l) {
  return as_plain_conv(l) || dynamic_cast<const layers::Dense*>(&l) ||
         dynamic_cast<const layers::DepthwiseConv2D*>(&l) || dynamic_cast<const layers::Conv3D*>(&l);
}

bool can_split_input(const layers::Layer& l) {
  return as_plain_conv(l) || dynamic_cast<const layers::Dense*>(&l) || dynamic_cast<const layers::Conv3D*>(&l);
}

// A merge whose output row r is made of its inputs' rows r alone: an element-wise merge of
// inputs of its own shape (not a broadcast), or a concatenation of channels.
bool joins_row_by_row(const layers::Layer& l) {
  if (auto* c = dynamic_cast<const layers::Concatenate*>(&l)) return c->axis() == 2;
  if (!dynamic_cast<const layers::Elementwise*>(&l)) return false;
  for (const Shape& in : l.input_shapes())
    if (!(in == l.output_shape())) return false;
  return true;
}

InputSlices input_slices(const model::Model& m, int first, int last, StageMode mode,
                         const std::vector<double>& fractions) {
  if (mode != StageMode::split_input || fractions.size() < 2 || m.node(first).inputs.size() != 1) return {};
  const int value = m.node(first).inputs[0];
  const layers::Layer& head = *m.node(first).layer;
  const auto* flatten = dynamic_cast<const layers::Flatten*>(&head);
  const bool reorders = flatten && !flatten->in_place();
  const bool reshapes = flatten || (dynamic_cast<const layers::Reshape*>(&head) && head.in_place());
  const int sliced = reshapes ? first + 1 : first;
  if (sliced > last) return {};
  // Nothing but the first layer reads the value, nor (through a reshape) the reshaped one but
  // the sliced layer; neither is a model output.
  const auto read_only_by = [&](int v, int reader) {
    if (std::count(m.outputs().begin(), m.outputs().end(), v) > 0) return false;
    for (int n = 0; n < static_cast<int>(m.nodes().size()); ++n)
      if (n != reader && std::count(m.node(n).inputs.begin(), m.node(n).inputs.end(), v) > 0) return false;
    return true;
  };
  if (m.node(sliced).inputs != std::vector<int>{sliced == first ? value : first}) return {};
  const layers::Layer& layer = *m.node(sliced).layer;
  const Shape in = layer.input_shapes()[0];
  const Shape whole = m.shape_of(value);
  // A convolution split by input reads its channels of every position; a Dense layer, a run of
  // floats of a vector.
  const bool convolution =
      sliced == first && (as_plain_conv(layer) || dynamic_cast<const layers::Conv3D*>(&layer) != nullptr);
  const bool dense_on_vector = dynamic_cast<const layers::Dense*>(&layer) && in.h == 1 && in.w == 1 && in.d == 1 &&
                               static_cast<std::size_t>(in.c) == whole.size();
  if (!convolution && !dense_on_vector) return {};
  // The planner asks this of every split-input range: the scans of the whole model come last.
  if (!read_only_by(value, first) || (sliced != first && !read_only_by(first, sliced))) return {};
  if (split_roles(m, first, last, mode)[sliced - first] != SplitRole::input_slice) return {};
  const std::vector<int> bounds = split_bounds(split_extent(layer, SplitRole::input_slice), fractions);
  InputSlices s;
  s.value = value;
  s.channels = reorders || convolution;
  // In (c, h, w) order feature f is channel f / positions: a member takes every channel its
  // features fall in (two members may share one at their boundary).
  const int positions = static_cast<int>(whole.size() / whole.c);
  for (std::size_t g = 0; g + 1 < bounds.size(); ++g)
    s.parts.emplace_back(reorders ? bounds[g] / positions : bounds[g],
                         reorders ? (bounds[g + 1] + positions - 1) / positions : bounds[g + 1]);
  return s;
}

std::size_t InputSlices::floats(const model::Model& m, int member) const {
  const Shape whole = m.shape_of(value);
  const auto [begin, end] = parts.at(member);
  return static_cast<std::size_t>(end - begin) * (channels ? whole.size() / whole.c : 1);
}

bool can_split_spatial(const layers::Layer& l) {
  // Bands are rows: of an image, or of every image of a clip.
  if (dynamic_cast<const layers::Conv3D*>(&l) || dynamic_cast<const layers::Pool3D*>(&l) ||
      dynamic_cast<const layers::ZeroPadding3D*>(&l))
    return true;
  return dynamic_cast<const layers::Conv2D*>(&l) || dynamic_cast<const layers::DepthwiseConv2D*>(&l) ||
         dynamic_cast<const layers::SeparableConv2D*>(&l) || dynamic_cast<const layers::Pool2D*>(&l) ||
         dynamic_cast<const layers::ZeroPadding2D*>(&l) || dynamic_cast<const layers::ActivationLayer*>(&l) ||
         dynamic_cast<const layers::BatchNorm*>(&l) ||
         dynamic_cast<const layers::LRN*>(&l) ||            // across channels only: a pixel's own
         dynamic_cast<const layers::ChannelAffine*>(&l) ||  // Rescaling, Normalization: per pixel
         dynamic_cast<const layers::Identity*>(&l) || joins_row_by_row(l);
}

namespace {

// Which layers of a split-tensor stage [first, last] pair with the next (kept slice, then input
// slice), chosen by the bytes the members swap: an unpaired split layer's output slices are
// all-gathered (its pooling's, where a pooling takes its slice), a pair all-reduces the second
// layer's sums, twice the bytes of gathering them. Pairing (n, n + 1) thus pays where n's output
// is larger than n + 1's (fc2 4096 -> predictions 1000; an MLP's 3072 -> 768), and costs where it
// is smaller. In units of (members - 1) x floats per frame the costs hold at the stage's last
// layer too (gathered or reduced to member 0 only: both sides gain the same term). Ties pair
// the earlier layer. Returns, for each node, whether it starts a pair.
std::vector<char> choose_pairs(const model::Model& m, int first, int last) {
  const int n_nodes = last - first + 1;
  const auto floats = [&](int n) { return static_cast<double>(m.node(n).layer->output_shape().size()); };
  // Gathered bytes of an unpaired layer (attention, never paired, adds the same to every choice).
  const auto unpaired = [&](int n) {
    if (!can_split_output(*m.node(n).layer)) return 0.0;
    return n < last && pools_its_slice(m, n) ? floats(n + 1) : floats(n);
  };
  std::vector<double> best(n_nodes + 2, 0.0);  // the bytes of nodes [n, last], paired best
  std::vector<char> pair_at(n_nodes, 0);
  for (int n = last; n >= first; --n) {
    const int k = n - first;
    const double alone = unpaired(n) + best[k + 1];
    const double paired =
        n < last && pairs_with_next(m, n) ? 2 * floats(n + 1) + best[k + 2] : std::numeric_limits<double>::infinity();
    pair_at[k] = paired <= alone;
    best[k] = std::min(alone, paired);
  }
  // Forward: a node paired with the one before it cannot start a pair.
  std::vector<char> starts(n_nodes, 0);
  for (int k = 0; k < n_nodes; ++k)
    if (pair_at[k]) starts[k] = 1, ++k;
  return starts;
}

}  // namespace

std::vector<SplitRole> split_roles(const model::Model& m, int first, int last, StageMode mode) {
  std::vector<SplitRole> roles;
  const std::vector<char> pairs = mode == StageMode::split_tensor ? choose_pairs(m, first, last) : std::vector<char>{};
  for (int n = first; n <= last; ++n) {
    const auto& l = *m.node(n).layer;
    if (mode == StageMode::split_output)
      roles.push_back(can_split_output(l) ? SplitRole::output_slice : SplitRole::whole);
    else if (mode == StageMode::split_input)
      roles.push_back(can_split_input(l) ? SplitRole::input_slice : SplitRole::whole);
    else if (mode != StageMode::split_tensor)
      roles.push_back(SplitRole::whole);
    else if (dynamic_cast<const layers::MultiHeadAttention*>(&l))
      roles.push_back(SplitRole::heads);
    else if (n > first && roles.back() == SplitRole::kept_slice)
      roles.push_back(SplitRole::input_slice);  // the pair's second layer
    else if (pairs[n - first])
      roles.push_back(SplitRole::kept_slice);
    else
      roles.push_back(can_split_output(l) ? SplitRole::output_slice : SplitRole::whole);
  }
  // Channel splits keep their slices through a pooling: the convolution keeps its slice, the
  // pooling takes it and its output slices are the ones gathered.
  if (mode == StageMode::split_output || mode == StageMode::split_tensor)
    for (int n = first; n < last; ++n)
      if (roles[n - first] == SplitRole::output_slice && pools_its_slice(m, n)) {
        roles[n - first] = SplitRole::kept_slice;
        roles[n + 1 - first] = SplitRole::output_slice;
      }
  return roles;
}

namespace {

// Whether nodes n and n + 1 of a stage [first, last] are Dense layers of `role` both, n on a
// vector and read only by n + 1, with an activation that each member may apply to its own part
// of n's output (not a softmax, which mixes every output).
bool dense_pair_on_a_vector(const model::Model& m, int first, int last, const std::vector<SplitRole>& roles, int n,
                            SplitRole role) {
  if (n < first || n >= last || roles[n - first] != role || roles[n + 1 - first] != role) return false;
  const auto* dense = dynamic_cast<const layers::Dense*>(m.node(n).layer.get());
  if (!dense || !dynamic_cast<const layers::Dense*>(m.node(n + 1).layer.get()) ||
      dense->output_shape().size() != static_cast<std::size_t>(dense->output_shape().c))
    return false;
  // The layer kinds first: the planner asks for every range, and the graph check allocates.
  return activation_is_elementwise(*dense) && feeds_only_next(m, n);
}

}  // namespace

bool gather_overlaps_next(const model::Model& m, int first, int last, const std::vector<SplitRole>& roles, int n) {
  if (dense_pair_on_a_vector(m, first, last, roles, n, SplitRole::output_slice)) return true;
  if (n < first || n >= last || roles[n - first] != SplitRole::output_slice ||
      (roles[n + 1 - first] != SplitRole::output_slice && roles[n + 1 - first] != SplitRole::kept_slice))
    return false;
  // A convolution (or the pooling of a kept slice) into a convolution, which may keep its own
  // slice: the next convolves each member's channels of its input apart and adds them up.
  const layers::Layer& l = *m.node(n).layer;
  const bool gathered = (as_plain_conv(l) && activation_is_elementwise(l)) || dynamic_cast<const layers::Pool2D*>(&l);
  return gathered && as_plain_conv(*m.node(n + 1).layer) && feeds_only_next(m, n);
}

int shared_split_part(const model::Model& m, int first, int last, const std::vector<SplitRole>& roles, int n) {
  const layers::Layer& l = *m.node(n).layer;
  if (!dynamic_cast<const layers::Conv2D*>(&l) && !dynamic_cast<const layers::Dense*>(&l) &&
      !dynamic_cast<const layers::DepthwiseConv2D*>(&l) && !dynamic_cast<const layers::MultiHeadAttention*>(&l))
    return -1;
  const auto blocked = [&](int k) {
    return dynamic_cast<const layers::Conv2D*>(&l) && k > first && gather_overlaps_next(m, first, last, roles, k - 1);
  };
  if (roles[n - first] == SplitRole::whole || blocked(n)) return -1;
  for (int k = first; k < n; ++k)
    if (m.node(k).layer == m.node(n).layer && roles[k - first] == roles[n - first] && !blocked(k)) return k;
  return -1;
}

bool scatters_sums(const model::Model& m, int first, int last, const std::vector<SplitRole>& roles, int n) {
  return dense_pair_on_a_vector(m, first, last, roles, n, SplitRole::input_slice);
}

std::vector<std::size_t> scatter_shares(const model::Model& m, int first, int last, const std::vector<SplitRole>& roles,
                                        const std::vector<double>& fractions, int n) {
  if (!scatters_sums(m, first, last, roles, n)) return {};
  std::vector<std::size_t> shares;
  for (int b : split_bounds(m.node(n + 1).layer->input_shapes()[0].c, fractions))
    shares.push_back(static_cast<std::size_t>(b));
  return shares;
}

std::vector<PartRun> part_runs(const model::Model& m, int first, int last, const std::vector<SplitRole>& roles) {
  const auto role = [&](int n) { return roles[n - first]; };
  const auto positions = [&](int n) {
    const Shape s = m.node(n).layer->output_shape();
    return static_cast<std::int64_t>(s.rows()) * s.w;
  };
  std::vector<PartRun> runs;
  for (int r = first; r < last; ++r) {
    const SplitRole reduced = role(r);
    if ((reduced != SplitRole::heads && reduced != SplitRole::input_slice) ||
        !(m.node(r).layer->partwise_fraction() > 0) || positions(r) < 2)
      continue;
    PartRun run{r, r + 1, r};
    for (int n = r + 1; n <= last; ++n) {
      const auto& layer = *m.node(n).layer;
      const SplitRole now = role(n);
      const bool joins = layer.positionwise() && positions(n) == positions(r) &&
                         (now == SplitRole::whole || now == SplitRole::kept_slice ||
                          (now == SplitRole::input_slice && n > run.first && role(n - 1) == SplitRole::kept_slice));
      if (!joins) break;
      run.last = n;
      if (now == SplitRole::input_slice) break;  // its own sums: the next run waits for them
    }
    if (run.last < run.first) continue;
    const int next = run.last + 1;
    if (next <= last && role(next) == SplitRole::heads && m.node(next).layer->consumable_fraction() > 0 &&
        positions(next) == positions(r)) {
      // Its inputs must be whole at each part: made by the run's whole layers, or before it.
      bool complete = true;
      for (int v : m.node(next).inputs)
        complete = complete && (v < r || (v >= run.first && v <= run.last && role(v) == SplitRole::whole));
      if (complete) run.consumer = next;
    }
    runs.push_back(run);
  }
  return runs;
}

int split_extent(const layers::Layer& l, SplitRole role) {
  if (role == SplitRole::input_slice) return l.input_shapes()[0].c;
  if (role == SplitRole::heads) return dynamic_cast<const layers::MultiHeadAttention&>(l).settings().heads;
  if (dynamic_cast<const layers::DepthwiseConv2D*>(&l)) return l.input_shapes()[0].c;
  return l.output_shape().c;
}

int split_extent(const layers::Layer& l, StageMode mode) {
  return split_extent(l, mode == StageMode::split_input ? SplitRole::input_slice : SplitRole::output_slice);
}

int widest_part(const std::vector<int>& bounds) {
  int widest = 0;
  for (std::size_t r = 0; r + 1 < bounds.size(); ++r) widest = std::max(widest, bounds[r + 1] - bounds[r]);
  return widest;
}

std::vector<int> split_bounds(int extent, const std::vector<double>& fractions) {
  std::vector<int> bounds{0};
  double cumulative = 0;
  for (std::size_t r = 0; r < fractions.size(); ++r) {
    cumulative += fractions[r];
    int b = r + 1 == fractions.size() ? extent : static_cast<int>(std::lround(cumulative * extent));
    bounds.push_back(std::clamp(b, bounds.back(), extent));
  }
  return bounds;
}

namespace {
// A parity stage is layers without weights that every member computes in full (a flatten, say),
// then one Dense or Conv2D split by output channels whose output alone leaves the stage: the
// consumers rebuild that output from the slices, and nothing else crosses the cut.
void check_parity_stage(const model::Model& m, const ResolvedStage& r, const std::string& where) {
  const auto roles = split_roles(m, r.first, r.last, StageMode::split_output);
  for (int n = r.first; n < r.last; ++n)
    if (roles[n - r.first] != SplitRole::whole)
      fail(where, ": with parity only the stage's last layer may be split; '", m.node(n).name(),
           "' is split too (make it a stage of its own)");
  const model::Node& last = m.node(r.last);
  const bool dense = dynamic_cast<const layers::Dense*>(last.layer.get()) != nullptr;
  const auto* conv = dynamic_cast<const layers::Conv2D*>(last.layer.get());
  if (roles.back() != SplitRole::output_slice || !(dense || conv))
    fail(where, ": with parity the stage's last layer must be a Dense or Conv2D layer split by output channels; '",
         last.name(), "' is a ", last.layer->type());
  if (!last.folded.empty())
    fail(where, ": with parity the last layer must have no batch norm folded into it ('", last.name(),
         "' has '", last.folded.front().layer->name(), "'); end the stage before the batch norm");
  for (int n = r.last + 1; n < static_cast<int>(m.nodes().size()); ++n)
    for (int v : m.node(n).inputs)
      if (v <= r.last && v != r.last)
        fail(where, ": with parity only the output of '", last.name(), "' may leave the stage, but '",
             m.node(n).name(), "' also reads ", v < 0 ? "a model input" : "'" + m.node(v).name() + "'");
  for (int v : m.outputs())
    if (v < r.last) fail(where, ": with parity only the output of '", last.name(), "' may leave the stage");
}
}  // namespace

ResolvedPlan validate_plan(const Plan& plan, const model::Model& m, int world_size) {
  ResolvedPlan out;
  out.plan = plan;
  const int nodes = static_cast<int>(m.nodes().size());
  if (plan.ranks < 1) fail("plan: ranks must be at least 1, got ", plan.ranks);
  if (world_size > 0 && world_size != plan.ranks)
    fail("plan: made for ", plan.ranks, " rank(s) but the job has ", world_size,
         " (start it with mpirun -np ", plan.ranks, ", or make a plan for ", world_size, ")");
  for (int r : {plan.source, plan.sink})
    if (r < 0 || r >= plan.ranks) fail("plan: source/sink rank ", r, " is not among the ", plan.ranks, " ranks");
  if (plan.stages.empty()) fail("plan: no stages");
  int next = 0;
  for (std::size_t i = 0; i < plan.stages.size(); ++i) {
    const Stage& s = plan.stages[i];
    auto where = [&] { return cat("plan: stage ", i, " (", s.first, " .. ", s.last, ", ", mode_name(s.mode), ")"); };
    ResolvedStage r;
    r.first = m.find(s.first);
    r.last = m.find(s.last);
    if (r.first < 0) fail(where(), ": unknown layer '", s.first, "'");
    if (r.last < 0) fail(where(), ": unknown layer '", s.last, "'");
    if (r.first > r.last) fail(where(), ": '", s.first, "' comes after '", s.last, "' in the model");
    if (r.first != next) {
      if (r.first < next) fail(where(), ": overlaps the previous stage (layer '", m.node(r.first).name(), "' is already placed)");
      fail(where(), ": leaves a gap: layers '", m.node(next).name(), "' .. '", m.node(r.first - 1).name(), "' are in no stage");
    }
    next = r.last + 1;
    r.mode = s.mode;
    r.ranks = s.ranks;
    if (r.ranks.empty()) fail(where(), ": has no ranks");
    std::set<int> seen;
    for (int rank : r.ranks) {
      if (rank < 0 || rank >= plan.ranks) fail(where(), ": rank ", rank, " is not among the ", plan.ranks, " ranks");
      if (!seen.insert(rank).second) fail(where(), ": rank ", rank, " is listed twice");
    }
    if (s.mode == StageMode::single && r.ranks.size() != 1)
      fail(where(), ": a single stage runs on exactly one rank, got ", r.ranks.size());
    if (s.parity != 0) {
      if (s.parity != 1) fail(where(), ": parity must be 0 or 1, got ", s.parity);
      if (s.mode != StageMode::split_output) fail(where(), ": parity applies to split-output stages only");
      if (r.ranks.size() < 2)
        fail(where(), ": parity needs at least two ranks (one computing slices, the last the parity)");
    }
    r.parity = s.parity;
    if (s.columns != 1) {
      if (s.mode != StageMode::split_spatial) fail(where(), ": columns applies to split-spatial stages only");
      if (s.columns < 1 || r.ranks.size() % s.columns != 0)
        fail(where(), ": columns must be a positive divisor of its ", r.ranks.size(), " ranks (a grid of rows x ",
             "columns of tiles), got ", s.columns);
    }
    r.columns = s.columns;
    const std::size_t members = r.ranks.size() - r.parity;
    if (s.fractions.empty()) {
      r.fractions.assign(members, 1.0 / members);
    } else {
      if (s.fractions.size() != members)
        fail(where(), ": ", s.fractions.size(), " fractions for ", members, " ranks",
             r.parity ? " (the parity rank has none)" : "");
      double sum = 0;
      for (double f : s.fractions) {
        if (!(f > 0)) fail(where(), ": fractions must be positive, got ", f);
        sum += f;
      }
      if (std::fabs(sum - 1.0) > 1e-6) fail(where(), ": fractions sum to ", sum, ", not 1");
      r.fractions = s.fractions;
    }
    // Each layer must allow the stage's mode.
    bool any_split = false;
    const std::vector<SplitRole> roles = split_roles(m, r.first, r.last, s.mode);
    for (int n = r.first; n <= r.last; ++n) {
      const auto& layer = *m.node(n).layer;
      auto bad = [&](const std::string& why) {
        fail(where(), ": layer '", layer.name(), "' (", layer.type(), ") ", why);
      };
      switch (s.mode) {
        case StageMode::single:
        case StageMode::replicate: break;
        case StageMode::split_output:
        case StageMode::split_input:
        case StageMode::split_tensor: {
          const SplitRole role = roles[n - r.first];
          if (role == SplitRole::whole && !computable_in_full(layer))
            bad(s.mode == StageMode::split_output  ? "cannot be split by output channels"
                : s.mode == StageMode::split_input ? "cannot be split by input channels"
                                                   : "cannot be split by heads or channels");
          if (role != SplitRole::whole) {
            any_split = true;
            const int extent = split_extent(layer, role);
            auto bounds = split_bounds(extent, r.fractions);
            for (std::size_t p = 0; p + 1 < bounds.size(); ++p)
              if (bounds[p] == bounds[p + 1])
                bad(cat("has ", extent, role == SplitRole::heads ? " heads" : " channels", ": too few for ", members,
                        " parts with these fractions",
                        rounds_to_none(cat("rank ", r.ranks[p]), r.fractions[p], extent, members)));
          }
          break;
        }
        case StageMode::split_spatial:
          // A global pooling may end the stage: each member pools its own rows (pools_bands).
          if (!can_split_spatial(layer) && !(n == r.last && pools_bands(m, r.first, r.last)))
            bad("cannot be split into row bands");
          break;
      }
    }
    if ((s.mode == StageMode::split_output || s.mode == StageMode::split_input ||
         s.mode == StageMode::split_tensor) &&
        !any_split)
      fail(where(), ": none of its layers can be split that way");
    if (s.mode == StageMode::split_spatial) {
      const int bands_end = band_last(m, r.first, r.last);
      if (!is_band_graph(m, r.first, r.last))
        fail(where(),
             ": a split-spatial stage must take one value from outside, its first layer's input, and hand on "
             "only its last layer's output (a chain, or branches that join inside the stage)");
      for (const std::string& name : s.exchange_after) {
        const int n = m.find(name);
        if (n < 0) fail(where(), ": exchange_after names unknown layer '", name, "'");
        if (n < r.first || n >= bands_end)
          fail(where(), ": exchange_after names '", name, "', which is not one of the stage's layers before its last",
               bands_end < r.last ? cat(" band layer '", m.node(bands_end).name(), "' (the global pooling '",
                                        m.node(r.last).name(), "' joins the bands)")
                                  : std::string());
        if (!r.group_ends.empty() && n <= r.group_ends.back())
          fail(where(), ": exchange_after must list layers in model order, once each ('", name, "')");
        r.group_ends.push_back(n);
      }
      r.group_ends.push_back(bands_end);
      int group_first = r.first;
      for (int group_last : r.group_ends) {
        if (!is_band_graph(m, group_first, group_last))
          fail(where(), ": the band group '", m.node(group_first).name(), "' .. '", m.node(group_last).name(),
               "' must take one value from outside and hand on only its last layer's output: exchange_after may "
               "cut the stage only where one value is alive (between residual blocks, say)");
        const Shape out_shape = m.node(group_last).layer->output_shape();
        const auto [row_shares, column_shares] = grid_shares(r.fractions, r.columns);
        const std::string output =
            group_last == r.last ? std::string("the output") : cat("the output of '", m.node(group_last).name(), "'");
        // Rows, then (in a grid) columns: each part must hold some, and read some of every layer.
        for (const Axis axis : {Axis::rows, Axis::columns}) {
          const bool across = axis == Axis::columns;
          if (across && r.columns == 1) break;
          const char* unit = across ? "columns" : "rows";
          const int extent = across ? out_shape.w : out_shape.h;
          const auto bounds = split_bounds(extent, across ? column_shares : row_shares);
          const int parts = static_cast<int>(bounds.size()) - 1;
          const std::vector<double>& shares = across ? column_shares : row_shares;
          for (int p = 0; p < parts; ++p)
            if (bounds[p] == bounds[p + 1])
              fail(where(), ": ", output, " has ", extent, " ", unit, ": too few for ", parts,
                   r.columns > 1 ? cat(" ", unit, " of tiles") : std::string(" bands"), " with these fractions",
                   rounds_to_none(
                       r.columns == 1 ? cat("rank ", r.ranks[p]) : cat(across ? "column " : "row ", p, " of the grid"),
                       shares[p], extent, parts));
          for (int p = 0; p < parts; ++p) {
            auto reads = band_input_rows(m, group_first, group_last, bounds[p], bounds[p + 1], axis);
            const int rank = r.ranks[across ? p : p * r.columns];
            // Name the layer nearest the output whose band reads nothing: that is where it starts.
            for (std::size_t k = reads.size(); k-- > 0;)
              if (reads[k].first >= reads[k].second)
                fail(where(), ": the ", r.columns > 1 ? "tile" : "band", " of rank ", rank, " (",
                     span_text(unit, bounds[p], bounds[p + 1]), " of ", m.node(group_last).name(), ") needs no input ",
                     unit, " of layer '", m.node(group_first + static_cast<int>(k)).name(),
                     "' (only its padding): end the stage or its group before that layer or change the fractions");
          }
        }
        group_first = group_last + 1;
      }
    } else if (!s.exchange_after.empty()) {
      fail(where(), ": exchange_after applies to split-spatial stages only");
    }
    if (r.parity) check_parity_stage(m, r, where());
    out.stages.push_back(std::move(r));
  }
  if (next != nodes)
    fail("plan: layers '", m.node(next).name(), "' .. '", m.node(nodes - 1).name(), "' are in no stage");
  // Enough frames to keep every rank busy (replicas included) while the source runs ahead.
  const int stages = static_cast<int>(plan.stages.size());
  for (const auto& st : out.stages)
    if (std::find(st.ranks.begin(), st.ranks.end(), plan.sink) != st.ranks.end())
      out.sink_lag = std::max(out.sink_lag, static_cast<int>(st.ranks.size()));
  // A frame the sink's rank computes still has the stages after it to cross before the sink
  // collects it. The task order gives each stage one frame's turn; a replicated stage holds as
  // many frames as it has replicas, each for that many turns, so the sink waits for the extra
  // turns of every replicated stage after its first (ViT-L in two replicated halves: the sink
  // in the first half blocked on the second for a whole frame of its own compute).
  for (std::size_t k = 0; k < out.stages.size(); ++k) {
    const auto& ranks = out.stages[k].ranks;
    if (std::find(ranks.begin(), ranks.end(), plan.sink) == ranks.end()) continue;
    int lag = static_cast<int>(ranks.size());
    for (std::size_t t = k + 1; t < out.stages.size(); ++t)
      if (out.stages[t].mode == StageMode::replicate) lag += static_cast<int>(out.stages[t].ranks.size()) - 1;
    out.sink_lag = std::max(out.sink_lag, lag);
    break;
  }
  // Replicas that start together finish together: the stage after a replicated one gets a
  // burst of as many frames as the replicas. The window holds those frames twice over (in the
  // replicas, and queued after them), beyond what the source runs ahead, or the source would
  // wait for credits while replicas sit idle.
  for (std::size_t i = 0; i + 1 < out.stages.size(); ++i)
    if (out.stages[i].mode == StageMode::replicate) out.burst_frames += static_cast<int>(out.stages[i].ranks.size());
  out.max_in_flight = plan.max_in_flight > 0 ? plan.max_in_flight
                                             : std::max(2 * stages + 2, plan.ranks + stages + 2) + out.sink_lag +
                                                   2 * out.burst_frames;
  return out;
}

}  // namespace chorus::plan
