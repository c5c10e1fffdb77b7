#include "partition/stage_worker.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "core/error.h"
#include "layers/depthwise_conv2d.h"
#include "partition/live_values.h"

namespace chorus::partition {

using plan::StageMode;

namespace {
std::size_t layer_bytes(const model::Node& node) {
  std::size_t total = node.layer->weight_bytes();
  for (const auto& f : node.folded) total += f.layer->weight_bytes();
  return total;
}
}  // namespace

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

StageWorker::StageWorker(model::Model& m, const plan::ResolvedPlan& plan, int stage, int member,
                         io::WeightReader& reader)
    : model_(m), spec_(plan.stages.at(stage)), stage_(stage), member_(member) {
  inputs_ = live_values(m, plan, stage - 1);
  outputs_ = live_values(m, plan, stage);
  const StageMode mode = spec_.mode;
  if (mode == StageMode::split_spatial) {
    band_rows_ = plan::split_bounds(m.node(spec_.last).layer->output_shape().h, spec_.fractions);
    band_ = std::make_unique<RowBand>(
        make_row_band(m, spec_.first, spec_.last, band_rows_[member], band_rows_[member + 1], reader));
    for (const auto& step : band_->steps)
      weight_bytes_ += step.own_layer ? step.own_layer->weight_bytes() : layer_bytes(m.node(step.node));
    return;
  }
  for (int n = spec_.first; n <= spec_.last; ++n) {
    const auto& layer = *m.node(n).layer;
    const bool split = (mode == StageMode::split_output && plan::can_split_output(layer)) ||
                       (mode == StageMode::split_input && plan::can_split_input(layer));
    if (split) {
      auto bounds = plan::split_bounds(plan::split_extent(layer, mode), spec_.fractions);
      LayerPart part = mode == StageMode::split_output
                           ? make_output_part(m.node(n), bounds[member], bounds[member + 1], reader)
                           : make_input_part(m.node(n), bounds[member], bounds[member + 1], reader);
      weight_bytes_ += part.layer->weight_bytes() + part.bias.size() * sizeof(float);
      parts_.emplace(n, std::move(part));
      bounds_.emplace(n, std::move(bounds));
    } else {
      reader.load_node(m.nodes()[n]);
      weight_bytes_ += layer_bytes(m.node(n));
    }
  }
}

std::string StageWorker::layers_held() const {
  std::string s = model_.node(spec_.first).name() + " .. " + model_.node(spec_.last).name();
  if (spec_.mode == StageMode::split_spatial) s += cat(" rows ", band_rows_[member_], "-", band_rows_[member_ + 1]);
  if (spec_.mode == StageMode::split_output || spec_.mode == StageMode::split_input)
    s += cat(" part ", member_ + 1, "/", spec_.ranks.size());
  return s;
}

std::vector<Tensor> StageWorker::run(std::vector<Tensor> inputs, PeerExchange* exchange, LayerPacer* pacer) const {
  CHORUS_ASSERT(inputs.size() == inputs_.size(), "stage ", stage_, " got ", inputs.size(), " inputs");
  std::map<int, Tensor> values;
  for (std::size_t i = 0; i < inputs.size(); ++i) values[inputs_[i]] = std::move(inputs[i]);
  if (band_) {
    run_band(values, exchange, pacer);
  } else {
    for (int n = spec_.first; n <= spec_.last; ++n) {
      if (parts_.count(n)) {
        run_split_layer(n, values, exchange, pacer);
        continue;
      }
      const auto& node = model_.node(n);
      std::vector<const Tensor*> in;
      for (int v : node.inputs) in.push_back(&values.at(v));
      Tensor out;
      const double started = pacer ? steady_seconds() : 0;
      node.layer->forward(in, out);
      if (pacer) pacer->layer_done(n, 1.0, started);
      values[n] = std::move(out);
    }
  }
  std::vector<Tensor> out;
  for (int v : outputs_) {
    auto it = values.find(v);
    CHORUS_ASSERT(it != values.end(), "stage ", stage_, " lacks live value ", v);
    out.push_back(std::move(it->second));  // the map is this frame's only; no copy needed
  }
  return out;
}

void StageWorker::run_split_layer(int n, std::map<int, Tensor>& values, PeerExchange* exchange,
                                  LayerPacer* pacer) const {
  const auto& node = model_.node(n);
  const LayerPart& part = parts_.at(n);
  const auto& bounds = bounds_.at(n);
  const Tensor& input = values.at(node.inputs[0]);
  const int frames = input.frames();
  const Shape out_shape = node.layer->output_shape();
  Tensor sliced, mine;
  const Tensor* in = &input;
  if (!part.reads_all_inputs) {
    slice_channels(input, part.input_begin, part.input_end, sliced);
    in = &sliced;
  }
  const double started = pacer ? steady_seconds() : 0;
  part.layer->forward({in}, mine);
  if (pacer) pacer->layer_done(n, double(bounds[member_ + 1] - bounds[member_]) / bounds.back(), started);

  std::vector<std::size_t> counts;
  const std::size_t pixels = static_cast<std::size_t>(frames) * out_shape.h * out_shape.w;
  const bool depthwise = dynamic_cast<const layers::DepthwiseConv2D*>(node.layer.get()) != nullptr;
  const int multiplier = depthwise ? out_shape.c / node.layer->input_shapes()[0].c : 1;
  for (std::size_t r = 0; r + 1 < bounds.size(); ++r)
    counts.push_back(spec_.mode == StageMode::split_input ? pixels * out_shape.c
                                                          : pixels * (bounds[r + 1] - bounds[r]) * multiplier);
  std::vector<std::vector<float>> parts;
  if (exchange) {
    exchange->all_gather(mine.values(), counts, parts);
  } else {
    parts.push_back(mine.values());
  }
  Tensor full(frames, out_shape);
  if (spec_.mode == StageMode::split_output) {
    // Interleave the channel slices back into NHWC order.
    for (std::size_t r = 0; r < parts.size(); ++r) {
      const int c0 = bounds[r] * multiplier, width = (bounds[r + 1] - bounds[r]) * multiplier;
      for (std::size_t p = 0; p < pixels; ++p)
        std::memcpy(full.data() + p * out_shape.c + c0, parts[r].data() + p * width, width * sizeof(float));
    }
    part.activation.apply(full.data(), full.size(), out_shape.c);
  } else {
    // Sum the partial products in member order, so every member gets the same bits.
    std::fill(full.data(), full.data() + full.size(), 0.0f);
    for (const auto& p : parts)
      for (std::size_t i = 0; i < full.size(); ++i) full.data()[i] += p[i];
    float* o = full.data();
    for (std::size_t p = 0; p < pixels; ++p)
      for (int c = 0; c < out_shape.c; ++c) o[p * out_shape.c + c] += part.bias[c];
    part.activation.apply(o, full.size(), out_shape.c);
  }
  values[n] = std::move(full);
}

void StageWorker::run_band(std::map<int, Tensor>& values, PeerExchange* exchange, LayerPacer* pacer) const {
  const auto& first = model_.node(spec_.first);
  const Tensor& input = values.at(first.inputs[0]);
  Tensor current;
  slice_rows(input, band_->in_begin(), band_->in_end(), current);
  for (const auto& step : band_->steps) {
    const layers::Layer& layer = step.own_layer ? *step.own_layer : *model_.node(step.node).layer;
    Tensor out;
    const double started = pacer ? steady_seconds() : 0;
    layer.forward({&current}, out);
    if (pacer)
      pacer->layer_done(step.node,
                        double(step.out_end - step.out_begin) / model_.node(step.node).layer->output_shape().h, started);
    current = std::move(out);
  }
  const Shape out_shape = model_.node(spec_.last).layer->output_shape();
  const int frames = input.frames();
  std::vector<std::size_t> counts;
  for (std::size_t r = 0; r + 1 < band_rows_.size(); ++r)
    counts.push_back(static_cast<std::size_t>(band_rows_[r + 1] - band_rows_[r]) * out_shape.w * out_shape.c);
  Tensor full(frames, out_shape);
  for (int n = 0; n < frames; ++n) {
    std::vector<float> mine(current.frame(n), current.frame(n) + current.frame_size());
    std::vector<std::vector<float>> parts;
    if (exchange) exchange->all_gather(mine, counts, parts);
    else parts.push_back(std::move(mine));
    // Bands are consecutive rows: in member order they are the whole frame.
    std::size_t offset = 0;
    for (const auto& p : parts) {
      std::copy(p.begin(), p.end(), full.frame(n) + offset);
      offset += p.size();
    }
  }
  values[spec_.last] = std::move(full);
}

}  // namespace chorus::partition
