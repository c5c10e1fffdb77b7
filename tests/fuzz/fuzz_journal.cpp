// Output journals, as --resume reads them after a crash.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "fuzz_targets.h"
#include "io/data/npy.h"
#include "io/journal/output_journal.h"

// The journal names its output, so the fuzzed journal lives at one path per process; the seed
// corpus uses /tmp/chorus-fuzz-journal.npy (a run under another $TMPDIR or pid only loses the
// header match, not the coverage of the error paths).
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string out = [] {
    const char* dir = std::getenv("TMPDIR");
    return std::string(dir ? dir : "/tmp") + "/chorus-fuzz-journal.npy";
  }();
  {
    std::ofstream journal(out + ".journal", std::ios::binary);
    journal.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  {
    std::ofstream data_file(out, std::ios::binary);
    data_file << chorus::io::npy_header({4, 2});
    const float values[6] = {0, 1, 2, 3, 4, 5};
    data_file.write(reinterpret_cast<const char*>(values), sizeof values);
  }
  try {
    chorus::io::OutputJournal j(out, {"m.h5", "synthetic", 4, {2}, "", ""}, true);
    const float frame[2] = {6, 7};
    for (int i = j.frames_done(); i < 4; ++i) j.write(i, frame);
    j.finish();
  } catch (const chorus::Error&) {
  }
  std::filesystem::remove(out);
  std::filesystem::remove(out + ".journal");
  return 0;
}
