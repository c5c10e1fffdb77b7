// NumPy .npy arrays, at most 16 M values (as an input batch would be bounded).
#include "core/error.h"
#include "fuzz_targets.h"
#include "io/data/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  chorus::fuzz::TempInput file(data, size, ".npy");
  try {
    chorus::io::read_npy(file.path(), std::size_t(1) << 24);
  } catch (const chorus::Error&) {
  }
  return 0;
}
