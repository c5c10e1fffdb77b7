#!/usr/bin/env python3
"""A Keras 2.0.5 model as `model.save_weights()` and `model.to_yaml()` wrote it, and its outputs.

Usage: keras20_flatten.py DIR

Writes, without Chorus and without Keras (h5py, numpy):
  DIR/weights.h5   weights-only HDF5 in Keras 2.0's layout: root attributes layer_names,
                   backend and keras_version 2.0.5; one group per layer with weight_names, and
                   each weight at <layer>/<layer>/<name>:0
  DIR/arch.yaml    the architecture as to_yaml() wrote it in Keras 2.0: a Sequential whose config
                   is the list of its layers, channels_first convolutions, and a Flatten whose
                   config has no data_format (Keras 2.0 flattened its input in memory order, so
                   after channels_first layers the features come out in (c, h, w) order)
  DIR/x.npy        two frames, NCHW as the model takes them
  DIR/expected.npy the model's outputs, computed here with numpy loops in Keras 2.0's order

This is the form of the issue's MNIST file (Keras 2.0.5, YAML, weights only, channels_first),
which Chorus loaded and then classified 7 % right by flattening in (h, w, c) order.
"""
import sys

import h5py
import numpy as np

C, H, W, FILTERS, UNITS = 2, 5, 6, 4, 3

YAML = """backend: tensorflow
class_name: Sequential
config:
- class_name: Conv2D
  config:
    activation: relu
    activity_regularizer: null
    batch_input_shape: !!python/tuple [null, 2, 5, 6]
    bias_constraint: null
    bias_initializer:
      class_name: Zeros
      config: {}
    bias_regularizer: null
    data_format: channels_first
    dilation_rate: !!python/tuple [1, 1]
    dtype: float32
    filters: 4
    kernel_constraint: null
    kernel_initializer:
      class_name: VarianceScaling
      config: {distribution: uniform, mode: fan_avg, scale: 1.0, seed: null}
    kernel_regularizer: null
    kernel_size: !!python/tuple [3, 3]
    name: conv2d_1
    padding: same
    strides: !!python/tuple [1, 1]
    trainable: true
    use_bias: true
- class_name: Flatten
  config: {name: flatten_1, trainable: true}
- class_name: Dense
  config:
    activation: linear
    activity_regularizer: null
    bias_constraint: null
    bias_initializer:
      class_name: Zeros
      config: {}
    bias_regularizer: null
    kernel_constraint: null
    kernel_initializer:
      class_name: VarianceScaling
      config: {distribution: uniform, mode: fan_avg, scale: 1.0, seed: null}
    kernel_regularizer: null
    name: dense_1
    trainable: true
    units: 3
    use_bias: true
keras_version: 2.0.5
"""


def main(out):
    rng = np.random.default_rng(20)
    kernel = rng.standard_normal((3, 3, C, FILTERS)).astype(np.float32)  # Keras' (kh, kw, in, out)
    bias = rng.standard_normal(FILTERS).astype(np.float32)
    dense_kernel = rng.standard_normal((FILTERS * H * W, UNITS)).astype(np.float32)
    dense_bias = rng.standard_normal(UNITS).astype(np.float32)
    x = rng.standard_normal((2, C, H, W)).astype(np.float32)

    # The convolution, 'same' padding, NCHW, then ReLU.
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    conv = np.zeros((2, FILTERS, H, W), np.float64)
    for n in range(2):
        for f in range(FILTERS):
            for y in range(H):
                for xx in range(W):
                    window = padded[n, :, y:y + 3, xx:xx + 3]  # (C, 3, 3)
                    conv[n, f, y, xx] = bias[f] + np.sum(window * kernel[:, :, :, f].transpose(2, 0, 1))
    conv = np.maximum(conv, 0)
    features = conv.reshape(2, -1)  # Keras 2.0's Flatten: memory order, (c, h, w)
    expected = features @ dense_kernel.astype(np.float64) + dense_bias

    with h5py.File(f"{out}/weights.h5", "w") as f:
        layers = {"conv2d_1": [("kernel:0", kernel), ("bias:0", bias)], "flatten_1": [],
                  "dense_1": [("kernel:0", dense_kernel), ("bias:0", dense_bias)]}
        f.attrs["layer_names"] = [name.encode() for name in layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.0.5"
        for name, weights in layers.items():
            g = f.create_group(name)
            g.attrs["weight_names"] = [f"{name}/{w}".encode() for w, _ in weights]
            for w, value in weights:
                g.create_dataset(f"{name}/{w}", data=value)
    with open(f"{out}/arch.yaml", "w") as f:
        f.write(YAML)
    np.save(f"{out}/x.npy", x)
    np.save(f"{out}/expected.npy", expected.astype(np.float32))


if __name__ == "__main__":
    main(sys.argv[1])
