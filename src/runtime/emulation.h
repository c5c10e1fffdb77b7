#pragma once
// In-process emulation of a cluster on one machine (`chorus run --emulate CLUSTER.json`):
// each rank computes like its device (after each layer it sleeps until the device profile's
// time for that layer, or its share of it, has passed) and its messages arrive as the network
// model says (latency + bytes / bandwidth, transfers serialised across all ranks when the
// medium is shared, as WiFi is). With Pi-like speeds ranks sleep most of the time, so nine
// emulated Pis fit on two cores.
#include <memory>
#include <string>

#include "cluster/cluster.h"
#include "partition/stage_worker.h"
#include "runtime/transport.h"

namespace chorus::runtime {

// Stretches compute to the device's speed; counts layers where the host was slower, and by how
// many seconds in all, so a run can say whether the emulation held.
class DevicePacer : public partition::LayerPacer {
 public:
  DevicePacer(const cluster::DeviceProfile& profile, const model::Model& model, std::string model_key);
  void layer_done(int node, double share, double started) override;
  void layer_progress(int node, double share, double started, double fraction) override;
  int layers_paced() const { return paced_; }
  int layers_late() const { return late_; }
  double worst_late_ratio() const { return worst_; }
  double seconds_late() const { return late_seconds_; }      // host time beyond the device's
  double seconds_paced() const { return paced_seconds_; }    // the device's time for all layers run

 private:
  const cluster::DeviceProfile& profile_;
  const model::Model& model_;
  std::string key_;
  std::vector<double> seconds_;  // per node, computed once
  int paced_ = 0, late_ = 0;
  double worst_ = 0, late_seconds_ = 0, paced_seconds_ = 0;
  // When the last layer_done's sleep returned, and how late (layer_done: back-to-back layers).
  static constexpr double kBackToBack_s = 50e-6;
  double woke_ = -1, overshoot_ = 0;
};

// Wraps a transport so that every message arrives when the network model says. `job_key` must
// be the same on every rank (it names the shared medium's clock in shared memory).
std::unique_ptr<Transport> make_emulated_transport(Transport& inner, const cluster::NetworkModel& network,
                                                   long job_key);

}  // namespace chorus::runtime
