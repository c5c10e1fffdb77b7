#include "core/text_file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace chorus {

void write_text_file(const std::string& path, const std::string& text, const std::string& what) {
  refuse_directory(path, cat("a ", what));
  // A device or a pipe (/dev/stdout, a named pipe) is written as it is: renaming over it would
  // replace it.
  std::error_code kind;
  const bool special = std::filesystem::exists(path, kind) && !std::filesystem::is_regular_file(path, kind);
  const std::string partial = special ? path : path + ".partial";
  std::FILE* out = std::fopen(partial.c_str(), "wb");
  if (!out) fail(path, ": cannot write the ", what, " (", std::strerror(errno), ")");
  const bool written = std::fwrite(text.data(), 1, text.size(), out) == text.size() && std::fflush(out) == 0;
  const int error = errno;
  if (std::fclose(out) != 0 || !written) {
    if (!special) std::remove(partial.c_str());
    fail(path, ": cannot write the ", what, " (", std::strerror(written ? errno : error), ")",
         special ? "" : cat("; ", path, " is as it was"));
  }
  if (special) return;
  std::error_code ec;
  std::filesystem::rename(partial, path, ec);
  if (ec) {
    std::remove(partial.c_str());
    fail(path, ": cannot write the ", what, " (", ec.message(), ")");
  }
}

}  // namespace chorus
