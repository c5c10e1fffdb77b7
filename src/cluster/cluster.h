#pragma once
// A cluster as plain data: its devices in rank order, what each can do (a device profile and
// the memory Chorus may use), and the network between them. Read from JSON
// (docs/cluster-format.md); used by the planner to predict and by --emulate to imitate.
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "model/model.h"

namespace chorus::cluster {

struct NetworkModel {
  double bandwidth_bytes_per_s = 62.24e6 / 8;  // 62.24 Mbit/s WiFi between Raspberry Pis
  double latency_s = 0.002;                    // per message
  bool shared = true;                          // one medium: transfers never overlap (WiFi)
  // Energy a device spends per megabyte it sends or receives on this network, where the network
  // says (a wired one: its interface draws about the same carrying traffic or not); otherwise
  // each device's radio figures (DevicePower) apply.
  std::optional<double> energy_j_per_mb_sent, energy_j_per_mb_received;
  // Seconds a message of `bytes` occupies the medium / arrives after it is sent.
  double transfer_seconds(double bytes) const { return bytes / bandwidth_bytes_per_s; }
};

// How fast a device runs layers: measured seconds per layer of a named model where known,
// else multiply-adds over a rate for the layer's type.
struct DeviceProfile {
  std::string name;
  std::string calibration;  // how the figures were obtained, for reports
  std::map<std::string, std::map<std::string, double>> layer_seconds;  // model -> layer -> s
  std::map<std::string, double> macs_per_second;                       // layer type -> rate; "default"
  double seconds_per_layer = 0;                                        // fixed cost added to rate-based times

  // Seconds for node `node` of `model` (named `model_name`, e.g. "vgg16") on this device.
  double layer_time(const model::Model& model, const std::string& model_name, int node) const;
};

// What a device draws: idle and busy (all cores computing) watts, and the energy its radio
// spends per megabyte sent and received. Published measurements, cited in the class library
// (profiles/device-classes.json) and docs/emulation.md. Unknown (all zero) for a class without
// them: runs and plans on it then give no energy figure.
struct DevicePower {
  double idle_w = 0, busy_w = 0;
  double radio_j_per_mb_sent = 0, radio_j_per_mb_received = 0;
  bool known() const { return busy_w > 0; }
  // Joules over `wall_s` of which `busy_s` computing, with these bytes through the radio:
  // busy_w x busy + idle_w x the rest + the radio's energy per byte.
  double joules(double busy_s, double wall_s, double bytes_sent, double bytes_received) const;
};

struct DeviceClass {
  std::string name;
  DeviceProfile profile;
  double memory_bytes = 1e9;
  int cores = 1;
  DevicePower power;
};

struct Host {
  std::string name;
  std::string device_class;
  int slots = 1;
  // Marked by the user: a device that may stall or drop out (a weak battery, a busy radio). The
  // planner then gives the split-output stages it is in a parity rank (plan/parity.h).
  bool unreliable = false;
};

struct Cluster {
  std::string name;
  NetworkModel network;
  std::map<std::string, DeviceClass> classes;
  std::vector<Host> hosts;  // one rank per host slot, in order

  // The device class of rank r (hosts expanded by slots); throws when r is out of range.
  const DeviceClass& device_of(int rank) const;
  int ranks() const;
  // Whether every device's power is known (energy figures need all of them).
  bool power_known() const;
  // Whether rank r's host is marked unreliable.
  bool unreliable(int rank) const;
  // What rank r's device draws on this cluster's network: its class's power, with the network's
  // per-byte energy in place of the radio's where the network gives one.
  DevicePower power_of(int rank) const;
};

// The same cluster cut to its first `ranks` device slots (the devices a smaller job would use).
Cluster first_devices(const Cluster& cluster, int ranks);

// Reads a cluster file; profile paths inside it are relative to the file. Throws
// chorus::Error naming the file and field.
Cluster read_cluster(const std::string& path);
// The same from parsed JSON; `source` names it in messages, `folder` anchors profile paths.
Cluster cluster_from_json(const nlohmann::json& j, const std::string& source, const std::string& folder);
DeviceProfile read_profile(const std::string& path);
void write_profile(const DeviceProfile& profile, const std::string& path);
// A profile as JSON, the form a cluster file holds inline or a profile file holds.
nlohmann::json profile_to_json(const DeviceProfile& profile);
// A cluster as a self-contained cluster file (profiles inline), e.g. after losing a device.
nlohmann::json cluster_to_json(const Cluster& cluster);

// The model's name for profile look-ups: the file name without folders and extension.
std::string model_key(const std::string& model_path);

}  // namespace chorus::cluster
