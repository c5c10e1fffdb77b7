// Cluster files (with inline device profiles).
#include <nlohmann/json.hpp>
#include <string>

#include "cluster/cluster.h"
#include "core/error.h"
#include "fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  nlohmann::json j;
  if (!chorus::fuzz::parse_json(data, size, j)) return 0;
  try {
    auto c = chorus::cluster::cluster_from_json(j, "fuzz.json", "/nonexistent");
    for (int r = 0; r < c.ranks(); ++r) c.device_of(r);
  } catch (const chorus::Error&) {
  }
  return 0;
}
