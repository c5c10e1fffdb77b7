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
  // Part of a node computed (a parted run's): `fraction` of the node's work.
  virtual void part_done(int node, double fraction, double started) { (void)node, (void)fraction, (void)started; }
};

// Nodes whose output the caller computes itself (a split stage's parts of layers): the
// executor hands it the node's inputs and the buffer for its output, shaped as the node's.
class ExternalNodes {
 public:
  virtual ~ExternalNodes() = default;
  virtual bool computes(int node) const = 0;
  virtual void compute(int node, const std::vector<const Tensor*>& inputs, Tensor& output) = 0;

  // Parted runs (Options::parted): run k computes part by part over the positions bounds
  // run_parts(k) (over the batch's frames, back to back); before_part(k, j) comes before part
  // j of its nodes (it waits for what they read) and after_run(k) after the last part. The
  // external nodes among them compute their positions in compute_positions (sizing `output`
  // at the first part, p0 == 0) and pace them.
  virtual const std::vector<std::int64_t>& run_parts(int run) = 0;
  virtual void before_part(int run, int part) = 0;
  virtual void compute_positions(int node, const std::vector<const Tensor*>& inputs, Tensor& output, std::int64_t p0,
                                 std::int64_t p1) = 0;
  // The run's consumer (PartedRun::consumer, the external node after it) takes positions
  // [p0, p1) of its inputs after each part; compute() later does the rest.
  virtual void consume_positions(int node, const std::vector<const Tensor*>& inputs, std::int64_t p0,
                                 std::int64_t p1) = 0;
  virtual void after_run(int run) = 0;
};

// Nodes [first, last] computed part by part (position-wise layers behind a split layer's
// reduction, plan::part_runs): part j of each, in order, then part j + 1. They are never fused
// and none works in its input's buffer; every value they read stays until the run's end.
// `consumer` (last + 1, an external node, or -1) takes each part of its input as it is made.
struct PartedRun {
  int first = 0, last = -1;
  int consumer = -1;
};

// Steady-clock seconds (std::chrono::steady_clock), the clock StepObserver gets.
double steady_seconds();

class Executor {
 public:
  struct Options {
    bool fuse = true;                   // take Model::fused_run's steps; false: every node alone
    ExternalNodes* external = nullptr;  // must outlive the executor
    std::vector<PartedRun> parted;      // in node order, inside the range; needs `external`
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
    int run = -1, run_last = -1;        // the first step of parted run `run`, which ends at node run_last
    int run_consumer = -1;              // and whose consumer is this node
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
  // Runs one parted run (its steps from `first`); returns the index of its last step.
  std::size_t run_parted(std::size_t first, StepObserver* observer);
};

}  // namespace chorus::model
