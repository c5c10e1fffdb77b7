// Runs a fuzz target over files and folders of inputs (its seed corpus and the inputs that
// once crashed it), for CTest in the normal build. Exits non-zero only if an input could not
// be read; a crash ends the process, which CTest reports.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
  int inputs = 0;
  for (int a = 1; a < argc; ++a) {
    std::vector<std::filesystem::path> files;
    if (!std::filesystem::exists(argv[a])) continue;  // e.g. no regressions yet
    if (std::filesystem::is_directory(argv[a])) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(argv[a]))
        if (e.is_regular_file()) files.push_back(e.path());
    } else {
      files.push_back(argv[a]);
    }
    for (const auto& f : files) {
      std::ifstream in(f, std::ios::binary);
      if (!in) {
        std::fprintf(stderr, "cannot read %s\n", f.c_str());
        return 1;
      }
      std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
      ++inputs;
    }
  }
  std::printf("%d input(s) ran without a crash\n", inputs);
  return inputs > 0 ? 0 : 1;
}
