#pragma once
// One rank's share of one stage, ready to run frame after frame: the layers it computes whole,
// its parts of split layers, or its row band, each loaded with only the weights it needs.
// Every buffer it computes in is sized when it is built and reused by every frame (a
// model::Executor over the stage's nodes; a band's own buffers), so the steady state allocates
// nothing. Communication with the other ranks of a split stage goes through PeerExchange,
// which the runtime implements over MPI, so this module stays free of MPI.
#include <map>
#include <memory>
#include <vector>

#include "io/weight_reader.h"
#include "model/executor.h"
#include "partition/layer_parts.h"
#include "partition/row_bands.h"
#include "plan/split_sums.h"
#include "plan/validate.h"

namespace chorus::partition {

class PeerExchange {
 public:
  virtual ~PeerExchange() = default;
  // Every member contributes `mine` (counts[member] floats); afterwards `gathered` holds every
  // member's part in member order (counts[0] floats of member 0, then member 1's...), the
  // caller's own included. All members call it in the same order.
  virtual void all_gather(const float* mine, const std::vector<std::size_t>& counts, float* gathered) = 0;
  // The same, but only member `root` receives the parts (the others only send theirs); by
  // default an all-gather.
  virtual void gather(const float* mine, const std::vector<std::size_t>& counts, float* gathered, int root) {
    (void)root;
    all_gather(mine, counts, gathered);
  }
  // Point to point: each of `sends` goes to its member, each of `receives` is filled from its
  // member. Every member calls it at the same point of the stage (between two groups of a
  // split-spatial stage's bands), so that what one member sends to another, that one receives.
  struct Part {
    int member = 0;
    float* data = nullptr;
    std::size_t count = 0;  // floats
  };
  virtual void swap_parts(const std::vector<Part>& sends, const std::vector<Part>& receives) = 0;
  // Partial sums reduced part by part, each part's reduction overlapping the compute of the
  // parts after it. begin_sums(data, count, members) comes first; sums_ready(begin, end) says
  // that floats [begin, end) of this member's partial sums are written (parts in order, together
  // [0, count)); after end_sums() every member's `data` holds the sums over the members, the
  // same bits everywhere. All members call them at the same point of the stage. The runtime
  // reduces each part directly (plan::sum_share_begin): member c adds up share c of the part from
  // every member, in member order, and sends the sum to the others; this default gathers every
  // member's whole data at the end and adds it in member order.
  virtual void begin_sums(float* data, std::size_t count, int members);
  virtual void sums_ready(std::size_t begin, std::size_t end) { (void)begin, (void)end; }
  virtual void end_sums();

 protected:
  float* sum_data_ = nullptr;
  std::size_t sum_count_ = 0;
  int sum_members_ = 0;
};

// Called after each layer a worker runs, so an emulator can stretch compute to a slower
// device's speed. `share` is the part of the layer's work done (1 for a whole layer; the
// slice's fraction for split layers); `started` is steady-clock seconds at its start.
class LayerPacer {
 public:
  virtual ~LayerPacer() = default;
  virtual void layer_done(int node, double share, double started) = 0;
  // Part way through a layer: `fraction` of its work is done (a layer computed in parts, whose
  // finished parts are sent as they come).
  virtual void layer_progress(int node, double share, double started, double fraction) {
    (void)node, (void)share, (void)started, (void)fraction;
  }
};

// Steady-clock seconds, the clock LayerPacer uses.
using model::steady_seconds;

class StageWorker : private model::ExternalNodes {
 public:
  // `model` must outlive the worker; nodes computed whole are loaded in place. `fuse`: run
  // Model::fused_run's steps (false under a pacer, which paces every layer on its own).
  // Buffers are sized for batches of `frames` frames (a larger batch grows them once).
  StageWorker(model::Model& model, const plan::ResolvedPlan& plan, int stage, int member, io::WeightReader& reader,
              bool fuse = true, int frames = 1);
  ~StageWorker() override;

  // The values alive before the stage (live_values(stage - 1) order): fill input(k) with
  // frames() frames of value k before run().
  int inputs() const { return static_cast<int>(inputs_.size()); }
  Tensor& input(int k);
  // Runs the stage on the inputs. `exchange` may be null for a stage of one rank.
  void run(PeerExchange* exchange, LayerPacer* pacer = nullptr);
  // The values alive after the stage (live_values(stage) order), valid until the next run().
  // In a split-spatial stage only member 0, which hands them on, gathers the bands: the other
  // members' outputs are not the stage's. In a parity stage the one output is this member's
  // slice (or the parity), before the activation.
  int outputs() const { return static_cast<int>(outputs_.size()); }
  const Tensor& output(int k) const;

  int stage() const { return stage_; }
  int member() const { return member_; }
  int frames() const { return frames_; }
  std::size_t weight_bytes() const { return weight_bytes_; }
  // Layer names this worker runs (first .. last of the stage), for reports.
  std::string layers_held() const;

 private:
  // A split layer's buffers, kept from frame to frame.
  struct SplitScratch {
    Tensor sliced, mine, gathered;
    std::vector<const Tensor*> part_inputs{nullptr};
    plan::SplitRole role = plan::SplitRole::whole;
    bool input_is_slice = false;  // the input is already this member's slice (a pair's second layer)
    std::vector<std::size_t> frame_counts;  // floats per member per frame
    std::vector<std::size_t> counts;        // floats per member in the current batch
    int multiplier = 1;                     // output channels per split channel (depthwise)
    std::vector<std::size_t> sum_parts;        // partial sums: the parts they are reduced in (floats)
    std::vector<std::int64_t> sum_positions;  // the same in positions, for the layer
    void set_sum_parts(const Shape& out, int frames, bool in_parts) {
      sum_parts = plan::sum_parts(out, frames, in_parts);
      sum_positions.clear();
      for (std::size_t b : sum_parts) sum_positions.push_back(static_cast<std::int64_t>(b / out.c));
    }
  };
  bool computes(int node) const override { return parts_.count(node) > 0; }
  void compute(int node, const std::vector<const Tensor*>& inputs, Tensor& output) override;
  void run_band();
  // Sizes the bands' buffers at set-up for batches of `frames`, sharing them between values
  // whose lives do not overlap.
  void plan_band_buffers(int frames);
  // split-spatial: the stage's output row bounds per member (its last group's).
  const std::vector<int>& band_rows() const { return groups_.back().bounds; }
  // Between band groups g and g + 1: `mine` (this member's rows of group g's output) becomes
  // the rows group g + 1 reads, its own rows copied and the halo swapped with the others.
  void swap_halo(std::size_t g, const Tensor& mine, Tensor& next);
  // The rows [begin, end) of every frame (and image of a clip) of `band`, which holds rows
  // [band_begin, ...) of a value of height `height`, to or from `packed` (frames x images x rows).
  static void pack_rows(const Tensor& band, int band_begin, int begin, int end, float* packed);
  static void unpack_rows(const float* packed, int begin, int end, int band_begin, Tensor& band);

  model::Model& model_;
  const plan::ResolvedStage& spec_;
  int stage_, member_, frames_;
  std::vector<int> inputs_, outputs_;  // live values before and after
  std::map<int, LayerPart> parts_;     // split layers: node -> this member's part
  std::map<int, std::vector<int>> bounds_;  // split layers: node -> part bounds (split_extent units)
  std::map<int, SplitScratch> scratch_;     // split layers: node -> buffers
  Tensor coded_slice_;  // a parity stage: this member's slice (or the parity), the stage's output
  std::unique_ptr<model::Executor> executor_;  // every stage but a band
  // split-spatial: a band per group of layers (plan::band_groups), and between groups the rows
  // this member sends and receives (their buffers sized at set-up).
  std::vector<plan::BandGroup> groups_;
  std::vector<RowBand> bands_;
  struct HaloRows {
    int member = 0, begin = 0, end = 0;
    std::vector<float> buffer;
  };
  std::vector<std::vector<HaloRows>> halo_sends_, halo_receives_;  // [boundary]
  std::vector<PeerExchange::Part> send_parts_, receive_parts_;
  std::vector<Tensor> band_inputs_;    // split-spatial: the stage's inputs
  // The buffers the bands' values take turns in (plan_band_buffers), and which each value takes:
  // per group its input, per step (group after group) its output, per step input its crop (-1:
  // read the producer's buffer as it is).
  std::vector<Tensor> band_buffers_;
  std::vector<int> band_input_slot_, band_step_slots_;
  std::vector<std::vector<std::vector<int>>> band_crop_slots_;  // [group][step][input]
  std::vector<const Tensor*> band_step_inputs_;
  Tensor band_output_;
  std::vector<std::size_t> band_counts_;
  std::vector<float> band_gathered_;   // split-spatial on clips: the members' bands, before reordering
  std::size_t weight_bytes_ = 0;
  // Set for the duration of run(): the split layers' compute() reports to them.
  PeerExchange* exchange_ = nullptr;
  LayerPacer* pacer_ = nullptr;
};

}  // namespace chorus::partition
