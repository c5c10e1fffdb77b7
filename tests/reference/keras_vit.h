#pragma once
// A small Keras ViT (patch embedding, one encoder block with attention of 3 heads and a GELU
// MLP, pooling and a softmax head) on 16x16x3 images, in Keras 2's config form: MultiHeadAttention
// reads its value as a keyword argument. Tests write it with random weights.

namespace chorus::test {

inline constexpr const char* kKerasVitConfig = R"({"class_name": "Functional", "config": {"name": "vit", "layers": [
 {"class_name": "InputLayer", "name": "img", "config": {"name": "img", "batch_input_shape": [null, 16, 16, 3]}, "inbound_nodes": []},
 {"class_name": "Conv2D", "name": "patches", "config": {"name": "patches", "filters": 24, "kernel_size": [4, 4], "strides": [4, 4], "padding": "valid"}, "inbound_nodes": [[["img", 0, 0, {}]]]},
 {"class_name": "Reshape", "name": "tokens", "config": {"name": "tokens", "target_shape": [16, 24]}, "inbound_nodes": [[["patches", 0, 0, {}]]]},
 {"class_name": "LayerNormalization", "name": "ln1", "config": {"name": "ln1", "axis": [2], "epsilon": 1e-6}, "inbound_nodes": [[["tokens", 0, 0, {}]]]},
 {"class_name": "MultiHeadAttention", "name": "mha", "config": {"name": "mha", "num_heads": 3, "key_dim": 8, "value_dim": null, "dropout": 0.1, "use_bias": true, "output_shape": null, "attention_axes": null},
  "inbound_nodes": [[["ln1", 0, 0, {"value": ["ln1", 0, 0]}]]]},
 {"class_name": "Add", "name": "add1", "config": {"name": "add1"}, "inbound_nodes": [[["tokens", 0, 0, {}], ["mha", 0, 0, {}]]]},
 {"class_name": "LayerNormalization", "name": "ln2", "config": {"name": "ln2", "axis": -1, "epsilon": 1e-6}, "inbound_nodes": [[["add1", 0, 0, {}]]]},
 {"class_name": "Dense", "name": "mlp1", "config": {"name": "mlp1", "units": 48, "activation": "gelu"}, "inbound_nodes": [[["ln2", 0, 0, {}]]]},
 {"class_name": "Dropout", "name": "drop", "config": {"name": "drop", "rate": 0.1}, "inbound_nodes": [[["mlp1", 0, 0, {}]]]},
 {"class_name": "Dense", "name": "mlp2", "config": {"name": "mlp2", "units": 24}, "inbound_nodes": [[["drop", 0, 0, {}]]]},
 {"class_name": "Add", "name": "add2", "config": {"name": "add2"}, "inbound_nodes": [[["add1", 0, 0, {}], ["mlp2", 0, 0, {}]]]},
 {"class_name": "LayerNormalization", "name": "ln3", "config": {"name": "ln3", "epsilon": 1e-6}, "inbound_nodes": [[["add2", 0, 0, {}]]]},
 {"class_name": "GlobalAveragePooling1D", "name": "pool", "config": {"name": "pool", "data_format": "channels_last"}, "inbound_nodes": [[["ln3", 0, 0, {}]]]},
 {"class_name": "Dense", "name": "head", "config": {"name": "head", "units": 5, "activation": "softmax"}, "inbound_nodes": [[["pool", 0, 0, {}]]]}],
 "input_layers": [["img", 0, 0]], "output_layers": [["head", 0, 0]]}})";

}  // namespace chorus::test
