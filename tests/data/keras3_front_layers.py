#!/usr/bin/env python3
"""A Keras 3 .keras model of the layers Keras 3 models carry, and PyTorch's outputs for it.

Usage: keras3_front_layers.py DIR

Writes, without Chorus and without Keras (h5py, zipfile, PyTorch for the outputs), in the layout
of keras_saved_layout.py (Keras 3's model.save()):
  DIR/front.keras                 the model below
  DIR/front_image.npy, DIR/front_meta.npy          its two inputs, three frames
  DIR/front_class_head.npy, DIR/front_value_head.npy  its two outputs, from PyTorch

The model, as a transfer-learning model saves it in Keras 3: two inputs (an image and a vector);
augmentation layers (identity at inference); Resizing (bilinear) and CenterCrop to fixed sizes;
the operation nodes keras.applications' preprocess_input writes (x / 127.5 - 1); Rescaling;
an adapted Normalization (mean, variance and count as variables); a nested Functional base
(convolution, depthwise convolution, batch norm, ReLU6, projection, residual Add); pooling; a
Dense layer shared by the pooled features and the vector input; two output heads.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from keras_saved_layout import SNAKE, h5_image, write_archive  # noqa: E402

SNAKE.update({"RandomFlip": "random_flip", "RandomRotation": "random_rotation", "RandomZoom": "random_zoom",
              "RandomContrast": "random_contrast", "Resizing": "resizing", "CenterCrop": "center_crop",
              "Normalization": "normalization", "Functional": "functional", "DepthwiseConv2D": "depthwise_conv2d",
              "ReLU": "re_lu", "Add": "add"})

H, W, C, META = 10, 12, 3, 4
FRAMES = 3


def tensor(layer, call=0):
    return {"class_name": "__keras_tensor__", "config": {"shape": None, "dtype": "float32",
                                                          "keras_history": [layer, call, 0]}}


def layer(cls, name, config, *calls, module="keras.layers"):
    """A config entry; each call is the list of its positional args."""
    return {"module": module, "class_name": cls, "registered_name": None, "name": name,
            "config": dict(config, name=name, trainable=True, dtype="float32"),
            "inbound_nodes": [{"args": args, "kwargs": {}} for args in calls]}


def operation(cls, name, args):
    return {"module": "keras.src.ops.numpy", "class_name": cls, "registered_name": cls, "name": name,
            "config": {"name": name}, "inbound_nodes": [{"args": args, "kwargs": {}}]}


def input_layer(name, shape):
    return {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None, "name": name,
            "config": {"batch_shape": [None] + shape, "dtype": "float32", "sparse": False, "name": name},
            "inbound_nodes": []}


def conv(filters, size):
    return {"filters": filters, "kernel_size": [size, size], "strides": [1, 1], "padding": "same",
            "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1, "activation": "relu",
            "use_bias": True}


def config():
    base = {"module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional",
            "name": "base", "inbound_nodes": [{"args": [tensor("norm")], "kwargs": {}}],
            "config": {"name": "base", "trainable": True, "layers": [
                input_layer("base_in", [6, 8, C]),
                layer("Conv2D", "stem", conv(4, 3), [tensor("base_in")]),
                layer("DepthwiseConv2D", "dw", {"kernel_size": [3, 3], "strides": [1, 1], "padding": "same",
                                                "depth_multiplier": 1, "activation": "linear", "use_bias": True,
                                                "dilation_rate": [1, 1], "data_format": "channels_last"},
                      [tensor("stem")]),
                layer("BatchNormalization", "dw_bn", {"axis": -1, "momentum": 0.99, "epsilon": 0.001,
                                                      "center": True, "scale": True}, [tensor("dw")]),
                layer("ReLU", "dw_relu", {"max_value": 6.0, "negative_slope": 0.0, "threshold": 0.0},
                      [tensor("dw_bn")]),
                layer("Conv2D", "project", dict(conv(4, 1), activation="linear"), [tensor("dw_relu")]),
                layer("Add", "residual", {}, [[tensor("stem"), tensor("project")]])],
                "input_layers": [["base_in", 0, 0]], "output_layers": [["residual", 0, 0]]}}
    layers = [
        input_layer("image", [H, W, C]),
        input_layer("meta", [META]),
        layer("RandomFlip", "augment_flip", {"mode": "horizontal", "seed": None}, [tensor("image")]),
        layer("RandomRotation", "augment_rotate", {"factor": 0.1, "fill_mode": "reflect"}, [tensor("augment_flip")]),
        layer("RandomZoom", "augment_zoom", {"height_factor": 0.1}, [tensor("augment_rotate")]),
        layer("RandomContrast", "augment_contrast", {"factor": 0.2}, [tensor("augment_zoom")]),
        layer("Resizing", "resize", {"height": 8, "width": 10, "interpolation": "bilinear",
                                     "crop_to_aspect_ratio": False, "pad_to_aspect_ratio": False,
                                     "fill_mode": "constant", "fill_value": 0.0}, [tensor("augment_contrast")]),
        layer("CenterCrop", "crop", {"height": 6, "width": 8}, [tensor("resize")]),
        operation("TrueDivide", "true_divide", [tensor("crop"), 127.5]),
        operation("Subtract", "subtract", [tensor("true_divide"), 1.0]),
        layer("Rescaling", "rescale", {"scale": 2.0, "offset": 0.5}, [tensor("subtract")]),
        layer("Normalization", "norm", {"axis": -1, "mean": None, "variance": None, "invert": False},
              [tensor("rescale")]),
        base,
        layer("GlobalAveragePooling2D", "pool", {"data_format": "channels_last", "keepdims": False},
              [tensor("base")]),
        layer("Dense", "proj", {"units": 4, "activation": "tanh", "use_bias": True}, [tensor("pool")],
              [tensor("meta")]),
        layer("Add", "merge", {}, [[tensor("proj", 0), tensor("proj", 1)]]),
        layer("Dense", "class_head", {"units": 3, "activation": "softmax", "use_bias": True}, [tensor("merge")]),
        layer("Dense", "value_head", {"units": 2, "activation": "linear", "use_bias": True}, [tensor("merge")]),
    ]
    return {"module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional",
            "config": {"name": "front", "trainable": True, "layers": layers,
                       "input_layers": [["image", 0, 0], ["meta", 0, 0]],
                       "output_layers": [["class_head", 0, 0], ["value_head", 0, 0]]}}


def main(out):
    rng = np.random.default_rng(7)

    def normal(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    w = {"norm": [normal(C, scale=0.3), rng.uniform(0.5, 2.0, C).astype(np.float32), np.int64(1000)],
         "stem": [normal(3, 3, C, 4, scale=0.4), normal(4, scale=0.1)],
         "dw": [normal(3, 3, 4, 1, scale=0.4), normal(4, scale=0.1)],
         "dw_bn": [rng.uniform(0.5, 1.5, 4).astype(np.float32), normal(4), normal(4),
                   rng.uniform(0.5, 2.0, 4).astype(np.float32)],
         "project": [normal(1, 1, 4, 4, scale=0.5), normal(4, scale=0.1)],
         "proj": [normal(META, 4), normal(4, scale=0.1)],
         "class_head": [normal(4, 3), normal(3, scale=0.1)],
         "value_head": [normal(4, 2), normal(2, scale=0.1)]}
    image = rng.uniform(0, 255, (FRAMES, H, W, C)).astype(np.float32)
    meta = normal(FRAMES, META)

    # Keras' layer order in each model (InputLayers included, operation nodes not).
    base = [("InputLayer", [], None), ("Conv2D", w["stem"], None), ("DepthwiseConv2D", w["dw"], None),
            ("BatchNormalization", w["dw_bn"], None), ("ReLU", [], None), ("Conv2D", w["project"], None),
            ("Add", [], None)]
    entries = [("InputLayer", [], None), ("InputLayer", [], None), ("RandomFlip", [], None),
               ("RandomRotation", [], None), ("RandomZoom", [], None), ("RandomContrast", [], None),
               ("Resizing", [], None), ("CenterCrop", [], None), ("Rescaling", [], None),
               ("Normalization", w["norm"], None), ("Functional", [], base), ("GlobalAveragePooling2D", [], None),
               ("Dense", w["proj"], None), ("Add", [], None), ("Dense", w["class_head"], None),
               ("Dense", w["value_head"], None)]
    write_archive(f"{out}/front.keras", config(), "3.6.0", h5_image(entries, "layers", False))

    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).double()  # noqa: E731
    with torch.no_grad():
        x = t(image).permute(0, 3, 1, 2)  # NCHW
        x = F.interpolate(x, size=(8, 10), mode="bilinear", align_corners=False, antialias=False)
        x = x[:, :, 1:7, 1:9]  # CenterCrop 6x8 of 8x10
        x = (x / 127.5 - 1.0) * 2.0 + 0.5
        mean, variance = t(w["norm"][0]).view(1, C, 1, 1), t(w["norm"][1]).view(1, C, 1, 1)
        x = (x - mean) / torch.clamp(torch.sqrt(variance), min=1e-7)

        def conv2d(x, kernel, bias, groups=1):
            k = t(kernel).permute(3, 2, 0, 1) if groups == 1 else t(kernel).permute(2, 3, 0, 1)
            return F.conv2d(x, k, t(bias), padding=kernel.shape[0] // 2, groups=groups)

        stem = F.relu(conv2d(x, *w["stem"]))
        d = conv2d(stem, *w["dw"], groups=4)
        gamma, beta, mu, var = (t(v) for v in w["dw_bn"])
        d = F.batch_norm(d, mu, var, gamma, beta, training=False, eps=1e-3)
        d = torch.clamp(d, 0.0, 6.0)
        x = stem + conv2d(d, *w["project"])
        pooled = x.mean(dim=(2, 3))
        proj = lambda v: torch.tanh(v @ t(w["proj"][0]) + t(w["proj"][1]))  # noqa: E731
        merged = proj(pooled) + proj(t(meta))
        class_head = torch.softmax(merged @ t(w["class_head"][0]) + t(w["class_head"][1]), dim=-1)
        value_head = merged @ t(w["value_head"][0]) + t(w["value_head"][1])
    np.save(f"{out}/front_image.npy", image)
    np.save(f"{out}/front_meta.npy", meta)
    np.save(f"{out}/front_class_head.npy", class_head.numpy().astype(np.float32))
    np.save(f"{out}/front_value_head.npy", value_head.numpy().astype(np.float32))
    with open(f"{out}/front_config.json", "w") as f:
        json.dump(config(), f)


if __name__ == "__main__":
    main(sys.argv[1])
