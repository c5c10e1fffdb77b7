// ONNX files whose large initializers stay in the file until a weight is read (io/onnx/onnx_wire.h):
// the wire walk on hand-encoded bytes, then a model with weights over the 64 KiB threshold,
// loaded, compared with the same model parsed whole, cut and corrupted. The tests write the
// protobuf bytes themselves, since only io sees protobuf.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "io/model_file.h"
#include "io/onnx/onnx_wire.h"
#include "reference/test_util.h"

using namespace chorus;
using testing::HasSubstr;

namespace {

// ---- A minimal protobuf writer ----------------------------------------------------------------

std::string varint(std::uint64_t v) {
  std::string s;
  for (; v >= 0x80; v >>= 7) s += static_cast<char>((v & 0x7f) | 0x80);
  return s + static_cast<char>(v);
}
std::string int_field(int number, std::uint64_t v) {
  return varint(static_cast<std::uint64_t>(number) << 3) + varint(v);
}
std::string bytes_field(int number, const std::string& body) {
  return varint((static_cast<std::uint64_t>(number) << 3) | 2) + varint(body.size()) + body;
}
std::string float_bytes(const std::vector<float>& v) {
  std::string s(v.size() * sizeof(float), '\0');
  if (!v.empty()) std::memcpy(s.data(), v.data(), s.size());
  return s;
}

// ---- ONNX messages (field numbers from onnx.proto) --------------------------------------------

// A FLOAT TensorProto, its values in raw_data (last, as exporters write it) or in float_data.
std::string tensor(const std::string& name, const std::vector<std::int64_t>& dims, const std::vector<float>& values,
                   bool raw) {
  std::string t;
  for (auto d : dims) t += int_field(1, static_cast<std::uint64_t>(d));
  t += int_field(2, 1) + bytes_field(8, name);
  return t + bytes_field(raw ? 9 : 4, float_bytes(values));
}

std::string value_info(const std::string& name, const std::vector<std::int64_t>& dims) {
  std::string shape;
  for (auto d : dims) shape += bytes_field(1, int_field(1, static_cast<std::uint64_t>(d)));
  return bytes_field(1, name) + bytes_field(2, bytes_field(1, int_field(1, 1) + bytes_field(2, shape)));
}

std::string node(const std::vector<std::string>& inputs, const std::string& output, const std::string& name,
                 const std::string& op) {
  std::string n;
  for (const auto& in : inputs) n += bytes_field(1, in);
  return n + bytes_field(2, output) + bytes_field(3, name) + bytes_field(4, op);
}

// ir_version 7, opset 13: what comes before the graph.
std::string model_head() { return int_field(1, 7) + bytes_field(8, int_field(2, 13)); }

// y = x W + b with W (in, out) logical; stored as (out, in) with transB = 1 when `trans_b`, as
// torchvision writes Linear layers. 256 x 128 floats are 128 KiB, over the 64 KiB threshold.
struct GemmModel {
  int in, out;
  bool trans_b;
  std::vector<float> x, w, b;
  explicit GemmModel(int in_ = 256, int out_ = 128, bool trans_b_ = false)
      : in(in_),
        out(out_),
        trans_b(trans_b_),
        x(test::random_vector(in, 3)),
        w(test::random_vector(static_cast<std::size_t>(in) * out, 1)),
        b(test::random_vector(out, 2)) {}

  std::vector<float> stored_w() const {
    if (!trans_b) return w;
    std::vector<float> t(w.size());
    for (int i = 0; i < in; ++i)
      for (int j = 0; j < out; ++j) t[static_cast<std::size_t>(j) * in + i] = w[static_cast<std::size_t>(i) * out + j];
    return t;
  }
  std::string w_tensor(bool raw) const {
    return tensor("W", trans_b ? std::vector<std::int64_t>{out, in} : std::vector<std::int64_t>{in, out}, stored_w(),
                  raw);
  }
  std::string graph(const std::string& w_field) const {
    std::string gemm = node({"x", "W", "b"}, "y", "fc", "Gemm");
    if (trans_b) gemm += bytes_field(5, bytes_field(1, "transB") + int_field(3, 1) + int_field(20, 2));  // INT
    return bytes_field(1, gemm) + bytes_field(2, "g") + w_field + bytes_field(5, tensor("b", {out}, b, true)) +
           bytes_field(11, value_info("x", {1, in})) + bytes_field(12, value_info("y", {1, out}));
  }
  std::string bytes(bool raw_w) const { return model_head() + bytes_field(7, graph(bytes_field(5, w_tensor(raw_w)))); }

  std::vector<float> expected() const {
    std::vector<float> y(b);
    for (int i = 0; i < in; ++i)
      for (int j = 0; j < out; ++j) y[j] += x[i] * w[static_cast<std::size_t>(i) * out + j];
    return y;
  }
};

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::vector<float> run(const model::Model& m, const std::vector<float>& x) {
  Tensor in(1, m.input_shape());
  EXPECT_EQ(in.size(), x.size());
  std::copy(x.begin(), x.end(), in.data());
  Tensor out = m.forward(in);
  return {out.data(), out.data() + out.size()};
}

std::optional<io::OnnxStripped> strip(const std::string& bytes, std::size_t threshold) {
  return io::strip_onnx_raw_data(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), threshold);
}

}  // namespace

// ---- The wire walk ----------------------------------------------------------------------------

TEST(OnnxWire, LeavesOutOnlyLargeRawDataAndRecordsWhereItLies) {
  const std::vector<float> small(2, 1.5f), large(8, 2.5f);  // 8 and 32 bytes; threshold 16
  auto model_with = [&](const std::string& large_raw) {
    return model_head() + bytes_field(7, bytes_field(1, node({"a"}, "b", "n", "Relu")) +
                                             bytes_field(5, tensor("s", {2}, small, true)) +
                                             bytes_field(5, int_field(2, 1) + bytes_field(8, "L") + large_raw) +
                                             bytes_field(5, tensor("f", {8}, large, false)));
  };
  const std::string bytes = model_with(bytes_field(9, float_bytes(large)));
  auto s = strip(bytes, 16);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->bytes, model_with(""));  // everything else verbatim, lengths re-encoded
  ASSERT_EQ(s->deferred.size(), 1u);
  ASSERT_EQ(s->deferred.count(1), 1u);  // the second initializer
  const io::OnnxRawSpan span = s->deferred.at(1);
  EXPECT_EQ(span.size, 32u);
  EXPECT_EQ(bytes.substr(span.offset, span.size), float_bytes(large));
  // Over no threshold nothing is left out.
  auto all = strip(bytes, 1 << 20);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->bytes, bytes);
  EXPECT_TRUE(all->deferred.empty());
}

// Protobuf merges repeated graph fields (initializers append) and keeps the last raw_data.
TEST(OnnxWire, RepeatedGraphsAndRawDataCountAsProtobufCountsThem) {
  const std::string big1(40, 'a'), big2(50, 'b'), little(4, 'c');
  const std::string g1 = bytes_field(5, bytes_field(8, "t0") + bytes_field(9, big1));
  const std::string g2 = bytes_field(5, bytes_field(8, "t1") + bytes_field(9, big1) + bytes_field(9, little)) +
                         bytes_field(5, bytes_field(8, "t2") + bytes_field(9, little) + bytes_field(9, big2));
  const std::string bytes = model_head() + bytes_field(7, g1) + int_field(5, 3) + bytes_field(7, g2);
  auto s = strip(bytes, 16);
  ASSERT_TRUE(s);
  ASSERT_EQ(s->deferred.size(), 2u);
  EXPECT_EQ(bytes.substr(s->deferred.at(0).offset, s->deferred.at(0).size), big1);
  EXPECT_EQ(s->deferred.count(1), 0u);  // its last raw_data is small, and kept
  EXPECT_EQ(bytes.substr(s->deferred.at(2).offset, s->deferred.at(2).size), big2);
}

// Fields of other wire types, and a graph field that is not a message, pass through untouched.
TEST(OnnxWire, OtherFieldsAreCopiedVerbatim) {
  const std::string bytes = model_head() + int_field(7, 300) + std::string("\x09", 1) + std::string(8, '\x01') +
                            std::string("\x15", 1) + std::string(4, '\x02') + int_field(3, ~0ull);
  auto s = strip(bytes, 0);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->bytes, bytes);
}

TEST(OnnxWire, MalformedWireDataIsRefused) {
  const std::string tensor_in_graph = bytes_field(5, bytes_field(8, "t") + bytes_field(9, std::string(40, 'x')));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"an 11-byte varint", std::string(11, '\xff')},
      {"a tag with no end", "\x80"},
      {"field number 0", std::string("\x02\x00", 2)},
      {"wire type 3", "\x0b"},
      {"wire type 4", "\x0c"},
      {"wire type 6", "\x0e"},
      {"wire type 7", "\x0f"},
      {"a length past the end",
       "\x3a\x05"
       "abc"},
      {"a 64-bit length (2^63)", "\x3a" + std::string(9, '\x80') + "\x01"},
      {"a length of 2^64 - 1", "\x3a" + std::string(9, '\xff') + "\x01"},
      {"a cut fixed64", "\x09" + std::string(7, '\0')},
      {"a cut fixed32", "\x0d" + std::string(3, '\0')},
      {"a group in the graph", bytes_field(7, "\x0b")},
      {"an initializer past its graph", "\x3a\x02\x2a\x05"},
      {"raw_data past its tensor", bytes_field(7, bytes_field(5, "\x4a\x7f" + std::string(10, 'x')))},
      {"a group in a tensor", bytes_field(7, bytes_field(5, "\x0b"))},
      {"a cut tensor", bytes_field(7, tensor_in_graph.substr(0, tensor_in_graph.size() - 1))},
  };
  for (const auto& [what, bytes] : cases) {
    EXPECT_FALSE(strip(model_head() + bytes, 16)) << what;
    EXPECT_FALSE(strip(model_head() + bytes, 1 << 20)) << what;
  }
}

// ---- Models with weights over the threshold ---------------------------------------------------

// The weight read from the file on demand gives what protobuf's whole parse gives. The second
// model's W (1152 x 1000, transposed as it is read) takes two 4 MiB pieces, split mid-row.
TEST(OnnxLargeWeights, DeferredWeightsGiveTheResultOfAWholeParse) {
  for (const GemmModel& g : {GemmModel(), GemmModel(1152, 1000, /*trans_b=*/true)}) {
    SCOPED_TRACE(g.trans_b ? "transB" : "plain");
    test::TempDir dir;
    const std::string raw = dir.path("raw.onnx"), whole = dir.path("whole.onnx");
    write_file(raw, g.bytes(true));     // W in raw_data: left in the file
    write_file(whole, g.bytes(false));  // W in float_data: parsed with the rest
    const std::vector<float> a = run(io::load_model_file(raw), g.x), b = run(io::load_model_file(whole), g.x);
    ASSERT_EQ(a.size(), static_cast<std::size_t>(g.out));
    EXPECT_EQ(a, b);
    const std::vector<float> expected = g.expected();
    for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], expected[i], 1e-4) << i;
  }
}

// A split member's slice of a Gemm matrix is cut as it is read (rows of the file alone where they
// are contiguous): the same values as the whole weight cut afterwards, for slices of either axis,
// with W in the file (4 MiB pieces, split mid-row) and parsed with the rest.
TEST(OnnxLargeWeights, SlicesOfAMatrixAreCutAsTheyAreRead) {
  for (const GemmModel& g : {GemmModel(), GemmModel(1152, 1000, /*trans_b=*/true)}) {
    for (bool raw : {true, false}) {
      SCOPED_TRACE(cat(g.trans_b ? "transB" : "plain", raw ? ", W in the file" : ", W parsed"));
      test::TempDir dir;
      const std::string path = dir.path("m.onnx");
      write_file(path, g.bytes(raw));
      const io::ModelStructure s = io::load_model_structure(path, "", true);
      int source = -1;
      for (const auto& n : s.model.nodes())
        if (n.layer->type() == "Dense") source = n.source;
      ASSERT_GE(source, 0);
      auto reader = io::open_weight_reader(s);
      const layers::WeightSpec spec{"kernel", {g.in, g.out}};
      EXPECT_EQ(reader->read(source, spec), g.w);
      for (int axis : {0, 1})
        for (auto [begin, end] : {std::pair{0, 7}, {5, 100}, {1, axis == 0 ? g.in : g.out}}) {
          SCOPED_TRACE(cat("axis ", axis, " [", begin, ", ", end, ")"));
          EXPECT_EQ(reader->read(source, spec, {axis, begin, end}), io::slice_axis(g.w, spec.shape, axis, begin, end));
        }
    }
  }
}

// Conv weights (O, I/groups, kH, kW) laid out as Keras' (kH, kW, I/groups, O), or (kH, kW, C, m)
// for a depthwise layer, as they are read: whole, and a split member's slices of the filters
// (rows of the file), of the inputs and of a kernel axis (cut after reading), equal the whole
// weight cut. The first weight (4.7 MB) comes in two 4 MiB pieces, split mid-filter.
TEST(OnnxLargeWeights, SlicesOfAConvolutionKernelEqualTheWholeCut) {
  struct Case {
    int in, out, group;
  };
  for (const Case& c : {Case{512, 256, 1}, Case{64, 96, 2}, Case{64, 128, 64}}) {
    const int per_group = c.in / c.group;
    const std::vector<float> w = test::random_vector(static_cast<std::size_t>(c.out) * per_group * 9, 7);
    std::string conv = node({"x", "W"}, "y", "conv", "Conv");
    conv +=
        bytes_field(5, bytes_field(1, "group") + int_field(3, static_cast<std::uint64_t>(c.group)) + int_field(20, 2));
    for (bool raw : {true, false}) {
      SCOPED_TRACE(cat(c.in, " -> ", c.out, " in ", c.group, " groups", raw ? ", W in the file" : ", W parsed"));
      const std::string graph =
          bytes_field(1, conv) + bytes_field(2, "g") + bytes_field(5, tensor("W", {c.out, per_group, 3, 3}, w, raw)) +
          bytes_field(11, value_info("x", {1, c.in, 8, 8})) + bytes_field(12, value_info("y", {1, c.out, 6, 6}));
      test::TempDir dir;
      const std::string path = dir.path("conv.onnx");
      write_file(path, model_head() + bytes_field(7, graph));
      const io::ModelStructure s = io::load_model_structure(path, "", true);
      ASSERT_EQ(s.model.nodes().size(), 1u);
      const bool depthwise = c.group == c.in;
      EXPECT_EQ(s.model.nodes()[0].layer->type(), depthwise ? "DepthwiseConv2D" : "Conv2D");
      const layers::WeightSpec spec = depthwise ? layers::WeightSpec{"depthwise_kernel", {3, 3, c.in, c.out / c.in}}
                                                : layers::WeightSpec{"kernel", {3, 3, per_group, c.out}};
      std::vector<float> keras(w.size());
      for (int o = 0; o < c.out; ++o)
        for (int i = 0; i < per_group; ++i)
          for (int k = 0; k < 9; ++k)
            keras[(static_cast<std::size_t>(k) * per_group + i) * c.out + o] =
                w[(static_cast<std::size_t>(o) * per_group + i) * 9 + k];
      auto reader = io::open_weight_reader(s);
      const int source = s.model.nodes()[0].source;
      ASSERT_EQ(reader->read(source, spec), keras);
      for (int axis : {0, 2, 3})
        for (auto [begin, end] : {std::pair{0, 1}, {1, 2}, {5, 17}, {1, static_cast<int>(spec.shape[axis])}}) {
          if (end > spec.shape[axis]) continue;
          SCOPED_TRACE(cat("axis ", axis, " [", begin, ", ", end, ")"));
          EXPECT_EQ(reader->read(source, spec, {axis, begin, end}),
                    io::slice_axis(keras, spec.shape, axis, begin, end));
        }
    }
  }
}

// The structure (chorus info, plan) never reads the weights; reading them checks their size.
TEST(OnnxLargeWeights, RawDataThatDisagreesWithItsDimsIsNamed) {
  GemmModel g;
  std::vector<float> longer = g.w;
  longer.push_back(0.0f);
  test::TempDir dir;
  const std::string path = dir.path("long.onnx");
  write_file(path, model_head() + bytes_field(7, g.graph(bytes_field(5, tensor("W", {256, 128}, longer, true)))));
  io::ModelStructure s = io::load_model_structure(path, "", true);
  EXPECT_EQ(s.model.output_shape(), (Shape{1, 1, g.out}));
  EXPECT_THAT(
      test::error_of([&] { io::load_model_file(path); }),
      HasSubstr(path + ": node 'fc': tensor 'W' (256, 128) holds 131076 bytes of data, expected 32768 x 4 = 131072"));
}

// Cuts inside the large raw_data, around it and inside the length prefixes that enclose it.
TEST(OnnxErrors, LargeModelCutInsideItsWeightsOrLengthsIsRefused) {
  GemmModel g;
  const std::string bytes = g.bytes(true);
  const std::size_t graph_tag = model_head().size(), w_tag = bytes.find(bytes_field(5, g.w_tensor(true)));
  const std::size_t raw_begin = bytes.find(float_bytes(g.stored_w())), raw_end = raw_begin + g.w.size() * sizeof(float);
  ASSERT_NE(w_tag, std::string::npos);
  ASSERT_NE(raw_begin, std::string::npos);
  std::vector<std::size_t> cuts = {raw_begin + 1, raw_begin + 4096, (raw_begin + raw_end) / 2, raw_end - 1};
  for (std::size_t i = 0; i <= 6; ++i) {
    cuts.push_back(graph_tag + 1 + i);  // the graph's tag is at graph_tag, its length follows
    cuts.push_back(w_tag + i);
    cuts.push_back(raw_begin - i);  // raw_data's tag and length, then its first byte
    cuts.push_back(raw_end + i);
  }
  test::TempDir dir;
  const std::string cut = dir.path("cut.onnx");
  for (std::size_t n : cuts) {
    write_file(cut, bytes.substr(0, n));
    EXPECT_THAT(test::error_of([&] { io::load_model_file(cut); }), HasSubstr(cut + ": not a valid ONNX model"))
        << n << " bytes";
  }
}

// Length prefixes and tags changed in place (the file keeps its size).
TEST(OnnxErrors, LargeModelWithCorruptLengthsOrTagsIsRefused) {
  GemmModel g;
  const std::string bytes = g.bytes(true);
  const std::size_t graph_tag = model_head().size(), w_tag = bytes.find(bytes_field(5, g.w_tensor(true)));
  const std::size_t raw_begin = bytes.find(float_bytes(g.stored_w()));
  const std::size_t raw_length = raw_begin - varint(g.w.size() * sizeof(float)).size();
  ASSERT_EQ(bytes[raw_length - 1], '\x4a');  // raw_data: field 9, wire type 2
  ASSERT_EQ(bytes[w_tag], '\x2a');           // initializer: field 5, wire type 2
  // One more than the length: low 7 bits of the first varint byte, which is not 0x7f here.
  auto one_more = [](std::string b, std::size_t at) {
    EXPECT_NE(b[at] & 0x7f, 0x7f);
    ++b[at];
    return b;
  };
  auto set = [](std::string b, std::size_t at, char c) {
    b[at] = c;
    return b;
  };
  std::string w_length_one_less = bytes;
  EXPECT_NE(w_length_one_less[w_tag + 1] & 0x7f, 0);
  --w_length_one_less[w_tag + 1];  // the tensor ends inside its raw_data
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"graph length past the end", one_more(bytes, graph_tag + 1)},
      {"tensor length one less", w_length_one_less},
      {"raw_data length past its tensor", one_more(bytes, raw_length)},
      {"graph as a group", set(bytes, graph_tag, '\x3b')},
      {"initializer as an end of group", set(bytes, w_tag, '\x2c')},
      {"raw_data of wire type 7", set(bytes, raw_length - 1, '\x4f')},
      {"an unending varint first", std::string(11, '\xff') + bytes.substr(11)},
  };
  test::TempDir dir;
  const std::string bad = dir.path("bad.onnx");
  for (const auto& [what, b] : cases) {
    ASSERT_EQ(b.size(), bytes.size()) << what;
    write_file(bad, b);
    EXPECT_THAT(test::error_of([&] { io::load_model_file(bad); }),
                HasSubstr(bad + ": not a valid ONNX model (the protobuf does not parse"))
        << what;
  }
}

// A file cut after its structure was read fails when the weight is read, naming file and tensor.
TEST(OnnxErrors, FileCutBeforeItsWeightsAreReadNamesTheTensor) {
  GemmModel g;
  const std::string bytes = g.bytes(true);
  test::TempDir dir;
  const std::string path = dir.path("shrinking.onnx");
  write_file(path, bytes);
  io::ModelStructure s = io::load_model_structure(path, "", true);
  auto reader = io::open_weight_reader(s);
  std::filesystem::resize_file(path, bytes.find(float_bytes(g.stored_w())) + 1000);
  const std::string message = test::error_of([&] {
    for (auto& n : s.model.nodes()) reader->load_node(n);
  });
  EXPECT_THAT(message, HasSubstr(path + ": node 'fc': tensor 'W' (256, 128): cannot read its 131072 bytes"));
  EXPECT_THAT(message, HasSubstr("the file is shorter than when it was opened"));
}
