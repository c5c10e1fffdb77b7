#include "cluster/cluster.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/text_file.h"
#include "core/unknown_keys.h"

namespace chorus::cluster {

using nlohmann::json;

namespace {

json read_json(const std::string& path, const char* what) {
  refuse_directory(path, cat("a ", what));
  std::ifstream in(path);
  if (!in) fail(path, ": cannot open ", what);
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    fail(path, ": ", what, " is not valid JSON: ", without_error_id(e.what()));
  }
}

DeviceProfile profile_from_json(const json& j, const std::string& source) {
  DeviceProfile p;
  try {
    p.name = j.value("device", "");
    p.calibration = j.value("calibration", "");
    p.seconds_per_layer = j.value("seconds_per_layer", 0.0);
    if (j.contains("layer_seconds"))
      for (const auto& [model, layers] : j["layer_seconds"].items())
        for (const auto& [layer, seconds] : layers.items()) p.layer_seconds[model][layer] = seconds.get<double>();
    if (j.contains("macs_per_second"))
      for (const auto& [type, rate] : j["macs_per_second"].items()) p.macs_per_second[type] = rate.get<double>();
  } catch (const json::exception& e) {
    fail(source, ": malformed device profile: ", without_error_id(e.what()));
  }
  for (const auto& [model, layers] : p.layer_seconds)
    for (const auto& [layer, seconds] : layers)
      if (!(seconds >= 0) || !std::isfinite(seconds))
        fail(source, ": layer_seconds of ", model, "/", layer, " must be zero or more, not ", seconds);
  for (const auto& [type, rate] : p.macs_per_second)
    if (!(rate > 0) || !std::isfinite(rate)) fail(source, ": macs_per_second of ", type, " must be positive, not ", rate);
  if (!(p.seconds_per_layer >= 0) || !std::isfinite(p.seconds_per_layer))
    fail(source, ": seconds_per_layer must be zero or more");
  if (p.macs_per_second.empty() && p.layer_seconds.empty())
    fail(source, ": device profile has neither layer_seconds nor macs_per_second");
  return p;
}

}  // namespace

double DeviceProfile::layer_time(const model::Model& m, const std::string& model_name, int node) const {
  const auto& n = m.node(node);
  auto model_it = layer_seconds.find(model_name);
  if (model_it != layer_seconds.end()) {
    auto it = model_it->second.find(n.name());
    if (it != model_it->second.end()) {
      double t = it->second;
      for (const auto& merged : n.merged) {  // layers folded into this one keep their cost
        auto m2 = model_it->second.find(merged);
        if (m2 != model_it->second.end()) t += m2->second;
      }
      return t;
    }
  }
  auto rate = macs_per_second.find(n.layer->type());
  if (rate == macs_per_second.end()) rate = macs_per_second.find("default");
  if (rate == macs_per_second.end() || rate->second <= 0)
    fail("device profile '", name, "': no time for layer '", n.name(), "' (", n.layer->type(),
         ") and no default rate");
  return m.cost(node).macs / rate->second + seconds_per_layer;
}

const DeviceClass& Cluster::device_of(int rank) const {
  int r = rank;
  for (const auto& h : hosts) {
    if (r < h.slots) return classes.at(h.device_class);
    r -= h.slots;
  }
  fail("cluster '", name, "' has ", ranks(), " ranks; rank ", rank, " is not among them");
}

int Cluster::ranks() const {
  int total = 0;
  for (const auto& h : hosts) total += h.slots;
  return total;
}

Cluster read_cluster(const std::string& path) {
  return cluster_from_json(read_json(path, "cluster file"), path,
                           std::filesystem::path(path).parent_path().string());
}

Cluster cluster_from_json(const json& j, const std::string& path, const std::string& folder_text) {
  const std::filesystem::path folder = folder_text;
  Cluster c;
  std::string part;  // where the reading is, for a message from the JSON library
  try {
    if (!j.is_object()) fail(path, ": a cluster file is a JSON object");
    refuse_unknown_keys(j, {"name", "about", "network", "device_classes", "hosts"}, path + ": ", "a cluster file");
    part = "name: ";
    c.name = j.value("name", std::filesystem::path(path).stem().string());
    part = "network: ";
    const json& net = j.at("network");
    refuse_unknown_keys(
        net, {"bandwidth_mbps", "latency_ms", "shared", "energy_j_per_mb_sent", "energy_j_per_mb_received", "about"},
        path + ": network: ", "the network");
    c.network.bandwidth_bytes_per_s = net.at("bandwidth_mbps").get<double>() * 1e6 / 8;
    c.network.latency_s = net.value("latency_ms", 0.0) / 1e3;
    c.network.shared = net.value("shared", true);
    for (auto [key, field] : {std::pair{"energy_j_per_mb_sent", &c.network.energy_j_per_mb_sent},
                              std::pair{"energy_j_per_mb_received", &c.network.energy_j_per_mb_received}}) {
      if (!net.contains(key)) continue;
      const double v = net[key].get<double>();
      if (!(v >= 0) || !std::isfinite(v) || v > 1e6)
        fail(path, ": network: ", key, " must be zero or positive joules per megabyte, not ", net[key].dump());
      *field = v;
    }
    part = "device_classes: ";
    for (const auto& [name, d] : j.at("device_classes").items()) {
      part = cat("device class '", name, "': ");
      DeviceClass dc;
      dc.name = name;
      refuse_unknown_keys(d, {"memory_mb", "cores", "profile", "power", "about"},
                          cat(path, ": device class '", name, "': "), "a device class");
      dc.memory_bytes = d.at("memory_mb").get<double>() * 1e6;
      dc.cores = d.value("cores", 1);
      if (dc.cores < 1) fail(path, ": device class '", name, "': cores ", dc.cores, " is below 1");
      if (d.at("profile").is_string()) {
        std::string p = d["profile"];
        dc.profile = read_profile(std::filesystem::path(p).is_absolute() ? p : (folder / p).string());
      } else {
        dc.profile = profile_from_json(d["profile"], path);
      }
      if (d.contains("power")) {
        const json& w = d["power"];
        refuse_unknown_keys(w, {"idle_w", "busy_w", "radio_j_per_mb_sent", "radio_j_per_mb_received", "about"},
                            cat(path, ": device class '", name, "': power: "), "power");
        dc.power = {w.at("idle_w").get<double>(), w.at("busy_w").get<double>(), w.value("radio_j_per_mb_sent", 0.0),
                    w.value("radio_j_per_mb_received", 0.0)};
        const DevicePower& q = dc.power;
        for (double v : {q.idle_w, q.busy_w, q.radio_j_per_mb_sent, q.radio_j_per_mb_received})
          if (!(v >= 0) || !std::isfinite(v) || v > 1e6)
            fail(path, ": device class '", name, "': power figures must be zero or positive watts and joules");
        if (q.busy_w < q.idle_w)
          fail(path, ": device class '", name, "': busy_w ", q.busy_w, " is below idle_w ", q.idle_w);
      }
      c.classes[name] = dc;
    }
    int slots = 0;
    part = "hosts: ";
    const json& hosts = j.at("hosts");
    for (std::size_t i = 0; i < hosts.size(); ++i) {
      const json& h = hosts[i];
      part = cat("hosts[", i, "]: ");
      refuse_unknown_keys(h, {"name", "class", "slots", "unreliable", "about"}, cat(path, ": hosts[", i, "]: "),
                          "a host");
      Host host{h.at("name").get<std::string>(), h.at("class").get<std::string>(), h.value("slots", 1),
                h.value("unreliable", false)};
      if (!c.classes.count(host.device_class))
        fail(path, ": host '", host.name, "' has unknown device class '", host.device_class, "'");
      if (host.slots < 1 || host.slots > 4096) fail(path, ": host '", host.name, "' has ", host.slots, " slots");
      if ((slots += host.slots) > 65536) fail(path, ": more than 65536 device slots");
      c.hosts.push_back(host);
    }
  } catch (const json::exception& e) {
    fail(path, ": malformed cluster file: ", part, without_error_id(e.what()));
  }
  if (c.hosts.empty()) fail(path, ": cluster has no hosts");
  if (!(c.network.bandwidth_bytes_per_s > 0) || !std::isfinite(c.network.bandwidth_bytes_per_s))
    fail(path, ": network bandwidth must be positive");
  if (!(c.network.latency_s >= 0) || !std::isfinite(c.network.latency_s))
    fail(path, ": network latency must be zero or positive");
  for (const auto& [name, dc] : c.classes)
    if (!(dc.memory_bytes > 0) || !std::isfinite(dc.memory_bytes))
      fail(path, ": device class '", name, "' needs a positive memory_mb");
  return c;
}

DeviceProfile read_profile(const std::string& path) { return profile_from_json(read_json(path, "device profile"), path); }

json profile_to_json(const DeviceProfile& p) {
  return {{"device", p.name},
          {"calibration", p.calibration},
          {"seconds_per_layer", p.seconds_per_layer},
          {"macs_per_second", p.macs_per_second},
          {"layer_seconds", p.layer_seconds}};
}

json cluster_to_json(const Cluster& c) {
  json classes = json::object(), hosts = json::array();
  for (const auto& [name, d] : c.classes) {
    classes[name] = {{"profile", profile_to_json(d.profile)}, {"memory_mb", d.memory_bytes / 1e6}, {"cores", d.cores}};
    if (d.power.known())
      classes[name]["power"] = {{"idle_w", d.power.idle_w},
                                {"busy_w", d.power.busy_w},
                                {"radio_j_per_mb_sent", d.power.radio_j_per_mb_sent},
                                {"radio_j_per_mb_received", d.power.radio_j_per_mb_received}};
  }
  for (const auto& h : c.hosts) {
    hosts.push_back({{"name", h.name}, {"class", h.device_class}, {"slots", h.slots}});
    if (h.unreliable) hosts.back()["unreliable"] = true;
  }
  json network = {{"bandwidth_mbps", c.network.bandwidth_bytes_per_s * 8 / 1e6},
                  {"latency_ms", c.network.latency_s * 1e3},
                  {"shared", c.network.shared}};
  if (c.network.energy_j_per_mb_sent) network["energy_j_per_mb_sent"] = *c.network.energy_j_per_mb_sent;
  if (c.network.energy_j_per_mb_received) network["energy_j_per_mb_received"] = *c.network.energy_j_per_mb_received;
  return {{"name", c.name}, {"network", network}, {"device_classes", classes}, {"hosts", hosts}};
}

void write_profile(const DeviceProfile& p, const std::string& path) {
  write_text_file(path, profile_to_json(p).dump(2) + "\n", "device profile");
}

double DevicePower::joules(double busy_s, double wall_s, double bytes_sent, double bytes_received) const {
  return busy_w * busy_s + idle_w * std::max(0.0, wall_s - busy_s) + radio_j_per_mb_sent * bytes_sent / 1e6 +
         radio_j_per_mb_received * bytes_received / 1e6;
}

DevicePower Cluster::power_of(int rank) const {
  DevicePower p = device_of(rank).power;
  if (network.energy_j_per_mb_sent) p.radio_j_per_mb_sent = *network.energy_j_per_mb_sent;
  if (network.energy_j_per_mb_received) p.radio_j_per_mb_received = *network.energy_j_per_mb_received;
  return p;
}

bool Cluster::unreliable(int rank) const {
  int first = 0;
  for (const auto& h : hosts) {
    if (rank < first + h.slots) return h.unreliable;
    first += h.slots;
  }
  fail("cluster ", name, ": rank ", rank, " is beyond its ", first, " devices");
}

bool Cluster::power_known() const {
  for (int r = 0; r < ranks(); ++r)
    if (!device_of(r).power.known()) return false;
  return true;
}

Cluster first_devices(const Cluster& c, int ranks) {
  if (ranks < 1 || ranks > c.ranks()) fail("cluster ", c.name, ": cannot take ", ranks, " of its ", c.ranks(), " devices");
  Cluster out = c;
  out.hosts.clear();
  for (const Host& h : c.hosts) {
    if (ranks == 0) break;
    Host taken = h;
    taken.slots = std::min(h.slots, ranks);
    ranks -= taken.slots;
    out.hosts.push_back(taken);
  }
  out.name = cat(c.name, " (first ", out.ranks(), ")");
  return out;
}

std::string model_key(const std::string& model_path) { return std::filesystem::path(model_path).stem().string(); }

}  // namespace chorus::cluster
