#pragma once
// Energy per frame, from each device's power figures (cluster::DevicePower): what a run
// measured (its ranks' compute time and bytes over the run's wall time) and what a plan predicts (the cost
// model's compute per rank, its frame period and the traffic model's bytes), by one formula:
// busy watts x compute time + idle watts x the rest of the wall time + the radio's energy for
// the bytes sent and received. And the planner's energy objective, which chooses by it.
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cluster/cluster.h"
#include "model/model.h"
#include "plan/planner.h"

namespace chorus::energy {

struct FrameEnergy {
  double total_j = 0;          // per frame, every rank of the job
  std::vector<double> rank_j;  // per frame, by rank
};

// A run's figures for one rank, as its report gives them.
struct RankActivity {
  double compute_s = 0, bytes_sent = 0, bytes_received = 0;
};

// Energy per frame of a run of `frames` frames that took `wall_s` (the longest rank's), whose
// rank r ran on cluster.device_of(r): every device is on for the whole run, busy while its rank
// computes (a rank with nothing to do is idle throughout). A rank whose device's power is not
// known gets -1, and so does the total then.
FrameEnergy measured_energy(const cluster::Cluster& cluster, const std::vector<RankActivity>& ranks, double wall_s,
                            int frames);

// Energy per frame of `plan` in its steady state, under the planner's cost model (every rank of
// the plan for one frame period; its compute per frame busy) and the traffic model's bytes
// (messages with `header_bytes` headers).
FrameEnergy predicted_energy(const model::Model& model, const cluster::Cluster& cluster, const std::string& model_key,
                             const plan::Plan& plan, std::size_t header_bytes);

// {"energy_j_per_frame": total, "rank_energy_j_per_frame": [...]}, for predictions and reports.
nlohmann::json energy_json(const FrameEnergy& energy);

// `chorus plan --objective energy [--min-fps F]`: among the plans the planner makes for
// throughput and for latency on the cluster's first 1, 2, ... N devices, the one of least
// predicted energy per frame whose predicted throughput is at least `min_fps`. Its prediction
// holds the energy figures and the candidates considered. Throws chorus::Error when no plan
// reaches `min_fps` (naming the fastest), or a device's power is unknown.
plan::Plan plan_for_energy(const model::Model& model, const cluster::Cluster& cluster,
                           const plan::PlannerOptions& options, double min_fps, std::size_t header_bytes);

}  // namespace chorus::energy
