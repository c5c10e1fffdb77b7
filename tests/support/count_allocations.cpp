// Counts heap allocations of a whole process, for tests that check that the steady state of a
// run allocates nothing. Preloaded (LD_PRELOAD) into `chorus run`, it replaces the malloc family
// as glibc allows and forwards to glibc's own allocator; chorus finds chorus_heap_allocations()
// with dlsym (core/process_counters) and reports allocations per frame. Every thread counts:
// the compute pool, MPI's progress thread and MPI's own threads alike. Allocations made by
// Open MPI's own libraries (its fragment free lists grow while a pipeline fills, and
// occasionally later) are counted apart, in chorus_mpi_heap_allocations(), by the library
// that called malloc; so are FFmpeg's (its decoders allocate a reference to each buffer they
// hand on, some 40 a frame of H.264), in chorus_ffmpeg_heap_allocations().
//
// To find what allocates: CHORUS_ALLOCATION_LOG=DIR writes DIR/allocations.PID, a backtrace of
// every allocation and a "== read N" line each time chorus reads the counter (after each frame
// of the rank's primary role), so the frames of the steady state can be picked out.
#include <dlfcn.h>
#include <execinfo.h>
#include <fcntl.h>
#include <malloc.h>
#include <stddef.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

extern "C" {
void* __libc_malloc(size_t size);
void* __libc_calloc(size_t count, size_t size);
void* __libc_realloc(void* p, size_t size);
void* __libc_memalign(size_t alignment, size_t size);
void __libc_free(void* p);
}

namespace {
std::atomic<std::int64_t> g_allocations{0}, g_mpi_allocations{0}, g_ffmpeg_allocations{0};
std::atomic<std::int64_t> g_reads{0};
std::atomic<int> g_log{-2};          // -2: not opened yet, -1: no log
thread_local bool t_inside = false;  // backtrace() may allocate on its first call

int log_fd() {
  int fd = g_log.load();
  if (fd != -2) return fd;
  const char* dir = std::getenv("CHORUS_ALLOCATION_LOG");
  fd = -1;
  if (dir) {
    char path[512];
    std::snprintf(path, sizeof path, "%s/allocations.%d", dir, static_cast<int>(getpid()));
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  }
  int expected = -2;
  if (!g_log.compare_exchange_strong(expected, fd) && fd >= 0) close(fd), fd = g_log.load();
  return fd;
}

// The counter of the library the code at `address` belongs to: Open MPI's (with the PMIx,
// hwloc and libevent libraries it brings), FFmpeg's, or the rest. dladdr allocates nothing.
std::atomic<std::int64_t>& counter_for(void* address) {
  Dl_info info;
  if (!dladdr(address, &info) || !info.dli_fname) return g_allocations;
  for (const char* name : {"libmpi", "libopen-pal", "libopen-rte", "openmpi", "libpmix", "libhwloc", "libevent"})
    if (std::strstr(info.dli_fname, name)) return g_mpi_allocations;
  for (const char* name : {"libavcodec", "libavformat", "libavutil", "libavdevice", "libswscale", "libswresample"})
    if (std::strstr(info.dli_fname, name)) return g_ffmpeg_allocations;
  return g_allocations;
}

void count(void* caller) {
  counter_for(caller).fetch_add(1, std::memory_order_relaxed);
  if (t_inside) return;
  t_inside = true;
  const int fd = log_fd();
  if (fd >= 0) {
    void* frames[12];
    const int n = backtrace(frames, 12);
    dprintf(fd, "== allocation\n");
    backtrace_symbols_fd(frames + 1, n - 1, fd);
  }
  t_inside = false;
}
}  // namespace

extern "C" {

__attribute__((visibility("default"))) std::int64_t chorus_mpi_heap_allocations() { return g_mpi_allocations.load(); }
__attribute__((visibility("default"))) std::int64_t chorus_ffmpeg_heap_allocations() {
  return g_ffmpeg_allocations.load();
}

__attribute__((visibility("default"))) std::int64_t chorus_heap_allocations() {
  const std::int64_t n = g_allocations.load();
  if (!t_inside) {
    t_inside = true;
    const int fd = log_fd();
    if (fd >= 0) dprintf(fd, "== read %lld\n", static_cast<long long>(g_reads.fetch_add(1) + 1));
    t_inside = false;
  }
  return n;
}

__attribute__((visibility("default"))) void* malloc(size_t size) {
  count(__builtin_return_address(0));
  return __libc_malloc(size);
}
__attribute__((visibility("default"))) void* calloc(size_t n, size_t size) {
  count(__builtin_return_address(0));
  return __libc_calloc(n, size);
}
__attribute__((visibility("default"))) void* realloc(void* p, size_t size) {
  count(__builtin_return_address(0));
  return __libc_realloc(p, size);
}
__attribute__((visibility("default"))) void free(void* p) { __libc_free(p); }
__attribute__((visibility("default"))) void* memalign(size_t alignment, size_t size) {
  count(__builtin_return_address(0));
  return __libc_memalign(alignment, size);
}
__attribute__((visibility("default"))) void* aligned_alloc(size_t alignment, size_t size) {
  count(__builtin_return_address(0));
  return __libc_memalign(alignment, size);
}
__attribute__((visibility("default"))) int posix_memalign(void** out, size_t alignment, size_t size) {
  if (alignment % sizeof(void*) != 0 || (alignment & (alignment - 1)) != 0) return EINVAL;
  count(__builtin_return_address(0));
  void* p = __libc_memalign(alignment, size);
  if (!p && size) return ENOMEM;
  *out = p;
  return 0;
}
__attribute__((visibility("default"))) void* valloc(size_t size) {
  count(__builtin_return_address(0));
  return __libc_memalign(4096, size);
}
}
