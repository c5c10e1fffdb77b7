#include "core/process_counters.h"

#include <dlfcn.h>
#include <sys/resource.h>

namespace chorus {

namespace {
using CountFunction = std::int64_t (*)();
// Looked up once: the counter exists only where a test preloads it.
CountFunction allocation_counter() {
  static const CountFunction counter = reinterpret_cast<CountFunction>(dlsym(RTLD_DEFAULT, "chorus_heap_allocations"));
  return counter;
}
CountFunction mpi_allocation_counter() {
  static const CountFunction counter =
      reinterpret_cast<CountFunction>(dlsym(RTLD_DEFAULT, "chorus_mpi_heap_allocations"));
  return counter;
}
CountFunction ffmpeg_allocation_counter() {
  static const CountFunction counter =
      reinterpret_cast<CountFunction>(dlsym(RTLD_DEFAULT, "chorus_ffmpeg_heap_allocations"));
  return counter;
}
}  // namespace

ProcessCounters read_process_counters() {
  ProcessCounters c;
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) == 0) {
    c.minor_faults = usage.ru_minflt;
    c.major_faults = usage.ru_majflt;
  }
  if (CountFunction counter = allocation_counter()) c.heap_allocations = counter();
  if (CountFunction counter = mpi_allocation_counter()) c.mpi_heap_allocations = counter();
  if (CountFunction counter = ffmpeg_allocation_counter()) c.ffmpeg_heap_allocations = counter();
  return c;
}

bool heap_allocations_counted() { return allocation_counter() != nullptr; }

}  // namespace chorus
