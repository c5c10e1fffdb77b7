#!/usr/bin/env python3
"""A model as Keras 3's and tf.keras 2.13's saving library write it, and its outputs.

Usage: keras_saved_layout.py DIR

Writes, without Chorus and without Keras (h5py, numpy, zipfile), from a reading of Keras'
keras/src/saving/saving_lib.py:
  DIR/keras3.keras      Keras 3's model.save(): config.json in Keras 3's form (module,
                        registered_name, build_config, __keras_tensor__ inbound nodes),
                        metadata.json and model.weights.h5, stored
  DIR/keras3.weights.h5 Keras 3's model.save_weights(): the same weights file on its own
  DIR/config.json       the config of keras3.keras (model.to_json() writes the same object)
  DIR/tf213.keras       tf.keras 2.13's model.save("x.keras"): its config form (list inbound
                        nodes, batch_input_shape) and its weights layout
  DIR/x.npy, DIR/expected.npy  two frames and the model's outputs from numpy loops

Keras does not name a layer's group by the layer's name. _save_container_state walks a model's
`layers` and names each by its class in snake case, numbered per class in that order: the
model's first Conv2D is layers/conv2d, the second layers/conv2d_1, whatever they are called. A
nested model is layers/functional or layers/sequential, its own layers under .../layers/.
tf.keras 2.13 walked `_layer_checkpoint_dependencies` instead, a dict that lists each layer with
weights twice ("layer_with_weights-k" and "layer-i"); the counter advanced for both and the
second visit saved nothing, so its weighted layers are conv2d, conv2d_2, dense, dense_2, dense_4.

The layers are named so that a reader going by names, or by sorted names, takes the wrong
weights of the right shape: zeta_conv is conv2d and alpha_conv conv2d_1, fc_b dense and fc_a
dense_1.
"""
import io
import json
import sys
import zipfile

import h5py
import numpy as np

H, W, C = 6, 6, 4


def keras3_tensor(layer, shape):
    return {"class_name": "__keras_tensor__",
            "config": {"shape": shape, "dtype": "float32", "keras_history": [layer, 0, 0]}}


def keras3_layer(cls, name, config, inbound, input_shape):
    config = dict(config, name=name, trainable=True, dtype="float32")
    return {"module": "keras.layers", "class_name": cls, "config": config, "registered_name": None,
            "build_config": {"input_shape": input_shape}, "name": name,
            "inbound_nodes": [{"args": [keras3_tensor(inbound, input_shape)], "kwargs": {}}]}


def conv_config(filters, size, activation):
    return {"filters": filters, "kernel_size": [size, size], "strides": [1, 1], "padding": "same",
            "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1, "activation": activation,
            "use_bias": True}


def dense_config(units, activation):
    return {"units": units, "activation": activation, "use_bias": True}


# (class, name, config, input shape) in the model's layer order; the nested model separately.
IMAGE = [None, H, W, C]
LAYERS = [
    ("Rescaling", "rescale", {"scale": 0.5, "offset": 0.25}, IMAGE),
    ("Conv2D", "zeta_conv", conv_config(C, 3, "relu"), IMAGE),
    ("BatchNormalization", "norm", {"axis": -1, "momentum": 0.99, "epsilon": 0.001, "center": True,
                                    "scale": True}, IMAGE),
    ("Conv2D", "alpha_conv", conv_config(C, 3, "linear"), IMAGE),
    ("Sequential", "refine", None, IMAGE),
    ("GlobalAveragePooling2D", "pool", {"data_format": "channels_last", "keepdims": False}, IMAGE),
    ("Dense", "fc_b", dense_config(C, "relu"), [None, C]),
    ("Dense", "fc_a", dense_config(C, "linear"), [None, C]),
    ("Dense", "predictions", dense_config(3, "softmax"), [None, C]),
]
NESTED = ("Conv2D", "refine_conv", conv_config(C, 1, "relu"), IMAGE)


def keras3_config():
    layers = [{"module": "keras.layers", "class_name": "InputLayer", "registered_name": None, "name": "image",
               "config": {"batch_shape": IMAGE, "dtype": "float32", "sparse": False, "name": "image"},
               "inbound_nodes": []}]
    previous = "image"
    for cls, name, config, shape in LAYERS:
        if cls == "Sequential":
            ncls, nname, nconfig, nshape = NESTED
            nested = keras3_layer(ncls, nname, nconfig, None, nshape)
            del nested["inbound_nodes"], nested["name"]
            layers.append({"module": "keras", "class_name": "Sequential", "registered_name": None, "name": name,
                           "config": {"name": name, "trainable": True, "layers": [
                               {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
                                "config": {"batch_shape": IMAGE, "dtype": "float32", "sparse": False,
                                           "name": "refine_input"}},
                               nested], "build_input_shape": IMAGE},
                           "build_config": {"input_shape": IMAGE},
                           "inbound_nodes": [{"args": [keras3_tensor(previous, shape)], "kwargs": {"mask": None}}]})
        else:
            layers.append(keras3_layer(cls, name, config, previous, shape))
        previous = name
    return {"module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional",
            "config": {"name": "classifier", "trainable": True, "layers": layers,
                       "input_layers": [["image", 0, 0]], "output_layers": [["predictions", 0, 0]]},
            "build_config": {"input_shape": None}}


def tf213_config():
    def entry(cls, name, config):
        return {"module": "keras.layers", "class_name": cls, "registered_name": None,
                "config": dict(config, name=name, trainable=True, dtype="float32")}

    layers = [dict(entry("InputLayer", "image", {"batch_input_shape": IMAGE, "sparse": False, "ragged": False}),
                   name="image", inbound_nodes=[])]
    previous = "image"
    for cls, name, config, shape in LAYERS:
        if cls == "Sequential":
            ncls, nname, nconfig, _ = NESTED
            layer = {"module": "keras", "class_name": "Sequential", "registered_name": None,
                     "config": {"name": name, "layers": [
                         entry("InputLayer", "refine_input", {"batch_input_shape": IMAGE}),
                         entry(ncls, nname, nconfig)]}}
        else:
            layer = entry(cls, name, config)
        layer.update(name=name, inbound_nodes=[[[previous, 0, 0, {}]]])
        layers.append(layer)
        previous = name
    return {"module": "keras.engine.functional", "class_name": "Functional", "registered_name": None,
            "config": {"name": "classifier", "layers": layers, "input_layers": [["image", 0, 0]],
                       "output_layers": [["predictions", 0, 0]]}}


def random_weights(rng):
    weights = {}
    for cls, name, config, shape in LAYERS + [NESTED]:
        if cls == "Conv2D":
            k = config["kernel_size"][0]
            weights[name] = [rng.standard_normal((k, k, C, config["filters"])).astype(np.float32) * 0.4,
                             rng.standard_normal(config["filters"]).astype(np.float32) * 0.1]
        elif cls == "BatchNormalization":  # gamma, beta, moving mean, moving variance
            weights[name] = [rng.uniform(0.5, 1.5, C).astype(np.float32), rng.standard_normal(C).astype(np.float32),
                             rng.standard_normal(C).astype(np.float32), rng.uniform(0.5, 2.0, C).astype(np.float32)]
        elif cls == "Dense":
            weights[name] = [rng.standard_normal((shape[-1], config["units"])).astype(np.float32),
                             rng.standard_normal(config["units"]).astype(np.float32) * 0.1]
        else:
            weights[name] = []
    return weights


def conv_same(x, kernel, bias):
    k = kernel.shape[0]
    p = k // 2
    padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    out = np.zeros(x.shape[:3] + (kernel.shape[3],))
    for y in range(x.shape[1]):
        for xx in range(x.shape[2]):
            window = padded[:, y:y + k, xx:xx + k, :]  # (n, k, k, c)
            out[:, y, xx, :] = np.tensordot(window, kernel.astype(np.float64), axes=([1, 2, 3], [0, 1, 2]))
    return out + bias


def activate(x, name):
    if name == "relu":
        return np.maximum(x, 0)
    if name == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return x


def forward(x, weights):
    x = x.astype(np.float64)
    for cls, name, config, _ in LAYERS:
        w = weights[name]
        if cls == "Rescaling":
            x = x * config["scale"] + config["offset"]
        elif cls == "Conv2D":
            x = activate(conv_same(x, *w), config["activation"])
        elif cls == "BatchNormalization":
            gamma, beta, mean, var = (v.astype(np.float64) for v in w)
            x = gamma * (x - mean) / np.sqrt(var + config["epsilon"]) + beta
        elif cls == "Sequential":
            ncls, nname, nconfig, _ = NESTED
            x = activate(conv_same(x, *weights[nname]), nconfig["activation"])
        elif cls == "GlobalAveragePooling2D":
            x = x.mean(axis=(1, 2))
        elif cls == "Dense":
            x = activate(x @ w[0].astype(np.float64) + w[1], config["activation"])
    return x


# Keras' snake-case names of these classes (keras.utils' to_snake_case), as real files show them.
SNAKE = {"InputLayer": "input_layer", "Rescaling": "rescaling", "Conv2D": "conv2d",
         "BatchNormalization": "batch_normalization", "Sequential": "sequential",
         "GlobalAveragePooling2D": "global_average_pooling2d", "Dense": "dense"}


def saved_names(entries, doubled):
    """Keras' group names for a model's layers, [(class, has_weights)] in layer order: one name
    per layer. `doubled`: tf.keras 2.13, where a layer with weights took two numbers."""
    used, names = {}, []
    for cls, has_weights in entries:
        key = SNAKE[cls]
        for visit in range(2 if doubled and has_weights else 1):
            name = key if key not in used else f"{key}_{used[key] + 1}"
            used[key] = used.get(key, -1) + 1
            if visit == 0:
                names.append(name)
    return names


def write_layers(f, container, entries, root, doubled):
    """One model's layers under `container`: entries [(class, variables, nested entries or
    None)] in the model's layer order; a nested model's under <its group>/<root>/."""
    has = [(cls, bool(variables) or nested is not None) for cls, variables, nested in entries]
    for (cls, variables, nested), saved in zip(entries, saved_names(has, doubled)):
        group = f.create_group(f"{container}/{saved}/vars")
        for i, value in enumerate(variables):
            group[str(i)] = value
        if nested is not None:
            write_layers(f, f"{container}/{saved}/{root}", nested, root, doubled)


def h5_image(entries, root, doubled):
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_group("vars")  # the model's own, empty
        write_layers(f, root, entries, root, doubled)
    return buffer.getvalue()


def classifier_entries(weights):
    # Functional's layers include its InputLayer; a Sequential's do not.
    entries = [("InputLayer", [], None)]
    for cls, name, _, _ in LAYERS:
        nested = [(NESTED[0], weights[NESTED[1]], None)] if cls == "Sequential" else None
        entries.append((cls, weights[name], nested))
    return entries


def write_archive(path, config, version, weights_file):
    with zipfile.ZipFile(path, "w") as z:  # as Keras does: JSON deflated, weights stored
        z.writestr("metadata.json", json.dumps({"keras_version": version, "date_saved": "2026-12-07@07:00:00"}),
                   zipfile.ZIP_DEFLATED)
        z.writestr("config.json", json.dumps(config), zipfile.ZIP_DEFLATED)
        z.writestr("model.weights.h5", weights_file, zipfile.ZIP_STORED)


def main(out):
    rng = np.random.default_rng(2026)
    weights = random_weights(rng)
    x = rng.standard_normal((2, H, W, C)).astype(np.float32)
    assert saved_names([("Conv2D", True), ("Conv2D", True), ("Dense", True)], False) == ["conv2d", "conv2d_1", "dense"]
    assert saved_names([("BatchNormalization", True), ("Conv2D", True), ("Conv2D", True)], True) == \
        ["batch_normalization", "conv2d", "conv2d_2"]
    entries = classifier_entries(weights)
    write_archive(f"{out}/keras3.keras", keras3_config(), "3.6.0", h5_image(entries, "layers", False))
    with open(f"{out}/keras3.weights.h5", "wb") as f:
        f.write(h5_image(entries, "layers", False))
    with open(f"{out}/config.json", "w") as f:
        json.dump(keras3_config(), f)
    write_archive(f"{out}/tf213.keras", tf213_config(), "2.13.1",
                  h5_image(entries, "_layer_checkpoint_dependencies", True))
    np.save(f"{out}/x.npy", x)
    np.save(f"{out}/expected.npy", forward(x, weights).astype(np.float32))


if __name__ == "__main__":
    main(sys.argv[1])
