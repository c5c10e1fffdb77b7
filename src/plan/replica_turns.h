#pragma once
// Which member of a replicated stage takes frame i: smooth weighted round-robin by the stage's
// fractions (the member furthest behind its share takes the next frame). The runtime hands
// frames out by it, and the traffic model (partition/frame_traffic.h) follows the same turns.
#include <vector>

namespace chorus::plan {

class ReplicaTurns {
 public:
  explicit ReplicaTurns(std::vector<double> fractions) : fractions_(std::move(fractions)), count_(fractions_.size()) {}
  // Room for `frames` turns, so that the steady state does not grow the table.
  void reserve(int frames) { table_.reserve(frames); }
  int member_of(int frame) {
    while (static_cast<int>(table_.size()) <= frame) {
      const double next = table_.size() + 1.0;
      int best = 0;
      double best_deficit = -1e300;
      for (std::size_t r = 0; r < fractions_.size(); ++r) {
        const double deficit = fractions_[r] * next - count_[r];
        if (deficit > best_deficit + 1e-12) best_deficit = deficit, best = static_cast<int>(r);
      }
      table_.push_back(best);
      ++count_[best];
    }
    return table_[frame];
  }

 private:
  std::vector<double> fractions_;
  std::vector<int> count_;
  std::vector<int> table_;
};

}  // namespace chorus::plan
