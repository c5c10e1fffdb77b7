#include "io/keras/keras_model.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <map>

#include "core/error.h"
#include "io/hdf5/hdf5_file.h"
#include "io/hdf5/hdf5_probe.h"
#include "io/keras/keras_layers.h"

namespace chorus::io {

using nlohmann::json;

namespace {

Shape frame_shape(const std::vector<int>& dims, bool channels_first, const std::string& source) {
  std::int64_t values = 1;
  for (int d : dims) {
    if (d <= 0) fail(source, ": input dimension ", d, " is not positive");
    values *= d;
    if (values > std::numeric_limits<int>::max())
      fail(source, ": an input of ", dims.size(), " dimensions holds more than ", std::numeric_limits<int>::max(),
           " values a frame, more than Chorus holds");
  }
  if (dims.size() == 1) return {1, 1, dims[0]};
  if (dims.size() == 2) return {1, dims[0], dims[1]};
  if (dims.size() == 3) return channels_first ? Shape{dims[1], dims[2], dims[0]} : Shape{dims[0], dims[1], dims[2]};
  if (dims.size() == 4)  // a clip: (depth, rows, columns, channels), or (channels, depth, rows, columns)
    return channels_first ? Shape{dims[2], dims[3], dims[0], dims[1]} : Shape{dims[1], dims[2], dims[3], dims[0]};
  fail(source, ": input of rank ", dims.size(), " is not supported (1 to 4 dimensions besides the batch)");
}

std::string strip_suffix(const std::string& s) {
  auto colon = s.rfind(':');
  return colon == std::string::npos ? s : s.substr(0, colon);
}

std::string basename(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string parent_name(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return "";
  return basename(path.substr(0, slash));
}

std::string dims_str(const std::vector<std::int64_t>& dims) {
  std::string s = "(";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + (dims.size() == 1 ? ",)" : ")");
}

}  // namespace

bool is_architecture_file(const std::string& path) {
  const std::string ext = std::filesystem::path(path).extension().string();
  return ext == ".json" || ext == ".yaml" || ext == ".yml";
}

json read_keras_config(const std::string& path, const std::string& arch_path, std::string* keras_version) {
  { H5File opened(path); }     // the plain errors first (missing file, not HDF5) ...
  probe_hdf5_structure(path);  // ... then a hang or crash of the library in a child, not here
  H5File file(path);
  if (keras_version) {
    *keras_version = "";
    for (const char* object : {"/", "/model_weights"})
      if (file.has_attribute(object, "keras_version")) {
        *keras_version = file.string_attribute(object, "keras_version");
        break;
      }
  }
  if (!arch_path.empty()) return read_architecture_file(arch_path);
  if (!file.has_attribute("/", "model_config")) {
    if (file.has_attribute("/", "layer_names"))
      fail(path,
           ": no model_config: this is a weights-only file; pass its architecture with --arch FILE "
           "(from model.to_json() or model.to_yaml())");
    if (file.is_group("/layers") || file.is_group("/_layer_checkpoint_dependencies"))
      fail(path,
           ": a Keras 3 weights file (model.save_weights()), which holds no architecture; pass it with "
           "--arch FILE (model.to_json(), or the config.json inside the model's .keras archive)");
    fail(path, ": no model_config attribute and no Keras weights (not a Keras model file?)");
  }
  std::string text = file.string_attribute("/", "model_config");
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail(path, ": model_config is not valid JSON: ", e.what());
  }
}

model::Model build_keras_model(const KerasModelSpec& spec, const std::string& source) {
  model::Model m;
  std::map<std::string, int> index, rank;
  for (const auto& in : spec.inputs) {
    index[in.name] = m.add_input(in.name, frame_shape(in.shape, spec.channels_first, source));
    rank[in.name] = static_cast<int>(in.shape.size()) + 1;
  }
  m.set_channels_first(spec.channels_first);
  for (const auto& l : spec.layers) {
    std::vector<int> inputs;
    for (const auto& in : l.inbound) {
      auto it = index.find(in);
      if (it == index.end()) fail(source, ": layer '", l.name, "' reads unknown layer '", in, "'");
      inputs.push_back(it->second);
    }
    try {
      KerasLayerContext ctx{source, spec.channels_first, spec.keras3, rank.at(l.inbound.at(0))};
      if (l.shares_weights_of >= 0)  // a later call of a shared layer: the first call's layer
        index[l.name] = m.add_call(index.at(spec.layers.at(l.shares_weights_of).name), inputs, l.name);
      else
        index[l.name] = m.add(make_keras_layer(l, ctx), inputs, static_cast<int>(&l - spec.layers.data()));
      rank[l.name] = keras_output_rank(l, ctx.input_rank);
    } catch (const json::exception& e) {
      fail(source, ": layer '", l.name, "' has a malformed config: ", e.what());
    } catch (const std::out_of_range&) {
      fail(source, ": layer '", l.name, "' has no input");
    } catch (const Error& e) {
      // A layer's own checks ("strides must be positive") name the layer, not the file.
      const std::string what = e.what();
      if (what.rfind(source, 0) == 0) throw;
      fail(source, ": ", what);
    }
  }
  std::vector<int> outputs;
  for (const auto& name : spec.outputs) {
    auto out = index.find(name);
    if (out == index.end() || model::is_model_input(out->second))
      fail(source, ": output '", name, "' is a model input");
    if (std::find(outputs.begin(), outputs.end(), out->second) != outputs.end())
      fail(source, ": output '", name, "' is listed twice");
    outputs.push_back(out->second);
  }
  m.set_outputs(std::move(outputs));
  try {
    m.build();
  } catch (const Error& e) {
    fail(source, ": ", e.what());
  }
  return m;
}

struct KerasWeightReader::Impl {
  H5File file;
  const KerasModelSpec& spec;
  std::string root;
  std::map<std::string, std::vector<std::string>> datasets;  // per group, found on first use

  Impl(const std::string& path, const KerasModelSpec& s) : file(path), spec(s) {
    root = file.is_group("/model_weights") ? "/model_weights/" : "/";
  }

  const std::vector<std::string>& datasets_in(const std::string& group) {
    auto it = datasets.find(group);
    if (it == datasets.end()) it = datasets.emplace(group, file.datasets_below(group)).first;
    return it->second;
  }

  // The dataset holding weight `name` of a layer: matched by name, never by position.
  std::string locate(const KerasLayerSpec& layer, const layers::WeightSpec& w) {
    const std::string group = root + layer.weight_group;
    if (!file.is_group(group))
      fail(file.path(), ": layer '", layer.name, "' has weights but the file has no group '", group, "'");
    const auto& all = datasets_in(group);
    std::vector<std::string> hits;
    // A sublayer's weight ("query/kernel" of MultiHeadAttention) by its last two path parts.
    const bool nested = w.name.find('/') != std::string::npos;
    for (const auto& d : all) {
      const std::string plain = strip_suffix(d);
      if (nested ? plain == w.name || (plain.size() > w.name.size() &&
                                       plain.compare(plain.size() - w.name.size() - 1, std::string::npos,
                                                     "/" + w.name) == 0)
                 : strip_suffix(basename(d)) == w.name)
        hits.push_back(d);
    }
    if (hits.size() > 1) {
      // Several layers share the group (nested models): keep those under this layer's name.
      std::vector<std::string> own;
      for (const auto& d : hits) {
        // The layer owning the weight: the path part before the weight's own ("query/kernel").
        const std::string plain = strip_suffix(d);
        const std::string owner =
            nested ? (plain.size() > w.name.size() ? basename(plain.substr(0, plain.size() - w.name.size() - 1)) : "")
                   : parent_name(d);
        if (owner == layer.weight_owner) own.push_back(d);
      }
      hits = own;
    }
    if (hits.empty())
      fail(file.path(), ": layer '", layer.name, "' weight '", w.name, "' ", w.shape_str(), " is missing from group '",
           group, "'", all.empty() ? " (the group is empty)" : "");
    if (hits.size() > 1)
      fail(file.path(), ": layer '", layer.name, "' weight '", w.name, "' is ambiguous in group '", group, "': '",
           hits[0], "' and '", hits[1], "'");
    const std::string path = group + "/" + hits[0];
    auto dims = file.dataset_shape(path);
    std::vector<std::int64_t> expected(w.shape.begin(), w.shape.end());
    if (dims != expected)
      fail(file.path(), ": layer '", layer.name, "' ", w.name, " is ", dims_str(dims), ", expected ", w.shape_str());
    return path;
  }
};

KerasWeightReader::KerasWeightReader(const std::string& path, const KerasModelSpec& spec)
    : impl_(std::make_unique<Impl>(path, spec)) {}
KerasWeightReader::~KerasWeightReader() = default;

const std::string& KerasWeightReader::path() const { return impl_->file.path(); }

std::vector<float> KerasWeightReader::read(int source, const layers::WeightSpec& wanted, WeightSlice slice) {
  const auto& layer = impl_->spec.layers.at(source);
  const std::string path = impl_->locate(layer, wanted);
  if (slice.axis < 0) return impl_->file.read_floats(path, wanted.count());
  return impl_->file.read_floats_slice(path, slice.axis, slice.begin, slice.end);
}

KerasModelStructure load_keras_structure(const std::string& path, const std::string& arch_path, bool optimize) {
  if (is_architecture_file(path))
    fail(path, ": this is an architecture file without weights; make weights with `chorus init-weights ", path,
         " -o model.h5`, or pass your weights .h5 as MODEL and this file with --arch");
  if (std::filesystem::path(path).extension() == ".keras")
    fail(path, ": a Keras 3 .keras archive: open it through io::load_model_structure");
  std::string version;
  json config = read_keras_config(path, arch_path, &version);
  const std::string source = arch_path.empty() ? path : arch_path;
  KerasModelSpec spec = parse_keras_config(config, source, version);
  model::Model m = build_keras_model(spec, source);
  if (optimize) model::optimize(m);
  return KerasModelStructure{std::move(m), std::move(spec), source};
}

model::Model load_keras_model(const std::string& path, const KerasLoadOptions& options) {
  KerasModelStructure s = load_keras_structure(path, options.arch_path, options.optimize);
  if (!options.load_weights) return std::move(s.model);
  KerasWeightReader reader(path, s.spec);
  for (auto& node : s.model.nodes()) reader.load_node(node);
  return std::move(s.model);
}

}  // namespace chorus::io
