#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "fuzz_targets.h"

namespace chorus::fuzz {

TempInput::TempInput(const std::uint8_t* data, std::size_t size, const std::string& extension) {
  const char* dir = std::getenv("TMPDIR");
  std::string pattern = std::string(dir ? dir : "/tmp") + "/chorus-fuzz-XXXXXX" + extension;
  int fd = mkstemps(pattern.data(), static_cast<int>(extension.size()));
  if (fd < 0) std::abort();
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = write(fd, data + done, size - done);
    if (n <= 0) std::abort();
    done += static_cast<std::size_t>(n);
  }
  close(fd);
  path_ = pattern;
}

TempInput::~TempInput() { std::remove(path_.c_str()); }

bool parse_json(const std::uint8_t* data, std::size_t size, nlohmann::json& out) {
  try {
    out = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(data), size));
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

}  // namespace chorus::fuzz
