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
#include "partition/band_stage.h"
#include "partition/layer_parts.h"
#include "partition/peer_exchange.h"
#include "plan/split_sums.h"
#include "plan/validate.h"

namespace chorus::partition {

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
  // In a split stage only member 0, which hands them on, gathers the bands or the last layer's
  // slices (or reduces its partial sums): the other members' outputs are not the stage's. In a
  // parity stage the one output is this member's slice (or the parity), before the activation.
  // In a split-spatial stage that hands its tiles on (plan::hands_tiles_on) the one output
  // is this member's tile, on every member.
  int outputs() const { return static_cast<int>(outputs_.size()); }
  const Tensor& output(int k) const;

  int stage() const { return stage_; }
  int member() const { return member_; }
  int frames() const { return frames_; }
  std::size_t weight_bytes() const { return weight_bytes_; }
  // Layer names this worker runs (first .. last of the stage), for reports.
  std::string layers_held() const;

 private:
  // A split layer's output slice and every member's slices gathered. They live through the
  // layer's compute() and, gathered ahead, the next layer's, so the split layers take turns
  // with two sets (SplitScratch::slices): a stage holds two of each, not one per layer.
  struct SliceBuffers {
    Tensor mine, gathered;
  };
  // A split layer's state and the sizes of its parts, kept from frame to frame.
  struct SplitScratch {
    int slices = 0;  // its SliceBuffers (slice_buffers_[slices])
    std::vector<const Tensor*> part_inputs{nullptr};
    plan::SplitRole role = plan::SplitRole::whole;
    bool input_is_slice = false;  // the input is already this member's slice (a pair's second layer)
    std::vector<std::size_t> frame_counts;  // floats per member per frame
    std::vector<std::size_t> counts;        // floats per member in the current batch
    int multiplier = 1;                     // output channels per split channel (depthwise)
    std::vector<std::size_t> sum_parts;        // partial sums: the parts they are reduced in (floats)
    // The same in the layer's units: positions, or channels of a single vector (by_channels).
    std::vector<std::int64_t> sum_positions;
    bool by_channels = false;
    std::vector<std::size_t> shares;          // a reduce-scatter's (plan::scatter_shares), or none
    int sum_id = -1;                          // its reduction while open (PeerExchange::begin_sums)
    bool deferred = false;                    // a parted run follows: it waits for each part and finishes it
    Tensor* sums_out = nullptr;               // the buffer its sums are reduced in
    bool consumed = false;                    // its input taken part by part (a run's consumer)
    // An all-gather that the next Dense layer takes member by member as it arrives
    // (plan::gather_overlaps_next): set on the gathered layer, `gathering` while it travels;
    // `blocks_from` on the next, the node whose slices it takes.
    bool gather_ahead = false, gathering = false;
    int blocks_from = -1;
    std::vector<const Tensor*> block_inputs{nullptr};
    void set_sum_parts(const Shape& out, int frames, bool in_parts) {
      sum_parts = plan::sum_parts(out, frames, in_parts, !shares.empty());
      by_channels = shares.empty() && in_parts && plan::sum_parts_by_channels(out, frames);
      sum_positions.clear();
      for (std::size_t b : sum_parts) sum_positions.push_back(static_cast<std::int64_t>(by_channels ? b : b / out.c));
    }
  };
  bool computes(int node) const override { return parts_.count(node) > 0; }
  void compute(int node, const std::vector<const Tensor*>& inputs, Tensor& output) override;
  // Parted runs (plan::part_runs): the layers behind a reduction, part by part.
  const std::vector<std::int64_t>& run_parts(int run) override;
  void before_part(int run, int part) override;
  void compute_positions(int node, const std::vector<const Tensor*>& inputs, Tensor& output, std::int64_t p0,
                         std::int64_t p1) override;
  void after_run(int run) override;
  void consume_positions(int node, const std::vector<const Tensor*>& inputs, std::int64_t p0, std::int64_t p1) override;
  // This member's share of split layer n's work (its part of the split units).
  double member_share(int n) const;
  // Adds the bias and applies the activation to floats [begin, end) of reduced sums.
  void finish_sums(int node, Tensor& sums, std::size_t begin, std::size_t end) const;
  // The same for this member's share of every frame of a reduce-scatter's sums.
  void finish_share(int node, Tensor& sums) const;
  // Node n's output slice (into `out`: its own buffer, or the value's where it keeps the slice)
  // from the gathered slices of the node before it, its own slice's product first, then each
  // other member's as it arrives: a Dense layer multiplies its blocks of input channels, a
  // convolution convolves them (convolve_by_blocks).
  void forward_by_blocks(int n, int frames, double share, Tensor& out);
  void convolve_by_blocks(int n, double share, Tensor& out);
  // Ends node's open reduction, if any.
  void end_sums(SplitScratch& scratch);
  model::Model& model_;
  const plan::ResolvedStage& spec_;
  int stage_, member_, frames_;
  std::vector<int> inputs_, outputs_;  // live values before and after
  std::map<int, LayerPart> parts_;     // split layers: node -> this member's part
  std::map<int, std::vector<int>> bounds_;  // split layers: node -> part bounds (split_extent units)
  std::map<int, SplitScratch> scratch_;     // split layers: node -> state
  SliceBuffers slice_buffers_[2];
  // Used within one split layer's compute() only, so shared by all: its slice of the input
  // channels, and by blocks, one member's slice in and the sums it adds out.
  Tensor sliced_input_, block_input_, block_output_;
  SliceBuffers& slices(const SplitScratch& scratch) { return slice_buffers_[scratch.slices]; }
  std::vector<plan::PartRun> runs_;         // layers computed part by part behind a reduction
  Tensor coded_slice_;  // a parity stage: this member's slice (or the parity), the stage's output
  std::unique_ptr<model::Executor> executor_;  // every stage but a band
  std::unique_ptr<BandStage> band_;            // split-spatial
  std::size_t weight_bytes_ = 0;
  // Set for the duration of run(): the split layers' compute() reports to them.
  PeerExchange* exchange_ = nullptr;
  LayerPacer* pacer_ = nullptr;
};

}  // namespace chorus::partition
