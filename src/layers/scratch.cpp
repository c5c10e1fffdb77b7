#include "layers/scratch.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <vector>

#include "core/aligned.h"
#include "core/parallel.h"

namespace chorus::layers {

namespace {

// The largest need any thread has had. Which thread gets which block of a layer depends on
// timing, so a thread could meet a larger block than ever before long after the warm-up, and
// allocate in the steady state. Each thread grows to the largest need seen anywhere on its next
// call, and settle_scratch_on_every_thread makes that call on every thread after each run, so a
// worker that had no task yet is ready too.
std::atomic<std::size_t> largest_need{0}, largest_zeros{0};
// What settle_scratch_on_every_thread last grew every thread to.
std::atomic<std::size_t> settled_need{0}, settled_zeros{0};

// Raises `largest` to at least `n`; returns the new value.
std::size_t raise(std::atomic<std::size_t>& largest, std::size_t n) {
  std::size_t seen = largest.load(std::memory_order_relaxed);
  while (n > seen && !largest.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {
  }
  return std::max(n, seen);
}

}  // namespace

float* conv_scratch(std::size_t floats) {
  // Uninitialised storage: a vector would zero every float it grows by.
  thread_local AlignedFloats buffer;
  thread_local std::size_t size = 0;
  const std::size_t want = raise(largest_need, floats);
  if (want > size) {
    buffer.reset();  // free first, so the old and new buffers never coexist
    buffer = allocate_aligned_floats(want);
    size = want;
  }
  return buffer.get();
}

const float* zero_floats(std::size_t floats) {
  thread_local std::vector<float> buffer;
  const std::size_t want = raise(largest_zeros, floats);
  if (buffer.size() < want) buffer.assign(want, 0.0f);
  return buffer.data();
}

void settle_scratch_on_every_thread() {
  const std::size_t need = largest_need.load(), zeros = largest_zeros.load();
  if (need == settled_need.load() && zeros == settled_zeros.load()) return;
  // Asking for nothing grows the thread's buffers to the largest need (and registers their
  // destructors, which allocates too).
  on_every_thread([] {
    conv_scratch(0);
    zero_floats(0);
  });
  settled_need.store(need);
  settled_zeros.store(zeros);
}

}  // namespace chorus::layers
