#pragma once
// Per-thread scratch shared by the convolution kernels (im2col blocks, Winograd tiles): one
// buffer per thread, grown to the largest need and kept, so frames allocate nothing and the
// kernels do not each keep a buffer of their own alive.
#include <cstddef>

namespace chorus::layers {

// At least `floats` floats, valid until the next call on this thread; contents undefined. Each
// thread's buffer grows to the largest size any thread has asked for, so that frames after the
// first few allocate nothing whichever thread gets which block.
float* conv_scratch(std::size_t floats);

// At least `floats` zeros, per thread, grown like conv_scratch; never written by the caller.
const float* zero_floats(std::size_t floats);

// Grows every compute thread's buffers to the largest need seen so far, if any grew since the
// last call, so that a thread that first meets a kernel late (a worker that had no task during
// the warm-up) allocates nothing then. Called after each run of an executor; cheap when nothing
// grew.
void settle_scratch_on_every_thread();

}  // namespace chorus::layers
