#pragma once
// Small files written whole or not at all (cluster files, device profiles): a write that fails
// (a full disk, a file-size limit) leaves what was there and says so, instead of a truncated
// file that a later reader would misread.
#include <string>

namespace chorus {

// Writes `text` to `path` through `path`.partial, renamed once it is all written and flushed
// (a device or a pipe is written directly).
// Throws chorus::Error naming the file and `what` it is ("device profile") when it cannot.
void write_text_file(const std::string& path, const std::string& text, const std::string& what);

}  // namespace chorus
