#include "io/onnx/onnx_proto.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <utility>

#include "core/error.h"

namespace chorus::io {

namespace {

std::string dims_text(const std::vector<std::int64_t>& dims) {
  std::string s = "(";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + (dims.size() == 1 ? ",)" : ")");
}

// Raw_data over this size stays in the file until asked for: weights, not the shapes and scalars
// that building the graph reads (a 128x128 float matrix is 64 KiB).
constexpr std::size_t kDeferredBytes = 64 << 10;

// A file descriptor, closed when it goes.
struct Fd {
  int fd;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& other) noexcept : fd(std::exchange(other.fd, -1)) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// A read-only mapping of a whole file, unmapped when it goes. Mapped rather than read: the walk
// touches only the pages around the fields it enters, so the weights are not read at all. (A
// file cut by another process during the walk, a few milliseconds, would end it with SIGBUS.)
struct Mapping {
  void* data = nullptr;
  std::size_t size = 0;
  Mapping(const Fd& file, std::size_t bytes, const std::string& path) : size(bytes) {
    if (!size) return;  // mmap refuses empty files
    data = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, file.fd, 0);
    if (data == MAP_FAILED) fail(path, ": cannot map it into memory (", std::strerror(errno), ")");
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (size) ::munmap(data, size);
  }
};

// The file opened again to read deferred raw_data, or a failure naming the tensor (`where`).
Fd open_data(const std::string& path, const std::string& where) {
  Fd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (file.fd < 0) fail(where, ": cannot open the file again to read its data (", std::strerror(errno), ")");
  return file;
}

// Reads the bytes of `span` into `out`, or fails naming the tensor (`where`).
void read_span(const Fd& file, const OnnxRawSpan& span, void* out, const std::string& where) {
  char* to = static_cast<char*>(out);
  for (std::uint64_t done = 0; done < span.size;) {
    const ssize_t n = ::pread(file.fd, to + done, span.size - done, static_cast<off_t>(span.offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      fail(where, ": cannot read its ", span.size, " bytes of data at byte ", span.offset, " of the file (",
           n < 0 ? std::strerror(errno) : "the file is shorter than when it was opened", ")");
    done += static_cast<std::uint64_t>(n);
  }
}

void check_raw_size(std::uint64_t size, std::size_t count, std::size_t item, const std::string& where) {
  if (size != count * item)
    fail(where, " holds ", size, " bytes of data, expected ", count, " x ", item, " = ", count * item);
}

// Copies `count` little-endian values of type T out of raw_data, from the proto or, when
// `deferred`, from the file; or fails naming the tensor. The size is checked before reading.
template <typename T>
std::vector<T> from_raw(const onnx::TensorProto& t, const OnnxRawSpan* deferred, const std::string& path,
                        std::size_t count, const std::string& where) {
  check_raw_size(deferred ? deferred->size : t.raw_data().size(), count, sizeof(T), where);
  std::vector<T> out(count);
  if (deferred)
    read_span(open_data(path, where), *deferred, out.data(), where);
  else if (count)
    std::memcpy(out.data(), t.raw_data().data(), count * sizeof(T));
  return out;
}

template <typename T, typename Repeated>
std::vector<T> from_field(const Repeated& field, std::size_t count, const std::string& where) {
  if (static_cast<std::size_t>(field.size()) != count)
    fail(where, " holds ", field.size(), " values, expected ", count);
  return std::vector<T>(field.begin(), field.end());
}

// Elements of a tensor, refusing negative dimensions and counts past what a file can hold.
std::size_t element_count(const onnx::TensorProto& t, const std::string& where) {
  std::size_t count = 1;
  for (auto d : t.dims()) {
    if (d < 0 || d > INT_MAX) fail(where, " has dimension ", d);
    count *= static_cast<std::size_t>(d);
    if (count > static_cast<std::size_t>(INT_MAX)) fail(where, " has more than 2^31 elements");
  }
  return count;
}

}  // namespace

OnnxFile read_onnx_file(const std::string& path) {
  Fd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (file.fd < 0) fail(path, ": cannot open (", std::strerror(errno), ")");
  struct stat st {};
  if (::fstat(file.fd, &st) != 0) fail(path, ": cannot read its size (", std::strerror(errno), ")");
  if (S_ISDIR(st.st_mode)) fail(path, ": cannot open (", std::strerror(EISDIR), ")");
  if (!S_ISREG(st.st_mode)) fail(path, ": not a regular file");
  if (st.st_size > INT_MAX)
    fail(path, ": ", st.st_size,
         " bytes; a protobuf message is limited to 2 GiB (models this large keep their weights "
         "in external data files, which Chorus does not read)");
  const char* const not_onnx = ": not a valid ONNX model (the protobuf does not parse: truncated or not ONNX)";
  OnnxFile out;
  out.path = path;
  std::optional<OnnxStripped> stripped;
  {
    const Mapping bytes(file, static_cast<std::size_t>(st.st_size), path);
    stripped = strip_onnx_raw_data(static_cast<const unsigned char*>(bytes.data), bytes.size, kDeferredBytes);
  }
  if (!stripped) fail(path, not_onnx);
  out.model = std::make_unique<onnx::ModelProto>();
  if (!out.model->ParseFromArray(stripped->bytes.data(), static_cast<int>(stripped->bytes.size())))
    fail(path, not_onnx);
  if (!out.model->has_graph() || out.model->graph().node_size() == 0)
    fail(path, ": not an ONNX model, or an empty one (no graph nodes)");
  out.deferred = std::move(stripped->deferred);
  return out;
}

int onnx_opset(const onnx::ModelProto& model, const std::string& source) {
  for (const auto& o : model.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") return static_cast<int>(o.version());
  fail(source, ": the model declares no ai.onnx opset (opset_import)");
}

std::string onnx_type_name(int data_type) {
  if (onnx::TensorProto_DataType_IsValid(data_type))
    return onnx::TensorProto_DataType_Name(static_cast<onnx::TensorProto_DataType>(data_type));
  return cat("type ", data_type);
}

OnnxConstants::OnnxConstants(const OnnxFile& file) : source_(file.path) {
  const onnx::GraphProto& graph = file.model->graph();
  for (int i = 0; i < graph.initializer_size(); ++i) {
    const onnx::TensorProto& t = graph.initializer(i);
    tensors_[t.name()] = &t;
    auto d = file.deferred.find(i);
    if (d != file.deferred.end()) deferred_[&t] = d->second;
  }
  for (int i = 0; i < graph.node_size(); ++i) {
    const auto& node = graph.node(i);
    const bool standard = node.domain().empty() || node.domain() == "ai.onnx";
    if (!standard || node.output_size() < 1) continue;
    if (node.op_type() == "Constant") add_constant_node(node, i);
    // Exporters share weights through Identity nodes: the output is the same constant.
    if (node.op_type() == "Identity" && node.input_size() == 1 && has(node.input(0)))
      tensors_[node.output(0)] = tensors_.at(node.input(0));
    try {
      fold(node, [](const std::string&) { return nullptr; });
    } catch (const Error&) {
      // Malformed: the converter, which folds again with the values' dims, reports it.
    }
  }
}

void OnnxConstants::add_constant_node(const onnx::NodeProto& node, int index) {
  for (const auto& a : node.attribute()) {
    auto owned = std::make_unique<onnx::TensorProto>();
    if (a.name() == "value" && a.has_t()) {
      tensors_[node.output(0)] = &a.t();
      return;
    } else if (a.name() == "value_float") {
      owned->set_data_type(onnx::TensorProto::FLOAT);
      owned->add_float_data(a.f());
    } else if (a.name() == "value_floats") {
      owned->set_data_type(onnx::TensorProto::FLOAT);
      owned->add_dims(a.floats_size());
      for (float f : a.floats()) owned->add_float_data(f);
    } else if (a.name() == "value_int") {
      owned->set_data_type(onnx::TensorProto::INT64);
      owned->add_int64_data(a.i());
    } else if (a.name() == "value_ints") {
      owned->set_data_type(onnx::TensorProto::INT64);
      owned->add_dims(a.ints_size());
      for (auto v : a.ints()) owned->add_int64_data(v);
    } else {
      continue;  // sparse or string values: the Constant converter reports them
    }
    tensors_[node.output(0)] = owned.get();
    owned_.push_back(std::move(owned));
    return;
  }
}

const onnx::TensorProto& OnnxConstants::tensor(const std::string& name, const std::string& node) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail(source_, ": node '", node, "' reads constant '", name, "', which the file lacks");
  const onnx::TensorProto& t = *it->second;
  if (t.data_location() == onnx::TensorProto::EXTERNAL)
    fail(source_, ": node '", node, "' reads tensor '", name,
         "' stored in an external data file, which Chorus does not read (save the model with its weights inside)");
  return t;
}

const OnnxRawSpan* OnnxConstants::deferred(const onnx::TensorProto& t) const {
  auto it = deferred_.find(&t);
  return it == deferred_.end() ? nullptr : &it->second;
}

std::vector<std::int64_t> OnnxConstants::dims(const std::string& name) const {
  auto it = tensors_.find(name);
  CHORUS_ASSERT(it != tensors_.end(), "no constant ", name);
  return {it->second->dims().begin(), it->second->dims().end()};
}

std::vector<float> OnnxConstants::floats(const std::string& name, const std::string& node) const {
  const onnx::TensorProto& t = tensor(name, node);
  const std::string where = cat(source_, ": node '", node, "': tensor '", name, "' ", dims_text(dims(name)));
  const std::size_t count = element_count(t, where);
  const OnnxRawSpan* in_file = deferred(t);
  const bool raw = in_file || !t.raw_data().empty();
  switch (t.data_type()) {
    case onnx::TensorProto::FLOAT:
      return raw ? from_raw<float>(t, in_file, source_, count, where) : from_field<float>(t.float_data(), count, where);
    case onnx::TensorProto::DOUBLE: {
      auto d =
          raw ? from_raw<double>(t, in_file, source_, count, where) : from_field<double>(t.double_data(), count, where);
      return std::vector<float>(d.begin(), d.end());
    }
    case onnx::TensorProto::INT64:
    case onnx::TensorProto::INT32: {
      auto v = ints(name, node);
      return std::vector<float>(v.begin(), v.end());
    }
    default:
      fail(where, " is of type ", onnx_type_name(t.data_type()), ", expected FLOAT (or DOUBLE)");
  }
}

void OnnxConstants::stream_floats(const std::string& name, const std::string& node, const OnnxFloatSink& sink,
                                  std::size_t begin, std::size_t count) const {
  const onnx::TensorProto& t = tensor(name, node);
  const OnnxRawSpan* in_file = deferred(t);
  if (!in_file || t.data_type() != onnx::TensorProto::FLOAT) {
    const std::vector<float> all = floats(name, node);
    const std::size_t from = std::min(begin, all.size());
    sink(from, all.data() + from, std::min(count, all.size() - from));
    return;
  }
  const std::string where = cat(source_, ": node '", node, "': tensor '", name, "' ", dims_text(dims(name)));
  const std::size_t total = element_count(t, where);
  check_raw_size(in_file->size, total, sizeof(float), where);
  const std::size_t end = begin + std::min(count, total - std::min(begin, total));
  const Fd file = open_data(source_, where);
  constexpr std::size_t kPiece = 1 << 20;  // floats: 4 MiB
  std::vector<float> piece(std::min(end - std::min(begin, end), kPiece));
  for (std::size_t first = begin; first < end; first += kPiece) {
    const std::size_t n = std::min(kPiece, end - first);
    read_span(file, OnnxRawSpan{in_file->offset + first * sizeof(float), n * sizeof(float)}, piece.data(), where);
    sink(first, piece.data(), n);
  }
}

std::vector<std::int64_t> OnnxConstants::ints(const std::string& name, const std::string& node) const {
  const onnx::TensorProto& t = tensor(name, node);
  const std::string where = cat(source_, ": node '", node, "': tensor '", name, "' ", dims_text(dims(name)));
  const std::size_t count = element_count(t, where);
  const OnnxRawSpan* in_file = deferred(t);
  const bool raw = in_file || !t.raw_data().empty();
  switch (t.data_type()) {
    case onnx::TensorProto::INT64:
      return raw ? from_raw<std::int64_t>(t, in_file, source_, count, where)
                 : from_field<std::int64_t>(t.int64_data(), count, where);
    case onnx::TensorProto::INT32: {
      auto v = raw ? from_raw<std::int32_t>(t, in_file, source_, count, where)
                   : from_field<std::int32_t>(t.int32_data(), count, where);
      return std::vector<std::int64_t>(v.begin(), v.end());
    }
    default:
      fail(where, " is of type ", onnx_type_name(t.data_type()), ", expected INT64");
  }
}

}  // namespace chorus::io
