#include "partition/stage_worker.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "layers/depthwise_conv2d.h"
#include "partition/frame_traffic.h"
#include "partition/live_values.h"

namespace chorus::partition {

using plan::SplitRole;
using plan::StageMode;

namespace {
std::size_t layer_bytes(const model::Node& node) {
  std::size_t total = node.layer->weight_bytes();
  for (const auto& f : node.folded) total += f.layer->weight_bytes();
  return total;
}

// Paces each layer an executor runs (it runs them one by one under a pacer), but the split
// layers the worker computes itself: those were paced at their share in compute().
class PacingObserver : public model::StepObserver {
 public:
  PacingObserver(LayerPacer* pacer, const model::ExternalNodes& split) : pacer_(pacer), split_(split) {}
  void step_done(int first, int last, double started) override {
    for (int n = first; n <= last; ++n)
      if (!split_.computes(n)) pacer_->layer_done(n, 1.0, n == first ? started : steady_seconds());
  }

 private:
  LayerPacer* pacer_;
  const model::ExternalNodes& split_;
};
}  // namespace

void PeerExchange::begin_sums(float* data, std::size_t count, int members) {
  sum_data_ = data;
  sum_count_ = count;
  sum_members_ = members;
}

void PeerExchange::end_sums() {
  const int members = sum_members_;
  std::vector<float> parts(sum_count_ * members);
  all_gather(sum_data_, std::vector<std::size_t>(members, sum_count_), parts.data());
  std::copy(parts.begin(), parts.begin() + sum_count_, sum_data_);
  for (int m = 1; m < members; ++m)
    for (std::size_t i = 0; i < sum_count_; ++i) sum_data_[i] += parts[m * sum_count_ + i];
}

StageWorker::StageWorker(model::Model& m, const plan::ResolvedPlan& plan, int stage, int member,
                         io::WeightReader& reader, bool fuse, int frames)
    : model_(m), spec_(plan.stages.at(stage)), stage_(stage), member_(member), frames_(frames) {
  inputs_ = live_values(m, plan, stage - 1);
  outputs_ = live_values(m, plan, stage);
  const StageMode mode = spec_.mode;
  if (mode == StageMode::split_spatial) {
    groups_ = plan::band_groups(m, spec_.first, spec_.group_ends, spec_.fractions);
    for (std::size_t g = 0; g < groups_.size(); ++g) {
      const plan::BandGroup& group = groups_[g];
      bands_.push_back(make_row_band(m, group.first, group.last, group.bounds[member], group.bounds[member + 1], reader));
      for (const auto& step : bands_.back().steps)
        weight_bytes_ += step.own_layer ? step.own_layer->weight_bytes() : layer_bytes(m.node(step.node));
      if (g == 0) continue;
      // The rows this member swaps with the others between group g - 1 and group g.
      halo_sends_.emplace_back();
      halo_receives_.emplace_back();
      const Shape in = m.shape_of(m.node(group.first).inputs[0]);
      const std::size_t row = static_cast<std::size_t>(in.w) * in.c * in.d;
      for (const plan::HaloTransfer& h : plan::halo_transfers(groups_[g - 1], group)) {
        if (h.from == member)
          halo_sends_.back().push_back({h.to, h.begin, h.end, std::vector<float>(frames * row * (h.end - h.begin))});
        if (h.to == member)
          halo_receives_.back().push_back(
              {h.from, h.begin, h.end, std::vector<float>(frames * row * (h.end - h.begin))});
      }
    }
    plan_band_buffers(frames);
    // Buffers for the band's rows through the chain, and for the gathered output.
    for (int v : inputs_) {
      band_inputs_.emplace_back();
      band_inputs_.back().resize(frames, m.shape_of(v));
    }
    const Shape out = m.node(spec_.last).layer->output_shape();
    band_output_.resize(frames, out);
    for (std::size_t r = 0; r + 1 < band_rows().size(); ++r)
      band_counts_.push_back(static_cast<std::size_t>(band_rows()[r + 1] - band_rows()[r]) * out.w * out.c * out.d);
    if (out.is_clip()) band_gathered_.resize(out.size());  // bands arrive member by member
    for (int v : outputs_)
      CHORUS_ASSERT(v == spec_.last || std::count(inputs_.begin(), inputs_.end(), v), "stage ", stage_, ": live value ",
                    v, " is neither its output nor one of its inputs");
    return;
  }
  const auto roles = plan::split_roles(m, spec_.first, spec_.last, mode);
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
      LayerPart part = role == SplitRole::input_slice ? make_input_part(m.node(n), b, e, reader)
                       : role == SplitRole::heads     ? make_head_part(m.node(n), b, e, reader)
                                                      : make_output_part(m.node(n), b, e, reader);
      weight_bytes_ += part.layer->weight_bytes() + part.bias.size() * sizeof(float);
      // What each member contributes per batch: its channels of every output pixel, partial
      // sums of all of them, or nothing (a slice it keeps).
      SplitScratch& scratch = scratch_[n];
      scratch.role = role;
      scratch.part_inputs.assign(m.node(n).inputs.size(), nullptr);
      // The second layer of a pair reads its own slice, which the first kept.
      scratch.input_is_slice = n > spec_.first && roles[n - 1 - spec_.first] == SplitRole::kept_slice;
      const Shape out_shape = layer.output_shape();
      const bool depthwise = dynamic_cast<const layers::DepthwiseConv2D*>(&layer) != nullptr;
      scratch.multiplier = depthwise ? out_shape.c / layer.input_shapes()[0].c : 1;
      scratch.frame_counts = split_part_floats(m, n, role, bounds);  // as the traffic model counts them
      std::size_t total = 0;
      for (std::size_t c : scratch.frame_counts) total += c;
      scratch.counts = scratch.frame_counts;
      if (role == SplitRole::input_slice || role == SplitRole::heads) {
        scratch.set_sum_parts(out_shape, frames, layer.partwise_fraction() > 0);  // as the traffic model
      }
      if (role == SplitRole::output_slice) {
        scratch.gathered.reserve(frames * total);
        scratch.mine.reserve(static_cast<std::size_t>(frames) * part.layer->output_shape().size());
      }
      if (!part.reads_all_inputs && !scratch.input_is_slice)
        scratch.sliced.reserve(static_cast<std::size_t>(frames) * part.layer->input_shapes()[0].size());
      parts_.emplace(n, std::move(part));
      bounds_.emplace(n, std::move(bounds));
    } else {
      reader.load_node(m.nodes()[n]);
      weight_bytes_ += layer_bytes(m.node(n));
    }
  }
  executor_ = std::make_unique<model::Executor>(m, spec_.first, spec_.last, inputs_, outputs_, frames,
                                                model::Executor::Options{fuse, this});
}

StageWorker::~StageWorker() = default;

Tensor& StageWorker::input(int k) { return executor_ ? executor_->input(k) : band_inputs_.at(k); }

const Tensor& StageWorker::output(int k) const {
  if (spec_.parity) return coded_slice_;  // the stage's one output, as this member's slice
  if (executor_) return executor_->output(k);
  const int v = outputs_.at(k);
  if (v == spec_.last) return band_output_;
  return band_inputs_[std::find(inputs_.begin(), inputs_.end(), v) - inputs_.begin()];
}

std::string StageWorker::layers_held() const {
  std::string s = model_.node(spec_.first).name() + " .. " + model_.node(spec_.last).name();
  if (spec_.mode == StageMode::split_spatial) s += cat(" rows ", band_rows()[member_], "-", band_rows()[member_ + 1]);
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
  if (!bands_.empty()) {
    run_band();
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
    slice_channels(input, part.input_begin, part.input_end, scratch.sliced);
    scratch.part_inputs[0] = &scratch.sliced;
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
  const double share = double(bounds[member_ + 1] - bounds[member_]) / bounds.back();
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
    if (exchange_) exchange_->begin_sums(o, size, static_cast<int>(bounds.size()) - 1);
    part.layer->forward_in_parts(scratch.part_inputs, full, scratch.sum_positions, [&](int j, double done) {
      if (pacer_) pacer_->layer_progress(n, share, started, done);
      if (exchange_) exchange_->sums_ready(parts[j], parts[j + 1]);
    });
    if (pacer_) pacer_->layer_done(n, share, started);
    if (exchange_) exchange_->end_sums();
    const std::size_t pixels = size / out_shape.c;
    for (std::size_t p = 0; p < pixels; ++p)
      for (int c = 0; c < out_shape.c; ++c) o[p * out_shape.c + c] += part.bias[c];
    part.activation.apply(o, size, out_shape.c);
    return;
  }
  part.layer->forward(scratch.part_inputs, scratch.role == SplitRole::kept_slice ? full : scratch.mine);
  if (pacer_) pacer_->layer_done(n, share, started);
  if (scratch.role == SplitRole::kept_slice) return;

  const std::size_t pixels = static_cast<std::size_t>(frames) * out_shape.rows() * out_shape.w;
  const float* parts = scratch.mine.data();
  if (exchange_) {
    std::size_t total = 0;
    for (std::size_t r = 0; r < scratch.counts.size(); ++r)
      total += scratch.counts[r] = scratch.frame_counts[r] * frames;
    scratch.gathered.resize(1, Shape{1, 1, static_cast<int>(total)});
    exchange_->all_gather(scratch.mine.data(), scratch.counts, scratch.gathered.data());
    parts = scratch.gathered.data();
  }
  // Interleave the channel slices back into NHWC order.
  full.resize(frames, out_shape);
  const int multiplier = scratch.multiplier;
  for (std::size_t r = 0; r + 1 < bounds.size(); ++r) {
    const int c0 = bounds[r] * multiplier, width = (bounds[r + 1] - bounds[r]) * multiplier;
    for (std::size_t p = 0; p < pixels; ++p)
      std::memcpy(full.data() + p * out_shape.c + c0, parts + p * width, width * sizeof(float));
    parts += scratch.frame_counts[r] * frames;
  }
  part.activation.apply(full.data(), full.size(), out_shape.c);
}

void StageWorker::plan_band_buffers(int frames) {
  // The values of the stage in the order they are made: each group's input (sliced from the
  // stage's input, or swapped in from the group before), then per step the crops it reads and
  // its output. A value takes a buffer that no value still to be read holds: a chain ends up
  // with two, as it always had, and a residual block with one more for its shortcut.
  struct Value {
    std::size_t floats = 0;
    int made = 0, last_read = 0;
    int* buffer = nullptr;
  };
  std::size_t steps = 0;
  for (const RowBand& band : bands_) steps += band.steps.size();
  band_input_slot_.assign(bands_.size(), -1);
  band_step_slots_.assign(steps, -1);
  band_crop_slots_.assign(bands_.size(), {});
  std::vector<Value> values;
  int event = 0;
  const auto floats = [&](const Shape& s, int rows) {
    return static_cast<std::size_t>(std::max(0, rows)) * s.w * s.c * s.d * frames;
  };
  std::size_t step_slot = 0, previous_output = 0;
  for (std::size_t g = 0; g < bands_.size(); ++g) {
    const RowBand& band = bands_[g];
    const Shape in = model_.shape_of(model_.node(band.steps.front().node).inputs[0]);
    if (g > 0) values[previous_output].last_read = event;  // the halo swap reads the group before's output
    const std::size_t input_value = values.size();
    values.push_back({floats(in, band.in_end() - band.in_begin()), event, event, &band_input_slot_[g]});
    ++event;
    std::vector<std::size_t> step_value(band.steps.size());
    auto& crops = band_crop_slots_[g];
    crops.resize(band.steps.size());
    for (std::size_t k = 0; k < band.steps.size(); ++k) {
      const BandStep& step = band.steps[k];
      crops[k].assign(step.inputs.size(), -1);
      for (std::size_t j = 0; j < step.inputs.size(); ++j) {
        const int producer = step.inputs[j];
        values[producer < 0 ? input_value : step_value[producer]].last_read = event + 1;
        if (band.rows_begin(producer) == step.in_begin && band.rows_end(producer) == step.in_end) continue;
        const Shape& from = producer < 0 ? in : model_.node(band.steps[producer].node).layer->output_shape();
        values.push_back({floats(from, step.in_end - step.in_begin), event, event + 1, &crops[k][j]});
      }
      ++event;
      step_value[k] = values.size();
      values.push_back({floats(model_.node(step.node).layer->output_shape(), step.out_end - step.out_begin), event,
                        event, &band_step_slots_[step_slot++]});
      ++event;
    }
    previous_output = step_value.back();
  }
  values[previous_output].last_read = event;  // gathered at the end
  std::vector<int> held_until;  // per buffer: the last event a value in it is read at
  std::vector<std::size_t> capacity;
  for (const Value& v : values) {
    int chosen = -1;
    for (std::size_t b = 0; b < held_until.size(); ++b)
      if (held_until[b] < v.made && (chosen < 0 || capacity[b] > capacity[chosen])) chosen = static_cast<int>(b);
    if (chosen < 0) {
      chosen = static_cast<int>(held_until.size());
      held_until.push_back(0);
      capacity.push_back(0);
    }
    held_until[chosen] = v.last_read;
    capacity[chosen] = std::max(capacity[chosen], v.floats);
    *v.buffer = chosen;
  }
  band_buffers_.resize(capacity.size());
  for (std::size_t b = 0; b < capacity.size(); ++b) band_buffers_[b].reserve(capacity[b]);
  std::size_t widest = 1;
  for (const RowBand& band : bands_)
    for (const BandStep& step : band.steps) widest = std::max(widest, step.inputs.size());
  band_step_inputs_.reserve(widest);
}

void StageWorker::run_band() {
  const auto& first = model_.node(spec_.first);
  const Tensor& input = band_inputs_[std::find(inputs_.begin(), inputs_.end(), first.inputs[0]) - inputs_.begin()];
  const int frames = input.frames();  // buffers sized for frames_ grow once for a larger batch
  band_output_.resize(frames, model_.node(spec_.last).layer->output_shape());
  std::size_t step_slot = 0;
  const Tensor* last = nullptr;
  for (std::size_t g = 0; g < bands_.size(); ++g) {
    const RowBand& band = bands_[g];
    Tensor& band_input = band_buffers_[band_input_slot_[g]];
    if (g == 0)
      slice_rows(input, band.in_begin(), band.in_end(), band_input);
    else
      swap_halo(g - 1, *last, band_input);
    const std::size_t group_first_slot = step_slot;
    for (std::size_t k = 0; k < band.steps.size(); ++k) {
      const BandStep& step = band.steps[k];
      const layers::Layer& layer = step.own_layer ? *step.own_layer : *model_.node(step.node).layer;
      band_step_inputs_.clear();
      for (std::size_t j = 0; j < step.inputs.size(); ++j) {
        const int producer = step.inputs[j];
        const Tensor& value =
            producer < 0 ? band_input : band_buffers_[band_step_slots_[group_first_slot + producer]];
        const int crop = band_crop_slots_[g][k][j];
        if (crop < 0) {
          band_step_inputs_.push_back(&value);
          continue;
        }
        // A producer with more rows than this step reads (another reader's halo is wider).
        const int from = band.rows_begin(producer);
        slice_rows(value, step.in_begin - from, step.in_end - from, band_buffers_[crop]);
        band_step_inputs_.push_back(&band_buffers_[crop]);
      }
      const double started = pacer_ ? steady_seconds() : 0;
      Tensor& out = band_buffers_[band_step_slots_[step_slot++]];
      layer.forward(band_step_inputs_, out);
      if (pacer_)
        pacer_->layer_done(step.node,
                           double(step.out_end - step.out_begin) / model_.node(step.node).layer->output_shape().h,
                           started);
      last = &out;
    }
  }
  const Tensor& mine = *last;
  const Shape& out = band_output_.shape();
  for (int n = 0; n < frames; ++n) {
    // Bands are consecutive rows: in member order they are the whole frame. Only member 0
    // hands the stage's output on, so only it gathers them.
    if (!exchange_) {
      std::copy(mine.frame(n), mine.frame(n) + mine.frame_size(), band_output_.frame(n));
    } else if (!out.is_clip()) {
      exchange_->gather(mine.frame(n), band_counts_, band_output_.frame(n), 0);
    } else {
      // A clip's band is those rows of each of its images: gathered member after member, then
      // put back image by image.
      exchange_->gather(mine.frame(n), band_counts_, band_gathered_.data(), 0);
      if (member_ != 0) continue;
      const std::size_t row = static_cast<std::size_t>(out.w) * out.c;
      const float* from = band_gathered_.data();
      for (std::size_t g = 0; g + 1 < band_rows().size(); ++g) {
        const int rows = band_rows()[g + 1] - band_rows()[g];
        copy_image_rows(from, rows, 0, band_output_.frame(n), out.h, band_rows()[g], rows, out.d, row);
        from += static_cast<std::size_t>(rows) * out.d * row;
      }
    }
  }
}

void StageWorker::pack_rows(const Tensor& band, int band_begin, int begin, int end, float* packed) {
  const Shape& shape = band.shape();
  const std::size_t row = static_cast<std::size_t>(shape.w) * shape.c;
  for (int n = 0; n < band.frames(); ++n, packed += (end - begin) * shape.d * row)
    copy_image_rows(band.frame(n), shape.h, begin - band_begin, packed, end - begin, 0, end - begin, shape.d, row);
}

void StageWorker::unpack_rows(const float* packed, int begin, int end, int band_begin, Tensor& band) {
  const Shape& shape = band.shape();
  const std::size_t row = static_cast<std::size_t>(shape.w) * shape.c;
  for (int n = 0; n < band.frames(); ++n, packed += (end - begin) * shape.d * row)
    copy_image_rows(packed, end - begin, 0, band.frame(n), shape.h, begin - band_begin, end - begin, shape.d, row);
}

void StageWorker::swap_halo(std::size_t g, const Tensor& mine, Tensor& next) {
  const plan::BandGroup &before = groups_[g], &after = groups_[g + 1];
  const int own_begin = before.bounds[member_], own_end = before.bounds[member_ + 1];
  const auto [need_begin, need_end] = after.input_rows[member_];
  Shape shape = mine.shape();
  shape.h = need_end - need_begin;
  next.resize(mine.frames(), shape);
  // Its own rows stay; the rest come from the members that computed them.
  const int keep_begin = std::max(own_begin, need_begin), keep_end = std::min(own_end, need_end);
  if (keep_begin < keep_end)
    for (int n = 0; n < mine.frames(); ++n)
      copy_image_rows(mine.frame(n), mine.shape().h, keep_begin - own_begin, next.frame(n), shape.h,
                      keep_begin - need_begin, keep_end - keep_begin, shape.d, static_cast<std::size_t>(shape.w) * shape.c);
  if (!exchange_) return;  // one member: nothing to swap
  const std::size_t per_row = static_cast<std::size_t>(shape.w) * shape.c * shape.d * mine.frames();
  send_parts_.clear();
  receive_parts_.clear();
  for (HaloRows& h : halo_sends_[g]) {
    const std::size_t count = per_row * (h.end - h.begin);
    if (h.buffer.size() < count) h.buffer.resize(count);  // a larger batch than set up for: once
    pack_rows(mine, own_begin, h.begin, h.end, h.buffer.data());
    send_parts_.push_back({h.member, h.buffer.data(), count});
  }
  for (HaloRows& h : halo_receives_[g]) {
    const std::size_t count = per_row * (h.end - h.begin);
    if (h.buffer.size() < count) h.buffer.resize(count);
    receive_parts_.push_back({h.member, h.buffer.data(), count});
  }
  exchange_->swap_parts(send_parts_, receive_parts_);
  for (const HaloRows& h : halo_receives_[g]) unpack_rows(h.buffer.data(), h.begin, h.end, need_begin, next);
}

}  // namespace chorus::partition
