#pragma once
// Process memory figures for reports, and giving memory back early.
#include <cstddef>

namespace chorus {

// Peak resident set size of this process in bytes (VmHWM), 0 when unknown.
std::size_t peak_rss_bytes();

// Current resident set size in bytes (VmRSS), 0 when unknown.
std::size_t current_rss_bytes();

// This machine's physical memory in bytes (sysconf), 0 when unknown.
std::size_t physical_memory_bytes();

// Gives the whole pages inside [begin, begin + bytes) back to the system; they read as zeros
// afterwards. For a large buffer consumed front to back while its replacement fills, so that
// the two are not resident at once.
void release_pages(void* begin, std::size_t bytes);

}  // namespace chorus
