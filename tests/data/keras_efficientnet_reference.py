#!/usr/bin/env python3
"""PyTorch's outputs for a Keras EfficientNetB0 file (models/efficientnetb0.json with weights).

Usage: keras_efficientnet_reference.py MODEL.h5 INPUT.npy OUTPUT.npy

Loads the Keras weights (h5py) into torchvision's efficientnet_b0, made to compute what Keras'
EfficientNetB0 computes: batch norm epsilon 1e-3, the stride-2 convolutions padded as Keras'
ZeroPadding2D(correct_pad) pads them (less before than after on even maps), and Keras' input
layers (Rescaling 1/255, Normalization by the stored mean and variance, Rescaling by the
stored per-channel scale) applied first. INPUT is NHWC, as Chorus reads it; OUTPUT is the
Dense layer's output (the test writes the model with a linear classifier, so these are logits).
An independent check of Chorus' Keras import: torchvision's layers and PyTorch's kernels.
"""
import json
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F
import torchvision.models as models


def keras_weights(path):
    """{layer: {weight name without ':0': array}} from a Keras 2 .h5 file, and its config."""
    out = {}
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
        group = f["model_weights"]
        for layer in group:
            weights = {}
            group[layer].visititems(lambda name, item: weights.__setitem__(
                name.split("/")[-1].split(":")[0], np.array(item)) if isinstance(item, h5py.Dataset) else None)
            out[layer] = weights
    return out, config


def conv(module, w):
    k = w["kernel"]  # (kh, kw, in, out)
    module.weight.data = torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))
    if "bias" in w:
        module.bias.data = torch.from_numpy(w["bias"])


def depthwise(module, w):
    k = w["depthwise_kernel"]  # (kh, kw, in, 1)
    module.weight.data = torch.from_numpy(np.ascontiguousarray(k.transpose(2, 3, 0, 1)))


def batch_norm(module, w):
    module.weight.data = torch.from_numpy(w["gamma"])
    module.bias.data = torch.from_numpy(w["beta"])
    module.running_mean = torch.from_numpy(w["moving_mean"])
    module.running_var = torch.from_numpy(w["moving_variance"])
    module.eps = 1e-3


def pad_as_keras(module):
    """A stride-2 convolution padded as ZeroPadding2D(imagenet_utils.correct_pad) + 'valid'."""
    k = module.kernel_size[0]
    module.padding = (0, 0)
    plain = module.forward

    def forward(x):
        adjust_h, adjust_w = 1 - x.shape[2] % 2, 1 - x.shape[3] % 2
        return plain(F.pad(x, (k // 2 - adjust_w, k // 2, k // 2 - adjust_h, k // 2)))
    module.forward = forward


def main():
    h5, input_path, output_path = sys.argv[1:4]
    w, config = keras_weights(h5)
    layers = {l["config"]["name"]: l for l in config["config"]["layers"]}
    torch.set_num_threads(1)
    net = models.efficientnet_b0(weights=None).eval()

    stem = net.features[0]
    conv(stem[0], w["stem_conv"])
    pad_as_keras(stem[0])
    batch_norm(stem[1], w["stem_bn"])
    for stage in range(1, 8):
        for j, block in enumerate(net.features[stage]):
            p = f"block{stage}{chr(97 + j)}_"
            parts = list(block.block)
            if p + "expand_conv" in w:
                expand = parts.pop(0)
                conv(expand[0], w[p + "expand_conv"])
                batch_norm(expand[1], w[p + "expand_bn"])
            dw, se, project = parts
            depthwise(dw[0], w[p + "dwconv"])
            if dw[0].stride[0] == 2:
                pad_as_keras(dw[0])
            batch_norm(dw[1], w[p + "bn"])
            conv(se.fc1, w[p + "se_reduce"])
            conv(se.fc2, w[p + "se_expand"])
            conv(project[0], w[p + "project_conv"])
            batch_norm(project[1], w[p + "project_bn"])
    top = net.features[8]
    conv(top[0], w["top_conv"])
    batch_norm(top[1], w["top_bn"])
    dense = net.classifier[1]
    dense.weight.data = torch.from_numpy(np.ascontiguousarray(w["predictions"]["kernel"].T))
    dense.bias.data = torch.from_numpy(w["predictions"]["bias"])

    x = np.load(input_path).astype(np.float32)  # NHWC
    x = x * np.float32(layers["rescaling"]["config"]["scale"])
    norm = w["normalization"]
    x = (x - norm["mean"]) / np.maximum(np.sqrt(norm["variance"]), 1e-7)
    x = x * np.array(layers["rescaling_1"]["config"]["scale"], dtype=np.float32)
    with torch.no_grad():
        y = net(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)))
    np.save(output_path, y.numpy())


if __name__ == "__main__":
    main()
