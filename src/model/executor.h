#pragma once
// Runs a range of a model's nodes frame after frame over activation buffers it owns. The
// buffers are planned once, at construction, from the shapes and each value's last reader: a
// value's buffer goes to a later value once nothing reads it any more (best fit), so peak
// memory stays near the largest set of live activations, and a frame neither allocates nor
// touches a fresh page. `chorus bench`, Model::forward and every stage of `chorus run` (one
// rank or many) run through it.
#include <memory>
#include <vector>

#include "model/model.h"

namespace chorus::model {

// Told after each step a run computes (per-layer timing, emulation's pacing). A step is one
// node, or nodes [first, last] run as one (Model::fused_run); `started` is steady-clock seconds.
class StepObserver {
 public:
  virtual ~StepObserver() = default;
  virtual void step_done(int first, int last, double started) = 0;
};

// Nodes whose output the caller computes itself (a split stage's parts of layers): the
// executor hands it the node's inputs and the buffer for its output, shaped as the node's.
class ExternalNodes {
 public:
  virtual ~ExternalNodes() = default;
  virtual bool computes(int node) const = 0;
  virtual void compute(int node, const std::vector<const Tensor*>& inputs, Tensor& output) = 0;
};

// Steady-clock seconds (std::chrono::steady_clock), the clock StepObserver gets.
double steady_seconds();

class Executor {
 public:
  struct Options {
    bool fuse = true;                   // take Model::fused_run's steps; false: every node alone
    ExternalNodes* external = nullptr;  // must outlive the executor
  };
  // Nodes [first, last] of `model` (which must outlive the executor), fed with the values
  // `inputs` (model inputs or nodes before `first`), keeping the values `outputs` (inputs or
  // nodes of the range) after each run, for batches of `frames` frames.
  Executor(const Model& model, int first, int last, std::vector<int> inputs, std::vector<int> outputs, int frames,
           Options options);
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Where input k goes: write the values (frames() frames of its shape) before run().
  Tensor& input(int k) { return slots_[input_slots_[k]]; }
  // Output k of the last run; valid until the next run.
  const Tensor& output(int k) const { return slots_[output_slots_[k]]; }
  int frames() const { return frames_; }
  // Floats held by all buffers.
  std::size_t buffer_floats() const;

  void run(StepObserver* observer = nullptr);

 private:
  struct Step {
    int first = 0, last = 0;  // nodes [first, last]; the output is last's
    Model::FusedRun fused;    // length 1: the node alone
    bool external = false;
    std::vector<const Tensor*> inputs;  // first's inputs
    const Tensor* residual = nullptr;   // a fused Add's other input
    Tensor* output = nullptr;
  };

  const Model& model_;
  int frames_;
  ExternalNodes* external_;
  std::vector<Tensor> slots_;  // never resized after construction: steps point into it
  std::vector<int> input_slots_, output_slots_;
  std::vector<Step> steps_;
};

}  // namespace chorus::model
