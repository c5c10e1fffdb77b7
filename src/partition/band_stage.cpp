#include "partition/band_stage.h"

#include <algorithm>

#include "core/error.h"
#include "layers/layers3d.h"
#include "layers/pooling.h"

namespace chorus::partition {

using layers::pool_positions;

namespace {

// Buffers for values made one after another: a value takes a buffer that no value still to be
// read holds. Events count the points where values are made and read, in the order they run.
class BufferPlan {
 public:
  void next() { ++event_; }
  // A value of `floats` floats made now; the buffer it gets is written to *buffer by assign().
  std::size_t make(std::size_t floats, int* buffer) {
    values_.push_back({floats, event_, event_, buffer});
    return values_.size() - 1;
  }
  void read(std::size_t value) { values_[value].last_read = std::max(values_[value].last_read, event_); }
  // Gives every value its buffer and returns each buffer's size in floats.
  std::vector<std::size_t> assign() const {
    std::vector<int> held_until;  // per buffer: the last event a value in it is read at
    std::vector<std::size_t> capacity;
    for (const Value& v : values_) {
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
    return capacity;
  }

 private:
  struct Value {
    std::size_t floats = 0;
    int made = 0, last_read = 0;
    int* buffer = nullptr;
  };
  std::vector<Value> values_;
  int event_ = 0;
};

std::size_t tile_floats(const Shape& s, const plan::Tile& tile, int frames) {
  return static_cast<std::size_t>(tile.size()) * s.c * s.d * frames;
}

// Copies all of every frame of `part` into `whole` at row `row` and column `column`.
void put_tile(const Tensor& part, int row, int column, Tensor& whole) {
  const Shape &p = part.shape(), &w = whole.shape();
  for (int n = 0; n < part.frames(); ++n)
    copy_image_block(part.frame(n), {p.h, p.w, 0, 0}, whole.frame(n), {w.h, w.w, row, column}, p.h, p.w, p.d, p.c);
}

}  // namespace

BandStage::BandStage(model::Model& m, const plan::ResolvedStage& stage, int member, const std::vector<int>& inputs,
                     io::WeightReader& reader, int frames)
    : model_(m), spec_(stage), member_(member) {
  band_input_ =
      static_cast<int>(std::find(inputs.begin(), inputs.end(), m.node(stage.first).inputs.at(0)) - inputs.begin());
  CHORUS_ASSERT(band_input_ < static_cast<int>(inputs.size()), "stage's band input is not alive before it");
  groups_ = plan::band_groups(m, stage.first, stage.group_ends, stage.fractions, stage.columns);
  runs_.resize(groups_.size());  // not resized again: parts point at their group's layers
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const plan::BandGroup& group = groups_[g];
    const plan::Tile& mine = group.tiles[member];
    Group& run = runs_[g];
    run.whole.band = make_row_band(m, group.first, group.last, mine, reader);
    for (const auto& step : run.whole.band.steps)
      weight_bytes_ += step.own_layer ? step.own_layer->weight_bytes() : m.node(step.node).weight_bytes();
    if (g == 0) continue;
    // The rows this member swaps with the others between group g - 1 and group g.
    halo_sends_.emplace_back();
    halo_receives_.emplace_back();
    const Shape in = m.shape_of(m.node(group.first).inputs[0]);
    const std::size_t pixel = static_cast<std::size_t>(in.c) * in.d;
    for (const plan::HaloTransfer& h : plan::halo_transfers(groups_[g - 1], group)) {
      const plan::Tile tile{{h.begin, h.end}, {h.col_begin, h.col_end}};
      if (h.from == member) halo_sends_.back().push_back({h.to, tile, std::vector<float>(frames * pixel * h.size())});
      if (h.to == member)
        halo_receives_.back().push_back({h.from, tile, std::vector<float>(frames * pixel * h.size())});
    }
    // The part that reads only this member's own output, computed while the halo travels (not
    // for clips, nor through 3-D convolutions, whose weights a part cannot share).
    if (!plan::band_overlaps_halo(m, group.first, group.last)) continue;
    const plan::Tile interior = plan::tile_interior(m, group.first, group.last, mine, groups_[g - 1].tiles[member]);
    if (interior.size() == 0) continue;  // a band thinner than its halo: all of it waits
    const auto part = [&](const plan::Tile& t) {
      run.parts.push_back({make_row_band(m, group.first, group.last, t, reader, &run.whole.band), -1, {}, {}});
    };
    part(interior);
    for (const plan::Tile& edge : plan::tile_edges(mine, interior)) part(edge);
  }
  for (int v : inputs) {
    inputs_.emplace_back();
    inputs_.back().resize(frames, m.shape_of(v));
  }
  const Shape out = m.node(stage.last).layer->output_shape();
  output_.resize(frames, out);
  pools_ = plan::pools_bands(m, stage.first, stage.last);
  if (pools_) {
    const layers::Layer& pool = *m.node(stage.last).layer;
    const auto* flat = dynamic_cast<const layers::GlobalPool2D*>(&pool);
    pool_kind_ = flat ? flat->kind() : dynamic_cast<const layers::GlobalPool3D&>(pool).kind();
    pooled_.resize(out.size());
  }
  const Shape banded = m.node(groups_.back().last).layer->output_shape();
  for (const plan::Tile& t : groups_.back().tiles) counts_.push_back(pools_ ? out.size() : tile_floats(banded, t, 1));
  gathers_whole_rows_ = stage.columns == 1 && !out.is_clip();
  if (pools_)
    gathered_.resize(out.size() * counts_.size());
  else if (!gathers_whole_rows_)
    gathered_.resize(out.size());  // tiles arrive member by member
  plan_buffers(frames);
}

BandStage::~BandStage() = default;

void BandStage::plan_buffers(int frames) {
  BufferPlan plan;
  const auto input_floats = [&](const Run& run) {
    return tile_floats(model_.shape_of(model_.node(run.band.steps.front().node).inputs[0]), run.band.input_tile(),
                       frames);
  };
  // Per step of a run: the crops it reads (made, then read by the step), then its output.
  const auto plan_run = [&](Run& run, std::size_t input) {
    const auto& steps = run.band.steps;
    std::vector<std::size_t> made(steps.size());
    run.outputs.assign(steps.size(), -1);
    run.crops.assign(steps.size(), {});
    for (std::size_t k = 0; k < steps.size(); ++k) {
      const BandStep& step = steps[k];
      run.crops[k].assign(step.inputs.size(), -1);
      std::vector<std::size_t> reads;
      plan.next();
      for (std::size_t j = 0; j < step.inputs.size(); ++j) {
        const int producer = step.inputs[j];
        const std::size_t value = producer < 0 ? input : made[producer];
        const plan::Tile held{{run.band.rows_begin(producer), run.band.rows_end(producer)},
                              run.band.columns_of(producer)};
        const plan::Tile read{{step.in_begin, step.in_end}, step.in_columns};
        if (held == read) {  // the step reads its producer's value as it is, without a crop
          reads.push_back(value);
          continue;
        }
        plan.read(value);
        const Shape from = producer < 0 ? model_.shape_of(model_.node(step.node).inputs[j])
                                        : model_.node(steps[producer].node).layer->output_shape();
        reads.push_back(plan.make(tile_floats(from, read, frames), &run.crops[k][j]));
      }
      plan.next();
      for (std::size_t v : reads) plan.read(v);
      made[k] = plan.make(tile_floats(model_.node(step.node).layer->output_shape(),
                                      {{step.out_begin, step.out_end}, step.out_columns}, frames),
                          &run.outputs[k]);
    }
    return made.back();
  };
  std::size_t previous = 0;  // the group before's output
  for (std::size_t g = 0; g < runs_.size(); ++g) {
    Group& group = runs_[g];
    plan.next();
    if (g > 0) plan.read(previous);  // own rows copied, halo rows packed
    const std::size_t next = plan.make(input_floats(group.whole), &group.whole.input);
    if (group.parts.empty()) {
      previous = plan_run(group.whole, next);
      continue;
    }
    // The interior from a crop of the group before's output, while the halo travels.
    plan.next();
    plan.read(previous);
    Run& interior = group.parts.front();
    std::vector<std::size_t> outputs{plan_run(interior, plan.make(input_floats(interior), &interior.input))};
    plan.next();
    plan.read(next);  // the halo lands in the group's input
    for (std::size_t k = 1; k < group.parts.size(); ++k) {
      Run& edge = group.parts[k];
      plan.next();
      plan.read(next);  // the edges' inputs are crops of it
      outputs.push_back(plan_run(edge, plan.make(input_floats(edge), &edge.input)));
    }
    plan.next();
    for (std::size_t v : outputs) plan.read(v);
    const plan::BandGroup& bounds = groups_[g];
    previous = plan.make(tile_floats(model_.node(bounds.last).layer->output_shape(), bounds.tiles[member_], frames),
                         &group.output);
  }
  plan.next();
  plan.read(previous);  // gathered at the end
  const std::vector<std::size_t> capacity = plan.assign();
  buffers_.resize(capacity.size());
  for (std::size_t b = 0; b < capacity.size(); ++b) buffers_[b].reserve(capacity[b]);
  std::size_t widest = 1;
  for (const Group& group : runs_)
    for (const BandStep& step : group.whole.band.steps) widest = std::max(widest, step.inputs.size());
  step_inputs_.reserve(widest);
}

void BandStage::run(PeerExchange* exchange, LayerPacer* pacer) {
  exchange_ = exchange;
  pacer_ = pacer;
  const Tensor& input = inputs_[band_input_];
  const int frames = input.frames();  // buffers sized for more frames grow once for a larger batch
  output_.resize(frames, model_.node(spec_.last).layer->output_shape());
  const Tensor* last = nullptr;
  for (std::size_t g = 0; g < runs_.size(); ++g) {
    const Group& group = runs_[g];
    Tensor& next = buffer(group.whole.input);
    if (g == 0) {
      const Shape& s = input.shape();
      slice_tile(input, {{0, s.h}, {0, s.w}}, group.whole.band.input_tile(), next);
    } else {
      start_halo(g - 1, *last, next);
    }
    if (group.parts.empty()) {
      if (g > 0) finish_halo(g - 1, next);
      last = &run_steps(group.whole);
      continue;
    }
    // The interior reads only this member's own part of the group before's output.
    const Run& interior = group.parts.front();
    slice_tile(*last, groups_[g - 1].tiles[member_], interior.band.input_tile(), buffer(interior.input));
    const Tensor* part_out[5] = {&run_steps(interior)};  // the interior and up to four edges
    finish_halo(g - 1, next);
    for (std::size_t k = 1; k < group.parts.size(); ++k) {
      const Run& edge = group.parts[k];
      slice_tile(next, group.whole.band.input_tile(), edge.band.input_tile(), buffer(edge.input));
      part_out[k] = &run_steps(edge);
    }
    // The parts, joined.
    const plan::Tile& mine = groups_[g].tiles[member_];
    Tensor& out = buffer(group.output);
    Shape shape = model_.node(groups_[g].last).layer->output_shape();
    shape.h = mine.rows.second - mine.rows.first;
    shape.w = mine.columns.second - mine.columns.first;
    out.resize(frames, shape);
    for (std::size_t k = 0; k < group.parts.size(); ++k) {
      const plan::Tile t = group.parts[k].band.output_tile();
      put_tile(*part_out[k], t.rows.first - mine.rows.first, t.columns.first - mine.columns.first, out);
    }
    last = &out;
  }
  tile_output_ = last;
  if (pools_) {
    pool_and_join(*last);
  } else if (!hands_tiles_on_) {
    gather(*last);
  }
  exchange_ = nullptr;
  pacer_ = nullptr;
}

const Tensor& BandStage::run_steps(const Run& run) {
  const RowBand& band = run.band;
  const Tensor* last = nullptr;
  for (std::size_t k = 0; k < band.steps.size(); ++k) {
    const BandStep& step = band.steps[k];
    const layers::Layer& layer = step.own_layer ? *step.own_layer : *model_.node(step.node).layer;
    step_inputs_.clear();
    for (std::size_t j = 0; j < step.inputs.size(); ++j) {
      const int producer = step.inputs[j];
      const Tensor& value = producer < 0 ? buffer(run.input) : buffer(run.outputs[producer]);
      const int crop = run.crops[k][j];
      if (crop < 0) {
        step_inputs_.push_back(&value);
        continue;
      }
      // A producer with more rows than this step reads (another reader's halo is wider).
      slice_tile(value, {{band.rows_begin(producer), band.rows_end(producer)}, band.columns_of(producer)},
                 {{step.in_begin, step.in_end}, step.in_columns}, buffer(crop));
      step_inputs_.push_back(&buffer(crop));
    }
    const double started = pacer_ ? steady_seconds() : 0;
    Tensor& out = buffer(run.outputs[k]);
    layer.forward(step_inputs_, out);
    if (pacer_) {
      const Shape& whole = model_.node(step.node).layer->output_shape();
      const plan::Tile t{{step.out_begin, step.out_end}, step.out_columns};
      pacer_->layer_done(step.node, double(t.size()) / (double(whole.h) * whole.w), started);
    }
    last = &out;
  }
  return *last;
}

void BandStage::gather(const Tensor& mine) {
  for (int n = 0; n < mine.frames(); ++n) {
    // Bands of images are consecutive rows: in member order they are the whole frame. Only
    // member 0 hands the stage's output on, so only it gathers them.
    if (!exchange_) {
      std::copy(mine.frame(n), mine.frame(n) + mine.frame_size(), output_.frame(n));
    } else if (gathers_whole_rows_) {
      exchange_->gather(mine.frame(n), counts_, output_.frame(n), 0);
    } else {
      // Tiles, or a clip's bands (those rows of each of its images): gathered member after
      // member, then put in place.
      exchange_->gather(mine.frame(n), counts_, gathered_.data(), 0);
      if (member_ == 0) place_tiles(gathered_.data(), n);
    }
  }
}

void BandStage::place_tiles(const float* from, int n) {
  const Shape& out = output_.shape();
  for (const plan::Tile& t : groups_.back().tiles) {
    const int rows = t.rows.second - t.rows.first, columns = t.columns.second - t.columns.first;
    copy_image_block(from, {rows, columns, 0, 0}, output_.frame(n), {out.h, out.w, t.rows.first, t.columns.first}, rows,
                     columns, out.d, out.c);
    from += static_cast<std::size_t>(t.size()) * out.d * out.c;
  }
}

void BandStage::pool_and_join(const Tensor& mine) {
  const double started = pacer_ ? steady_seconds() : 0;
  const int c = output_.shape().c;
  const std::size_t positions = mine.frame_size() / c;  // this member's rows (of every image of a clip)
  const Shape whole = model_.node(spec_.last).layer->input_shapes()[0];
  const float pixels = static_cast<float>(whole.size() / c);
  const int members = exchange_ ? static_cast<int>(counts_.size()) : 1;
  CHORUS_ASSERT(positions > 0, "a pooled band of no rows");
  for (int n = 0; n < mine.frames(); ++n) {
    pool_positions(mine.frame(n), positions, c, pool_kind_, pooled_.data());  // over this member's rows
    const float* pools = pooled_.data();
    if (exchange_) {
      exchange_->gather(pooled_.data(), counts_, gathered_.data(), 0);
      if (member_ != 0) continue;
      pools = gathered_.data();
    }
    // The members' pools, joined as the positions of one image are.
    float* __restrict out = output_.frame(n);
    pool_positions(pools, members, c, pool_kind_, out);
    if (pool_kind_ == layers::PoolKind::average)
      for (int ch = 0; ch < c; ++ch) out[ch] /= pixels;
  }
  if (pacer_) pacer_->layer_done(spec_.last, double(tile().size()) / (double(whole.h) * whole.w), started);
}

void BandStage::pack_tile(const Tensor& band, const plan::Tile& held, const plan::Tile& part, float* packed) {
  const Shape& s = band.shape();
  const int rows = part.rows.second - part.rows.first, columns = part.columns.second - part.columns.first;
  for (int n = 0; n < band.frames(); ++n, packed += static_cast<std::size_t>(part.size()) * s.d * s.c)
    copy_image_block(band.frame(n),
                     {s.h, s.w, part.rows.first - held.rows.first, part.columns.first - held.columns.first}, packed,
                     {rows, columns, 0, 0}, rows, columns, s.d, s.c);
}

void BandStage::unpack_tile(const float* packed, const plan::Tile& part, const plan::Tile& held, Tensor& band) {
  const Shape& s = band.shape();
  const int rows = part.rows.second - part.rows.first, columns = part.columns.second - part.columns.first;
  for (int n = 0; n < band.frames(); ++n, packed += static_cast<std::size_t>(part.size()) * s.d * s.c)
    copy_image_block(packed, {rows, columns, 0, 0}, band.frame(n),
                     {s.h, s.w, part.rows.first - held.rows.first, part.columns.first - held.columns.first}, rows,
                     columns, s.d, s.c);
}

void BandStage::start_halo(std::size_t g, const Tensor& mine, Tensor& next) {
  const plan::Tile &own = groups_[g].tiles[member_], &need = groups_[g + 1].input_tiles[member_];
  Shape shape = mine.shape();
  shape.h = need.rows.second - need.rows.first;
  shape.w = need.columns.second - need.columns.first;
  next.resize(mine.frames(), shape);
  // Its own part stays; the rest comes from the members that computed it.
  const plan::Tile keep{
      {std::max(own.rows.first, need.rows.first), std::min(own.rows.second, need.rows.second)},
      {std::max(own.columns.first, need.columns.first), std::min(own.columns.second, need.columns.second)}};
  if (keep.rows.first < keep.rows.second && keep.columns.first < keep.columns.second) {
    const Shape& m = mine.shape();
    for (int n = 0; n < mine.frames(); ++n)
      copy_image_block(
          mine.frame(n), {m.h, m.w, keep.rows.first - own.rows.first, keep.columns.first - own.columns.first},
          next.frame(n), {shape.h, shape.w, keep.rows.first - need.rows.first, keep.columns.first - need.columns.first},
          keep.rows.second - keep.rows.first, keep.columns.second - keep.columns.first, shape.d, shape.c);
  }
  if (!exchange_) return;  // one member: nothing to swap
  const std::size_t per_pixel = static_cast<std::size_t>(shape.c) * shape.d * mine.frames();
  send_parts_.clear();
  receive_parts_.clear();
  for (HaloRows& h : halo_sends_[g]) {
    const std::size_t count = per_pixel * h.tile.size();
    if (h.buffer.size() < count) h.buffer.resize(count);  // a larger batch than set up for: once
    pack_tile(mine, own, h.tile, h.buffer.data());
    send_parts_.push_back({h.member, h.buffer.data(), count});
  }
  for (HaloRows& h : halo_receives_[g]) {
    const std::size_t count = per_pixel * h.tile.size();
    if (h.buffer.size() < count) h.buffer.resize(count);
    receive_parts_.push_back({h.member, h.buffer.data(), count});
  }
  exchange_->start_swap(send_parts_, receive_parts_);
}

void BandStage::finish_halo(std::size_t g, Tensor& next) {
  if (!exchange_) return;
  exchange_->finish_swap();
  const plan::Tile& need = groups_[g + 1].input_tiles[member_];
  for (const HaloRows& h : halo_receives_[g]) unpack_tile(h.buffer.data(), h.tile, need, next);
}

}  // namespace chorus::partition
