#include "supervise/failure_report.h"

#include <regex>

namespace chorus::supervise {

std::optional<int> failed_rank(const std::string& out) {
  // Most certain first: a rank that timed out names the stalled peer; mpirun names a rank that
  // died; a survivor's notice names whom it waited for (which may be a live rank in turn).
  static const std::regex patterns[] = {
      std::regex("waited [0-9.e+]+ s for rank ([0-9]+)"),
      std::regex("process rank ([0-9]+) with PID [0-9]+ on node [^ ]+ exited on signal"),
      std::regex("waiting for rank ([0-9]+)"),
  };
  for (const auto& pattern : patterns) {
    std::smatch m;
    if (std::regex_search(out, m, pattern) && m.size() > 1 && m[1].matched) return std::stoi(m[1]);
  }
  return std::nullopt;
}

}  // namespace chorus::supervise
