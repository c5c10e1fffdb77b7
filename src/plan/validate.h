#pragma once
// Checks a plan against a model and resolves layer names to node indices. Every error names
// the stage, the layer and what is wrong, so rank 0 can print it before anything runs.
#include <utility>
#include <vector>

#include "model/model.h"
#include "plan/plan.h"
#include "plan/split_sums.h"

namespace chorus::plan {

struct ResolvedStage {
  int first = 0, last = 0;        // node indices, inclusive
  StageMode mode = StageMode::single;
  std::vector<int> ranks;
  std::vector<double> fractions;  // one per rank (but a parity rank), summing to 1
  // split-spatial: the last node of each group of fused bands (Stage::exchange_after, then the
  // stage's last, or the node before it where a global pooling ends the stage: pools_bands);
  // empty for other modes.
  std::vector<int> group_ends;
  int columns = 1;  // split-spatial: the grid's columns (Stage::columns)
  // Coded redundancy (Stage::parity): 1 when the last rank computes the sum of the others' slices.
  int parity = 0;
  // The members that compute slices of the output (all of them but a parity rank).
  int data_members() const { return static_cast<int>(ranks.size()) - parity; }
};

struct ResolvedPlan {
  Plan plan;
  std::vector<ResolvedStage> stages;
  int max_in_flight = 0;
  // Frames the sink trails behind the stage work when the sink rank also computes (a replica,
  // say): it then collects outputs that already arrived instead of blocking its own compute on
  // the frame a peer is still working on. Its stage's members, plus the extra turns of each
  // replicated stage after it.
  int sink_lag = 0;
  // Frames that arrive downstream of replicated stages in one burst (their members, summed).
  int burst_frames = 0;
};

// Throws chorus::Error for unknown layers, ranges that overlap or leave gaps, a world size
// other than plan.ranks, a split on a layer that cannot be split that way, bad fractions...
// `world_size` 0 skips the world-size check (for `chorus plan`).
ResolvedPlan validate_plan(const Plan& plan, const model::Model& model, int world_size);

// What a layer allows.
bool can_split_output(const layers::Layer& layer);
bool can_split_input(const layers::Layer& layer);
bool can_split_spatial(const layers::Layer& layer);
// Layers that every member of a split stage may compute in full: no weights, or small ones.
bool computable_in_full(const layers::Layer& layer);

// How the members of a split-output, split-input or split-tensor stage compute one layer.
enum class SplitRole {
  whole,         // every member computes it in full (layers without weights, norms)
  output_slice,  // a slice of the output channels each; the slices are gathered
  kept_slice,    // the same, but each member keeps its slice: the next layer reads only it
  input_slice,   // a slice of the input channels each; the partial sums are gathered and added
  heads,         // attention: some heads each; the partial sums are gathered and added
};

// The role of each node of a stage [first, last] of `mode` (index n - first). split-output and
// split-input split every layer they can by output or by input channels. split-tensor splits
// attention by heads; a Dense layer read only by the next, a Dense layer, may pair with it: the
// first by output (kept), the second by input (the same for a convolution read only by a
// convolution), where that moves fewer bytes than gathering both (the pairs are chosen by
// dynamic programming along the stage); other splittable layers by output channels. In split-output and split-tensor, a
// convolution followed by a pooling that only it feeds keeps its slice and the pooling's output slices are gathered
// instead.
std::vector<SplitRole> split_roles(const model::Model& model, int first, int last, StageMode mode);

// What of its input each member of a split-input stage [first, last] reads, where that is a
// slice: its first layer, or the first after a Flatten or Reshape, is a Dense layer on a vector
// split by input, or its first layer is a convolution (2-D or 3-D) split by input, and nothing
// else reads the stage's input. Then member g needs only part g of `value` per frame, and that
// is all the stage's input it is sent (VGG16's flatten..fc1: 1/k of 25,088 floats each, not all
// of them): floats [begin, end) of it, or channels [begin, end) of each of its positions: a
// convolution's input channels, or, after a Flatten that reorders a feature map into (c, h, w)
// order (ONNX files'), the channels that the member's features fall in. No parts where the
// members need their input whole.
struct InputSlices {
  int value = model::kNoNode;              // a node's output, or a model input (negative)
  std::vector<std::pair<int, int>> parts;  // per member; none: the members read all of it
  bool channels = false;                   // parts are channels of every position, not floats
  bool any() const { return !parts.empty(); }
  // Floats per frame of member g's part.
  std::size_t floats(const model::Model& model, int member) const;
};
InputSlices input_slices(const model::Model& model, int first, int last, StageMode mode,
                         const std::vector<double>& fractions);

// The member that alone takes node `node`'s gathered slices or reduced sums in a split stage
// ending at `stage_last`: member 0 for the stage's last layer, which only member 0 hands on;
// every member (kSumsToEveryMember) for the others. The worker, the traffic model and the
// planner read it.
inline int split_root(int node, int stage_last) { return node == stage_last ? 0 : kSumsToEveryMember; }

// Whether node n of a split-output or split-tensor stage [first, last], whose output slices are
// all-gathered (not the stage's last), feeds only the next node, split by output too (or, for a
// convolution, keeping its output slice for a pooling or the next layer of a pair), and is
// either a Dense layer on a vector into a Dense layer (fc1 then fc2) or a convolution, or the
// pooling of a kept slice, into a convolution (groups 1 both): the next then takes the gathered
// slices one member at a time as they arrive, its own first, so that the gather travels while
// it computes (a convolution convolves each member's input channels apart and adds them up:
// partition::make_blocked_output_part). The worker and the planner read it.
bool gather_overlaps_next(const model::Model& model, int first, int last, const std::vector<SplitRole>& roles, int n);

// The earlier call, in a split stage [first, last], of the shared layer that node n calls again,
// when n takes that call's part on each member (one slice of the weights): a Conv2D, Dense,
// DepthwiseConv2D or MultiHeadAttention layer split in the same role by both calls, neither
// convolving gathered slices block by block (gather_overlaps_next). -1 otherwise. The worker
// shares the part; the planner counts it once.
int shared_split_part(const model::Model& model, int first, int last, const std::vector<SplitRole>& roles, int n);

// Where node n of a split stage [first, last] reduce-scatters its partial sums: n is a Dense layer
// on a vector split by input (fc1) whose output only the next node reads, a Dense layer split by
// input too (fc2), so member g needs only the sums of its own input slice of the next: it adds
// up and finishes (bias, activation) only those, and no sums travel back ((k - 1) / k of the
// sums sent per member instead of an all-reduce's 2 (k - 1) / k). Returns the shares, member
// g's floats [shares[g], shares[g + 1]) of each frame (the next layer's split_bounds), or
// nothing where the sums are all-reduced or go to member 0. Not for convolutions, whose slices
// are channels of every position rather than one run of floats.
std::vector<std::size_t> scatter_shares(const model::Model& model, int first, int last,
                                        const std::vector<SplitRole>& roles, const std::vector<double>& fractions,
                                        int n);
// Whether scatter_shares has shares for node n (without working them out: for the planner).
bool scatters_sums(const model::Model& model, int first, int last, const std::vector<SplitRole>& roles, int n);

// A run of layers that a split stage computes part by part behind a reduction: `reduced`
// (attention split by heads, a pair's second half) has its partial sums reduced in parts of
// positions (sum_parts), and every layer of [first, last] is position-wise (Layer::positionwise:
// norms, adds, dense layers on tokens), so it computes part j as soon as part j is summed while
// the later parts are still being reduced. A run ends at a layer whose own partial sums are
// reduced (the next run waits for those), or before one that reads other positions (attention)
// or is gathered. Empty for stages without such reductions (one position: a CNN's dense layers).
// When the layer after the run reads every position but takes its input part by part
// (Layer::consumable_fraction: self-attention's projections) and reads only values complete
// at each part, it is the run's `consumer`: it consumes part j after the run's layers, and
// computes the rest after the run. The worker and the planner read it.
struct PartRun {
  int reduced = -1, first = 0, last = -1;
  int consumer = -1;
};
std::vector<PartRun> part_runs(const model::Model& model, int first, int last, const std::vector<SplitRole>& roles);

// The units a split divides for this layer and role: output channels, input channels, heads,
// or (for depthwise) input channels, whose outputs follow with their multiplier.
int split_extent(const layers::Layer& layer, SplitRole role);
int split_extent(const layers::Layer& layer, StageMode mode);

// The widest part of `bounds` (split_bounds), in units: a parity slice's width.
int widest_part(const std::vector<int>& bounds);

// Cuts `extent` units into parts by fractions: part r is [bounds[r], bounds[r+1]).
std::vector<int> split_bounds(int extent, const std::vector<double>& fractions);

}  // namespace chorus::plan
