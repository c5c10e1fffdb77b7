#pragma once
// Float storage that starts on a 64-byte boundary. A 16-float vector load (AVX-512) from an
// address that is not a multiple of 64 spans two cache lines and costs two loads; malloc's
// blocks start 16 bytes past a line for large sizes, so every such load in a kernel did.
#include <cstddef>
#include <memory>
#include <new>
#include <vector>

namespace chorus {

constexpr std::size_t kCacheLine = 64;

struct AlignedFloatsDelete {
  void operator()(float* p) const { ::operator delete[](p, std::align_val_t(kCacheLine)); }
};

// Uninitialised floats, like new float[n], on a cache-line boundary.
using AlignedFloats = std::unique_ptr<float[], AlignedFloatsDelete>;

inline AlignedFloats allocate_aligned_floats(std::size_t n) {
  return AlignedFloats(static_cast<float*>(::operator new[](n * sizeof(float), std::align_val_t(kCacheLine))));
}

// A std::vector allocator with the same alignment (packed weights, depthwise kernels).
template <class T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <class U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kCacheLine))); }
  void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t(kCacheLine)); }
  template <class U>
  bool operator==(const CacheLineAllocator<U>&) const { return true; }
  template <class U>
  bool operator!=(const CacheLineAllocator<U>&) const { return false; }
};

template <class T>
using AlignedVector = std::vector<T, CacheLineAllocator<T>>;

}  // namespace chorus
