#pragma once
// Open MPI hostfiles, and cluster files derived from them: a user who already launches with
// `mpirun --hostfile H` names the device class of each host instead of writing a cluster file.
#include <istream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace chorus::cluster {

struct HostfileEntry {
  std::string name;
  int slots = 1;  // Chorus runs one rank per slot; a host without `slots=` gets one
  int line = 0;   // where it was declared, for messages
};

// Reads an Open MPI hostfile: one host per line, `slots=N` (also `slot`, `count`, `cpu`) and
// `max_slots=N` (checked, not used), `#` comments. A host named twice adds its slots, as
// mpirun does. Throws chorus::Error naming the file and line for anything else.
std::vector<HostfileEntry> read_hostfile(const std::string& path);
std::vector<HostfileEntry> parse_hostfile(std::istream& in, const std::string& source);

// What to add to a hostfile to make a cluster file.
struct ClusterRecipe {
  std::string name;
  std::string default_class;                      // every host not listed below
  std::map<std::string, std::string> host_class;  // host -> class
  nlohmann::json library;                         // {"device_classes": {...}, "networks": {...}}
  std::string library_path;                       // profile paths in it are relative to it
  std::string network;                            // a name in library["networks"]...
  nlohmann::json network_override;                // ...or these keys (bandwidth_mbps, latency_ms, shared)
  std::string output_path;                        // profile paths are written relative to it
};

// The cluster file (JSON, docs/emulation.md) for these hosts: the classes they use, copied
// from the library with profile paths made relative to the output, and the network. Throws
// chorus::Error for a host without a class, an unknown class or network, or a host named in
// `host_class` that the hostfile lacks.
nlohmann::json derive_cluster(const std::vector<HostfileEntry>& hosts, const ClusterRecipe& recipe);

}  // namespace chorus::cluster
