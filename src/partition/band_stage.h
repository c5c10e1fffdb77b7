#pragma once
// One member's share of a split-spatial stage: its row band (or its tile of rows and columns,
// in a grid) through each group of the stage's layers (plan::band_groups), the halo swapped
// with the other members between groups, and the bands gathered to member 0, which hands the
// stage's output on; or, where the stage hands its tiles on (plan::hands_tiles_on), each
// member keeps its tile for the runtime to send on. Where a global pooling ends the stage
// (plan::pools_bands), each member pools its own rows and member 0 joins the pools.
//
// Between groups a member starts the swap, computes the part of the next group that reads only
// what it made itself (plan::tile_interior), then, once its neighbours' rows are in, the edges
// around it (plan::tile_edges): the halo travels while the interior computes. The parts of a group share
// the weights of its band's layers. Every buffer is sized at set-up and shared between values
// whose lives do not overlap, so frames allocate nothing.
#include <memory>
#include <vector>

#include "io/weight_reader.h"
#include "layers/pooling.h"
#include "model/model.h"
#include "partition/peer_exchange.h"
#include "partition/row_bands.h"
#include "plan/band_geometry.h"
#include "plan/validate.h"

namespace chorus::partition {

class BandStage {
 public:
  // `inputs`: the values alive before the stage (live_values order); buffers for batches of
  // `frames` frames.
  BandStage(model::Model& model, const plan::ResolvedStage& stage, int member, const std::vector<int>& inputs,
            io::WeightReader& reader, int frames);
  ~BandStage();

  Tensor& input(int k) { return inputs_.at(k); }
  const Tensor& input(int k) const { return inputs_.at(k); }
  // The stage's output, whole on member 0 (only it gathers the bands).
  const Tensor& output() const { return output_; }
  // Members that hand their tiles on themselves (plan::hands_tiles_on) gather nothing:
  // after run(), tile_output() is this member's tile of the output (its rows and columns of
  // each image, every frame), and output() is not computed.
  void hand_tiles_on() { hands_tiles_on_ = true; }
  bool hands_tiles_on() const { return hands_tiles_on_; }
  const Tensor& tile_output() const { return *tile_output_; }
  // `exchange` may be null for a stage of one member.
  void run(PeerExchange* exchange, LayerPacer* pacer);
  // The output tile this member computes (of the last band layer: the pooling's input where
  // a global pooling ends the stage).
  const plan::Tile& tile() const { return groups_.back().tiles[member_]; }
  std::size_t weight_bytes() const { return weight_bytes_; }

 private:
  // A band computed in one go, and the buffers its values take (indices into buffers_).
  struct Run {
    RowBand band;
    int input = -1;                       // its input rows, [band.in_begin(), band.in_end())
    std::vector<int> outputs;             // per step
    std::vector<std::vector<int>> crops;  // per step and input: a crop of the producer's rows (-1: none)
  };
  // A group: its band in one go (`whole`), or, after a halo swap that can overlap, in parts:
  // the tile that reads only this member's own output of the group before, then the edges
  // around it, joined in `output`. Parts of no rows are left out; `whole` then holds the
  // weights and the group's input.
  struct Group {
    Run whole;
    std::vector<Run> parts;  // interior first, then the edges
    int output = -1;
  };
  // The rows and columns this member sends to or receives from another between two groups.
  struct HaloRows {
    int member = 0;
    plan::Tile tile;
    std::vector<float> buffer;
  };

  void plan_buffers(int frames);
  // Runs `run`'s steps on its input (already in place); returns its last step's output.
  const Tensor& run_steps(const Run& run);
  // Between groups g and g + 1: `mine` (this member's rows of group g's output) and the halo
  // from the others become `next`, the rows group g + 1 reads. start_halo copies this member's
  // own rows and starts the swap; finish_halo waits for the others' rows and puts them in.
  void start_halo(std::size_t g, const Tensor& mine, Tensor& next);
  void finish_halo(std::size_t g, Tensor& next);
  void gather(const Tensor& mine);
  // The stage's global pooling: this member's sums (or maxima) over its rows, joined on member 0
  // in member order, the sums then divided by the positions of the whole image.
  void pool_and_join(const Tensor& mine);
  // Tile `part` of every frame (and image of a clip) of `band`, which holds tile `held` of a
  // value, to or from `packed` (frames x images x rows x columns).
  static void pack_tile(const Tensor& band, const plan::Tile& held, const plan::Tile& part, float* packed);
  static void unpack_tile(const float* packed, const plan::Tile& part, const plan::Tile& held, Tensor& band);
  // Puts each member's output tile, gathered one after another in `gathered`, into frame n.
  void place_tiles(const float* gathered, int n);
  Tensor& buffer(int b) { return buffers_[b]; }

  model::Model& model_;
  const plan::ResolvedStage& spec_;
  int member_;
  int band_input_;  // the input value the first group reads: the first layer's (its index in inputs_)
  std::vector<plan::BandGroup> groups_;
  std::vector<Group> runs_;
  std::vector<std::vector<HaloRows>> halo_sends_, halo_receives_;  // [boundary]
  std::vector<PeerExchange::Part> send_parts_, receive_parts_;
  std::vector<Tensor> inputs_;   // the stage's inputs
  std::vector<Tensor> buffers_;  // the values' buffers (plan_buffers)
  std::vector<const Tensor*> step_inputs_;
  Tensor output_;
  std::vector<std::size_t> counts_;  // floats of each member's band of the output, per frame
  std::vector<float> gathered_;      // tiles, or bands of clips: the members' parts before reordering; pooled: pools
  bool gathers_whole_rows_ = true;   // the members' parts, in member order, are the output's memory order
  bool pools_ = false;               // a global pooling ends the stage
  bool hands_tiles_on_ = false;      // no gather: each member's tile goes straight on
  const Tensor* tile_output_ = nullptr;
  layers::PoolKind pool_kind_ = layers::PoolKind::average;  // of that pooling
  std::vector<float> pooled_;        // this member's pool of one frame
  std::size_t weight_bytes_ = 0;
  // Set for the duration of run().
  PeerExchange* exchange_ = nullptr;
  LayerPacer* pacer_ = nullptr;
};

}  // namespace chorus::partition
