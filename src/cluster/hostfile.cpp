#include "cluster/hostfile.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include "core/error.h"

namespace chorus::cluster {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kMostSlots = 4096;  // far above any edge cluster; catches typos such as slots=40000

int parse_count(const std::string& text, const std::string& where) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos)
    fail(where, ": expected a whole number, found '", text, "'");
  if (text.size() > 6) fail(where, ": expected 1 to ", kMostSlots, ", found ", text);
  const int n = std::stoi(text);
  if (n < 1 || n > kMostSlots) fail(where, ": expected 1 to ", kMostSlots, ", found ", n);
  return n;
}

bool safe_hostfile_host(const std::string& name) {
  // Host names, IPv4/IPv6 addresses and user@host; nothing a shell or ssh would reinterpret.
  return !name.empty() && name.size() <= 253 &&
         name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:@[]") ==
             std::string::npos &&
         name[0] != '-';
}

}  // namespace

std::vector<HostfileEntry> parse_hostfile(std::istream& in, const std::string& source) {
  std::vector<HostfileEntry> hosts;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    const std::string where = cat(source, ":", number);
    if (line.size() > 4096) fail(where, ": line is longer than 4096 characters");
    line = line.substr(0, line.find('#'));
    std::istringstream words(line);
    std::string name, word;
    if (!(words >> name)) continue;
    if (!safe_hostfile_host(name)) fail(where, ": '", name, "' is not a host name");
    // mpirun --host takes HOST:N; a hostfile does not, and would run one rank on a host of
    // that name. (An IPv6 address has several colons.)
    const auto colon = name.find(':');
    if (colon != std::string::npos && name.find(':', colon + 1) == std::string::npos && colon + 1 < name.size() &&
        name.find_first_not_of("0123456789", colon + 1) == std::string::npos)
      fail(where, ": '", name, "': a hostfile gives slots as '", name.substr(0, colon),
           " slots=", name.substr(colon + 1), "' (HOST:N is mpirun --host's form)");
    int slots = 1, max_slots = 0;
    while (words >> word) {
      const auto eq = word.find('=');
      if (eq == std::string::npos)
        fail(where, ": expected slots=N or max_slots=N after the host name, found '", word, "'");
      const std::string key = word.substr(0, eq), value = word.substr(eq + 1);
      if (key == "slots" || key == "slot" || key == "count" || key == "cpu")
        slots = parse_count(value, cat(where, ": ", key));
      else if (key == "max_slots" || key == "max-slots")
        max_slots = parse_count(value, cat(where, ": ", key));
      else
        fail(where, ": unknown hostfile keyword '", key, "' (Chorus reads slots= and max_slots=)");
    }
    if (max_slots > 0 && slots > max_slots) fail(where, ": slots=", slots, " is more than max_slots=", max_slots);
    auto same = std::find_if(hosts.begin(), hosts.end(), [&](const HostfileEntry& h) { return h.name == name; });
    if (same != hosts.end()) {
      same->slots += slots;
      if (same->slots > kMostSlots) fail(where, ": host '", name, "' has more than ", kMostSlots, " slots in all");
    } else {
      hosts.push_back({name, slots, number});
    }
  }
  if (hosts.empty()) fail(source, ": hostfile names no hosts");
  return hosts;
}

std::vector<HostfileEntry> read_hostfile(const std::string& path) {
  refuse_directory(path, "a hostfile");
  std::ifstream in(path);
  if (!in) fail(path, ": cannot open hostfile");
  return parse_hostfile(in, path);
}

json derive_cluster(const std::vector<HostfileEntry>& hosts, const ClusterRecipe& r) {
  const std::string lib = r.library_path.empty() ? "device class library" : r.library_path;
  if (!r.library.is_object() || !r.library.contains("device_classes") || !r.library["device_classes"].is_object())
    fail(lib, ": expected an object with \"device_classes\"");
  const json& classes = r.library["device_classes"];
  auto known = [&] {
    std::string names;
    for (const auto& [name, _] : classes.items()) names += (names.empty() ? "" : ", ") + name;
    return names;
  };
  for (const auto& entry : r.host_class) {
    const std::string& host = entry.first;
    if (std::none_of(hosts.begin(), hosts.end(), [&](const HostfileEntry& h) { return h.name == host; }))
      fail("cluster: --host-class names host '", host, "', which the hostfile does not list");
  }

  json out;
  out["name"] = r.name;
  if (!r.network_override.is_null()) {
    out["network"] = r.network_override;
  } else {
    const json& nets = r.library.contains("networks") ? r.library["networks"] : json::object();
    if (!nets.is_object() || !nets.contains(r.network)) {
      std::string names;
      if (nets.is_object())
        for (const auto& [name, _] : nets.items()) names += (names.empty() ? "" : ", ") + name;
      fail(lib, ": no network named '", r.network, "' (known: ", names.empty() ? "none" : names, ")");
    }
    out["network"] = nets[r.network];
  }
  out["device_classes"] = json::object();
  out["hosts"] = json::array();
  const fs::path library_dir = fs::absolute(fs::path(r.library_path.empty() ? "." : r.library_path)).parent_path();
  const fs::path output_dir =
      fs::absolute(fs::path(r.output_path.empty() ? "cluster.json" : r.output_path)).parent_path();
  for (const auto& h : hosts) {
    auto it = r.host_class.find(h.name);
    const std::string cls = it != r.host_class.end() ? it->second : r.default_class;
    if (cls.empty())
      fail("cluster: host '", h.name, "' (line ", h.line, ") has no device class: give --class for every host or ",
           "--host-class ", h.name, "=CLASS (known: ", known(), ")");
    if (!classes.contains(cls))
      fail(lib, ": no device class '", cls, "' for host '", h.name, "' (known: ", known(), ")");
    if (!out["device_classes"].contains(cls)) {
      json d = classes[cls];
      if (d.contains("profile") && d["profile"].is_string()) {
        fs::path p = d["profile"].get<std::string>();
        if (p.is_relative()) p = library_dir / p;
        p = p.lexically_normal();
        // Relative when both files live in one tree (a repository moved as a whole keeps working).
        const fs::path relative = p.lexically_relative(output_dir);
        const bool same_tree = !r.output_path.empty() && !relative.empty() && *p.begin() == *output_dir.begin() &&
                               std::next(p.begin()) != p.end() && std::next(output_dir.begin()) != output_dir.end() &&
                               *std::next(p.begin()) == *std::next(output_dir.begin());
        d["profile"] = same_tree ? relative.string() : p.string();
      }
      out["device_classes"][cls] = d;
    }
    out["hosts"].push_back({{"name", h.name}, {"class", cls}, {"slots", h.slots}});
  }
  return out;
}

}  // namespace chorus::cluster
