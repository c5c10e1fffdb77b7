#include "io/data/decode_arena.h"

#include <algorithm>
#include <cstring>
#include <new>

// Under AddressSanitizer (the fuzz builds) the arena marks what it has not handed out as
// poisoned, with a red zone after each block, so that a decoder's overflow is still caught.
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CHORUS_ARENA_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define CHORUS_ARENA_ASAN 1
#endif
#ifdef CHORUS_ARENA_ASAN
#include <sanitizer/asan_interface.h>
#define CHORUS_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define CHORUS_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
constexpr std::size_t kRedZone = 16;
#else
#define CHORUS_POISON(p, n) ((void)(p), (void)(n))
#define CHORUS_UNPOISON(p, n) ((void)(p), (void)(n))
constexpr std::size_t kRedZone = 0;
#endif

namespace chorus::io {

namespace {

constexpr std::size_t kAlignment = 16;
constexpr std::size_t kFirstChunk = std::size_t(1) << 20;

std::size_t round_up(std::size_t n) { return (n + kAlignment - 1) & ~(kAlignment - 1); }

}  // namespace

bool DecodeArena::add_chunk(std::size_t at_least) {
  // Doubling keeps an image that outgrows the chunks at a few chunks; `reset` joins them.
  const std::size_t size = std::max({at_least, kFirstChunk, chunks_.empty() ? 0 : 2 * chunks_.back().size});
  Chunk chunk;
  chunk.bytes.reset(new (std::nothrow) std::byte[size]);  // 16-byte aligned, as malloc's blocks
  if (!chunk.bytes) return false;
  chunk.size = size;
  CHORUS_POISON(chunk.bytes.get(), size);
  chunks_.push_back(std::move(chunk));
  ++chunks_allocated_;
  used_ = 0;
  last_ = nullptr;
  return true;
}

void* DecodeArena::allocate(std::size_t bytes) {
  if (bytes > kLargestBlock) return nullptr;
  const std::size_t size = round_up(std::max<std::size_t>(bytes, 1) + kRedZone);
  if ((chunks_.empty() || chunks_.back().size - used_ < size) && !add_chunk(size)) return nullptr;
  last_offset_ = used_;
  last_ = chunks_.back().bytes.get() + used_;
  used_ += size;
  CHORUS_UNPOISON(last_, bytes);
  return last_;
}

void* DecodeArena::reallocate(void* p, std::size_t old_bytes, std::size_t new_bytes) {
  if (!p) return allocate(new_bytes);
  if (p == last_) {
    const std::size_t size = round_up(std::max<std::size_t>(new_bytes, 1) + kRedZone);
    if (chunks_.back().size - last_offset_ >= size) {
      CHORUS_POISON(p, used_ - last_offset_);
      CHORUS_UNPOISON(p, new_bytes);
      used_ = last_offset_ + size;
      return p;
    }
  }
  void* moved = allocate(new_bytes);
  if (!moved) return nullptr;  // as realloc, p stays valid
  std::memcpy(moved, p, std::min(old_bytes, new_bytes));
  CHORUS_POISON(p, old_bytes);  // a use after the move is caught
  return moved;
}

void DecodeArena::release(void* p) {
  if (p && p == last_) {
    CHORUS_POISON(p, used_ - last_offset_);
    used_ = last_offset_;
    last_ = nullptr;
  }
}

void DecodeArena::reset() {
  for (const Chunk& c : chunks_) CHORUS_POISON(c.bytes.get(), c.size);
  used_ = 0;
  last_ = nullptr;
  const std::size_t total = capacity();
  if (total > kMostKeptBytes) {
    chunks_.clear();
  } else if (chunks_.size() > 1) {
    chunks_.clear();
    add_chunk(total);
  }
}

std::size_t DecodeArena::capacity() const {
  std::size_t total = 0;
  for (const Chunk& c : chunks_) total += c.size;
  return total;
}

}  // namespace chorus::io
