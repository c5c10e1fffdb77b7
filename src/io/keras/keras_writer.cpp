#include "io/keras/keras_writer.h"

#include "io/keras/keras_archive.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

#include "core/error.h"
#include "core/random.h"
#include "io/hdf5/hdf5_file.h"
#include "io/keras/keras_archive.h"
#include "io/keras/keras_model.h"
#include "io/keras/zip_archive.h"

namespace chorus::io {

using nlohmann::json;

namespace {

std::uint64_t name_hash(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace

void write_keras_h5(const std::string& path, const json& config, const KerasModelSpec& spec, const model::Model& model,
                    const std::vector<layers::WeightMap>& weights, KerasLayout layout) {
  CHORUS_ASSERT(weights.size() == spec.layers.size() && model.nodes().size() == spec.layers.size());
  H5File file(path, H5File::Mode::create);
  const bool keras3 = layout == KerasLayout::keras3;
  std::string root = "/";
  if (layout != KerasLayout::weights_only) {
    file.write_string_attribute("/", "model_config", config.dump());
    file.write_string_attribute("/", "keras_version", keras3 ? "3.3.3" : "2.15.0");
    file.write_string_attribute("/", "backend", "tensorflow");
    file.create_group("/model_weights");
    root = "/model_weights/";
  }
  // Top-level groups in model order; a nested model's layers share their top-level group.
  std::vector<std::string> groups;
  std::map<std::string, std::vector<std::string>> weight_names;
  for (std::size_t i = 0; i < spec.layers.size(); ++i) {
    const auto& l = spec.layers[i];
    if (l.shares_weights_of >= 0) continue;  // a shared layer's weights are written with its first call
    if (std::find(groups.begin(), groups.end(), l.weight_group) == groups.end()) groups.push_back(l.weight_group);
    file.create_group(root + l.weight_group);
    for (const auto& w : model.nodes()[i].layer->weight_specs()) {
      auto it = weights[i].find(w.name);
      CHORUS_ASSERT(it != weights[i].end() && it->second.size() == w.count(), "weight ", w.name, " of ", l.name);
      // tf.keras names variables "<layer>/<weight>:0"; Keras 3 uses "<model>/<layer>/<weight>".
      std::string rel = keras3 ? spec.name + "/" + l.weight_owner + "/" + w.name : l.weight_owner + "/" + w.name + ":0";
      weight_names[l.weight_group].push_back(rel);
      file.write_floats(root + l.weight_group + "/" + rel, std::vector<std::int64_t>(w.shape.begin(), w.shape.end()),
                        it->second.data());
    }
  }
  for (const auto& g : groups) file.write_string_list_attribute(root + g, "weight_names", weight_names[g]);
  file.write_string_list_attribute(root, "layer_names", groups);
  if (layout == KerasLayout::weights_only) {
    file.write_string_attribute("/", "keras_version", "2.15.0");
    file.write_string_attribute("/", "backend", "tensorflow");
  } else {
    file.write_string_attribute(root, "keras_version", keras3 ? "3.3.3" : "2.15.0");
    file.write_string_attribute(root, "backend", "tensorflow");
  }
}

void write_keras_archive(const std::string& path, const json& config, const KerasModelSpec& spec,
                         const model::Model& model, const std::vector<layers::WeightMap>& weights,
                         bool deflate_weights) {
  CHORUS_ASSERT(weights.size() == spec.layers.size() && model.nodes().size() == spec.layers.size());
  // The weights file is written beside the archive, then packed into it.
  const std::string h5_path = path + ".weights.h5.partial";
  {
    H5File file(h5_path, H5File::Mode::create);
    file.create_group("/layers");
    for (std::size_t i = 0; i < spec.layers.size(); ++i) {
      const auto& l = spec.layers[i];
      const auto specs = model.nodes()[i].layer->weight_specs();
      if (l.shares_weights_of >= 0) continue;  // written with its first call
      // Keras' names: by class, numbered in each model's layer order (layers/dense_1).
      std::string group = "/layers";
      for (std::size_t s = 0; s < l.saved_path.size(); ++s) {
        if (s > 0) group += "/layers";
        if (!file.is_group(group)) file.create_group(group);
        const KerasSavedStep& step = l.saved_path[s];
        group += "/" + step.class_key + (step.ordinal > 0 ? "_" + std::to_string(step.ordinal) : "");
        if (!file.is_group(group)) file.create_group(group);
      }
      file.create_group(group + "/vars");
      for (std::size_t k = 0, own = 0; k < specs.size(); ++k) {
        const auto& w = specs[k];
        auto it = weights[i].find(w.name);
        CHORUS_ASSERT(it != weights[i].end() && it->second.size() == w.count(), "weight ", w.name, " of ", l.name);
        // A sublayer's weights go under its own name, as Keras 3 saves MultiHeadAttention's.
        const std::string at = w.name.find('/') != std::string::npos ? keras3_sublayer_variable(w.name)
                                                                     : "vars/" + std::to_string(own++);
        file.write_floats(group + "/" + at, std::vector<std::int64_t>(w.shape.begin(), w.shape.end()),
                          it->second.data());
      }
    }
  }
  std::vector<char> h5;
  {
    std::FILE* in = std::fopen(h5_path.c_str(), "rb");
    if (!in) fail(h5_path, ": cannot read back");
    char buffer[1 << 16];
    for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, in)) > 0;) h5.insert(h5.end(), buffer, buffer + n);
    std::fclose(in);
    std::remove(h5_path.c_str());
  }
  const auto text = [](const json& j) {
    const std::string s = j.dump();
    return std::vector<char>(s.begin(), s.end());
  };
  ZipWriter zip(path);
  zip.add("metadata.json", text({{"keras_version", "3.3.3"}, {"date_saved", "2026-12-04@00:00:00"}}), true);
  zip.add("config.json", text(config), true);
  zip.add("model.weights.h5", h5, deflate_weights);
  zip.finish();
}

std::vector<layers::WeightMap> random_keras_weights(const model::Model& model, const KerasModelSpec& spec,
                                                    std::uint64_t seed) {
  std::vector<layers::WeightMap> out(model.nodes().size());
  for (std::size_t i = 0; i < model.nodes().size(); ++i) {
    const auto& layer = *model.nodes()[i].layer;
    Rng rng(seed ^ name_hash(spec.layers.at(i).name));
    for (const auto& w : layer.weight_specs()) {
      std::vector<float> values(w.count());
      const bool sublayer_kernel = w.name.size() > 7 && w.name.compare(w.name.size() - 7, 7, "/kernel") == 0;
      if (w.name == "kernel" || w.name == "depthwise_kernel" || w.name == "pointwise_kernel" || sublayer_kernel) {
        // He-uniform over the fan-in keeps activations at a steady scale through deep relu nets.
        std::size_t fan_in = 1;
        for (std::size_t d = 0; d + 1 < w.shape.size(); ++d) fan_in *= w.shape[d];
        if (w.name == "depthwise_kernel") fan_in = static_cast<std::size_t>(w.shape[0]) * w.shape[1];
        const float limit = std::sqrt(6.0f / static_cast<float>(std::max<std::size_t>(fan_in, 1)));
        for (auto& v : values) v = rng.uniform(-limit, limit);
      } else if (w.name == "gamma" || w.name == "moving_variance" || w.name == "variance") {
        for (auto& v : values) v = rng.uniform(0.8f, 1.2f);
      } else {
        for (auto& v : values) v = rng.uniform(-0.1f, 0.1f);
      }
      out[i][w.name] = std::move(values);
    }
  }
  return out;
}

void init_keras_weights(const std::string& arch_path, std::uint64_t seed, const std::string& out_path) {
  json config = read_architecture_file(arch_path);
  KerasModelSpec spec = parse_keras_config(config, arch_path);
  model::Model m = build_keras_model(spec, arch_path);
  refuse_directory(out_path, "a file to write");
  const std::filesystem::path out(out_path);
  const std::filesystem::path folder = out.has_parent_path() ? out.parent_path() : ".";
  if (!std::filesystem::is_directory(folder)) fail(out_path, ": its folder ", folder.string(), " does not exist");
  // Written beside it and renamed when whole: a write that fails (a full disk) leaves the file
  // that was there, and no half-written one under its name.
  std::filesystem::path partial = out;
  partial.replace_extension(".partial" + out.extension().string());
  std::string why;
  try {
    if (out.extension() == ".keras")
      write_keras_archive(partial.string(), config, spec, m, random_keras_weights(m, spec, seed));
    else
      write_keras_h5(partial.string(), config, spec, m, random_keras_weights(m, spec, seed));
    std::filesystem::rename(partial, out);
    return;
  } catch (const Error& e) {
    why = e.what();
  } catch (const std::filesystem::filesystem_error& e) {
    why = e.code().message();
  }
  std::error_code ignored;  // what is left of the attempt goes; the old file stays
  std::filesystem::remove(partial, ignored);
  std::filesystem::remove(partial.string() + ".weights.h5.partial", ignored);
  fail(out_path, ": not written: ", why);
}

}  // namespace chorus::io
