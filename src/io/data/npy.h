#pragma once
// NumPy .npy arrays: read float32/float64/uint8/int32/int64 (C order) as float32, write float32.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace chorus::io {

struct NpyArray {
  std::vector<std::int64_t> shape;
  std::vector<float> data;
};

// Throws chorus::Error naming the file for a bad header, unsupported dtype, Fortran order,
// truncated data or an array claiming more than max_elements values.
// The default cap: 2^32 values (16 GB) on 64-bit builds, what the address space allows on 32-bit
// ones (armhf), where shifting a size_t by 32 would be undefined.
constexpr std::size_t kMaxNpyElements =
    static_cast<std::size_t>(std::min<std::uint64_t>(std::uint64_t(1) << 32, SIZE_MAX / sizeof(float)));
NpyArray read_npy(const std::string& path, std::size_t max_elements = kMaxNpyElements);

void write_npy(const std::string& path, const std::vector<std::int64_t>& shape, const float* data);

// The bytes before a float32 C-order array of this shape (magic, version, padded header), at
// least `min_bytes` long (a multiple of 64): a header rewritten in place keeps its length.
std::string npy_header(const std::vector<std::int64_t>& shape, std::size_t min_bytes = 0);

}  // namespace chorus::io
