#include "core/error.h"

#include <filesystem>

namespace chorus {

void assert_failed(const char* expr, const char* file, int line, const std::string& msg) {
  throw std::logic_error(cat("internal error at ", file, ":", line, ": ", expr, " failed",
                             msg.empty() ? "" : ": ", msg));
}

void refuse_directory(const std::string& path, const std::string& what) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail(path, ": is a directory, not ", what);
}

std::string without_error_id(const std::string& what) {
  if (what.empty() || what[0] != '[') return what;
  const auto end = what.find("] ");
  return end == std::string::npos ? what : what.substr(end + 2);
}

}  // namespace chorus
