#pragma once
// How a split layer's partial sums are reduced (split-input and split-tensor stages): in a few
// parts (of whole positions, of one vector's channels, or a reduce-scatter's frames), so that a
// part's reduction overlaps the compute of the parts after it, each part cut into one share per
// member, which that member adds up. The worker, the runtime, the traffic model and the planner
// all read this geometry.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "tensor/tensor.h"

namespace chorus::plan {

// Who takes a reduction's sums (PeerExchange::begin_sums' `root`): every member (an
// all-reduce), one member (>= 0: a reduce), or each member only its own share of every part (a
// reduce-scatter: the next layer reads only that slice; validate.h's scatter_shares).
constexpr int kSumsToEveryMember = -1;
constexpr int kSumsScattered = -2;

// Share c of a part [begin, end) of partial sums: [sum_share_begin(c), sum_share_begin(c + 1)).
// Even cuts of the part, or, where `shares` is given (a reduce-scatter, whose parts are frames
// of one length), floats [shares[c], shares[c + 1]) of it.
inline std::size_t sum_share_begin(std::size_t begin, std::size_t end, int members, int c,
                                   const std::vector<std::size_t>* shares = nullptr) {
  if (shares) return begin + (*shares)[c];
  return begin + (end - begin) * static_cast<std::size_t>(c) / static_cast<std::size_t>(members);
}

// The parts, as float bounds over `frames` frames of `out`: up to eight runs of whole positions
// for a layer that computes its output part by part (`in_parts`: Layer::partwise_fraction() > 0),
// else one part (more would only add messages). A single position (a CNN's dense layer on one
// frame) is cut by channels instead, in up to eight parts of at least 512 floats
// (Layer::forward_channels_in_parts). A reduce-scatter (`scattered`: scatter_shares) runs in one
// part per frame, each cut by its shares.
std::vector<std::size_t> sum_parts(const Shape& out, int frames, bool in_parts, bool scattered = false);
// Whether sum_parts cuts `frames` frames of `out` by channels: a single position in all.
inline bool sum_parts_by_channels(const Shape& out, int frames) {
  return static_cast<std::int64_t>(frames) * out.rows() * out.w == 1;
}

// Floats member `from` sends member `to` to reduce partial sums in `parts`: its contribution to
// `to`'s share of every part, then the sums of its own shares (if every member takes the sums,
// kSumsToEveryMember, or `to` is the root that alone takes them; none in a reduce-scatter).
std::size_t sum_floats_to_peer(const std::vector<std::size_t>& parts, int members, int from, int to, int root,
                               const std::vector<std::size_t>* shares = nullptr);

}  // namespace chorus::plan
