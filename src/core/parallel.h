#pragma once
// The compute threads of one rank. Chorus splits its own loops (convolution blocks, Winograd
// tiles, depthwise rows, GEMM panels) across them and calls BLAS single-threaded inside each
// part, so one pool serves everything and no second pool (OpenBLAS') spins beside it.
#include <cstdint>

#include "core/function_ref.h"

namespace chorus {

// Sets the number of compute threads (at least 1) and puts BLAS at one thread, since the
// splitting happens here. Call from the main thread, outside any parallel_for.
void set_compute_threads(int threads);

// Threads a parallel_for started here would use: the pool's size, or 1 inside a task (nested
// calls run inline) and before set_compute_threads.
int parallel_threads();

// Runs task(i) for every i in [0, tasks) across the compute threads, the caller among them, and
// returns when all are done. An exception from a task is rethrown here (the first one).
void parallel_for(int tasks, FunctionRef<void(int)> task);

// Runs f() once on each compute thread, the caller's included, and returns when all have: for
// per-thread buffers that must reach their final size before the steady state, since a worker
// that first takes a task late would otherwise allocate then. Inside a task it runs f() only on
// the calling thread. f must not throw.
void on_every_thread(FunctionRef<void()> f);

// Splits [0, n) into at most parallel_threads() contiguous ranges of at least `grain` items
// (their starts multiples of `align`), one a thread, and runs body(begin, end) on pieces of
// them in parallel (pieces of at least `grain` items but a range's last, starts multiples of
// `align`): a thread that finishes its range takes the last pieces of the others', so
// a slower or busier core does not hold up the rest. `whole_ranges`: one call per range, for
// bodies that pay a set-up per call (a sliding window of rows).
void parallel_range(std::int64_t n, std::int64_t grain, FunctionRef<void(std::int64_t, std::int64_t)> body,
                    std::int64_t align = 1, bool whole_ranges = false);

}  // namespace chorus
