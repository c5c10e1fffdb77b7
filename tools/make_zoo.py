#!/usr/bin/env python3
"""Writes the model zoo's architecture files (models/*.json) in Keras' model.to_json() format.

Run from the repository root: python3 tools/make_zoo.py. Needs only the standard library.
The layer names follow keras.applications where Keras has the model (VGG16, ResNet50,
MobileNetV2, Xception, EfficientNetB0), so that users' files and ours read the same.
"""
import json
import os


class Graph:
    """Builds a Keras Functional config, layer by layer, with Keras 2 inbound_nodes."""

    def __init__(self, name, input_shape):
        self.name = name
        self.layers = []
        self.counts = {}
        self.input = self.add("InputLayer", {"batch_input_shape": [None] + list(input_shape),
                                              "dtype": "float32", "sparse": False}, [], name="input_1")

    def unique(self, base):
        self.counts[base] = self.counts.get(base, 0) + 1
        n = self.counts[base]
        return base if n == 1 else f"{base}_{n - 1}"

    def add(self, cls, config, inputs, name=None):
        name = name or self.unique(cls.lower())
        config = dict(config, name=name, trainable=True, dtype="float32")
        inbound = [[[i, 0, 0, {}] for i in inputs]] if inputs else []
        self.layers.append({"class_name": cls, "config": config, "name": name, "inbound_nodes": inbound})
        return name

    def conv(self, x, filters, k, s=1, padding="same", act="linear", bias=True, name=None, dilation=1):
        return self.add("Conv2D", {"filters": filters, "kernel_size": [k, k], "strides": [s, s],
                                   "padding": padding, "data_format": "channels_last",
                                   "dilation_rate": [dilation, dilation], "groups": 1, "activation": act,
                                   "use_bias": bias}, [x], name)

    def dwconv(self, x, k, s=1, padding="same", bias=False, name=None):
        return self.add("DepthwiseConv2D", {"kernel_size": [k, k], "strides": [s, s], "padding": padding,
                                            "depth_multiplier": 1, "data_format": "channels_last",
                                            "dilation_rate": [1, 1], "activation": "linear",
                                            "use_bias": bias}, [x], name)

    def sepconv(self, x, filters, k=3, name=None):
        return self.add("SeparableConv2D", {"filters": filters, "kernel_size": [k, k], "strides": [1, 1],
                                            "padding": "same", "data_format": "channels_last",
                                            "depth_multiplier": 1, "dilation_rate": [1, 1],
                                            "activation": "linear", "use_bias": False}, [x], name)

    def bn(self, x, name=None, eps=1.001e-5):
        return self.add("BatchNormalization", {"axis": 3, "momentum": 0.99, "epsilon": eps,
                                               "center": True, "scale": True}, [x], name)

    def act(self, x, fn, name=None):
        return self.add("Activation", {"activation": fn}, [x], name)

    def relu6(self, x, name=None):
        return self.add("ReLU", {"max_value": 6.0, "negative_slope": 0.0, "threshold": 0.0}, [x], name)

    def pad(self, x, p, name=None):
        return self.add("ZeroPadding2D", {"padding": p, "data_format": "channels_last"}, [x], name)

    def maxpool(self, x, k, s, padding="valid", name=None):
        return self.add("MaxPooling2D", {"pool_size": [k, k], "strides": [s, s], "padding": padding,
                                         "data_format": "channels_last"}, [x], name)

    def gap(self, x, name=None):
        return self.add("GlobalAveragePooling2D", {"data_format": "channels_last", "keepdims": False}, [x], name)

    def dense(self, x, units, act="linear", name=None):
        return self.add("Dense", {"units": units, "activation": act, "use_bias": True}, [x], name)

    def reshape(self, x, shape, name=None):
        return self.add("Reshape", {"target_shape": list(shape)}, [x], name)

    def dropout(self, x, rate, noise_shape=None, name=None):
        return self.add("Dropout", {"rate": rate, "noise_shape": noise_shape, "seed": None}, [x], name)

    def merge(self, cls, xs, name=None):
        return self.add(cls, {}, xs, name)

    def to_json(self, output):
        return {"class_name": "Functional", "config": {
            "name": self.name, "layers": self.layers,
            "input_layers": [[self.input, 0, 0]], "output_layers": [[output, 0, 0]]},
            "keras_version": "2.15.0", "backend": "tensorflow"}


def sequential(name, input_shape, layers):
    """A Keras Sequential config (dict style, with an InputLayer)."""
    out = [{"class_name": "InputLayer", "config": {"batch_input_shape": [None] + list(input_shape),
                                                    "dtype": "float32", "sparse": False,
                                                    "name": f"{name}_input"}}]
    for cls, cfg in layers:
        out.append({"class_name": cls, "config": dict(cfg, trainable=True, dtype="float32")})
    return {"class_name": "Sequential", "config": {"name": name, "layers": out},
            "keras_version": "2.15.0", "backend": "tensorflow"}


def conv_cfg(name, filters, k, s=1, padding="same", act="relu"):
    return ("Conv2D", {"name": name, "filters": filters, "kernel_size": [k, k], "strides": [s, s],
                       "padding": padding, "data_format": "channels_last", "dilation_rate": [1, 1],
                       "groups": 1, "activation": act, "use_bias": True})


def pool_cfg(name, kind, k, s):
    return (kind, {"name": name, "pool_size": [k, k], "strides": [s, s], "padding": "valid",
                   "data_format": "channels_last"})


def dense_cfg(name, units, act):
    return ("Dense", {"name": name, "units": units, "activation": act, "use_bias": True})


def lenet5():
    return sequential("lenet5", (28, 28, 1), [
        conv_cfg("conv1", 6, 5, padding="same"),
        pool_cfg("pool1", "AveragePooling2D", 2, 2),
        conv_cfg("conv2", 16, 5, padding="valid"),
        pool_cfg("pool2", "AveragePooling2D", 2, 2),
        ("Flatten", {"name": "flatten", "data_format": "channels_last"}),
        dense_cfg("fc1", 120, "relu"),
        dense_cfg("fc2", 84, "relu"),
        dense_cfg("predictions", 10, "softmax"),
    ])


def alexnet():
    """Single-stream AlexNet (227x227 input), as used in the Raspberry Pi cluster papers."""
    lrn = lambda n: ("LRN", {"name": n, "depth_radius": 2, "bias": 2.0, "alpha": 1e-4, "beta": 0.75})
    return sequential("alexnet", (227, 227, 3), [
        conv_cfg("conv1", 96, 11, 4, padding="valid"), lrn("norm1"), pool_cfg("pool1", "MaxPooling2D", 3, 2),
        conv_cfg("conv2", 256, 5), lrn("norm2"), pool_cfg("pool2", "MaxPooling2D", 3, 2),
        conv_cfg("conv3", 384, 3), conv_cfg("conv4", 384, 3), conv_cfg("conv5", 256, 3),
        pool_cfg("pool5", "MaxPooling2D", 3, 2),
        ("Flatten", {"name": "flatten", "data_format": "channels_last"}),
        dense_cfg("fc6", 4096, "relu"), ("Dropout", {"name": "drop6", "rate": 0.5}),
        dense_cfg("fc7", 4096, "relu"), ("Dropout", {"name": "drop7", "rate": 0.5}),
        dense_cfg("predictions", 1000, "softmax"),
    ])


def vgg16():
    layers = []
    for block, (filters, convs) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], start=1):
        for i in range(1, convs + 1):
            layers.append(conv_cfg(f"block{block}_conv{i}", filters, 3))
        layers.append(pool_cfg(f"block{block}_pool", "MaxPooling2D", 2, 2))
    layers += [("Flatten", {"name": "flatten", "data_format": "channels_last"}),
               dense_cfg("fc1", 4096, "relu"), dense_cfg("fc2", 4096, "relu"),
               dense_cfg("predictions", 1000, "softmax")]
    return sequential("vgg16", (224, 224, 3), layers)


def resnet18():
    g = Graph("resnet18", (224, 224, 3))
    x = g.pad(g.input, [[3, 3], [3, 3]], "conv1_pad")
    x = g.conv(x, 64, 7, 2, "valid", bias=False, name="conv1_conv")
    x = g.act(g.bn(x, "conv1_bn"), "relu", "conv1_relu")
    x = g.pad(x, [[1, 1], [1, 1]], "pool1_pad")
    x = g.maxpool(x, 3, 2, name="pool1_pool")
    for stage, filters in enumerate([64, 128, 256, 512], start=2):
        for block in (1, 2):
            p = f"conv{stage}_block{block}"
            stride = 2 if (block == 1 and stage > 2) else 1
            if block == 1 and stage > 2:
                shortcut = g.bn(g.conv(x, filters, 1, stride, bias=False, name=f"{p}_0_conv"), f"{p}_0_bn")
            else:
                shortcut = x
            y = g.conv(x, filters, 3, stride, bias=False, name=f"{p}_1_conv")
            y = g.act(g.bn(y, f"{p}_1_bn"), "relu", f"{p}_1_relu")
            y = g.bn(g.conv(y, filters, 3, 1, bias=False, name=f"{p}_2_conv"), f"{p}_2_bn")
            x = g.act(g.merge("Add", [shortcut, y], f"{p}_add"), "relu", f"{p}_out")
    x = g.gap(x, "avg_pool")
    return g.to_json(g.dense(x, 1000, "softmax", "predictions"))


def resnet50():
    g = Graph("resnet50", (224, 224, 3))
    x = g.pad(g.input, [[3, 3], [3, 3]], "conv1_pad")
    x = g.conv(x, 64, 7, 2, "valid", name="conv1_conv")
    x = g.act(g.bn(x, "conv1_bn"), "relu", "conv1_relu")
    x = g.pad(x, [[1, 1], [1, 1]], "pool1_pad")
    x = g.maxpool(x, 3, 2, name="pool1_pool")
    for stage, (filters, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], start=2):
        for block in range(1, blocks + 1):
            p = f"conv{stage}_block{block}"
            stride = 2 if (block == 1 and stage > 2) else 1
            if block == 1:
                shortcut = g.bn(g.conv(x, 4 * filters, 1, stride, name=f"{p}_0_conv"), f"{p}_0_bn")
            else:
                shortcut = x
            y = g.act(g.bn(g.conv(x, filters, 1, stride, name=f"{p}_1_conv"), f"{p}_1_bn"), "relu", f"{p}_1_relu")
            y = g.act(g.bn(g.conv(y, filters, 3, name=f"{p}_2_conv"), f"{p}_2_bn"), "relu", f"{p}_2_relu")
            y = g.bn(g.conv(y, 4 * filters, 1, name=f"{p}_3_conv"), f"{p}_3_bn")
            x = g.act(g.merge("Add", [shortcut, y], f"{p}_add"), "relu", f"{p}_out")
    x = g.gap(x, "avg_pool")
    return g.to_json(g.dense(x, 1000, "softmax", "predictions"))


def mobilenetv2():
    g = Graph("mobilenetv2_1.00_224", (224, 224, 3))
    x = g.conv(g.input, 32, 3, 2, "same", bias=False, name="Conv1")
    x = g.relu6(g.bn(x, "bn_Conv1", 1e-3), "Conv1_relu")
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1)]
    in_ch, block = 32, 0
    for t, c, n, s in settings:
        for i in range(n):
            stride = s if i == 0 else 1
            p = "expanded_conv" if block == 0 else f"block_{block}"
            y = x
            if t != 1:
                y = g.conv(y, in_ch * t, 1, bias=False, name=f"{p}_expand")
                y = g.relu6(g.bn(y, f"{p}_expand_BN", 1e-3), f"{p}_expand_relu")
            if stride == 2:
                y = g.pad(y, [[0, 1], [0, 1]], f"{p}_pad")
            y = g.dwconv(y, 3, stride, "valid" if stride == 2 else "same", name=f"{p}_depthwise")
            y = g.relu6(g.bn(y, f"{p}_depthwise_BN", 1e-3), f"{p}_depthwise_relu")
            y = g.bn(g.conv(y, c, 1, bias=False, name=f"{p}_project"), f"{p}_project_BN", 1e-3)
            if stride == 1 and in_ch == c:
                y = g.merge("Add", [x, y], f"{p}_add")
            x, in_ch, block = y, c, block + 1
    x = g.relu6(g.bn(g.conv(x, 1280, 1, bias=False, name="Conv_1"), "Conv_1_bn", 1e-3), "out_relu")
    x = g.gap(x, "global_average_pooling2d")
    return g.to_json(g.dense(x, 1000, "softmax", "predictions"))


def xception():
    g = Graph("xception", (299, 299, 3))
    x = g.conv(g.input, 32, 3, 2, "valid", bias=False, name="block1_conv1")
    x = g.act(g.bn(x, "block1_conv1_bn", 1e-3), "relu", "block1_conv1_act")
    x = g.conv(x, 64, 3, 1, "valid", bias=False, name="block1_conv2")
    x = g.act(g.bn(x, "block1_conv2_bn", 1e-3), "relu", "block1_conv2_act")
    for block, filters in [(2, 128), (3, 256), (4, 728)]:
        residual = g.bn(g.conv(x, filters, 1, 2, bias=False, name=f"conv2d_{block - 1}"), f"batch_normalization_{block - 1}", 1e-3)
        y = x if block == 2 else g.act(x, "relu", f"block{block}_sepconv1_act")
        y = g.bn(g.sepconv(y, filters, name=f"block{block}_sepconv1"), f"block{block}_sepconv1_bn", 1e-3)
        y = g.act(y, "relu", f"block{block}_sepconv2_act")
        y = g.bn(g.sepconv(y, filters, name=f"block{block}_sepconv2"), f"block{block}_sepconv2_bn", 1e-3)
        y = g.maxpool(y, 3, 2, "same", f"block{block}_pool")
        x = g.merge("Add", [y, residual], f"add_{block - 1}")
    for block in range(5, 13):
        y = x
        for i in (1, 2, 3):
            y = g.act(y, "relu", f"block{block}_sepconv{i}_act")
            y = g.bn(g.sepconv(y, 728, name=f"block{block}_sepconv{i}"), f"block{block}_sepconv{i}_bn", 1e-3)
        x = g.merge("Add", [y, x], f"add_{block - 1}")
    residual = g.bn(g.conv(x, 1024, 1, 2, bias=False, name="conv2d_4"), "batch_normalization_4", 1e-3)
    y = g.act(x, "relu", "block13_sepconv1_act")
    y = g.bn(g.sepconv(y, 728, name="block13_sepconv1"), "block13_sepconv1_bn", 1e-3)
    y = g.act(y, "relu", "block13_sepconv2_act")
    y = g.bn(g.sepconv(y, 1024, name="block13_sepconv2"), "block13_sepconv2_bn", 1e-3)
    y = g.maxpool(y, 3, 2, "same", "block13_pool")
    x = g.merge("Add", [y, residual], "add_12")
    x = g.act(g.bn(g.sepconv(x, 1536, name="block14_sepconv1"), "block14_sepconv1_bn", 1e-3), "relu", "block14_sepconv1_act")
    x = g.act(g.bn(g.sepconv(x, 2048, name="block14_sepconv2"), "block14_sepconv2_bn", 1e-3), "relu", "block14_sepconv2_act")
    x = g.gap(x, "avg_pool")
    return g.to_json(g.dense(x, 1000, "softmax", "predictions"))


def efficientnetb0():
    """keras.applications.EfficientNetB0 as Keras 2.15 builds it with weights="imagenet" (so with
    the Rescaling after the Normalization that corrects its variance), at 224x224."""
    g = Graph("efficientnetb0", (224, 224, 3))
    x = g.add("Rescaling", {"scale": 1 / 255.0, "offset": 0.0}, [g.input], "rescaling")
    x = g.add("Normalization", {"axis": -1, "mean": None, "variance": None, "invert": False}, [x], "normalization")
    x = g.add("Rescaling", {"scale": [1 / 0.229 ** 0.5, 1 / 0.224 ** 0.5, 1 / 0.225 ** 0.5], "offset": 0.0}, [x],
              "rescaling_1")

    def correct_pad(size, k):  # imagenet_utils.correct_pad, on a square map
        adjust = 1 - size % 2
        return [[k // 2 - adjust, k // 2], [k // 2 - adjust, k // 2]]

    x = g.pad(x, correct_pad(224, 3), "stem_conv_pad")
    x = g.conv(x, 32, 3, 2, "valid", bias=False, name="stem_conv")
    x = g.act(g.bn(x, "stem_bn", 1e-3), "swish", "stem_activation")
    # kernel, repeats, filters in, filters out, expansion, stride (se_ratio 0.25 everywhere)
    blocks_args = [(3, 1, 32, 16, 1, 1), (3, 2, 16, 24, 6, 2), (5, 2, 24, 40, 6, 2), (3, 3, 40, 80, 6, 2),
                   (5, 3, 80, 112, 6, 1), (5, 4, 112, 192, 6, 2), (3, 1, 192, 320, 6, 1)]
    total = float(sum(a[1] for a in blocks_args))
    size, b = 112, 0
    for i, (k, repeats, f_in, f_out, expand, stride) in enumerate(blocks_args):
        for j in range(repeats):
            if j > 0:
                stride, f_in = 1, f_out
            p = f"block{i + 1}{chr(j + 97)}_"
            drop_rate = 0.2 * b / total
            filters = f_in * expand
            y = x
            if expand != 1:
                y = g.conv(y, filters, 1, bias=False, name=p + "expand_conv")
                y = g.act(g.bn(y, p + "expand_bn", 1e-3), "swish", p + "expand_activation")
            if stride == 2:
                y = g.pad(y, correct_pad(size, k), p + "dwconv_pad")
                size //= 2
            y = g.dwconv(y, k, stride, "valid" if stride == 2 else "same", name=p + "dwconv")
            y = g.act(g.bn(y, p + "bn", 1e-3), "swish", p + "activation")
            se = g.add("GlobalAveragePooling2D", {"data_format": "channels_last", "keepdims": False}, [y],
                       p + "se_squeeze")
            se = g.reshape(se, (1, 1, filters), p + "se_reshape")
            se = g.conv(se, max(1, int(f_in * 0.25)), 1, act="swish", name=p + "se_reduce")
            se = g.conv(se, filters, 1, act="sigmoid", name=p + "se_expand")
            y = g.merge("Multiply", [y, se], p + "se_excite")
            y = g.bn(g.conv(y, f_out, 1, bias=False, name=p + "project_conv"), p + "project_bn", 1e-3)
            if stride == 1 and f_in == f_out:
                if drop_rate > 0:
                    y = g.dropout(y, drop_rate, [None, 1, 1, 1], p + "drop")
                y = g.merge("Add", [y, x], p + "add")
            x, b = y, b + 1
    x = g.conv(x, 1280, 1, bias=False, name="top_conv")
    x = g.act(g.bn(x, "top_bn", 1e-3), "swish", "top_activation")
    x = g.gap(x, "avg_pool")
    x = g.dropout(x, 0.2, None, "top_dropout")
    return g.to_json(g.dense(x, 1000, "softmax", "predictions"))


def tinyyolov2():
    """Tiny YOLOv2 for PASCAL VOC (Darknet's yolov2-tiny-voc.cfg) as Keras ports write it: 416x416
    in, nine 3x3 convolutions with batch norm and leaky ReLU (0.1), six max poolings (the last
    2x2 with stride 1, 'same'), and a 1x1 convolution to 13x13x125 (5 boxes x (20 classes + 5)).
    A chain of convolutions and poolings, as DeepThings splits YOLOv2's first layers."""
    g = Graph("tinyyolov2", (416, 416, 3))
    x = g.input
    for i, filters in enumerate([16, 32, 64, 128, 256, 512, 1024, 1024], start=1):
        x = g.conv(x, filters, 3, bias=False, name=f"conv2d_{i}")
        x = g.bn(x, f"batch_normalization_{i}", 1e-3)
        x = g.add("LeakyReLU", {"alpha": 0.1}, [x], f"leaky_re_lu_{i}")
        if i <= 6:
            x = g.maxpool(x, 2, 2 if i < 6 else 1, "valid" if i < 6 else "same", f"max_pooling2d_{i}")
    return g.to_json(g.conv(x, 125, 1, name="conv2d_9"))


MODELS = {"lenet5": lenet5, "alexnet": alexnet, "vgg16": vgg16, "resnet18": resnet18, "resnet50": resnet50,
          "mobilenetv2": mobilenetv2, "xception": xception, "efficientnetb0": efficientnetb0,
          "tinyyolov2": tinyyolov2}

if __name__ == "__main__":
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models")
    for name, make in MODELS.items():
        with open(os.path.join(root, f"{name}.json"), "w") as f:
            json.dump(make(), f, indent=1)
            f.write("\n")
        print(f"models/{name}.json")
