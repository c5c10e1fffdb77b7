#include "partition/hand_off.h"

#include <algorithm>
#include <cstring>

#include "partition/live_values.h"
#include "plan/band_geometry.h"

namespace chorus::partition {

namespace {

// A run of floats of one frame of a value; `at` in a second buffer (the tile), where it has one.
struct Run {
  std::size_t begin = 0, end = 0, at = 0;
};

// The runs of a member's output tile: a row of the tile, all its channels, per image.
std::vector<Run> tile_runs(const Shape& value, const plan::Tile& t) {
  std::vector<Run> runs;
  const int rows = t.rows.second - t.rows.first, columns = t.columns.second - t.columns.first;
  if (rows <= 0 || columns <= 0) return runs;
  const std::size_t c = value.c, row_floats = static_cast<std::size_t>(columns) * c;
  std::size_t at = 0;
  for (int z = 0; z < value.d; ++z)
    for (int y = t.rows.first; y < t.rows.second; ++y, at += row_floats) {
      const std::size_t begin = ((static_cast<std::size_t>(z) * value.h + y) * value.w + t.columns.first) * c;
      runs.push_back({begin, begin + row_floats, at});
    }
  return runs;
}

// The runs a receiver takes of the value (its InputRows), adjacent ones merged.
std::vector<Run> taken_runs(const InputRows& r) {
  std::vector<Run> runs;
  const std::size_t per_pixel = r.width == 0 ? 0 : r.row / r.width;
  for (int z = 0; z < r.images; ++z)
    for (int y = r.begin; y < r.end; ++y) {
      const std::size_t row = (static_cast<std::size_t>(z) * r.height + y) * r.row;
      const std::size_t begin = r.width == 0 ? row : row + r.col_begin * per_pixel;
      const std::size_t end = r.width == 0 ? row + r.row : row + r.col_end * per_pixel;
      if (begin == end) continue;
      if (!runs.empty() && runs.back().end == begin)
        runs.back().end = end;
      else
        runs.push_back({begin, end, 0});
    }
  return runs;
}

}  // namespace

TileHandOff tile_hand_off(const model::Model& m, const plan::ResolvedPlan& p, int stage) {
  const plan::ResolvedStage& st = p.stages.at(stage);
  const Shape value = m.node(st.last).layer->output_shape();
  const std::vector<plan::BandGroup> groups = plan::band_groups(m, st.first, st.group_ends, st.fractions, st.columns);
  const int next = stage + 1, S = static_cast<int>(p.stages.size());
  const int receivers = next == S ? 1 : static_cast<int>(p.stages[next].ranks.size());
  TileHandOff hand_off;
  for (std::size_t g = 0; g < st.ranks.size(); ++g) {
    const std::vector<Run> held = tile_runs(value, groups.back().tiles[g]);
    auto& to = hand_off.pieces.emplace_back(receivers);
    for (int r = 0; r < receivers; ++r) {
      const std::vector<Run> taken = taken_runs(stage_input_rows(m, p, next, r).at(0));
      // Both lists ascend and do not overlap: their intersections, in one pass.
      for (std::size_t a = 0, b = 0; a < held.size() && b < taken.size();) {
        const std::size_t begin = std::max(held[a].begin, taken[b].begin);
        const std::size_t end = std::min(held[a].end, taken[b].end);
        if (begin < end) {
          const std::size_t tile_at = held[a].at + (begin - held[a].begin);
          std::vector<HandOffPiece>& pieces = to[r];
          if (!pieces.empty() && pieces.back().value_at + pieces.back().floats == begin &&
              pieces.back().tile_at + pieces.back().floats == tile_at)
            pieces.back().floats += end - begin;  // continues the piece before, in the value and in the tile
          else
            pieces.push_back({begin, tile_at, end - begin});
        }
        (held[a].end < taken[b].end ? a : b)++;
      }
    }
  }
  for (const auto& from : hand_off.pieces) {
    auto& totals = hand_off.totals.emplace_back();
    for (const auto& to : from) {
      std::size_t total = 0;
      for (const HandOffPiece& piece : to) total += piece.floats;
      totals.push_back(total);
    }
  }
  return hand_off;
}

void pack_pieces(const std::vector<HandOffPiece>& pieces, const float* tile, float* packed) {
  for (const HandOffPiece& piece : pieces) {
    std::memcpy(packed, tile + piece.tile_at, piece.floats * sizeof(float));
    packed += piece.floats;
  }
}

void unpack_pieces(const std::vector<HandOffPiece>& pieces, const float* packed, float* value) {
  for (const HandOffPiece& piece : pieces) {
    std::memcpy(value + piece.value_at, packed, piece.floats * sizeof(float));
    packed += piece.floats;
  }
}

}  // namespace chorus::partition
