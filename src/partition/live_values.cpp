#include "partition/live_values.h"

#include <algorithm>

#include "partition/row_bands.h"
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

std::vector<InputRows> stage_input_rows(const model::Model& m, const plan::ResolvedPlan& plan, int stage, int member) {
  const std::vector<int> values = live_values(m, plan, stage - 1);
  std::vector<InputRows> rows;
  for (int v : values) {
    const Shape s = m.shape_of(v);
    rows.push_back({0, s.h, s.h, s.d, static_cast<std::size_t>(s.w) * s.c});
  }
  if (stage < 0 || stage >= static_cast<int>(plan.stages.size())) return rows;
  const auto& st = plan.stages[stage];
  if (st.ranks.size() < 2) return rows;
  if (st.mode == plan::StageMode::split_input) {
    const plan::InputSlices slices = plan::input_slices(m, st.first, st.last, st.mode, st.fractions);
    if (!slices.any()) return rows;
    const Shape whole = m.shape_of(slices.value);
    const auto [begin, end] = slices.parts.at(member);
    for (std::size_t k = 0; k < values.size(); ++k)
      if (values[k] == slices.value) {
        // Floats: rows of one float. Channels: at each position (an image of `c` rows of one
        // float), rows [begin, end).
        const int positions = static_cast<int>(whole.size() / whole.c);
        rows[k] = slices.channels ? InputRows{begin, end, whole.c, positions, 1}
                                  : InputRows{begin, end, static_cast<int>(whole.size()), 1, 1};
      }
    return rows;
  }
  if (st.mode != plan::StageMode::split_spatial) return rows;
  const std::vector<int> handed_on = live_values(m, plan, stage);
  const int band_input = m.node(st.first).inputs.at(0);
  // The first group's bands read the stage's input (later groups swap rows among the members).
  const plan::BandGroup group =
      plan::band_groups(m, st.first, {st.group_ends.front()}, st.fractions, st.columns).front();
  for (std::size_t k = 0; k < values.size(); ++k) {
    const int v = values[k];
    const bool whole = member == 0 && std::count(handed_on.begin(), handed_on.end(), v) > 0;
    if (whole) continue;
    if (v == band_input) {
      const int h = m.shape_of(v).h;
      const auto need = group.input_tiles[member].rows;
      rows[k].begin = std::clamp(need.first, 0, h);
      rows[k].end = std::max(rows[k].begin, std::clamp(need.second, 0, h));
      if (st.columns > 1) {  // a tile: its columns too
        const int w = m.shape_of(v).w;
        const auto across = group.input_tiles[member].columns;
        rows[k].width = w;
        rows[k].col_begin = std::clamp(across.first, 0, w);
        rows[k].col_end = std::max(rows[k].col_begin, std::clamp(across.second, 0, w));
      }
    } else {
      rows[k].begin = rows[k].end = 0;
    }
  }
  return rows;
}

void pack_input_rows(const InputRows& r, const float* whole, float* packed) {
  const int rows = r.end - r.begin;
  if (r.width == 0) {
    copy_image_rows(whole, r.height, r.begin, packed, rows, 0, rows, r.images, r.row);
    return;
  }
  const int columns = r.col_end - r.col_begin;
  copy_image_block(whole, {r.height, r.width, r.begin, r.col_begin}, packed, {rows, columns, 0, 0}, rows, columns,
                   r.images, r.row / r.width);
}

void unpack_input_rows(const InputRows& r, const float* packed, float* whole) {
  const int rows = r.end - r.begin;
  if (r.width == 0) {
    copy_image_rows(packed, rows, 0, whole, r.height, r.begin, rows, r.images, r.row);
    return;
  }
  const int columns = r.col_end - r.col_begin;
  copy_image_block(packed, {rows, columns, 0, 0}, whole, {r.height, r.width, r.begin, r.col_begin}, rows, columns,
                   r.images, r.row / r.width);
}

std::size_t input_rows_floats(const std::vector<InputRows>& rows) {
  std::size_t total = 0;
  for (const InputRows& r : rows) total += r.floats();
  return total;
}

std::size_t live_floats(const model::Model& m, const std::vector<int>& values) {
  std::size_t total = 0;
  for (int v : values) total += m.shape_of(v).size();
  return total;
}

}  // namespace chorus::partition
