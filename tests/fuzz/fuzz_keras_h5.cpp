// Keras HDF5 files: configuration, weights and all.
#include "core/error.h"
#include "fuzz_targets.h"
#include "io/keras/keras_model.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  chorus::fuzz::TempInput file(data, size, ".h5");
  try {
    chorus::io::load_keras_model(file.path());
  } catch (const chorus::Error&) {
  }
  return 0;
}
