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

}  // namespace chorus::layers
