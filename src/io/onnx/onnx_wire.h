#pragma once
// The protobuf wire format of an ONNX ModelProto, walked just deep enough (ModelProto.graph ->
// GraphProto.initializer -> TensorProto.raw_data) to leave the large initializers' raw_data out
// of what protobuf parses, so that weights stay in the file until a rank asks for them. No
// protobuf types here: bytes in, bytes and file offsets out.
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace chorus::io {

// Where an initializer's raw_data lies in the file: bytes [offset, offset + size).
struct OnnxRawSpan {
  std::uint64_t offset = 0, size = 0;
};

// A ModelProto's bytes without the large raw_data, and where each left-out raw_data lies.
struct OnnxStripped {
  std::string bytes;                    // still a ModelProto: everything else copied verbatim, lengths re-encoded
  std::map<int, OnnxRawSpan> deferred;  // by index in the parsed graph().initializer()
};

// Copies the ModelProto in `data` leaving out every initializer raw_data longer than
// `threshold` bytes. Protobuf's semantics are kept: repeated graph fields merge, so initializer
// indices count across them, and where a TensorProto repeats raw_data the last one counts. Empty
// for malformed wire data (bad varints, lengths past the end, wire types 3, 4, 6, 7, field 0);
// what the walk does not enter is left for protobuf to check.
std::optional<OnnxStripped> strip_onnx_raw_data(const unsigned char* data, std::size_t size, std::size_t threshold);

}  // namespace chorus::io
