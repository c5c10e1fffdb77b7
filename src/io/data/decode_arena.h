#pragma once
// Memory that an image decoder (stb_image, stb_image_resize) allocates from while it decodes one
// image, kept for the next: an image-directory input then allocates nothing per frame once its
// largest image has been decoded, as every other input does (#17). Blocks are handed out in
// order from the current chunk; a free gives back only the latest block (the decoders free what
// they allocated last, or free everything at the end), and a realloc of the latest block grows
// it in place. `reset()` ends an image: the chunks it needed become one chunk of their total,
// so the next image of that size fits one chunk and allocates nothing.
#include <cstddef>
#include <memory>
#include <vector>

namespace chorus::io {

class DecodeArena {
 public:
  // Chunks up to this size are kept between images. A larger one (a photo of tens of megapixels)
  // is freed at `reset()`: holding hundreds of megabytes for the rest of a run costs more than
  // allocating them per frame.
  static constexpr std::size_t kMostKeptBytes = std::size_t(64) << 20;

  DecodeArena() = default;
  DecodeArena(const DecodeArena&) = delete;
  DecodeArena& operator=(const DecodeArena&) = delete;

  // 16-byte aligned, as malloc's blocks are. Null when memory runs out, as malloc, so that the
  // decoder reports it ("Out of memory") and the caller names the file.
  void* allocate(std::size_t bytes);
  // realloc(p, new_bytes) for a block of `old_bytes` (stb passes the old size); p may be null.
  void* reallocate(void* p, std::size_t old_bytes, std::size_t new_bytes);
  void release(void* p);
  void reset();

  // Bytes of the chunks held now; chunks allocated since the arena was made (for tests).
  std::size_t capacity() const;
  std::size_t chunks_allocated() const { return chunks_allocated_; }

 private:
  struct Chunk {
    std::unique_ptr<std::byte[]> bytes;
    std::size_t size = 0;
  };
  static constexpr std::size_t kLargestBlock = std::size_t(1) << 40;  // no overflow in rounding
  bool add_chunk(std::size_t at_least);

  std::vector<Chunk> chunks_;    // the last one is being filled
  std::size_t used_ = 0;         // bytes of the last chunk handed out
  std::size_t last_offset_ = 0;  // where the latest block of the last chunk starts
  void* last_ = nullptr;         // the latest block, which a free or realloc may give back
  std::size_t chunks_allocated_ = 0;
};

}  // namespace chorus::io
