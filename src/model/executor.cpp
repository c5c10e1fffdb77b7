#include "model/executor.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "layers/merge.h"
#include "layers/pointwise_depthwise.h"
#include "layers/scratch.h"

namespace chorus::model {

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

namespace {

// The buffers as planned: capacities, and those free at the current step.
struct SlotPlan {
  std::vector<std::size_t> capacity;
  std::vector<int> free;

  int fresh(std::size_t floats) {
    capacity.push_back(floats);
    return static_cast<int>(capacity.size()) - 1;
  }
  // Best fit: the smallest free buffer that holds `floats`, else the largest (which grows),
  // else a new one.
  int take(std::size_t floats) {
    if (free.empty()) return fresh(floats);
    auto best = free.begin();
    for (auto it = free.begin() + 1; it != free.end(); ++it) {
      const std::size_t c = capacity[*it], b = capacity[*best];
      const bool fits = c >= floats, best_fits = b >= floats;
      if ((fits && (!best_fits || c < b)) || (!fits && !best_fits && c > b)) best = it;
    }
    const int slot = *best;
    free.erase(best);
    capacity[slot] = std::max(capacity[slot], floats);
    return slot;
  }
};

}  // namespace

Executor::Executor(const Model& model, int first, int last, std::vector<int> inputs, std::vector<int> outputs,
                   int frames, Options options)
    : model_(model), frames_(frames), external_(options.external) {
  const int count = static_cast<int>(model.nodes().size());
  CHORUS_ASSERT(first >= 0 && first <= last && last < count, "executor over nodes ", first, "..", last);
  // Values are indexed by Model::value_slot (model inputs first).
  std::vector<int> slot_of(model.value_count(), -1), pending(model.value_count(), 0);
  const auto at = [&](int id) { return static_cast<std::size_t>(model.value_slot(id)); };
  const auto floats = [&](int id) { return static_cast<std::size_t>(frames) * model.shape_of(id).size(); };
  for (int n = first; n <= last; ++n)
    for (int i : model.node(n).inputs) ++pending[at(i)];
  for (int v : outputs) ++pending[at(v)];  // kept to the end

  SlotPlan plan;
  for (int v : inputs) {
    CHORUS_ASSERT(v < first, "executor input ", v, " is inside its range ", first, "..", last);
    slot_of[at(v)] = plan.fresh(floats(v));
    input_slots_.push_back(slot_of[at(v)]);
  }
  for (int v : inputs)
    if (pending[at(v)] == 0) plan.free.push_back(slot_of[at(v)]);
  const auto read = [&](int v) {
    if (--pending[at(v)] == 0 && slot_of[at(v)] >= 0) plan.free.push_back(slot_of[at(v)]);
  };
  const auto is_external = [&](int n) { return external_ && external_->computes(n); };

  struct Planned {
    Step step;
    std::vector<int> inputs;
    int residual = kNoNode, output = -1;
  };
  // Parted runs, by node: the run a node belongs to.
  std::vector<int> run_of(last - first + 1, -1);
  for (std::size_t k = 0; k < options.parted.size(); ++k) {
    const PartedRun& r = options.parted[k];
    CHORUS_ASSERT(external_ && r.first >= first && r.first <= r.last && r.last <= last, "parted run ", r.first, "..",
                  r.last, " outside nodes ", first, "..", last);
    for (int n = r.first; n <= r.last; ++n) run_of[n - first] = static_cast<int>(k);
  }
  std::vector<int> deferred_reads;  // a parted run's reads, released at its end

  std::vector<Planned> planned;
  for (int n = first; n <= last; ++n) {
    const Node& node = model.node(n);
    const int run = run_of[n - first];
    for (int v : node.inputs)
      CHORUS_ASSERT(slot_of[at(v)] >= 0, "node ", node.name(), " reads value ", v, ", which its executor lacks");
    Planned p;
    p.step.first = n;
    p.step.external = is_external(n);
    const int in0 = node.inputs[0];
    // An in-place layer that is the last reader of its input works in that buffer.
    const bool reuse = run < 0 && !p.step.external && node.layer->in_place() && pending[at(in0)] == 1 &&
                       std::count(node.inputs.begin(), node.inputs.end(), in0) == 1;
    if (run >= 0 && options.parted[run].first == n) {
      p.step.run = run;
      p.step.run_last = options.parted[run].last;
      p.step.run_consumer = options.parted[run].consumer;
    }
    if (options.fuse && !reuse && !p.step.external && run < 0) {
      p.step.fused = model.fused_run(n);
      const int end = n + p.step.fused.length - 1;
      bool fits = end <= last;
      for (int m = n; fits && m <= end; ++m) fits = !is_external(m) && run_of[m - first] < 0;
      if (!fits) p.step.fused = Model::FusedRun{};
    }
    const int end = n + p.step.fused.length - 1;
    p.step.last = end;
    p.inputs = node.inputs;
    p.residual = p.step.fused.residual;
    if (reuse) {
      p.output = slot_of[at(in0)];
      slot_of[at(in0)] = -1;  // its buffer is the output's now
      plan.capacity[p.output] = std::max(plan.capacity[p.output], floats(end));
    } else {
      p.output = plan.take(floats(end));
    }
    // Inputs are released after the step, so an output never overwrites what it reads. Values
    // made inside a fused run never exist; only reads from before the run count.
    for (int m = n; m <= end; ++m)
      for (int v : model.node(m).inputs)
        if (v < n) (run >= 0 ? deferred_reads.push_back(v) : read(v));
    if (run >= 0 && n == options.parted[run].last) {
      for (int v : deferred_reads) read(v);
      deferred_reads.clear();
    }
    for (int m = n; m < end; ++m) pending[at(m)] = 0;
    slot_of[at(end)] = p.output;
    planned.push_back(std::move(p));
    n = end;
  }
  for (int v : outputs) {
    CHORUS_ASSERT(slot_of[at(v)] >= 0, "executor output ", v, " is not made or kept by nodes ", first, "..", last);
    output_slots_.push_back(slot_of[at(v)]);
  }

  // Buffers sized at set-up; the steps point into them.
  slots_.resize(plan.capacity.size());
  for (std::size_t s = 0; s < slots_.size(); ++s) slots_[s].reserve(plan.capacity[s]);
  for (std::size_t k = 0; k < inputs.size(); ++k) slots_[input_slots_[k]].resize(frames, model.shape_of(inputs[k]));
  // The slot each value lives in at its step, replayed in the planned order.
  std::fill(slot_of.begin(), slot_of.end(), -1);
  for (std::size_t k = 0; k < inputs.size(); ++k) slot_of[at(inputs[k])] = input_slots_[k];
  for (auto& p : planned) {
    for (int v : p.inputs) p.step.inputs.push_back(&slots_[slot_of[at(v)]]);
    if (p.residual != kNoNode) p.step.residual = &slots_[slot_of[at(p.residual)]];
    p.step.output = &slots_[p.output];
    slot_of[at(p.step.last)] = p.output;
    steps_.push_back(std::move(p.step));
  }
}

std::size_t Executor::buffer_floats() const {
  std::size_t total = 0;
  for (const auto& t : slots_) total += t.capacity();
  return total;
}

std::size_t Executor::run_parted(std::size_t first, StepObserver* observer) {
  const int run = steps_[first].run;
  std::size_t end = first;
  while (steps_[end].last < steps_[first].run_last) ++end;
  const std::vector<std::int64_t>& parts = external_->run_parts(run);
  const int frames = steps_[first].inputs[0]->frames();
  const Step* consumer = nullptr;
  if (steps_[first].run_consumer >= 0) {
    consumer = &steps_.at(end + 1);
    CHORUS_ASSERT(consumer->first == steps_[first].run_consumer && consumer->external, "parted run's consumer ",
                  steps_[first].run_consumer, " is not the external node after it");
  }
  for (std::size_t j = 0; j + 1 < parts.size(); ++j) {
    external_->before_part(run, static_cast<int>(j));
    const std::int64_t p0 = parts[j], p1 = parts[j + 1];
    for (std::size_t i = first; i <= end; ++i) {
      Step& step = steps_[i];
      const double started = observer ? steady_seconds() : 0;
      const Node& node = model_.node(step.first);
      if (j == 0 && !step.external) step.output->resize(frames, node.layer->output_shape());
      if (step.external) {
        external_->compute_positions(step.first, step.inputs, *step.output, p0, p1);
      } else {
        node.layer->forward_positions(step.inputs, *step.output, p0, p1);
        if (observer) observer->part_done(step.first, double(p1 - p0) / parts.back(), started);
      }
    }
    if (consumer) external_->consume_positions(consumer->first, consumer->inputs, p0, p1);
  }
  external_->after_run(run);
  return end;
}

void Executor::run(StepObserver* observer) {
  for (std::size_t i = 0; i < steps_.size(); ++i) {
    Step& step = steps_[i];
    if (step.run >= 0) {
      i = run_parted(i, observer);
      continue;
    }
    const double started = observer ? steady_seconds() : 0;
    const Node& node = model_.node(step.first);
    if (step.external) {
      external_->compute(step.first, step.inputs, *step.output);
    } else if (step.fused.length == 1) {
      node.layer->forward(step.inputs, *step.output);
    } else {
      const layers::Layer& produced = *model_.node(step.last).layer;
      const layers::Activation add_activation =
          step.residual ? dynamic_cast<const layers::Elementwise&>(produced).activation() : layers::Activation{};
      if (step.fused.depthwise) {
        layers::DepthwiseChain chain;
        const int dw = step.fused.expand ? step.first + 1 : step.first;
        if (step.fused.expand) chain.expand = &dynamic_cast<const layers::Conv2D&>(*node.layer);
        chain.depthwise = &dynamic_cast<const layers::DepthwiseConv2D&>(*model_.node(dw).layer);
        if (step.fused.project) chain.project = &dynamic_cast<const layers::Conv2D&>(*model_.node(dw + 1).layer);
        chain.residual = step.residual;
        chain.add_activation = add_activation;
        layers::forward_depthwise_chain(chain, *step.inputs[0], *step.output);
      } else {
        dynamic_cast<const layers::Conv2D&>(*node.layer)
            .forward_adding(*step.inputs[0], *step.residual, add_activation, *step.output);
      }
    }
    if (observer) observer->step_done(step.first, step.last, started);
  }
  // The first runs grow the kernels' per-thread buffers on the threads that took their tasks;
  // the rest grow now, not in some later frame.
  layers::settle_scratch_on_every_thread();
}

}  // namespace chorus::model
