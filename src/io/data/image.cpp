#include "io/data/image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>

#include "core/error.h"
#include "io/data/decode_arena.h"

namespace chorus::io {
namespace {

// What decoding an image needs, kept per thread from one image to the next so that a directory
// input allocates nothing per frame (#17): the file's bytes, the resized pixels, and the arena
// that stb allocates from (stb_image's decoders and stb_image_resize's work buffer).
struct ImageWorkspace {
  std::vector<unsigned char> file;
  std::vector<unsigned char> resized;
  DecodeArena arena;
};

ImageWorkspace& workspace() {
  thread_local ImageWorkspace w;
  return w;
}

}  // namespace
}  // namespace chorus::io

#define STBI_MALLOC(size) chorus::io::workspace().arena.allocate(size)
#define STBI_REALLOC_SIZED(p, old_size, new_size) chorus::io::workspace().arena.reallocate(p, old_size, new_size)
#define STBI_FREE(p) chorus::io::workspace().arena.release(p)
#define STBIR_MALLOC(size, context) ((void)(context), chorus::io::workspace().arena.allocate(size))
#define STBIR_FREE(p, context) ((void)(context), chorus::io::workspace().arena.release(p))

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#define STB_IMAGE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG
#include <stb_image.h>
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image_resize.h>
#pragma GCC diagnostic pop

namespace chorus::io {

namespace {

// Scans (SOS segments) before the end of a JPEG's data, or 0 for a file that is not a JPEG.
// stb_image decodes each scan over the whole frame, so a small hostile file that repeats its
// scans costs scans x pixels: 401 scans of 6000 x 6000 in a 4 KB file took 4.5 s here and 17 s
// under AddressSanitizer, and each further kilobyte of scans adds about a hundred more.
long long jpeg_scans(const unsigned char* bytes, std::size_t n) {
  if (n < 2 || bytes[0] != 0xFF || bytes[1] != 0xD8) return 0;
  long long scans = 0;
  std::size_t i = 2;
  while (i + 1 < n) {
    const unsigned char marker = bytes[i + 1];
    // Entropy-coded data, stuffed 0xFF 0x00, fill bytes and restart markers: walk on to the next marker.
    if (bytes[i] != 0xFF || marker == 0xFF || marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {
      ++i;
      continue;
    }
    if (marker == 0xD9 || i + 3 >= n) break;  // end of image
    if (marker == 0xDA) ++scans;
    i += 2 + (static_cast<std::size_t>(bytes[i + 2]) << 8 | bytes[i + 3]);
  }
  return scans;
}

// The whole file into `bytes` (grown, never shrunk), refused beyond 2 GB before reading it.
void read_file(const std::string& path, std::vector<unsigned char>& bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, ": cannot open image (", std::strerror(errno), ")");
  struct FileCloser {
    int fd;
    ~FileCloser() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) fail(path, ": not a regular file");
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size > static_cast<std::uint64_t>(std::numeric_limits<int>::max()))
    fail(path, ": the image file is ", size >> 20, " MB; Chorus reads image files of under 2 GB");
  // With room to spare: the files of a directory differ a little in size, and a frame should
  // find the buffer large enough.
  if (size > bytes.capacity()) bytes.reserve(static_cast<std::size_t>(size + size / 4));
  bytes.resize(static_cast<std::size_t>(size));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(path, ": cannot read image (", std::strerror(errno), ")");
    if (n == 0) fail(path, ": cannot read image (the file shrank while it was read)");
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace

void load_image(const std::string& path, Shape shape, const ImagePreprocess& prep, float* frame) {
  if (shape.c != 1 && shape.c != 3) fail(path, ": the model wants ", shape.c, " channels; images give 1 or 3");
  ImageWorkspace& ws = workspace();
  // Whatever happens (a corrupt file throws), the arena is ready for the next image.
  struct ArenaReset {
    DecodeArena& arena;
    ~ArenaReset() { arena.reset(); }
  } arena_reset{ws.arena};
  read_file(path, ws.file);
  const std::vector<unsigned char>& bytes = ws.file;
  const int size = static_cast<int>(bytes.size());
  int w = 0, h = 0, channels = 0;
  // The header first: a corrupt (or hostile) file can claim a size that would take minutes and
  // gigabytes to decode. 36 Mpixel holds an 8K frame (33 Mpixel), far above what a network takes.
  // A side is bounded too (JPEG's own limit): stb's resize costs the long side times the other
  // side of the output, and 2 x 16,000,000 pixels took 10 s and 1.2 GB to resize to 32 x 32.
  if (!stbi_info_from_memory(bytes.data(), size, &w, &h, &channels))
    fail(path, ": cannot decode image (", stbi_failure_reason(), ")");
  constexpr long long kMostPixels = 36'000'000;
  constexpr int kLongestSide = 65535;
  if (w <= 0 || h <= 0 || static_cast<long long>(w) * h > kMostPixels || w > kLongestSide || h > kLongestSide)
    fail(path, ": the image claims to be ", w, " x ", h, " pixels; Chorus reads images of up to ",
         kMostPixels / 1000000, " Mpixel and ", kLongestSide, " pixels a side");
  // A progressive photo has about 10 scans; the bound allows 27 at 36 Mpixel and 1000 at 1 Mpixel.
  constexpr long long kMostScanPixels = 1'000'000'000;
  if (const long long scans = jpeg_scans(bytes.data(), bytes.size()); scans * w * h > kMostScanPixels)
    fail(path, ": the JPEG holds ", scans, " scans of ", w, " x ", h, " pixels, each decoded over the whole image; ",
         "Chorus reads JPEGs whose scans times pixels stay within ", kMostScanPixels / 1000000,
         " Mpixel (a progressive photo has about 10 scans)");
  unsigned char* pixels = stbi_load_from_memory(bytes.data(), size, &w, &h, &channels, shape.c);
  if (!pixels) fail(path, ": cannot decode image (", stbi_failure_reason(), ")");
  const std::size_t count = static_cast<std::size_t>(shape.h) * shape.w * shape.c;
  // An image of the model's size is taken as it is: stb's resampling filter is not the identity
  // at scale 1 (it changed pixels by up to 29 levels of 255).
  if (w == shape.w && h == shape.h) {
    pixels_to_frame(pixels, count, shape.c, prep, frame);
    return;
  }
  ws.resized.resize(count);
  if (!stbir_resize_uint8(pixels, w, h, 0, ws.resized.data(), shape.w, shape.h, 0, shape.c))
    fail(path, ": resize to ", shape.w, "x", shape.h, " failed");
  pixels_to_frame(ws.resized.data(), count, shape.c, prep, frame);
}

void pixels_to_frame(const unsigned char* pixels, std::size_t count, int channels, const ImagePreprocess& prep,
                     float* frame) {
  for (std::size_t i = 0; i < count; ++i) {
    const int ch = static_cast<int>(i % channels);
    float v = pixels[i] * prep.scale;
    if (!prep.mean.empty()) v -= prep.mean[std::min<std::size_t>(ch, prep.mean.size() - 1)];
    if (!prep.stddev.empty()) v /= prep.stddev[std::min<std::size_t>(ch, prep.stddev.size() - 1)];
    frame[i] = v;
  }
}

std::vector<std::string> list_images(const std::string& directory) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(directory, ec)) {
    std::string ext = entry.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
    if (ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".gif" || ext == ".tga" ||
        ext == ".ppm" || ext == ".pgm")
      out.push_back(entry.path().string());
  }
  if (ec) fail(directory, ": cannot list directory (", ec.message(), ")");
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace chorus::io
