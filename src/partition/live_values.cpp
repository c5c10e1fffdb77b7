#include "partition/live_values.h"

#include <algorithm>

namespace chorus::partition {

std::vector<int> live_values(const model::Model& m, const plan::ResolvedPlan& plan, int cut) {
  if (cut < 0) return m.input_values();
  if (cut + 1 >= static_cast<int>(plan.stages.size())) return m.outputs();
  const int last = plan.stages[cut].last;
  std::vector<int> live;
  auto add = [&](int v) {
    if (std::find(live.begin(), live.end(), v) == live.end()) live.push_back(v);
  };
  for (int n = last + 1; n < static_cast<int>(m.nodes().size()); ++n)
    for (int v : m.node(n).inputs)
      if (v <= last) add(v);  // model inputs (negative) are <= last too
  for (int v : m.outputs())
    if (v <= last) add(v);
  std::sort(live.begin(), live.end());
  return live;
}

std::size_t live_floats(const model::Model& m, const std::vector<int>& values) {
  std::size_t total = 0;
  for (int v : values) total += m.shape_of(v).size();
  return total;
}

}  // namespace chorus::partition
