#pragma once
// Counters of this process that show whether a frame allocates: page faults (getrusage) and,
// in a test build that preloads an allocation counter (tests/support/count_allocations.cpp),
// heap allocations.
#include <cstdint>

namespace chorus {

struct ProcessCounters {
  std::int64_t minor_faults = 0, major_faults = 0;
  std::int64_t heap_allocations = -1;      // malloc-family calls so far; -1 without the counter
  std::int64_t mpi_heap_allocations = -1;  // those made by Open MPI's own libraries, apart
  std::int64_t ffmpeg_heap_allocations = -1;  // those made by FFmpeg's libraries, apart
};

ProcessCounters read_process_counters();

// True when an allocation counter is loaded (LD_PRELOAD of libchorus_count_allocations.so).
bool heap_allocations_counted();

}  // namespace chorus
