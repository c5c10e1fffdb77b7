#include "supervise/failure_report.h"

#include <map>
#include <regex>
#include <set>

namespace chorus::supervise {

std::optional<int> failed_rank(const std::string& out) {
  // A rank that timed out names the peer it waited for; that peer may be alive and waiting in
  // turn (a rank stuck behind a lost link stalls whoever waits for it): follow the waits to the
  // rank that waited for no one.
  static const std::regex waited("\\[rank ([0-9]+)[^\\]]*\\][^\\n]*waited [0-9.e+]+ s for rank ([0-9]+)");
  std::map<int, int> waits_for;  // waiter -> the rank it waited for (its first report)
  int first = -1;
  for (auto it = std::sregex_iterator(out.begin(), out.end(), waited); it != std::sregex_iterator(); ++it) {
    const int waiter = std::stoi((*it)[1]), peer = std::stoi((*it)[2]);
    waits_for.emplace(waiter, peer);
    if (first < 0) first = peer;
  }
  if (first >= 0) {
    int rank = first;
    std::set<int> seen{rank};
    for (auto next = waits_for.find(rank); next != waits_for.end(); next = waits_for.find(rank)) {
      if (!seen.insert(next->second).second) break;  // a cycle: keep the last rank reached
      rank = next->second;
    }
    return rank;
  }
  // Then: mpirun names a rank that died; a survivor's notice names whom it waited for (which
  // may be a live rank in turn).
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
