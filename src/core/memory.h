#pragma once
// Process memory figures for reports.
#include <cstddef>

namespace chorus {

// Peak resident set size of this process in bytes (VmHWM), 0 when unknown.
std::size_t peak_rss_bytes();

// Current resident set size in bytes (VmRSS), 0 when unknown.
std::size_t current_rss_bytes();

}  // namespace chorus
