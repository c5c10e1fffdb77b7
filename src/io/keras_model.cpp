#include "io/keras_model.h"

#include <map>

#include "core/error.h"
#include "io/hdf5_file.h"
#include "io/keras_layers.h"

namespace chorus::io {

using nlohmann::json;

namespace {

Shape frame_shape(const std::vector<int>& dims, bool channels_first, const std::string& source) {
  for (int d : dims)
    if (d <= 0) fail(source, ": input dimension ", d, " is not positive");
  if (dims.size() == 1) return {1, 1, dims[0]};
  if (dims.size() == 2) return {1, dims[0], dims[1]};
  if (dims.size() == 3) return channels_first ? Shape{dims[1], dims[2], dims[0]} : Shape{dims[0], dims[1], dims[2]};
  fail(source, ": input of rank ", dims.size(), " is not supported (1 to 3 dimensions besides the batch)");
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

// Finds and reads the weights of every layer from the file's weight groups.
class WeightReader {
 public:
  WeightReader(const H5File& file, std::string root) : file_(file), root_(std::move(root)) {}

  layers::WeightMap read(const KerasLayerSpec& spec, const std::vector<layers::WeightSpec>& wanted) {
    const std::string group = root_ + spec.weight_group;
    if (!file_.is_group(group))
      fail(file_.path(), ": layer '", spec.name, "' has weights but the file has no group '", group, "'");
    auto& datasets = datasets_in(group);
    layers::WeightMap out;
    for (const auto& w : wanted) {
      std::vector<std::string> hits;
      for (const auto& d : datasets)
        if (strip_suffix(basename(d)) == w.name) hits.push_back(d);
      if (hits.size() > 1) {
        // Several layers share the group (nested models): keep those under this layer's name.
        std::vector<std::string> own;
        for (const auto& d : hits)
          if (parent_name(d) == spec.weight_owner) own.push_back(d);
        hits = own;
      }
      if (hits.empty())
        fail(file_.path(), ": layer '", spec.name, "' weight '", w.name, "' ", w.shape_str(), " is missing from group '",
             group, "'", datasets.empty() ? " (the group is empty)" : "");
      if (hits.size() > 1)
        fail(file_.path(), ": layer '", spec.name, "' weight '", w.name, "' is ambiguous in group '", group, "': '",
             hits[0], "' and '", hits[1], "'");
      const std::string path = group + "/" + hits[0];
      auto dims = file_.dataset_shape(path);
      std::vector<std::int64_t> expected(w.shape.begin(), w.shape.end());
      if (dims != expected)
        fail(file_.path(), ": layer '", spec.name, "' ", w.name, " is ", dims_str(dims), ", expected ",
             w.shape_str());
      out[w.name] = file_.read_floats(path, w.count());
    }
    return out;
  }

 private:
  const std::vector<std::string>& datasets_in(const std::string& group) {
    auto it = cache_.find(group);
    if (it == cache_.end()) it = cache_.emplace(group, file_.datasets_below(group)).first;
    return it->second;
  }

  const H5File& file_;
  std::string root_;
  std::map<std::string, std::vector<std::string>> cache_;
};

}  // namespace

json read_keras_config(const std::string& path, const std::string& arch_path, std::string* keras_version) {
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
      fail(path, ": no model_config: this is a weights-only file; pass its architecture with --arch FILE "
                 "(from model.to_json() or model.to_yaml())");
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
  m.set_input(spec.input_name, frame_shape(spec.input_shape, spec.channels_first, source), spec.channels_first);
  std::map<std::string, int> index{{spec.input_name, model::kModelInput}};
  std::map<std::string, int> rank{{spec.input_name, static_cast<int>(spec.input_shape.size()) + 1}};
  for (const auto& l : spec.layers) {
    std::vector<int> inputs;
    for (const auto& in : l.inbound) {
      auto it = index.find(in);
      if (it == index.end()) fail(source, ": layer '", l.name, "' reads unknown layer '", in, "'");
      inputs.push_back(it->second);
    }
    KerasLayerContext ctx{source, spec.channels_first, spec.keras3, rank.at(l.inbound.at(0))};
    index[l.name] = m.add(make_keras_layer(l, ctx), inputs);
    rank[l.name] = keras_output_rank(l, ctx.input_rank);
  }
  auto out = index.find(spec.output_name);
  if (out == index.end() || out->second == model::kModelInput) fail(source, ": the model output is its input");
  m.set_output(out->second);
  try {
    m.build();
  } catch (const Error& e) {
    fail(source, ": ", e.what());
  }
  return m;
}

model::Model load_keras_model(const std::string& path, const KerasLoadOptions& options) {
  std::string version;
  json config = read_keras_config(path, options.arch_path, &version);
  const std::string source = options.arch_path.empty() ? path : options.arch_path;
  KerasModelSpec spec = parse_keras_config(config, source, version);
  model::Model m = build_keras_model(spec, source);
  if (!options.load_weights) return m;

  H5File file(path);
  const std::string root = file.is_group("/model_weights") ? "/model_weights/" : "/";
  WeightReader reader(file, root);
  auto& nodes = m.nodes();
  for (std::size_t i = 0; i < spec.layers.size(); ++i) {
    auto wanted = nodes[i].layer->weight_specs();
    if (wanted.empty()) continue;
    auto weights = reader.read(spec.layers[i], wanted);
    try {
      nodes[i].layer->set_weights(std::move(weights));
    } catch (const Error& e) {
      fail(path, ": ", e.what());
    }
  }
  if (options.optimize) model::optimize(m);
  return m;
}

}  // namespace chorus::io
