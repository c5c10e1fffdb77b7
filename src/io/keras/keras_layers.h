#pragma once
// The table from Keras layer class names to Chorus layers: reads each layer's Keras config
// into its typed settings. Unknown classes and unsupported options fail with the layer's name.
#include <memory>
#include <string>
#include <vector>

#include "io/keras/keras_config.h"
#include "layers/layer.h"

namespace chorus::io {

// What a layer factory needs besides the layer's own config.
struct KerasLayerContext {
  std::string source;  // file name, for messages
  bool channels_first = false;
  bool keras3 = false;
  int input_rank = 4;  // Keras rank of the (first) input tensor, batch axis included
};

// Makes the Chorus layer for a Keras layer spec; throws chorus::Error for unknown classes
// (listing the supported ones) and unsupported options.
std::unique_ptr<layers::Layer> make_keras_layer(const KerasLayerSpec& spec, const KerasLayerContext& context);

// Keras rank of the layer's output tensor (batch axis included), given its input's rank.
int keras_output_rank(const KerasLayerSpec& spec, int input_rank);

// Keras class names make_keras_layer accepts.
std::vector<std::string> supported_keras_layers();

}  // namespace chorus::io
