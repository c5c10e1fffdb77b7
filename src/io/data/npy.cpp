#include "io/data/npy.h"

#include <cstring>
#include <fstream>
#include <regex>

#include "core/error.h"

namespace chorus::io {

namespace {

template <typename T>
void convert(const std::vector<char>& raw, std::vector<float>& out) {
  for (std::size_t i = 0; i < out.size(); ++i) {
    T v;
    std::memcpy(&v, raw.data() + i * sizeof(T), sizeof(T));
    out[i] = static_cast<float>(v);
  }
}

}  // namespace

NpyArray read_npy(const std::string& path, std::size_t max_elements) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open .npy file");
  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) fail(path, ": not a .npy file (bad magic)");
  std::uint32_t header_len = 0;
  if (magic[6] == 1) {
    unsigned char b[2];
    if (!in.read(reinterpret_cast<char*>(b), 2)) fail(path, ": truncated .npy header");
    header_len = b[0] | (b[1] << 8);
  } else if (magic[6] == 2 || magic[6] == 3) {
    unsigned char b[4];
    if (!in.read(reinterpret_cast<char*>(b), 4)) fail(path, ": truncated .npy header");
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<std::uint32_t>(b[3]) << 24);
  } else {
    fail(path, ": unsupported .npy version ", int(magic[6]));
  }
  if (header_len > 65536) fail(path, ": .npy header of ", header_len, " bytes is implausible");
  std::string header(header_len, '\0');
  if (!in.read(header.data(), header_len)) fail(path, ": truncated .npy header");

  // numpy writes one Python dict literal, padded with spaces and a newline; anything else is a
  // damaged or foreign file, however plausible its keys look.
  const auto first = header.find_first_not_of(" \t\n");
  const auto last = header.find_last_not_of(" \t\n");
  if (first == std::string::npos || header[first] != '{' || header[last] != '}')
    fail(path, ": .npy header is not a dictionary ({...}): damaged file?");
  std::smatch m;
  if (!std::regex_search(header, m, std::regex("'descr'\\s*:\\s*'([^']*)'"))) fail(path, ": .npy header has no descr");
  const std::string descr = m[1];
  if (std::regex_search(header, m, std::regex("'fortran_order'\\s*:\\s*True")))
    fail(path, ": Fortran-order arrays are not supported (save with np.ascontiguousarray)");
  if (!std::regex_search(header, m, std::regex("'shape'\\s*:\\s*\\(([^)]*)\\)")))
    fail(path, ": .npy header has no shape");
  NpyArray array;
  std::string dims = m[1];
  if (!std::regex_match(dims, std::regex("\\s*(-?\\d+\\s*,\\s*)*(-?\\d+\\s*,?\\s*)?")))
    fail(path, ": .npy shape (", dims, ") is not a list of dimensions");
  std::size_t count = 1;
  std::regex number("-?\\d+");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), number); it != std::sregex_iterator(); ++it) {
    const std::string text = it->str();
    if (text[0] == '-') fail(path, ": .npy shape has a negative dimension (", text, ")");
    std::int64_t d = 0;
    try {
      d = std::stoll(text);
    } catch (const std::out_of_range&) {
      fail(path, ": .npy shape dimension ", text, " is too large");
    }
    array.shape.push_back(d);
    if (d > 0 && count > max_elements / static_cast<std::size_t>(d))
      fail(path, ": array claims more than ", max_elements, " values");
    count *= static_cast<std::size_t>(d);
  }
  std::size_t item = 0;
  if (descr == "<f4" || descr == "<i4")
    item = 4;
  else if (descr == "<f8" || descr == "<i8")
    item = 8;
  else if (descr == "|u1" || descr == "<u1")
    item = 1;
  else
    fail(path, ": dtype '", descr, "' is not supported (float32, float64, uint8, int32, int64)");
  std::vector<char> raw(count * item);
  if (!in.read(raw.data(), raw.size()))
    fail(path, ": truncated data: header says ", count, " values of ", item, " bytes");
  array.data.resize(count);
  if (descr == "<f4")
    convert<float>(raw, array.data);
  else if (descr == "<f8")
    convert<double>(raw, array.data);
  else if (descr == "<i4")
    convert<std::int32_t>(raw, array.data);
  else if (descr == "<i8")
    convert<std::int64_t>(raw, array.data);
  else
    convert<std::uint8_t>(raw, array.data);
  return array;
}

std::string npy_header(const std::vector<std::int64_t>& shape, std::size_t min_bytes) {
  std::string dims;
  for (auto d : shape) dims += std::to_string(d) + ",";
  if (shape.size() > 1) dims.pop_back();
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Pad so that magic + length + header is a multiple of 64, ending in a newline.
  std::size_t total = 10 + header.size() + 1;
  std::size_t pad = (64 - total % 64) % 64;
  if (total + pad < min_bytes) pad = min_bytes - total;  // min_bytes is itself a multiple of 64
  header.append(pad, ' ');
  header += '\n';
  const std::uint16_t len = static_cast<std::uint16_t>(header.size());
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(len & 0xff);
  out += static_cast<char>(len >> 8);
  return out + header;
}

void write_npy(const std::string& path, const std::vector<std::int64_t>& shape, const float* data) {
  std::size_t count = 1;
  for (auto d : shape) count *= static_cast<std::size_t>(d);
  const std::string header = npy_header(shape);
  std::ofstream out(path, std::ios::binary);
  if (!out) fail(path, ": cannot write .npy file");
  out.write(header.data(), header.size());
  out.write(reinterpret_cast<const char*>(data), count * sizeof(float));
  if (!out) fail(path, ": write failed (disk full?)");
}

}  // namespace chorus::io
