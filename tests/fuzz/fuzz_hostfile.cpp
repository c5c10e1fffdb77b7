// Open MPI hostfiles.
#include <sstream>
#include <string>

#include "cluster/hostfile.h"
#include "core/error.h"
#include "fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  try {
    chorus::cluster::parse_hostfile(in, "fuzz.hosts");
  } catch (const chorus::Error&) {
  }
  return 0;
}
