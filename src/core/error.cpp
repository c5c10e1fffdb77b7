#include "core/error.h"

namespace chorus {

void assert_failed(const char* expr, const char* file, int line, const std::string& msg) {
  throw std::logic_error(cat("internal error at ", file, ":", line, ": ", expr, " failed",
                             msg.empty() ? "" : ": ", msg));
}

}  // namespace chorus
