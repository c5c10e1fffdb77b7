#include "partition/stage_worker.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "core/error.h"
#include "layers/dense.h"
#include "layers/depthwise_conv2d.h"
#include "partition/frame_traffic.h"
#include "partition/hand_off.h"
#include "partition/live_values.h"

namespace chorus::partition {

using plan::SplitRole;
using plan::StageMode;

namespace {
// Paces each layer an executor runs (it runs them one by one under a pacer), but the split
// layers the worker computes itself: those were paced at their share in compute().
class PacingObserver : public model::StepObserver {
 public:
  PacingObserver(LayerPacer* pacer, const model::ExternalNodes& split) : pacer_(pacer), split_(split) {}
  void step_done(int first, int last, double started) override {
    for (int n = first; n <= last; ++n)
      if (!split_.computes(n)) pacer_->layer_done(n, 1.0, n == first ? started : steady_seconds());
  }
  void part_done(int node, double fraction, double started) override {
    if (!split_.computes(node)) pacer_->layer_done(node, fraction, started);
  }

 private:
  LayerPacer* pacer_;
  const model::ExternalNodes& split_;
};
}  // namespace

StageWorker::StageWorker(model::Model& m, const plan::ResolvedPlan& plan, int stage, int member,
                         io::WeightReader& reader, bool fuse, int frames)
    : model_(m), spec_(plan.stages.at(stage)), stage_(stage), member_(member), frames_(frames) {
  inputs_ = live_values(m, plan, stage - 1);
  outputs_ = live_values(m, plan, stage);
  const StageMode mode = spec_.mode;
  if (mode == StageMode::split_spatial) {
    band_ = std::make_unique<BandStage>(m, spec_, member, inputs_, reader, frames);
    if (plan::hands_tiles_on(m, spec_)) band_->hand_tiles_on();
    weight_bytes_ = band_->weight_bytes();
    for (int v : outputs_)
      CHORUS_ASSERT(v == spec_.last || std::count(inputs_.begin(), inputs_.end(), v), "stage ", stage_, ": live value ",
                    v, " is neither its output nor one of its inputs");
    return;
  }
  const auto roles = plan::split_roles(m, spec_.first, spec_.last, mode);
  std::set<const layers::Layer*> loaded;  // whole layers loaded, for shared layers' later calls
  int output_slices = 0;                  // split layers gathering slices so far (SplitScratch::slices)
  for (int n = spec_.first; n <= spec_.last; ++n) {
    const auto& layer = *m.node(n).layer;
    const SplitRole role = roles[n - spec_.first];
    if (role != SplitRole::whole) {
      auto bounds = plan::split_bounds(plan::split_extent(layer, role), spec_.fractions);
      if (spec_.parity) {
        // Coded (plan::Stage::parity): the slice, or the parity, goes to the consumers as it is,
        // before the activation, which they apply once the slices are joined.
        const bool parity = member >= spec_.data_members();
        LayerPart part = parity ? make_parity_part(m.node(n), bounds, reader)
                                : make_output_part(m.node(n), bounds[member], bounds[member + 1], reader);
        strip_activation(part);
        weight_bytes_ += part.layer->weight_bytes();
        coded_slice_.reserve(static_cast<std::size_t>(frames) * part.layer->output_shape().size());
        SplitScratch& scratch = scratch_[n];
        scratch.role = role;
        scratch.part_inputs.assign(m.node(n).inputs.size(), nullptr);
        parts_.emplace(n, std::move(part));
        bounds_.emplace(n, std::move(bounds));
        continue;
      }
      const int b = bounds[member], e = bounds[member + 1];
      // The next layer of an all-gather that travels while it computes (plan::gather_overlaps_next).
      const int blocks_from = n > spec_.first && scratch_.count(n - 1) && scratch_.at(n - 1).gather_ahead ? n - 1 : -1;
      // (A stage of one member has nothing to gather: its layers run whole-input as they are.)
      const bool by_input_blocks = blocks_from >= 0 && bounds.size() > 2 && !dynamic_cast<const layers::Dense*>(&layer);
      // A later call of a shared layer split as an earlier call in this stage was takes that
      // call's part: one slice of the weights.
      const int earlier = plan::shared_split_part(m, spec_.first, spec_.last, roles, n);
      const LayerPart* same = earlier >= 0 ? &parts_.at(earlier) : nullptr;
      LayerPart part = same                             ? *same  // a copy shares its layer
                       : role == SplitRole::input_slice ? make_input_part(m.node(n), b, e, reader)
                       : role == SplitRole::heads       ? make_head_part(m.node(n), b, e, reader)
                       : by_input_blocks ? make_blocked_output_part(m.node(n), b, e, bounds_.at(blocks_from), reader)
                                         : make_output_part(m.node(n), b, e, reader);
      if (!same) weight_bytes_ += part.layer->weight_bytes() + part.bias.size() * sizeof(float);
      for (const auto& block : part.input_blocks) weight_bytes_ += block->weight_bytes();
      // What each member contributes per batch: its channels of every output pixel, partial
      // sums of all of them, or nothing (a slice it keeps).
      SplitScratch& scratch = scratch_[n];
      scratch.role = role;
      scratch.part_inputs.assign(m.node(n).inputs.size(), nullptr);
      // The second layer of a pair reads its own slice, which the first kept.
      scratch.input_is_slice = n > spec_.first && roles[n - 1 - spec_.first] == SplitRole::kept_slice;
      scratch.gather_ahead =
          role == SplitRole::output_slice && plan::gather_overlaps_next(m, spec_.first, spec_.last, roles, n);
      if (scratch.gather_ahead)
        CHORUS_ASSERT(part.activation.is_linear(), "layer ", m.node(n).name(), " gathered ahead");
      scratch.blocks_from = blocks_from;
      if (by_input_blocks) {
        // The widest block's input, and the output of a block added into this member's slice.
        const Shape in = layer.input_shapes()[0];
        block_input_.reserve(static_cast<std::size_t>(frames) * in.h * in.w * in.d *
                             plan::widest_part(bounds_.at(blocks_from)));
        block_output_.reserve(static_cast<std::size_t>(frames) * part.layer->output_shape().size());
      }
      const Shape out_shape = layer.output_shape();
      const bool depthwise = dynamic_cast<const layers::DepthwiseConv2D*>(&layer) != nullptr;
      scratch.multiplier = depthwise ? out_shape.c / layer.input_shapes()[0].c : 1;
      scratch.frame_counts = split_part_floats(m, n, role, bounds);  // as the traffic model counts them
      std::size_t total = 0;
      for (std::size_t c : scratch.frame_counts) total += c;
      scratch.counts = scratch.frame_counts;
      if (role == SplitRole::input_slice || role == SplitRole::heads) {
        if (role == SplitRole::input_slice)
          scratch.shares = plan::scatter_shares(m, spec_.first, spec_.last, roles, spec_.fractions, n);
        scratch.set_sum_parts(out_shape, frames, layer.partwise_fraction() > 0);  // as the traffic model
      }
      if (role == SplitRole::output_slice) {
        scratch.slices = output_slices++ % 2;
        slices(scratch).gathered.reserve(frames * total);
        slices(scratch).mine.reserve(static_cast<std::size_t>(frames) * part.layer->output_shape().size());
      }
      if (!part.reads_all_inputs && !scratch.input_is_slice)
        sliced_input_.reserve(static_cast<std::size_t>(frames) * part.layer->input_shapes()[0].size());
      parts_.emplace(n, std::move(part));
      bounds_.emplace(n, std::move(bounds));
    } else {
      // A later call of a shared layer holds the same layer object as the first: where this
      // worker has loaded it, there is nothing to read or to count again.
      const bool loaded_already = m.node(n).folded.empty() && !loaded.insert(m.node(n).layer.get()).second;
      if (!loaded_already) {
        reader.load_node(m.nodes()[n]);
        weight_bytes_ += m.node(n).weight_bytes();
      }
    }
  }
  // Behind a reduction in parts, the position-wise layers compute part by part as the parts'
  // sums arrive (not in a coded stage, whose slices are never reduced here).
  std::vector<model::PartedRun> parted;
  if (!spec_.parity && (mode == StageMode::split_tensor || mode == StageMode::split_input)) {
    runs_ = plan::part_runs(m, spec_.first, spec_.last, roles);
    for (const plan::PartRun& r : runs_) {
      scratch_.at(r.reduced).deferred = true;
      for (int n = r.first; n <= r.last; ++n)
        if (parts_.count(n))
          CHORUS_ASSERT(parts_.at(n).reads_all_inputs || scratch_.at(n).input_is_slice, "layer ", m.node(n).name(),
                        " would slice its input part by part");
      parted.push_back({r.first, r.last, r.consumer});
    }
  }
  executor_ = std::make_unique<model::Executor>(m, spec_.first, spec_.last, inputs_, outputs_, frames,
                                                model::Executor::Options{fuse, this, std::move(parted)});
}

StageWorker::~StageWorker() = default;

Tensor& StageWorker::input(int k) { return executor_ ? executor_->input(k) : band_->input(k); }

const Tensor& StageWorker::output(int k) const {
  if (spec_.parity) return coded_slice_;  // the stage's one output, as this member's slice
  if (executor_) return executor_->output(k);
  const int v = outputs_.at(k);
  if (v == spec_.last) return band_->hands_tiles_on() ? band_->tile_output() : band_->output();
  return band_->input(static_cast<int>(std::find(inputs_.begin(), inputs_.end(), v) - inputs_.begin()));
}

std::string StageWorker::layers_held() const {
  std::string s = model_.node(spec_.first).name() + " .. " + model_.node(spec_.last).name();
  if (spec_.mode == StageMode::split_spatial) {
    const plan::Tile& t = band_->tile();
    s += " " + plan::span_text("rows", t.rows.first, t.rows.second);
    if (spec_.columns > 1) s += " " + plan::span_text("columns", t.columns.first, t.columns.second);
  }
  if (spec_.parity && member_ >= spec_.data_members())
    s += " parity";
  else if (spec_.mode == StageMode::split_output || spec_.mode == StageMode::split_input ||
           spec_.mode == StageMode::split_tensor)
    s += cat(" part ", member_ + 1, "/", spec_.data_members());
  return s;
}

void StageWorker::run(PeerExchange* exchange, LayerPacer* pacer) {
  exchange_ = exchange;
  pacer_ = pacer;
  if (band_) {
    band_->run(exchange, pacer);
  } else {
    PacingObserver pacing(pacer, *this);
    executor_->run(pacer ? &pacing : nullptr);
  }
  exchange_ = nullptr;
  pacer_ = nullptr;
}

void StageWorker::compute(int n, const std::vector<const Tensor*>& inputs, Tensor& full) {
  const auto& node = model_.node(n);
  const LayerPart& part = parts_.at(n);
  const auto& bounds = bounds_.at(n);
  SplitScratch& scratch = scratch_.at(n);
  const Tensor& input = *inputs[0];
  const int frames = input.frames();  // buffers sized for frames_ grow once for a larger batch
  const Shape out_shape = node.layer->output_shape();
  for (std::size_t k = 0; k < inputs.size() && k < scratch.part_inputs.size(); ++k) scratch.part_inputs[k] = inputs[k];
  if (!part.reads_all_inputs && !scratch.input_is_slice) {
    slice_channels(input, part.input_begin, part.input_end, sliced_input_);
    scratch.part_inputs[0] = &sliced_input_;
  }
  const double started = pacer_ ? steady_seconds() : 0;
  if (spec_.parity) {
    // This member's slice (or the parity) before the activation, handed on as it is; the
    // stage's full output is the consumers' to join.
    part.layer->forward(scratch.part_inputs, coded_slice_);
    if (pacer_) pacer_->layer_done(n, double(part.end - part.begin) / bounds.back(), started);
    full.resize(frames, out_shape);
    return;
  }
  const double share = member_share(n);
  // The stage's last layer: only member 0, which hands the stage's output on, needs it whole, so
  // its slices are gathered (its partial sums reduced) to member 0 alone; the other members'
  // output of it is not the stage's.
  const int root = plan::split_root(n, spec_.last);
  const bool whole_here = root < 0 || member_ == root;
  // A kept slice stays in the value's buffer (the pair's second layer reads it there), and
  // partial sums are reduced in it; only output slices are gathered from a buffer of their own.
  const bool sums = scratch.role == SplitRole::input_slice || scratch.role == SplitRole::heads;
  if (sums) {
    // Computed in parts, each part's reduction started as soon as it is written (the members
    // send while they compute the rest); every member ends with the same bits.
    full.resize(frames, out_shape);
    float* o = full.data();
    const std::size_t size = full.size();
    if (scratch.sum_parts.back() != size)  // a larger batch
      scratch.set_sum_parts(out_shape, frames, node.layer->partwise_fraction() > 0);
    const std::vector<std::size_t>& parts = scratch.sum_parts;
    scratch.sums_out = &full;
    // A reduce-scatter leaves this member the sums of the next layer's input slice alone.
    const bool scattered = !scratch.shares.empty();
    if (exchange_)
      scratch.sum_id =
          exchange_->begin_sums(o, size, static_cast<int>(bounds.size()) - 1, scattered ? plan::kSumsScattered : root,
                                scattered ? &scratch.shares : nullptr);
    // A run's consumer took its input part by part: what is left is paced as the rest of its work.
    const double consumed = scratch.consumed ? part.layer->consumable_fraction() : 0.0;
    const double rest = share * (1.0 - consumed);
    const auto part_done = [&](int j, double done) {
      if (pacer_) pacer_->layer_progress(n, rest, started, (done - consumed) / (1.0 - consumed));
      if (exchange_) exchange_->sums_ready(scratch.sum_id, parts[j], parts[j + 1]);
    };
    if (scratch.consumed)
      part.layer->forward_consumed_in_parts(scratch.part_inputs, full, scratch.sum_positions, part_done);
    else if (scratch.by_channels)
      part.layer->forward_channels_in_parts(scratch.part_inputs, full, scratch.sum_positions, part_done);
    else
      part.layer->forward_in_parts(scratch.part_inputs, full, scratch.sum_positions, part_done);
    scratch.consumed = false;
    if (pacer_) pacer_->layer_done(n, rest, started);
    if (scratch.deferred) return;  // the run behind it waits for each part and finishes it
    end_sums(scratch);
    if (scattered)
      finish_share(n, full);
    else if (whole_here)
      finish_sums(n, full, 0, size);
    return;
  }
  Tensor& mine = slices(scratch).mine;
  Tensor& gathered = slices(scratch).gathered;
  if (scratch.blocks_from >= 0 && scratch_.at(scratch.blocks_from).gathering) {
    forward_by_blocks(n, frames, share, scratch.role == SplitRole::kept_slice ? full : mine);
  } else {
    part.layer->forward(scratch.part_inputs, scratch.role == SplitRole::kept_slice ? full : mine);
    if (pacer_) pacer_->layer_done(n, share, started);
  }
  if (scratch.role == SplitRole::kept_slice) return;

  const std::size_t pixels = static_cast<std::size_t>(frames) * out_shape.rows() * out_shape.w;
  const float* parts = mine.data();
  if (exchange_) {
    std::size_t total = 0;
    for (std::size_t r = 0; r < scratch.counts.size(); ++r)
      total += scratch.counts[r] = scratch.frame_counts[r] * frames;
    gathered.resize(1, Shape{1, 1, static_cast<int>(total)});
    if (scratch.gather_ahead) {
      // The next layer takes the slices as they arrive (forward_by_blocks); this layer's value
      // itself is read by nothing else (plan::gather_overlaps_next), so it is left unjoined.
      exchange_->start_gather(mine.data(), scratch.counts, gathered.data());
      scratch.gathering = true;
      full.resize(frames, out_shape);
      return;
    }
    if (root < 0)
      exchange_->all_gather(mine.data(), scratch.counts, gathered.data());
    else
      exchange_->gather(mine.data(), scratch.counts, gathered.data(), root);
    parts = gathered.data();
  }
  // Interleave the channel slices back into NHWC order.
  full.resize(frames, out_shape);
  if (!whole_here) return;
  const int multiplier = scratch.multiplier;
  for (std::size_t r = 0; r + 1 < bounds.size(); ++r) {
    const int c0 = bounds[r] * multiplier, width = (bounds[r + 1] - bounds[r]) * multiplier;
    for (std::size_t p = 0; p < pixels; ++p)
      std::memcpy(full.data() + p * out_shape.c + c0, parts + p * width, width * sizeof(float));
    parts += scratch.frame_counts[r] * frames;
  }
  part.activation.apply(full.data(), full.size(), out_shape.c);
}

double StageWorker::member_share(int n) const {
  const auto& bounds = bounds_.at(n);
  return double(bounds[member_ + 1] - bounds[member_]) / bounds.back();
}

void StageWorker::finish_sums(int n, Tensor& sums, std::size_t begin, std::size_t end) const {
  const LayerPart& part = parts_.at(n);
  const int c = model_.node(n).layer->output_shape().c;
  float* o = sums.data();
  for (std::size_t i = begin; i < end; i += c)
    for (int k = 0; k < c; ++k) o[i + k] += part.bias[k];
  part.activation.apply(o + begin, end - begin, c);
}

void StageWorker::finish_share(int n, Tensor& sums) const {
  const LayerPart& part = parts_.at(n);
  const auto& shares = scratch_.at(n).shares;
  const std::size_t begin = shares[member_], end = shares[member_ + 1];
  if (begin == end) return;
  const std::size_t units = model_.node(n).layer->output_shape().c;  // a vector's floats per frame
  for (std::size_t at = 0; at < sums.size(); at += units) {
    float* o = sums.data() + at;
    for (std::size_t k = begin; k < end; ++k) o[k] += part.bias[k];
    part.activation.apply(o + begin, end - begin, static_cast<int>(end - begin));  // elementwise
  }
}

void StageWorker::forward_by_blocks(int n, int frames, double share, Tensor& out) {
  if (!parts_.at(n).input_blocks.empty()) {
    convolve_by_blocks(n, share, out);
    return;
  }
  SplitScratch& scratch = scratch_.at(n);
  SplitScratch& from = scratch_.at(scratch.blocks_from);
  const std::vector<int>& blocks = bounds_.at(scratch.blocks_from);  // the input channels of each member's slice
  const auto& dense = dynamic_cast<const layers::Dense&>(*parts_.at(n).layer);
  out.resize(frames, dense.output_shape());
  float* y = out.data();
  const double inputs = blocks.back();
  // Each block is paced as its share of the layer from when it could start (after its wait).
  const auto multiply = [&](const float* x, int k, bool accumulate) {
    const double started = pacer_ ? steady_seconds() : 0;
    dense.multiply_input_block(x, frames, blocks[k], blocks[k + 1], y, accumulate);
    if (pacer_) pacer_->layer_done(n, share * (blocks[k + 1] - blocks[k]) / inputs, started);
  };
  // Its own slice first, then the others' in member order: the same order on every frame.
  multiply(slices(from).mine.data(), member_, false);
  const float* x = slices(from).gathered.data();
  for (int k = 0; k + 1 < static_cast<int>(blocks.size()); x += from.counts[k], ++k) {
    if (k == member_) continue;
    exchange_->wait_part(k);
    multiply(x, k, true);
  }
  exchange_->end_gather();
  from.gathering = false;
  dense.finish_vectors(y, frames);
}

void StageWorker::convolve_by_blocks(int n, double share, Tensor& out) {
  SplitScratch& scratch = scratch_.at(n);
  SplitScratch& from = scratch_.at(scratch.blocks_from);
  const LayerPart& part = parts_.at(n);
  const std::vector<int>& blocks = bounds_.at(scratch.blocks_from);  // the input channels of each member's slice
  const double inputs = blocks.back();
  const auto convolve = [&](int k, const Tensor& x, Tensor& y) {
    const double started = pacer_ ? steady_seconds() : 0;
    scratch.block_inputs[0] = &x;
    part.input_blocks[k]->forward(scratch.block_inputs, y);
    if (pacer_) pacer_->layer_done(n, share * (blocks[k + 1] - blocks[k]) / inputs, started);
  };
  // Its own slice first, then the others' in member order: the same sums on every frame.
  convolve(member_, slices(from).mine, out);
  const int frames = out.frames();
  const Shape in = part.layer->input_shapes()[0];
  const float* x = slices(from).gathered.data();
  for (int k = 0; k + 1 < static_cast<int>(blocks.size()); x += from.counts[k], ++k) {
    if (k == member_) continue;
    exchange_->wait_part(k);
    block_input_.resize(frames, {in.h, in.w, blocks[k + 1] - blocks[k], in.d});
    std::copy_n(x, from.counts[k], block_input_.data());
    convolve(k, block_input_, block_output_);
    float* y = out.data();
    const float* add = block_output_.data();
    for (std::size_t i = 0; i < out.size(); ++i) y[i] += add[i];
  }
  exchange_->end_gather();
  from.gathering = false;
  const int c = static_cast<int>(part.block_bias.size());
  float* y = out.data();
  for (std::size_t i = 0; i < out.size(); i += c)
    for (int k = 0; k < c; ++k) y[i + k] += part.block_bias[k];
  part.block_activation.apply(y, out.size(), c);
}

void StageWorker::end_sums(SplitScratch& scratch) {
  if (exchange_ && scratch.sum_id >= 0) exchange_->end_sums(scratch.sum_id);
  scratch.sum_id = -1;
}

const std::vector<std::int64_t>& StageWorker::run_parts(int run) {
  return scratch_.at(runs_[run].reduced).sum_positions;
}

void StageWorker::before_part(int run, int j) {
  const int n = runs_[run].reduced;
  SplitScratch& scratch = scratch_.at(n);
  const std::size_t begin = scratch.sum_parts[j], end = scratch.sum_parts[j + 1];
  if (exchange_ && scratch.sum_id >= 0) exchange_->wait_sums(scratch.sum_id, end);
  finish_sums(n, *scratch.sums_out, begin, end);  // never the stage's last layer: every member has the sums
}

void StageWorker::compute_positions(int n, const std::vector<const Tensor*>& inputs, Tensor& out, std::int64_t p0,
                                    std::int64_t p1) {
  const LayerPart& part = parts_.at(n);
  SplitScratch& scratch = scratch_.at(n);
  const auto& bounds = bounds_.at(n);
  const Shape out_shape = model_.node(n).layer->output_shape();
  const int frames = inputs[0]->frames();
  const double started = pacer_ ? steady_seconds() : 0;
  for (std::size_t k = 0; k < inputs.size() && k < scratch.part_inputs.size(); ++k) scratch.part_inputs[k] = inputs[k];
  if (scratch.role == SplitRole::kept_slice) {
    if (p0 == 0) out.resize(frames, part.layer->output_shape());
    part.layer->forward_positions(scratch.part_inputs, out, p0, p1);
  } else {  // a pair's second half: its partial sums, reduced part by part as they are written
    CHORUS_ASSERT(scratch.role == SplitRole::input_slice, "layer ", model_.node(n).name(), " in a parted run");
    if (p0 == 0) {
      out.resize(frames, out_shape);
      if (scratch.sum_parts.back() != out.size()) scratch.set_sum_parts(out_shape, frames, true);
      scratch.sums_out = &out;
      if (exchange_)
        scratch.sum_id = exchange_->begin_sums(out.data(), out.size(), static_cast<int>(bounds.size()) - 1,
                                               plan::split_root(n, spec_.last));
    }
    part.layer->forward_positions(scratch.part_inputs, out, p0, p1);
    if (exchange_) exchange_->sums_ready(scratch.sum_id, p0 * out_shape.c, p1 * out_shape.c);
  }
  if (pacer_) {
    const double positions = static_cast<double>(frames) * out_shape.rows() * out_shape.w;
    pacer_->layer_done(n, member_share(n) * (p1 - p0) / positions, started);
  }
}

void StageWorker::consume_positions(int n, const std::vector<const Tensor*>& inputs, std::int64_t p0, std::int64_t p1) {
  const LayerPart& part = parts_.at(n);
  SplitScratch& scratch = scratch_.at(n);
  const double started = pacer_ ? steady_seconds() : 0;
  part.layer->consume_positions(inputs, p0, p1);
  scratch.consumed = true;
  if (pacer_) {
    const Shape out_shape = model_.node(n).layer->output_shape();
    const double positions = static_cast<double>(inputs[0]->frames()) * out_shape.rows() * out_shape.w;
    pacer_->layer_done(n, member_share(n) * part.layer->consumable_fraction() * (p1 - p0) / positions, started);
  }
}

void StageWorker::after_run(int run) {
  const plan::PartRun& r = runs_[run];
  end_sums(scratch_.at(r.reduced));
  auto last = scratch_.find(r.last);
  if (last == scratch_.end() || last->second.role != SplitRole::input_slice || last->second.deferred) return;
  // The run's last layer reduces its own sums, and no run follows to take them part by part.
  end_sums(last->second);
  const int root = plan::split_root(r.last, spec_.last);
  if (root < 0 || member_ == root) finish_sums(r.last, *last->second.sums_out, 0, last->second.sums_out->size());
}

}  // namespace chorus::partition
