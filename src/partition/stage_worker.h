#pragma once
// One rank's share of one stage, ready to run frame after frame: the layers it computes whole,
// its parts of split layers, or its row band, each loaded with only the weights it needs.
// Communication with the other ranks of a split stage goes through PeerExchange, which the
// runtime implements over MPI, so this module stays free of MPI.
#include <map>
#include <memory>
#include <vector>

#include "io/weight_reader.h"
#include "partition/layer_parts.h"
#include "partition/row_bands.h"
#include "plan/validate.h"

namespace chorus::partition {

class PeerExchange {
 public:
  virtual ~PeerExchange() = default;
  // Every member contributes a buffer; afterwards parts[m] holds member m's (counts[m] floats),
  // the caller's own included. All members call it in the same order.
  virtual void all_gather(const std::vector<float>& mine, const std::vector<std::size_t>& counts,
                          std::vector<std::vector<float>>& parts) = 0;
};

// Called after each layer a worker runs, so an emulator can stretch compute to a slower
// device's speed. `share` is the part of the layer's work done (1 for a whole layer; the
// slice's fraction for split layers); `started` is steady-clock seconds at its start.
class LayerPacer {
 public:
  virtual ~LayerPacer() = default;
  virtual void layer_done(int node, double share, double started) = 0;
};

// Steady-clock seconds, the clock LayerPacer uses.
double steady_seconds();

class StageWorker {
 public:
  // `model` must outlive the worker; nodes computed whole are loaded in place.
  StageWorker(model::Model& model, const plan::ResolvedPlan& plan, int stage, int member,
              io::WeightReader& reader);

  // Runs one batch through the stage: `inputs` are the values alive before it (in
  // live_values(stage - 1) order); returns those alive after it. `exchange` may be null for a
  // stage of one rank.
  std::vector<Tensor> run(std::vector<Tensor> inputs, PeerExchange* exchange, LayerPacer* pacer = nullptr) const;

  int stage() const { return stage_; }
  int member() const { return member_; }
  std::size_t weight_bytes() const { return weight_bytes_; }
  // Layer names this worker runs (first .. last of the stage), for reports.
  std::string layers_held() const;

 private:
  void run_split_layer(int node, std::map<int, Tensor>& values, PeerExchange* exchange, LayerPacer* pacer) const;
  void run_band(std::map<int, Tensor>& values, PeerExchange* exchange, LayerPacer* pacer) const;

  model::Model& model_;
  const plan::ResolvedStage& spec_;
  int stage_, member_;
  std::vector<int> inputs_, outputs_;  // live values before and after
  std::map<int, LayerPart> parts_;     // split layers: node -> this member's part
  std::map<int, std::vector<int>> bounds_;  // split layers: node -> part bounds (split_extent units)
  std::unique_ptr<RowBand> band_;
  std::vector<int> band_rows_;         // split-spatial: output row bounds per member
  std::size_t weight_bytes_ = 0;
};

}  // namespace chorus::partition
