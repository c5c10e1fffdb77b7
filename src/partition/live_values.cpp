#include "partition/live_values.h"

#include <algorithm>

#include "plan/band_geometry.h"

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

std::vector<std::pair<int, int>> stage_input_rows(const model::Model& m, const plan::ResolvedPlan& plan, int stage,
                                                  int member) {
  const std::vector<int> values = live_values(m, plan, stage - 1);
  std::vector<std::pair<int, int>> rows;
  for (int v : values) rows.emplace_back(0, m.shape_of(v).h);
  if (stage < 0 || stage >= static_cast<int>(plan.stages.size())) return rows;
  const auto& st = plan.stages[stage];
  if (st.mode != plan::StageMode::split_spatial || st.ranks.size() < 2) return rows;
  const std::vector<int> handed_on = live_values(m, plan, stage);
  const int band_input = m.node(st.first).inputs.at(0);
  // The first group's bands read the stage's input (later groups swap rows among the members).
  const plan::BandGroup group = plan::band_groups(m, st.first, {st.group_ends.front()}, st.fractions).front();
  for (std::size_t k = 0; k < values.size(); ++k) {
    const int v = values[k];
    const bool whole = member == 0 && std::count(handed_on.begin(), handed_on.end(), v) > 0;
    if (whole) continue;
    if (v == band_input) {
      const auto need = group.input_rows[member];
      rows[k] = {std::clamp(need.first, 0, m.shape_of(v).h), std::clamp(need.second, 0, m.shape_of(v).h)};
      if (rows[k].second < rows[k].first) rows[k].second = rows[k].first;
    } else {
      rows[k] = {0, 0};
    }
  }
  return rows;
}

std::size_t input_rows_floats(const model::Model& m, const std::vector<int>& values,
                              const std::vector<std::pair<int, int>>& rows) {
  std::size_t total = 0;
  for (std::size_t k = 0; k < values.size(); ++k) {
    const Shape s = m.shape_of(values[k]);
    total += static_cast<std::size_t>(rows[k].second - rows[k].first) * s.w * s.c * s.d;  // those rows of each image
  }
  return total;
}

std::size_t live_floats(const model::Model& m, const std::vector<int>& values) {
  std::size_t total = 0;
  for (int v : values) total += m.shape_of(v).size();
  return total;
}

}  // namespace chorus::partition
