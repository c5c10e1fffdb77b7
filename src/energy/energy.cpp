#include "energy/energy.h"

#include <algorithm>
#include <limits>

#include "core/error.h"
#include "partition/frame_traffic.h"
#include "plan/validate.h"

namespace chorus::energy {

FrameEnergy measured_energy(const cluster::Cluster& c, const std::vector<RankActivity>& ranks, double wall_s,
                            int frames) {
  FrameEnergy e;
  const double n = std::max(1, frames);
  for (std::size_t r = 0; r < ranks.size(); ++r) {
    const RankActivity& a = ranks[r];
    const cluster::DevicePower power = c.power_of(static_cast<int>(r));
    e.rank_j.push_back(power.known() ? power.joules(a.compute_s, wall_s, a.bytes_sent, a.bytes_received) / n : -1);
    e.total_j += e.rank_j.back();
  }
  if (std::find(e.rank_j.begin(), e.rank_j.end(), -1.0) != e.rank_j.end()) e.total_j = -1;
  return e;
}

FrameEnergy predicted_energy(const model::Model& m, const cluster::Cluster& c, const std::string& key,
                             const plan::Plan& plan, std::size_t header_bytes) {
  const nlohmann::json prediction = plan::prediction_json(m, c, key, plan);
  const double period = prediction.at("period_s");
  const std::vector<double> busy = prediction.at("rank_busy_s");
  const plan::ResolvedPlan resolved = plan::validate_plan(plan, m, 0);
  // Replicas take turns: the average over many frames is the steady state's.
  const partition::FrameTraffic traffic = partition::frame_traffic(m, resolved, 1000, header_bytes);
  FrameEnergy e;
  for (int r = 0; r < plan.ranks; ++r) {
    double sent = 0, received = 0;
    for (int peer = 0; peer < plan.ranks; ++peer) sent += traffic.at(r, peer), received += traffic.at(peer, r);
    const double joules = c.power_of(r).joules(busy.at(r), period, sent, received);
    e.rank_j.push_back(joules);
    e.total_j += joules;
  }
  return e;
}

nlohmann::json energy_json(const FrameEnergy& e) {
  return {{"energy_j_per_frame", e.total_j}, {"rank_energy_j_per_frame", e.rank_j}};
}

plan::Plan plan_for_energy(const model::Model& m, const cluster::Cluster& c, const plan::PlannerOptions& options,
                           double min_fps, std::size_t header_bytes) {
  if (!c.power_known())
    fail("plan: --objective energy needs every device's power (idle_w, busy_w) in the cluster file ", c.name,
         "; see profiles/device-classes.json");
  plan::Plan best;
  double best_j = std::numeric_limits<double>::infinity(), best_fps = 0, fastest = 0;
  nlohmann::json candidates = nlohmann::json::array();
  for (int devices = 1; devices <= c.ranks(); ++devices) {
    const cluster::Cluster part = cluster::first_devices(c, devices);
    for (plan::Objective objective : {plan::Objective::throughput, plan::Objective::latency}) {
      plan::PlannerOptions o = options;
      o.objective = objective;
      plan::Plan p;
      try {
        p = plan::make_planned_plan(m, part, o);
      } catch (const Error&) {
        continue;  // the model does not fit this few devices
      }
      const double fps = p.prediction.at("throughput_fps");
      const FrameEnergy e = predicted_energy(m, part, options.model_key, p, header_bytes);
      fastest = std::max(fastest, fps);
      candidates.push_back({{"devices", devices},
                            {"objective", objective == plan::Objective::throughput ? "throughput" : "latency"},
                            {"throughput_fps", fps},
                            {"energy_j_per_frame", e.total_j}});
      // Equal energy (replicas on a wired network cost the same per frame as one device): the
      // faster plan.
      const bool less = e.total_j < best_j * (1 - 1e-9);
      const bool same = !less && e.total_j <= best_j * (1 + 1e-9);
      if (fps >= min_fps && (less || (same && fps > best_fps))) {
        best_j = e.total_j;
        best_fps = fps;
        best = p;
        best.prediction.update(energy_json(e));
      }
    }
  }
  if (!std::isfinite(best_j)) {
    if (candidates.empty()) fail("plan: no plan fits this cluster (memory too small)");
    fail("plan: no plan reaches --min-fps ", min_fps, " on ", c.name, "; the fastest predicted is ", fastest,
         " frames/s");
  }
  best.prediction["objective"] = "energy";
  if (min_fps > 0) best.prediction["min_fps"] = min_fps;
  best.prediction["energy_candidates"] = candidates;
  return best;
}

}  // namespace chorus::energy
