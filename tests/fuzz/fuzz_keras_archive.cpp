// Keras 3 .keras archives: the zip directory, the JSON members and the weights file inside.
#include "core/error.h"
#include "fuzz_targets.h"
#include "io/model_file.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  chorus::fuzz::TempInput file(data, size, ".keras");
  try {
    chorus::io::load_model_file(file.path());
  } catch (const chorus::Error&) {
  }
  return 0;
}
