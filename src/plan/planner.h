#pragma once
// The planner: given a model and a cluster, choose stages (cut points in topological order),
// the devices of each stage and its mode (single, replicate, split-output, split-input,
// split-spatial, with fractions by device speed), maximising throughput (or minimising
// latency) under each device's memory, with communication on the cluster's network including
// a shared medium. Dynamic programming over (layers covered, devices used), inside a binary
// search on the frame period when the objective is throughput, as PipeEdge does for pipelines.
#include <string>
#include <vector>

#include "cluster/cluster.h"
#include "model/model.h"
#include "plan/plan.h"

namespace chorus::plan {

enum class Objective { throughput, latency };

struct PlannerOptions {
  Objective objective = Objective::throughput;
  std::string model_key;        // for profile look-ups (e.g. "vgg16")
  int max_group = 0;            // largest device group per stage (0: all devices)
  bool allow_splits = true;     // false: pipeline and replicate only
  // With devices marked unreliable: plan on all devices but the last and give the split-output
  // stages holding an unreliable one that device as their parity rank (plan/parity.h).
  bool offer_parity = true;
};

// A cost model of one candidate stage, for predictions and for the exhaustive-search test.
struct StageCost {
  double compute_s = 0;   // seconds per frame the stage needs (a replicated stage: over its members)
  std::vector<double> member_s;  // each member's own seconds per frame (its part, plus the exchange)
  double latency_s = 0;   // seconds one frame spends in the stage
  double medium_s = 0;    // seconds this stage's messages occupy a shared network per frame (0 if switched)
  double link_s = 0;      // switched network: seconds per frame its input keeps the sender's link busy
  double input_s = 0;     // seconds from a frame's input leaving its producer to its arrival here
  double memory_bytes = 0;  // largest member's weights + activations
  bool fits = true;
};

// Cost of stage [first, last] on ranks [rank, rank + count) in `mode` (fractions by speed).
// `input_rank` already holds the stage's input (the source for the first stage, the previous
// stage's producer after it; -1: none): if it is a member, it takes its input without the
// network. `group_ends`: a split-spatial stage's band groups (ResolvedStage::group_ends; empty:
// one group).
StageCost stage_cost(const model::Model& model, const cluster::Cluster& cluster, const std::string& model_key,
                     int first, int last, int rank, int count, StageMode mode, int input_rank = 0,
                     const std::vector<int>& group_ends = {});

// The best plan under the options; its `prediction` holds throughput_fps, latency_ms and per
// stage compute, communication and memory, and the bottleneck. On a cluster with unreliable
// devices the plan carries parity stages where it can (the prediction's `parity` says which,
// and what the plan without them would do). Throws chorus::Error when the
// model cannot fit on the cluster, naming the layer, what it needs and what the devices have.
Plan make_planned_plan(const model::Model& model, const cluster::Cluster& cluster, const PlannerOptions& options);

// The prediction for any plan (planned, built-in or hand-written) under the same cost model:
// throughput_fps, latency_ms, period_s, the bottleneck, network seconds per frame, per rank the
// seconds it computes per frame (rank_busy_s) and, per stage, compute, communication and memory
// (and whether it fits its devices).
nlohmann::json prediction_json(const model::Model& model, const cluster::Cluster& cluster,
                               const std::string& model_key, const Plan& plan);

// Throws chorus::Error, with the numbers, when some rank's stages need more memory (weights of
// its part and activations, as the cost model counts them) than its device declares.
void check_plan_fits(const model::Model& model, const cluster::Cluster& cluster, const std::string& model_key,
                     const Plan& plan);

// The predicted period (seconds per frame) and latency of a plan under the same cost model.
struct Prediction {
  double period_s = 0, latency_s = 0;
};
Prediction predict(const model::Model& model, const cluster::Cluster& cluster, const std::string& model_key,
                   const Plan& plan);

}  // namespace chorus::plan
