#include "io/data/ffmpeg_library.h"

#ifdef CHORUS_HAVE_VIDEO

#include <dlfcn.h>

#include <mutex>
#include <string>

#include "core/error.h"

namespace chorus::io {

namespace {

// "libavcodec.so.59" and the Debian package that holds it, "libavcodec59".
struct Soname {
  const char* name;
  int major;
  std::string file() const { return cat("lib", name, ".so.", major); }
  std::string package() const { return cat("lib", name, major); }
};

// Named after the library, as CHORUS_FFMPEG_FUNCTIONS names it.
constexpr Soname avutil_library{"avutil", LIBAVUTIL_VERSION_MAJOR};
constexpr Soname swscale_library{"swscale", LIBSWSCALE_VERSION_MAJOR};
constexpr Soname avcodec_library{"avcodec", LIBAVCODEC_VERSION_MAJOR};
constexpr Soname avformat_library{"avformat", LIBAVFORMAT_VERSION_MAJOR};
constexpr Soname avdevice_library{"avdevice", LIBAVDEVICE_VERSION_MAJOR};

// Opened for the life of the process: FFmpeg keeps registries and callbacks that point into it.
void* open_library(const Soname& library) {
  void* handle = dlopen(library.file().c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* why = dlerror();
    fail("video input needs FFmpeg's ", library.file(), ", which could not be loaded (", why ? why : "unknown error",
         "); on Debian: apt-get install ", library.package());
  }
  return handle;
}

template <class Pointer>
void find(void* handle, const Soname& library, const char* function, Pointer& pointer) {
  pointer = reinterpret_cast<Pointer>(dlsym(handle, function));
  if (!pointer) fail("video input: ", library.file(), " has no function ", function, " (another FFmpeg version?)");
}

FfmpegLibrary load() {
  // Dependencies first, as the libraries' own links would load them.
  void* const avutil = open_library(avutil_library);
  void* const swscale = open_library(swscale_library);
  void* const avcodec = open_library(avcodec_library);
  void* const avformat = open_library(avformat_library);
  FfmpegLibrary f;
#define CHORUS_FFMPEG_FIND(library, function) find(library, library##_library, #function, f.function);
  CHORUS_FFMPEG_FUNCTIONS(CHORUS_FFMPEG_FIND)
#undef CHORUS_FFMPEG_FIND
  return f;
}

}  // namespace

const FfmpegLibrary& ffmpeg() {
  static std::once_flag once;
  static FfmpegLibrary loaded;
  // A load that throws leaves the flag unset: the next caller tries again and gets the message.
  std::call_once(once, [] { loaded = load(); });
  return loaded;
}

void register_ffmpeg_devices() {
  ffmpeg();  // libavformat first: libavdevice registers its inputs there
  static std::once_flag once;
  std::call_once(once, [] {
    void (*register_all)() = nullptr;
    find(open_library(avdevice_library), avdevice_library, "avdevice_register_all", register_all);
    register_all();
  });
}

}  // namespace chorus::io

#endif  // CHORUS_HAVE_VIDEO
