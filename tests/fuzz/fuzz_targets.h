#pragma once
// Each fuzz target is one file defining LLVMFuzzerTestOneInput. It is linked twice: with
// libFuzzer (clang, `tests/fuzz/run_fuzzers.sh`) to search for crashes, and with
// replay_main.cpp (the normal build, CTest) to run the seed corpus and every input that once
// crashed. A target must return normally for any input: chorus::Error is the expected way out.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace chorus::fuzz {

// Writes the input to a fresh file under $TMPDIR (parsers that take a path), removed when the
// returned guard dies.
class TempInput {
 public:
  TempInput(const std::uint8_t* data, std::size_t size, const std::string& extension);
  ~TempInput();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Parses the input as JSON; false when it is not JSON at all (the reader's own message, which
// comes before any of Chorus' parsers).
bool parse_json(const std::uint8_t* data, std::size_t size, nlohmann::json& out);

}  // namespace chorus::fuzz
