#include "core/memory.h"

#include <fstream>
#include <string>

namespace chorus {

static std::size_t read_status_kb(const std::string& key) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.compare(0, key.size(), key) == 0) return std::stoull(line.substr(key.size())) * 1024;
  }
  return 0;
}

std::size_t peak_rss_bytes() { return read_status_kb("VmHWM:"); }
std::size_t current_rss_bytes() { return read_status_kb("VmRSS:"); }

}  // namespace chorus
