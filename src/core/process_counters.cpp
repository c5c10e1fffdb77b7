#include "core/process_counters.h"

#include <dlfcn.h>
#include <sys/resource.h>

namespace chorus {

namespace {
using CountFunction = std::int64_t (*)();
// The counters exist only where a test preloads them; looked up once.
struct Counters {
  CountFunction heap = find("chorus_heap_allocations"), mpi = find("chorus_mpi_heap_allocations"),
                ffmpeg = find("chorus_ffmpeg_heap_allocations");
  static CountFunction find(const char* name) { return reinterpret_cast<CountFunction>(dlsym(RTLD_DEFAULT, name)); }
};
const Counters& counters() {
  static const Counters c;
  return c;
}
}  // namespace

ProcessCounters read_process_counters() {
  ProcessCounters c;
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) == 0) {
    c.minor_faults = usage.ru_minflt;
    c.major_faults = usage.ru_majflt;
  }
  const Counters& count = counters();
  if (count.heap) c.heap_allocations = count.heap();
  if (count.mpi) c.mpi_heap_allocations = count.mpi();
  if (count.ffmpeg) c.ffmpeg_heap_allocations = count.ffmpeg();
  return c;
}

bool heap_allocations_counted() { return counters().heap != nullptr; }

}  // namespace chorus
