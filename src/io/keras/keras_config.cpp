#include "io/keras/keras_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <tuple>

#include "core/error.h"

namespace chorus::io {

using nlohmann::json;

namespace {

bool is_model_class(const std::string& cls) { return cls == "Sequential" || cls == "Functional" || cls == "Model"; }

std::vector<int> shape_without_batch(const json& shape, const std::string& where) {
  if (!shape.is_array() || shape.empty()) fail(where, ": input shape is not a list");
  std::vector<int> out;
  for (std::size_t i = 1; i < shape.size(); ++i) {
    if (!shape[i].is_number_integer())
      fail(where, ": input dimension ", i, " is ", shape[i].dump(), "; Chorus needs fixed input sizes");
    const std::int64_t size = shape[i].get<std::int64_t>();
    constexpr std::int64_t kMostSize = 1 << 24;  // an int, and its products with a few more
    if (size < 1 || size > kMostSize)
      fail(where, ": input dimension ", i, " is ", shape[i].dump(), "; Chorus reads sizes from 1 to ", kMostSize);
    out.push_back(static_cast<int>(size));
  }
  return out;
}

// The input shape a layer config declares, if any (Keras 2 batch_input_shape, Keras 3
// batch_shape, or a Sequential's build_input_shape).
bool declared_input_shape(const json& config, std::vector<int>& shape, const std::string& where) {
  for (const char* key : {"batch_input_shape", "batch_shape"}) {
    if (config.contains(key) && !config[key].is_null()) {
      shape = shape_without_batch(config[key], where);
      return true;
    }
  }
  return false;
}

// A tensor a layer reads: the call `node` of layer `layer`, its output `tensor` (a layer or
// nested model of several outputs).
struct TensorRef {
  std::string layer;
  int node = 0, tensor = 0;
};

// One inbound tensor reference: Keras 2 ["name", node, tensor, {...}] or Keras 3
// {"class_name": "__keras_tensor__", "config": {"keras_history": ["name", node, tensor]}}.
void collect_tensor_refs(const json& value, std::vector<TensorRef>& out) {
  if (value.is_object()) {
    if (value.value("class_name", "") == "__keras_tensor__") {
      const auto& h = value.at("config").at("keras_history");
      out.push_back({h.at(0).get<std::string>(), h.at(1).get<int>(), h.size() > 2 ? h.at(2).get<int>() : 0});
    } else if (value.contains("args")) {
      collect_tensor_refs(value["args"], out);  // a Keras 3 node: {"args": [...], "kwargs": {...}}
    }
    return;
  }
  if (!value.is_array()) return;
  if (value.size() >= 3 && value[0].is_string() && value[1].is_number_integer()) {
    out.push_back({value[0].get<std::string>(), value[1].get<int>(), value[2].is_number_integer() ? value[2].get<int>() : 0});
    return;
  }
  for (const auto& v : value) collect_tensor_refs(v, out);
}

std::vector<TensorRef> tensor_refs(const json& refs) {
  std::vector<TensorRef> out;
  collect_tensor_refs(refs, out);
  return out;
}

// The tensors one call of a layer reads: its positional inputs, then the keyword tensors
// MultiHeadAttention takes (value, then key), from Keras 2's [name, node, tensor, {"value": ref}]
// or Keras 3's {"args": [...], "kwargs": {"value": tensor}}. Other keyword tensors (masks) are
// refused: a silently dropped input would change the result.
std::vector<TensorRef> call_tensor_refs(const json& call, const std::string& where) {
  std::vector<TensorRef> refs = tensor_refs(json::array({call}));
  std::map<std::string, TensorRef> keyword;
  const auto take = [&](const std::string& key, const json& v) {
    std::vector<TensorRef> found;
    collect_tensor_refs(v.is_object() ? v : json::array({v}), found);
    if (found.empty()) return;
    if (key != "value" && key != "key")
      fail(where, ": keyword input '", key, "' is a tensor, which Chorus does not support (masks and other "
                  "keyword tensors)");
    keyword[key] = found[0];
  };
  if (call.is_object() && call.contains("kwargs") && call["kwargs"].is_object())
    for (const auto& [key, v] : call["kwargs"].items()) take(key, v);
  if (call.is_array())
    for (const auto& ref : call)
      if (ref.is_array() && ref.size() >= 4 && ref[3].is_object())
        for (const auto& [key, v] : ref[3].items()) take(key, v);
  for (const char* key : {"value", "key"})
    if (keyword.count(key)) refs.push_back(keyword[key]);
  return refs;
}

std::string layer_name(const json& layer) {
  if (layer.contains("name") && layer["name"].is_string()) return layer["name"];
  if (layer.contains("config") && layer["config"].is_object() && layer["config"].contains("name"))
    return layer["config"]["name"];
  return "";
}

// A Keras 3 operation called on one tensor and a constant (keras.ops.true_divide(x, 127.5), as
// keras.applications' preprocess_input writes them into a Functional config): the constant and
// whether it came first, or null when the node is not of that form.
json constant_operand(const json& nodes) {
  if (!nodes.is_array() || nodes.size() != 1 || !nodes[0].is_object() || !nodes[0].contains("args")) return nullptr;
  const json& args = nodes[0]["args"];
  if (!args.is_array() || args.size() != 2) return nullptr;
  const auto is_tensor = [](const json& v) { return v.is_object() && v.value("class_name", "") == "__keras_tensor__"; };
  const auto is_constant = [](const json& v) {
    return v.is_number() || v.is_array() || (v.is_object() && v.value("class_name", "") == "__numpy__");
  };
  for (int first = 0; first < 2; ++first)
    if (is_constant(args[first]) && is_tensor(args[1 - first])) {
      const json& v = args[first];
      return {{"value", v.is_object() ? v.at("config").at("value") : v}, {"first", first == 0}};
    }
  return nullptr;
}

// The class a saved model is an instance of: configs say "Model" (tf.keras before 2.4) or
// "Functional" for the same Python class.
std::string saved_class_key(const std::string& cls) { return keras_snake_case(cls == "Model" ? "Functional" : cls); }

class Flattener {
 public:
  Flattener(const std::string& source, KerasModelSpec& spec) : source_(source), spec_(spec) {}

  // Adds the layers of `model` (a {"class_name", "config"} object). `inputs` are the flattened
  // names feeding it (none at top level, where its InputLayers declare the model's inputs).
  // Returns the names producing its outputs, in order. `group` is the top-level weight group
  // ("" at top).
  std::vector<std::string> add_model(const json& model, const std::vector<std::string>& inputs,
                                     const std::string& group) {
    const std::string cls = model.value("class_name", "");
    const json& config = model.at("config");
    if (cls == "Sequential") return {add_sequential(config, inputs, group)};
    if (cls == "Functional" || cls == "Model") return add_functional(config, inputs, group);
    fail(source_, ": model class '", cls, "' is not Sequential or Functional");
  }

 private:
  std::string where(const std::string& layer) const { return cat(source_, ": layer '", layer, "'"); }

  // The next layer of class `cls` in the model being added. Config order is Keras' layer order
  // (Functional.get_config lists the operations in the order its `layers` gives them).
  KerasSavedStep next_saved_step(const std::string& cls) {
    const std::string key = saved_class_key(cls);
    return {key, class_counts_.back()[key]++};
  }

  // A name that is unique in the flattened model (nested models may reuse inner names).
  std::string unique_name(const std::string& name, const std::string& group) {
    std::string n = name;
    if (used_.count(n)) n = group + "/" + name;
    for (int i = 2; used_.count(n); ++i) n = cat(group, "/", name, "_", i);
    used_.insert(n);
    return n;
  }

  void declare_input(const std::string& name, const std::vector<int>& shape) {
    if (used_.count(name)) fail(source_, ": two inputs are named '", name, "'");
    spec_.inputs.push_back({name, shape});
    used_.insert(name);
  }

  // Adds one ordinary or nested layer fed by `inputs`; returns its outputs' names (one for an
  // ordinary layer). `shares`: the index in spec_.layers of the layer's first call, for its
  // later calls (-1 for the first): those are named <name>_call<k> and read the first call's
  // weights. A nested model's later call adds its layers again, each sharing the weights of
  // the layer its first call added at the same position.
  std::vector<std::string> add_layer(const json& layer, const std::vector<std::string>& inputs,
                                     const std::string& group, int shares = -1, int call = 0) {
    const std::string cls = layer.value("class_name", "");
    const std::string name = layer_name(layer);
    if (cls.empty() || name.empty())
      fail(source_, ": a layer entry has no class_name or name: ", layer.dump().substr(0, 200));
    if (is_model_class(cls)) {
      // A nested model's first call is one entry of its container, its layers a container of
      // their own; later calls add nothing to the saved paths.
      const bool first = call == 0 && replay_.empty();
      if (first) saved_prefix_.push_back(next_saved_step(cls));
      class_counts_.emplace_back();
      nesting_.push_back(name);
      const int saved_call = nested_call_;
      nested_call_ = std::max(call, nested_call_);
      std::vector<std::string> out;
      if (call == 0) {
        std::vector<int>& added = nested_layers_[{group, name}];
        added.clear();
        recordings_.push_back(&added);
        out = add_model(layer, inputs, group.empty() ? name : group);
        recordings_.pop_back();
      } else {
        replay_.push_back({&nested_layers_.at({group, name}), 0});
        out = add_model(layer, inputs, group.empty() ? name : group);
        replay_.pop_back();
      }
      nested_call_ = saved_call;
      nesting_.pop_back();
      class_counts_.pop_back();
      if (first) saved_prefix_.pop_back();
      return out;
    }
    if (!replay_.empty()) {  // a nested model's later call: the same layer as its first call's
      auto& [added, next] = replay_.back();
      if (next >= added->size()) fail(where(name), ": a nested model's calls differ in their layers");
      shares = (*added)[next++];
      if (call == 0) call = nested_call_;
    }
    KerasLayerSpec l;
    l.name = unique_name(call == 0 ? name : cat(name, "_call", call), group);
    l.shares_weights_of = shares;
    l.class_name = cls;
    l.config = layer.value("config", json::object());
    l.inbound = inputs;
    l.weight_group = group.empty() ? name : group;
    l.weight_owner = name;
    if (shares < 0) {
      l.saved_path = saved_prefix_;
      l.saved_path.push_back(next_saved_step(cls));
    }
    if (l.config.is_object() && l.config.value("data_format", "") == "channels_first") spec_.channels_first = true;
    if (layer.contains("module") || layer.contains("build_config")) spec_.keras3 = true;
    spec_.layers.push_back(std::move(l));
    const int index = static_cast<int>(spec_.layers.size()) - 1;
    for (auto* r : recordings_) r->push_back(shares >= 0 ? shares : index);
    return {spec_.layers.back().name};
  }

  std::string add_sequential(const json& config, const std::vector<std::string>& inputs, const std::string& group) {
    const json& layers = config.is_array() ? config : config.at("layers");
    if (!layers.is_array()) fail(source_, ": Sequential config has no layer list");
    if (inputs.size() > 1) fail(source_, ": a nested Sequential model called on ", inputs.size(), " inputs");
    std::string current = inputs.empty() ? "" : inputs[0];
    bool first = true;
    for (const auto& layer : layers) {
      const std::string cls = layer.value("class_name", "");
      const json& lc = layer.value("config", json::object());
      if (cls == "InputLayer") {
        std::vector<int> shape;
        if (!declared_input_shape(lc, shape, where(layer_name(layer))))
          fail(where(layer_name(layer)), ": InputLayer without a shape");
        if (current.empty()) {
          declare_input(layer_name(layer), shape);
          current = layer_name(layer);
        }
        first = false;
        continue;
      }
      if (first && current.empty() && is_model_class(cls)) {
        // A nested model first: it declares the input itself.
        first = false;
        current = single(add_layer(layer, {}, group), layer_name(layer));
        continue;
      }
      if (first && current.empty()) {
        std::vector<int> shape;
        bool found = lc.is_object() && declared_input_shape(lc, shape, where(layer_name(layer)));
        if (!found && config.is_object() && config.contains("build_input_shape") &&
            !config["build_input_shape"].is_null()) {
          shape = shape_without_batch(config["build_input_shape"], source_ + ": build_input_shape");
          found = true;
        }
        if (!found)
          fail(source_,
               ": Sequential model declares no input shape (no InputLayer, batch_input_shape or build_input_shape)");
        declare_input(cat(layer_name(layer), "_input"), shape);
        current = spec_.inputs.back().name;
      }
      first = false;
      current = single(add_layer(layer, {current}, group), layer_name(layer));
    }
    if (current.empty() || (!inputs.empty() && current == inputs[0]))
      fail(source_, ": Sequential model has no layers");
    return current;
  }

  // The one output of a layer that a Sequential model chains.
  std::string single(const std::vector<std::string>& outputs, const std::string& layer) const {
    if (outputs.size() != 1) fail(where(layer), ": has ", outputs.size(), " outputs inside a Sequential model");
    return outputs[0];
  }

  std::vector<std::string> add_functional(const json& config, const std::vector<std::string>& inputs,
                                          const std::string& group) {
    const json& layers = config.at("layers");
    const bool top = inputs.empty();
    const std::vector<TensorRef> declared_inputs = tensor_refs(config.at("input_layers"));
    if (!top && declared_inputs.size() != inputs.size())
      fail(source_, ": nested model '", nesting_.back(), "' takes ", declared_inputs.size(), " input(s), called on ",
           inputs.size());
    // (Keras layer name, call, tensor) -> flattened name of that tensor.
    std::map<std::tuple<std::string, int, int>, std::string> produced;
    for (const auto& layer : layers) {
      const std::string cls = layer.value("class_name", "");
      const std::string name = layer_name(layer);
      const json nodes = layer.value("inbound_nodes", json::array());
      if (cls == "InputLayer") {
        std::size_t position = 0;
        while (position < declared_inputs.size() && declared_inputs[position].layer != name) ++position;
        if (top) {
          std::vector<int> shape;
          if (!declared_input_shape(layer.value("config", json::object()), shape, where(name)))
            fail(where(name), ": InputLayer without a shape");
          declare_input(name, shape);
          produced[{name, 0, 0}] = name;
        } else {
          if (position == declared_inputs.size())
            fail(where(name), ": an InputLayer that the nested model's input_layers do not list");
          produced[{name, 0, 0}] = inputs[position];
        }
        continue;
      }
      if (nodes.empty()) fail(where(name), ": has no inbound nodes");
      // One flattened layer per call; later calls share the first call's layer and weights.
      int first_call = -1;
      for (std::size_t call = 0; call < nodes.size(); ++call) {
        const json node = json::array({nodes[call]});
        std::vector<std::string> call_inputs;
        for (const auto& ref : call_tensor_refs(nodes[call], where(name))) {
          auto it = produced.find({ref.layer, ref.node, ref.tensor});
          if (it == produced.end())
            fail(where(name), ": reads '", ref.layer, "' (call ", ref.node, ", tensor ", ref.tensor,
                 "), which is not defined before it");
          call_inputs.push_back(it->second);
        }
        if (call_inputs.empty()) fail(where(name), ": call ", call, " has no input");
        // Attention of a tensor on itself (query, value and key alike) is self-attention.
        if (cls == "MultiHeadAttention" &&
            std::all_of(call_inputs.begin(), call_inputs.end(), [&](const auto& in) { return in == call_inputs[0]; }))
          call_inputs.resize(1);
        const json constant = constant_operand(node);
        json entry = layer;
        if (!constant.is_null() && call_inputs.size() == 1 && !is_model_class(cls)) {
          // Carried in the layer's config, where the layer table finds it.
          if (!entry.contains("config") || !entry["config"].is_object()) entry["config"] = json::object();
          entry["config"]["__constant_operand"] = constant;
        }
        const auto outputs = add_layer(entry, call_inputs, group, first_call, static_cast<int>(call));
        for (std::size_t t = 0; t < outputs.size(); ++t)
          produced[{name, static_cast<int>(call), static_cast<int>(t)}] = outputs[t];
        if (call == 0 && !is_model_class(cls)) first_call = static_cast<int>(spec_.layers.size()) - 1;
      }
    }
    std::vector<std::string> outputs;
    for (const auto& ref : tensor_refs(config.at("output_layers"))) {
      auto it = produced.find({ref.layer, ref.node, ref.tensor});
      if (it == produced.end())
        fail(source_, ": output '", ref.layer, "' (call ", ref.node, ", tensor ", ref.tensor,
             ") is not among the layers");
      outputs.push_back(it->second);
    }
    if (outputs.empty()) fail(source_, ": the model lists no output_layers");
    return outputs;
  }

  std::string source_;
  KerasModelSpec& spec_;
  std::set<std::string> used_;
  std::vector<std::string> nesting_;  // names of the nested models being added, outermost first
  std::vector<KerasSavedStep> saved_prefix_;                 // their saved steps, outermost first
  std::vector<std::map<std::string, int>> class_counts_{1};  // per model being added: layers per class
  // Nested models' first calls: (group, name) -> the layers added, each as the index of the
  // layer whose weights it holds; recorded while a first call adds them, replayed by later
  // calls, which number their layers' names with the nested call (nested_call_).
  std::map<std::pair<std::string, std::string>, std::vector<int>> nested_layers_;
  std::vector<std::vector<int>*> recordings_;
  std::vector<std::pair<std::vector<int>*, std::size_t>> replay_;
  int nested_call_ = 0;
};

}  // namespace

std::string keras_snake_case(const std::string& class_name) {
  static const std::regex non_word("[^A-Za-z0-9_]+"), word_start("(.)([A-Z][a-z]+)"), lower_upper("([a-z])([A-Z])");
  std::string s = std::regex_replace(class_name, non_word, "");
  s = std::regex_replace(s, word_start, "$1_$2");
  s = std::regex_replace(s, lower_upper, "$1_$2");
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

KerasModelSpec parse_keras_config(const json& config, const std::string& source, const std::string& keras_version) {
  KerasModelSpec spec;
  if (!config.is_object() || !config.contains("class_name") || !config.contains("config"))
    fail(source, ": model config has no class_name/config (not a Keras model config)");
  spec.keras3 = !keras_version.empty() && keras_version[0] == '3';
  try {
    spec.name = config["config"].is_object() ? config["config"].value("name", "model") : "model";
    Flattener flattener(source, spec);
    spec.outputs = flattener.add_model(config, {}, "");
  } catch (const json::exception& e) {
    fail(source, ": malformed model config: ", e.what());
  }
  if (spec.inputs.empty()) fail(source, ": model declares no input");
  return spec;
}

nlohmann::json yaml_to_json(const std::string& text, const std::string& source) {
  std::function<json(const YAML::Node&)> convert = [&](const YAML::Node& node) -> json {
    switch (node.Type()) {
      case YAML::NodeType::Null:
        return nullptr;
      case YAML::NodeType::Sequence: {
        json arr = json::array();
        for (const auto& item : node) arr.push_back(convert(item));
        return arr;
      }
      case YAML::NodeType::Map: {
        json obj = json::object();
        for (const auto& kv : node) obj[kv.first.as<std::string>()] = convert(kv.second);
        return obj;
      }
      case YAML::NodeType::Scalar: {
        const std::string& s = node.Scalar();
        if (node.Tag() == "!") return s;  // quoted: always a string
        if (s == "null" || s == "~") return nullptr;
        if (s == "true" || s == "True") return true;
        if (s == "false" || s == "False") return false;
        try {
          std::size_t used = 0;
          long long i = std::stoll(s, &used);
          if (used == s.size()) return i;
        } catch (...) {
        }
        try {
          std::size_t used = 0;
          double d = std::stod(s, &used);
          if (used == s.size()) return d;
        } catch (...) {
        }
        return s;
      }
      default:
        return nullptr;
    }
  };
  try {
    return convert(YAML::Load(text));
  } catch (const YAML::Exception& e) {
    fail(source, ": not valid YAML: ", e.what());
  }
}

nlohmann::json read_architecture_file(const std::string& path) {
  refuse_directory(path, "an architecture file");
  std::ifstream in(path);
  if (!in) fail(path, ": cannot open architecture file");
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  std::size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) fail(path, ": architecture file is empty");
  // A model file given where its architecture is wanted: said, not parsed as YAML.
  if (text.compare(0, 8, "\x89HDF\r\n\x1a\n") == 0)
    fail(path,
         ": is an HDF5 file (a Keras model or its weights), not an architecture file (JSON or YAML, as "
         "model.to_json() writes it)");
  if (text.compare(0, 4, "PK\x03\x04") == 0)
    fail(path,
         ": is a zip archive (a Keras 3 .keras model?), not an architecture file (JSON or YAML, as "
         "model.to_json() writes it)");
  if (text.find('\0') != std::string::npos) fail(path, ": is a binary file, not an architecture file (JSON or YAML)");
  if (text[first] == '[') fail(path, ": an architecture file is a JSON object ({...}), not an array");
  if (text[first] == '{') {
    try {
      return json::parse(text);
    } catch (const json::exception& e) {
      fail(path, ": not valid JSON: ", e.what());
    }
  }
  return yaml_to_json(text, path);
}

}  // namespace chorus::io
