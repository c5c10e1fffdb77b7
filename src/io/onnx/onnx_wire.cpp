#include "io/onnx/onnx_wire.h"

#include <climits>

namespace chorus::io {

namespace {

// Field numbers of onnx.proto this walk enters, all length-delimited (wire type 2).
constexpr std::uint32_t kModelGraph = 7, kGraphInitializer = 5, kTensorRawData = 9;
constexpr int kLengthDelimited = 2;

// One field as it lies in the bytes: [start, end) is the whole field, tag included.
struct Field {
  std::uint32_t number = 0;
  int wire_type = 0;
  std::size_t start = 0, value = 0, end = 0;
};

// Bytes [pos, end) of the file; every read checks against `end`, so nothing reads past it.
struct Cursor {
  const unsigned char* data;
  std::size_t pos, end;

  bool done() const { return pos >= end; }

  // Up to 10 bytes, as protobuf reads a 64-bit varint.
  bool varint(std::uint64_t* v) {
    *v = 0;
    for (int i = 0; i < 10; ++i) {
      if (pos >= end) return false;
      const unsigned char b = data[pos++];
      *v |= static_cast<std::uint64_t>(b & 0x7f) << (7 * i);
      if (!(b & 0x80)) return true;
    }
    return false;
  }

  bool skip(std::uint64_t n) {
    if (n > end - pos) return false;
    pos += static_cast<std::size_t>(n);
    return true;
  }

  bool next(Field* f) {
    f->start = pos;
    std::uint64_t tag = 0, value = 0;
    if (!varint(&tag) || tag > UINT32_MAX || (tag >> 3) == 0) return false;
    f->number = static_cast<std::uint32_t>(tag >> 3);
    f->wire_type = static_cast<int>(tag & 7);
    f->value = pos;
    bool ok = false;
    switch (f->wire_type) {
      case 0:
        ok = varint(&value);
        break;
      case 1:
        ok = skip(8);
        break;
      case 2:
        ok = varint(&value);
        f->value = pos;  // the value starts after its length
        ok = ok && skip(value);
        break;
      case 5:
        ok = skip(4);
        break;
      default:
        ok = false;  // 3 and 4 (groups) have no place in ONNX; 6 and 7 do not exist
    }
    f->end = pos;
    return ok;
  }

  Cursor body(const Field& f) const { return Cursor{data, f.value, f.end}; }
};

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

void put_copy(std::string& out, const Cursor& c, const Field& f) {
  out.append(reinterpret_cast<const char*>(c.data + f.start), f.end - f.start);
}

void put_message(std::string& out, std::uint32_t number, const std::string& body) {
  put_varint(out, (static_cast<std::uint64_t>(number) << 3) | kLengthDelimited);
  put_varint(out, body.size());
  out += body;
}

bool is_message(const Field& f, std::uint32_t number) { return f.number == number && f.wire_type == kLengthDelimited; }

// A TensorProto without raw_data longer than `threshold`; *deferred says where the raw_data
// protobuf would keep (the last one) lies, when it was left out.
bool strip_tensor(Cursor c, std::size_t threshold, std::string* out, std::optional<OnnxRawSpan>* deferred) {
  for (Field f; !c.done();) {
    if (!c.next(&f)) return false;
    if (is_message(f, kTensorRawData)) {
      const std::size_t size = f.end - f.value;
      if (size > threshold) {
        *deferred = OnnxRawSpan{f.value, size};
        continue;
      }
      deferred->reset();  // a later raw_data replaces the earlier one
    }
    put_copy(*out, c, f);
  }
  return true;
}

bool strip_graph(Cursor c, std::size_t threshold, std::string* out, OnnxStripped* stripped, int* initializers) {
  for (Field f; !c.done();) {
    if (!c.next(&f)) return false;
    if (!is_message(f, kGraphInitializer)) {
      put_copy(*out, c, f);
      continue;
    }
    std::string tensor;
    std::optional<OnnxRawSpan> deferred;
    if (!strip_tensor(c.body(f), threshold, &tensor, &deferred)) return false;
    if (deferred) stripped->deferred[*initializers] = *deferred;
    ++*initializers;
    put_message(*out, kGraphInitializer, tensor);
  }
  return true;
}

}  // namespace

std::optional<OnnxStripped> strip_onnx_raw_data(const unsigned char* data, std::size_t size, std::size_t threshold) {
  OnnxStripped stripped;
  int initializers = 0;  // repeated graph fields merge: their initializers append
  Cursor c{data, 0, size};
  for (Field f; !c.done();) {
    if (!c.next(&f)) return std::nullopt;
    if (!is_message(f, kModelGraph)) {
      put_copy(stripped.bytes, c, f);
      continue;
    }
    std::string graph;
    if (!strip_graph(c.body(f), threshold, &graph, &stripped, &initializers)) return std::nullopt;
    put_message(stripped.bytes, kModelGraph, graph);
  }
  return stripped;
}

}  // namespace chorus::io
