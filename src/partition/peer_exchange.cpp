#include "partition/peer_exchange.h"

#include <algorithm>

namespace chorus::partition {

void PeerExchange::begin_sums(float* data, std::size_t count, int members, int root) {
  sum_data_ = data;
  sum_count_ = count;
  sum_members_ = members;
  sum_root_ = root;
}

void PeerExchange::end_sums() {
  const int members = sum_members_;
  std::vector<float> parts(sum_count_ * members);
  all_gather(sum_data_, std::vector<std::size_t>(members, sum_count_), parts.data());
  std::copy(parts.begin(), parts.begin() + sum_count_, sum_data_);
  for (int m = 1; m < members; ++m)
    for (std::size_t i = 0; i < sum_count_; ++i) sum_data_[i] += parts[m * sum_count_ + i];
}

}  // namespace chorus::partition
