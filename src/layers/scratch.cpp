#include "layers/scratch.h"

#include <memory>

#include "core/aligned.h"

namespace chorus::layers {

float* conv_scratch(std::size_t floats) {
  // Uninitialised storage: a vector would zero every float it grows by.
  thread_local AlignedFloats buffer;
  thread_local std::size_t size = 0;
  if (floats > size) {
    buffer.reset();  // free first, so the old and new buffers never coexist
    buffer = allocate_aligned_floats(floats);
    size = floats;
  }
  return buffer.get();
}

}  // namespace chorus::layers
