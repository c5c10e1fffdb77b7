#include "layers/scratch.h"

#include <algorithm>
#include <atomic>
#include <memory>

#include "core/aligned.h"

namespace chorus::layers {

namespace {

// The largest need any thread has had. Which thread gets which block of a layer depends on
// timing, so a thread could meet a larger block than ever before long after the warm-up, and
// allocate in the steady state; growing every thread to the largest need seen anywhere, on its
// next call, settles all of them within the first frames.
std::atomic<std::size_t> largest_need{0};

}  // namespace

float* conv_scratch(std::size_t floats) {
  // Uninitialised storage: a vector would zero every float it grows by.
  thread_local AlignedFloats buffer;
  thread_local std::size_t size = 0;
  std::size_t largest = largest_need.load(std::memory_order_relaxed);
  while (floats > largest && !largest_need.compare_exchange_weak(largest, floats, std::memory_order_relaxed)) {
  }
  const std::size_t want = std::max(floats, largest);
  if (want > size) {
    buffer.reset();  // free first, so the old and new buffers never coexist
    buffer = allocate_aligned_floats(want);
    size = want;
  }
  return buffer.get();
}

}  // namespace chorus::layers
