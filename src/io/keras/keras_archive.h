#pragma once
// Keras 3's native format (model.save("model.keras")): a zip archive of config.json (the model
// config), metadata.json (keras_version) and model.weights.h5, where each layer's variables are
// stored by position under a name made from its class, numbered in its model's layer order
// (layers/conv2d, layers/conv2d_1, ..., whatever the layers are called; a nested model's under
// layers/functional/layers/...; tf.keras 2.13-2.15 wrote _layer_checkpoint_dependencies/ for
// layers/). Position i is the layer's i-th weight in Keras' own order, which
// Layer::weight_specs() follows.
//
// The weights file is read where it lies in the archive when it is stored (as Keras writes
// it): mapped, never unpacked to disk or copied, so a rank touches only its own layers' pages.
// A deflated one is inflated into memory first, which costs its whole size on every rank.
#include <memory>
#include <string>

#include "io/keras/keras_model.h"
#include "io/weight_reader.h"

namespace chorus::io {

// Where Keras 3 keeps a sublayer's weight inside its layer's group: "query/kernel" of
// MultiHeadAttention is "query_dense/vars/0".
std::string keras3_sublayer_variable(const std::string& weight);

// By name: ".keras".
bool is_keras_archive(const std::string& path);

// Keras 3's model.save_weights("x.weights.h5"): an archive's model.weights.h5 on its own (a
// layers/ or _layer_checkpoint_dependencies/ group, none of Keras 2's layer_names).
class H5File;
bool is_keras3_weights_file(const H5File& file);

enum class KerasWeightsSource {
  archive,       // a .keras archive's model.weights.h5
  weights_file,  // the same layout as a file of its own, with the config from --arch
};

// The graph of a .keras file, optimised if asked, without weights.
KerasModelStructure load_keras_archive_structure(const std::string& path, bool optimize);

class KerasArchiveWeightReader : public WeightReader {
 public:
  // `spec` (from load_keras_archive_structure, or the --arch config of a weights file) must
  // outlive the reader.
  KerasArchiveWeightReader(const std::string& path, const KerasModelSpec& spec,
                           KerasWeightsSource source = KerasWeightsSource::archive);
  ~KerasArchiveWeightReader() override;
  std::vector<float> read(int source, const layers::WeightSpec& wanted, WeightSlice slice = {}) override;
  const std::string& path() const override;
  // Whether the weights are read in place (a stored member) or were inflated into memory.
  bool weights_in_place() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chorus::io
