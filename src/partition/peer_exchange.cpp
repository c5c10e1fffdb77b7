#include "partition/peer_exchange.h"

#include <algorithm>

#include "core/error.h"

namespace chorus::partition {

int PeerExchange::begin_sums(float* data, std::size_t count, int members, int root,
                             const std::vector<std::size_t>* shares) {
  const int id = next_sums_++;
  OpenSums& sums = open_sums(id);
  CHORUS_ASSERT(!sums.open, "more than ", kOpenSums, " reductions of partial sums open at once");
  sums = OpenSums{data, count, members, root, true, false, shares};
  return id;
}

void PeerExchange::wait_sums(int id, std::size_t end) {
  (void)end;
  OpenSums& sums = open_sums(id);
  if (sums.summed) return;
  sums.summed = true;
  const int members = sums.members;
  std::vector<float> parts(sums.count * members);
  all_gather(sums.data, std::vector<std::size_t>(members, sums.count), parts.data());
  std::copy(parts.begin(), parts.begin() + sums.count, sums.data);
  for (int m = 1; m < members; ++m)
    for (std::size_t i = 0; i < sums.count; ++i) sums.data[i] += parts[m * sums.count + i];
}

void PeerExchange::end_sums(int id) {
  wait_sums(id, open_sums(id).count);
  open_sums(id).open = false;
}

}  // namespace chorus::partition
