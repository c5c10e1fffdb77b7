#include "plan/split_sums.h"

#include <algorithm>
#include <cstdint>

namespace chorus::plan {

std::vector<std::size_t> sum_parts(const Shape& out, int frames, bool in_parts, bool scattered) {
  // Eight parts: the first part's reduction waits for its compute and the last part's for the
  // links, so smaller parts hide more, while every part costs each member 2 (k - 1) messages.
  // ViT-B/16 split four ways on emulated Pi 4s (gigabit) took 307 ms a frame with four parts,
  // 280 with eight and 278 with sixteen.
  constexpr std::int64_t kParts = 8;
  const std::int64_t positions = static_cast<std::int64_t>(frames) * out.rows() * out.w;
  std::vector<std::size_t> bounds;
  if (scattered) {
    for (int f = 0; f <= frames; ++f) bounds.push_back(static_cast<std::size_t>(f) * out.size());
    return bounds;
  }
  if (in_parts && sum_parts_by_channels(out, frames)) {
    // One vector (a dense layer on one frame): parts of its channels, so that a large layer's
    // first sums travel while it computes the rest, each at least kMinPartFloats (a message's
    // cost is more than its bytes).
    constexpr std::int64_t kMinPartFloats = 512;
    const std::int64_t parts = std::clamp<std::int64_t>(out.c / kMinPartFloats, 1, kParts);
    for (std::int64_t j = 0; j <= parts; ++j) bounds.push_back(static_cast<std::size_t>(out.c * j / parts));
    return bounds;
  }
  const std::int64_t parts = in_parts ? std::max<std::int64_t>(1, std::min(kParts, positions)) : 1;
  for (std::int64_t j = 0; j <= parts; ++j) bounds.push_back(static_cast<std::size_t>(positions * j / parts) * out.c);
  return bounds;
}

std::size_t sum_floats_to_peer(const std::vector<std::size_t>& parts, int members, int from, int to, int root,
                               const std::vector<std::size_t>* shares) {
  if (from == to) return 0;
  std::size_t floats = 0;
  for (std::size_t p = 0; p + 1 < parts.size(); ++p) {
    const auto share = [&](int c) {
      return sum_share_begin(parts[p], parts[p + 1], members, c + 1, shares) -
             sum_share_begin(parts[p], parts[p + 1], members, c, shares);
    };
    floats += share(to) + (root == kSumsToEveryMember || root == to ? share(from) : 0);
  }
  return floats;
}

}  // namespace chorus::plan
