#pragma once
// How a split layer's partial sums are reduced (split-input and split-tensor stages): in a few
// parts of whole positions, so that a part's reduction overlaps the compute of the parts after
// it, each part cut into one share per member, which that member adds up. The worker, the
// runtime, the traffic model and the planner all read this geometry.
#include <cstddef>
#include <vector>

#include "tensor/tensor.h"

namespace chorus::plan {

// Share c of a part [begin, end) of partial sums: [sum_share_begin(c), sum_share_begin(c + 1)).
inline std::size_t sum_share_begin(std::size_t begin, std::size_t end, int members, int c) {
  return begin + (end - begin) * static_cast<std::size_t>(c) / static_cast<std::size_t>(members);
}

// The parts, as float bounds over `frames` frames of `out`: up to eight runs of whole positions
// for a layer that computes its output part by part (`in_parts`: Layer::partwise_fraction() > 0),
// else one part (more would only add messages), as for a single position (a CNN's dense layer).
std::vector<std::size_t> sum_parts(const Shape& out, int frames, bool in_parts);

// Floats member `from` sends member `to` to reduce partial sums in `parts`: its contribution to
// `to`'s share of every part, then the sums of its own shares (if every member takes the sums,
// root < 0, or `to` is the root that alone takes them).
std::size_t sum_floats_to_peer(const std::vector<std::size_t>& parts, int members, int from, int to, int root);

}  // namespace chorus::plan
