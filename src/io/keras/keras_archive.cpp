#include "io/keras/keras_archive.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>

#include "core/error.h"
#include "io/hdf5/hdf5_file.h"
#include "io/hdf5/hdf5_probe.h"
#include "io/keras/zip_archive.h"

namespace chorus::io {

using nlohmann::json;

namespace {

constexpr const char* kConfig = "config.json";
constexpr const char* kMetadata = "metadata.json";
constexpr const char* kWeights = "model.weights.h5";

json parse_member(const ZipArchive& zip, const std::string& name) {
  const std::vector<char> text = zip.read(name);
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    fail(zip.path(), ": member '", name, "' is not valid JSON: ", e.what());
  }
}

std::string dims_str(const std::vector<std::int64_t>& dims) {
  std::string s = "(";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + (dims.size() == 1 ? ",)" : ")");
}

}  // namespace

bool is_keras_archive(const std::string& path) { return std::filesystem::path(path).extension() == ".keras"; }

bool is_keras3_weights_file(const H5File& file) {
  return !file.has_attribute("/", "layer_names") && !file.has_attribute("/", "model_config") &&
         (file.is_group("/layers") || file.is_group("/_layer_checkpoint_dependencies"));
}

KerasModelStructure load_keras_archive_structure(const std::string& path, bool optimize) {
  const ZipArchive zip(path);
  const json config = parse_member(zip, kConfig);
  std::string version;
  if (zip.find(kMetadata)) {
    const json metadata = parse_member(zip, kMetadata);
    if (metadata.is_object() && metadata.contains("keras_version") && metadata["keras_version"].is_string())
      version = metadata["keras_version"].get<std::string>();
  }
  if (version.empty()) version = "3";  // the format is Keras 3's (or tf.keras 2.13+, which reads alike)
  const std::string source = path + ":" + kConfig;
  KerasModelSpec spec = parse_keras_config(config, source, version);
  model::Model m = build_keras_model(spec, source);
  if (optimize) model::optimize(m);
  return KerasModelStructure{std::move(m), std::move(spec), source};
}

struct KerasArchiveWeightReader::Impl {
  std::string path;               // the archive or the weights file
  std::optional<ZipArchive> zip;  // none for a weights file on its own
  std::vector<char> inflated;     // the weights file, when the archive deflated it
  H5File file;
  std::string name;  // "a.keras:model.weights.h5" or "a.weights.h5", for messages
  std::string root;  // "layers" (Keras 3) or "_layer_checkpoint_dependencies" (tf.keras 2.13+)
  const KerasModelSpec& spec;
  std::vector<std::vector<std::string>> order;  // per spec layer: its weights' names, in Keras' order
  std::map<std::pair<std::string, std::string>, std::vector<std::string>> class_groups_;  // (group, class) -> ranked

  Impl(const std::string& p, const KerasModelSpec& s, KerasWeightsSource source)
      : path(p),
        zip(source == KerasWeightsSource::archive ? std::optional<ZipArchive>(std::in_place, p) : std::nullopt),
        file(zip ? open(*zip, inflated, p + ":" + kWeights) : H5File(p)),
        name(zip ? p + ":" + kWeights : p),
        spec(s) {
    root = file.is_group("/layers")                           ? "/layers"
           : file.is_group("/_layer_checkpoint_dependencies") ? "/_layer_checkpoint_dependencies"
                                                              : "";
    // The position of each weight: its index in the layer's weight_specs(), which follow the
    // order Keras creates variables in.
    const model::Model plain = build_keras_model(spec, path);
    order.resize(spec.layers.size());
    for (const auto& node : plain.nodes())
      if (order.at(node.source).empty())  // a shared layer's later calls read the first's
        for (const auto& w : node.layer->weight_specs())
          if (w.name.find('/') == std::string::npos) order.at(node.source).push_back(w.name);  // own, not a sublayer's
  }

  // The weights file in place, or inflated; HDF5 first reads its structure in a child process,
  // as for .h5 files (hdf5_probe.h), since a corrupt file can hang or crash it.
  static H5File open(const ZipArchive& zip, std::vector<char>& inflated, const std::string& name) {
    std::uint64_t size = 0;
    const char* bytes = zip.stored_bytes(kWeights, &size);
    if (!bytes) {
      inflated = zip.read(kWeights);
      bytes = inflated.data();
      size = inflated.size();
    }
    probe_hdf5_image(bytes, size, name);
    return H5File::from_image(bytes, size, name);
  }

  const char* mismatch() const {
    return zip ? "config.json does not match the weights" : "the --arch config does not match the weights";
  }

  // The group of a layer's variables. Keras names a model's layers there by class, numbered in
  // the model's layer order (layers/dense, layers/dense_1, a nested model's as
  // layers/functional/layers/conv2d), not by the layers' own names. Each step of the layer's
  // saved path takes the ordinal-th group of its class in its model's container.
  std::string vars_group(const KerasLayerSpec& called) {
    if (root.empty()) fail(name, ": no 'layers' group: not the weights of a Keras 3 model");
    const KerasLayerSpec& layer = called.shares_weights_of >= 0 ? spec.layers.at(called.shares_weights_of) : called;
    std::string g = root;
    for (std::size_t i = 0; i < layer.saved_path.size(); ++i) {
      if (i > 0) g += root == "/layers" ? "/layers" : "/_layer_checkpoint_dependencies";
      g += "/" + saved_child(g, layer.saved_path[i], layer);
    }
    return g + "/vars";
  }

  // The groups of one class in a model's container, in Keras' numbering (dense, dense_1, ...).
  // tf.keras 2.13-2.15 listed each weighted layer twice while numbering and saved it once, so
  // its numbers skip (dense, dense_2, ...): the groups are ranked, not looked up by number.
  const std::vector<std::string>& class_groups(const std::string& group, const std::string& key) {
    const auto cached = class_groups_.find({group, key});
    if (cached != class_groups_.end()) return cached->second;
    std::vector<std::pair<long, std::string>> ranked;
    if (file.is_group(group))
      for (const auto& child : file.children(group)) {
        if (child == key) {
          ranked.emplace_back(0, child);
          continue;
        }
        const auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
        if (child.size() <= key.size() + 1 || child.size() > key.size() + 10 ||
            child.compare(0, key.size(), key) != 0 || child[key.size()] != '_' ||
            !std::all_of(child.begin() + key.size() + 1, child.end(), is_digit))
          continue;
        ranked.emplace_back(std::stol(child.substr(key.size() + 1)), child);
      }
    std::sort(ranked.begin(), ranked.end());
    std::vector<std::string> names;
    for (auto& r : ranked) names.push_back(std::move(r.second));
    return class_groups_.emplace(std::make_pair(group, key), std::move(names)).first->second;
  }

  std::string saved_child(const std::string& group, const KerasSavedStep& step, const KerasLayerSpec& layer) {
    const auto& groups = class_groups(group, step.class_key);
    if (step.ordinal >= static_cast<int>(groups.size()))
      fail(name, ": layer '", layer.name, "' is number ", step.ordinal + 1, " of its model's ", step.class_key,
           " layers, but '", group, "' holds ", groups.size(), " group(s) named ", step.class_key, "[_N] (", mismatch(),
           ")");
    return groups[step.ordinal];
  }

  // A weight of a sublayer (MultiHeadAttention's query/kernel): Keras 3 saves each sublayer's
  // variables under the attribute that holds it, layers/<layer>/query_dense/vars/0 (kernel) and
  // 1 (bias); versions without the public query_dense property saved the private _query_dense.
  std::string locate_in_sublayer(const KerasLayerSpec& layer, const layers::WeightSpec& w) {
    std::string group = vars_group(layer);
    group = group.substr(0, group.size() - std::string("/vars").size());
    const std::string variable = keras3_sublayer_variable(w.name);
    std::string dataset = group + "/" + variable;
    if (!file.is_dataset(dataset) && file.is_dataset(group + "/_" + variable)) dataset = group + "/_" + variable;
    if (!file.is_dataset(dataset))
      fail(name, ": layer '", layer.name, "' weight ", w.name, " is missing: no '", dataset, "' (", mismatch(), ")");
    const auto dims = file.dataset_shape(dataset);
    if (dims != std::vector<std::int64_t>(w.shape.begin(), w.shape.end()))
      fail(name, ": layer '", layer.name, "' weight ", w.name, " is ", dims_str(dims), ", expected ", w.shape_str());
    return dataset;
  }

  std::string locate(int source, const layers::WeightSpec& w) {
    const KerasLayerSpec& layer = spec.layers.at(source);
    if (w.name.find('/') != std::string::npos) return locate_in_sublayer(layer, w);
    const auto& names = order.at(source);
    const auto at = std::find(names.begin(), names.end(), w.name);
    CHORUS_ASSERT(at != names.end(), "weight ", w.name, " of layer ", layer.name);
    const std::string group = vars_group(layer);
    if (!file.is_group(group))
      fail(name, ": layer '", layer.name, "' has weights but the file has no group '", group, "' (", mismatch(), ")");
    const auto stored = file.children(group);
    if (stored.size() != names.size())
      fail(name, ": layer '", layer.name, "' has ", stored.size(), " variable(s) in '", group, "', its config makes ",
           names.size(), " (", mismatch(), ")");
    const std::string dataset = group + "/" + std::to_string(at - names.begin());
    if (!file.is_dataset(dataset))
      fail(name, ": layer '", layer.name, "' variable ", at - names.begin(), " (", w.name, ") is missing: no '",
           dataset, "'");
    const auto dims = file.dataset_shape(dataset);
    if (dims != std::vector<std::int64_t>(w.shape.begin(), w.shape.end()))
      fail(name, ": layer '", layer.name, "' variable ", at - names.begin(), " (", w.name, ") is ", dims_str(dims),
           ", expected ", w.shape_str(), " (", mismatch(), ")");
    return dataset;
  }
};

std::string keras3_sublayer_variable(const std::string& weight) {
  static const std::map<std::string, std::string> sublayers{{"query", "query_dense"},
                                                            {"key", "key_dense"},
                                                            {"value", "value_dense"},
                                                            {"attention_output", "output_dense"}};
  const auto slash = weight.find('/');
  CHORUS_ASSERT(slash != std::string::npos, "weight ", weight, " of no sublayer");
  const auto it = sublayers.find(weight.substr(0, slash));
  const std::string variable = weight.substr(slash + 1);
  CHORUS_ASSERT(it != sublayers.end() && (variable == "kernel" || variable == "bias"), "sublayer weight ", weight);
  return it->second + "/vars/" + (variable == "kernel" ? "0" : "1");
}

KerasArchiveWeightReader::KerasArchiveWeightReader(const std::string& path, const KerasModelSpec& spec,
                                                   KerasWeightsSource source)
    : impl_(std::make_unique<Impl>(path, spec, source)) {}
KerasArchiveWeightReader::~KerasArchiveWeightReader() = default;

const std::string& KerasArchiveWeightReader::path() const { return impl_->path; }

bool KerasArchiveWeightReader::weights_in_place() const { return impl_->zip && impl_->inflated.empty(); }

std::vector<float> KerasArchiveWeightReader::read(int source, const layers::WeightSpec& wanted, WeightSlice slice) {
  const std::string dataset = impl_->locate(source, wanted);
  H5File& file = impl_->file;
  if (!weights_in_place())
    return slice.axis < 0 ? file.read_floats(dataset, wanted.count())
                          : file.read_floats_slice(dataset, slice.axis, slice.begin, slice.end);
  // Read in place, a weight's pages stay resident until released: VGG16's 411 MB fc1 kernel read
  // whole peaked one rank at 917 MB, against 616 from the .h5 (a slice on another axis touches
  // every page too). So weights are read in blocks of rows of the first axis (16 MB), within
  // the slice asked for, the mapping's pages released after each.
  const std::vector<std::int64_t> dims(wanted.shape.begin(), wanted.shape.end());
  if (dims.empty()) {
    std::vector<float> values = file.read_floats(dataset, wanted.count());
    impl_->zip->release_pages();
    return values;
  }
  std::vector<std::int64_t> offset(dims.size(), 0), count = dims;
  if (slice.axis >= 0) offset[slice.axis] = slice.begin, count[slice.axis] = slice.end - slice.begin;
  std::int64_t row = 1;
  for (std::size_t d = 1; d < dims.size(); ++d) row *= count[d];
  const std::int64_t rows = std::max<std::int64_t>(1, (std::int64_t{4} << 20) / std::max<std::int64_t>(1, row));
  const std::int64_t first = offset[0], last = offset[0] + count[0];
  std::vector<float> values;
  values.reserve(static_cast<std::size_t>(count[0] * row));
  for (std::int64_t r = first; r < last; r += rows) {
    offset[0] = r;
    count[0] = std::min(last, r + rows) - r;
    const std::vector<float> part = file.read_floats_block(dataset, offset, count);
    values.insert(values.end(), part.begin(), part.end());
    impl_->zip->release_pages();
  }
  return values;
}

}  // namespace chorus::io
