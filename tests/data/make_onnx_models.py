#!/usr/bin/python3
"""Writes the ONNX test models for tests/io/test_onnx_import.cpp, with PyTorch's outputs.

    /usr/bin/python3 tests/data/make_onnx_models.py small OUTDIR   # custom models (committed)
    /usr/bin/python3 tests/data/make_onnx_models.py zoo OUTDIR     # torchvision models (made at test time)
    /usr/bin/python3 tests/data/make_onnx_models.py vit OUTDIR     # torchvision ViT-B/32 and B/16 (test time)
    /usr/bin/python3 tests/data/make_onnx_models.py clips OUTDIR   # only the clip models of `small`

For each model NAME it writes NAME.onnx, NAME.input.npy (NCHW, NCDHW, or (N, D), float32) and
NAME.output.npy, the output of PyTorch (or, for graphs built with onnx.helper, of the same
computation written with torch.nn.functional), and lists NAME in OUTDIR/manifest.txt.
Weights are random with fixed seeds, batch-norm statistics included, so that every layer
matters. Needs Debian's python3-torch, python3-torchvision and python3-onnx (torch 1.13).
"""
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper


def randomise_batch_norms(module, seed):
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def save(outdir, name, model_path_writer, x, y):
    model_path_writer(os.path.join(outdir, name + ".onnx"))
    np.save(os.path.join(outdir, name + ".input.npy"), np.ascontiguousarray(x, dtype=np.float32))
    np.save(os.path.join(outdir, name + ".output.npy"), np.ascontiguousarray(y, dtype=np.float32))
    with open(os.path.join(outdir, "manifest.txt"), "a") as f:
        f.write(name + "\n")
    print("wrote", name, tuple(x.shape), "->", tuple(y.shape))


def export_torch(outdir, name, module, x, opset, seed, dynamic_batch=False):
    """Exports `module` (eval mode) traced on the first frame of x; the reference is all of x."""
    module.eval()
    randomise_batch_norms(module, seed)
    with torch.no_grad():
        y = module(x)

    def write(path):
        axes = {"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None
        torch.onnx.export(module, x[:1], path, opset_version=opset, input_names=["input"], output_names=["output"],
                          do_constant_folding=True, dynamic_axes=axes)

    save(outdir, name, write, x.numpy(), y.numpy())


# ---- Small custom models: every operator the importer maps ------------------------------------

class ConvVariants(nn.Module):
    """Conv with pads, strides, dilations, groups and depthwise; LeakyRelu, Sigmoid, Tanh; Reshape, Gemm, Softmax."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(4, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, stride=2, padding=(1, 0), groups=2)
        self.c3 = nn.Conv2d(8, 16, 3, padding=2, dilation=2, groups=8)  # depthwise, multiplier 2
        self.c4 = nn.Conv2d(16, 6, (1, 2), bias=False)
        self.fc = nn.Linear(6 * 6 * 4, 10)

    def forward(self, x):
        x = F.leaky_relu(self.c1(x), 0.1)
        x = torch.sigmoid(self.c2(x))
        x = torch.tanh(self.c3(x))
        x = self.c4(x)
        x = x.reshape(-1, 6 * 6 * 4)
        return torch.softmax(self.fc(x), dim=1)


class PoolNorm(nn.Module):
    """MaxPool (pads, ceil_mode), AveragePool (count_include_pad 0 and 1, ceil_mode), Concat,
    BatchNormalization, Pad (before an AveragePool that counts its pads, and F.pad, which torch
    1.13 writes as ConstantOfShape/Concat/Reshape/Slice/Transpose/Cast on constants); a 4-D output."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 6, 3)
        self.bn = nn.BatchNorm2d(30)

    def forward(self, x):
        x = F.relu(self.c(x))
        a = F.max_pool2d(x, 3, stride=2, padding=1)
        b = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=True)
        c = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        d = F.max_pool2d(x, 2, stride=2, ceil_mode=True)
        e = F.avg_pool2d(x, 2, stride=2, ceil_mode=True, count_include_pad=False)
        return F.pad(self.bn(torch.cat([a, b, c, d, e], 1)), (1, 2, 0, 1))


class Activations(nn.Module):
    """Clip (ReLU6, Hardtanh), HardSigmoid, HardSwish, Add/Sub/Mul/Div with constants, Add and
    Mul of two values (broadcast), GlobalAveragePool, a no-op Transpose, Flatten, MatMul + Add."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 1)
        self.scale = nn.Parameter(torch.rand(1, 8, 1, 1, generator=g) + 0.5)
        self.shift = nn.Parameter(torch.randn(8, 1, 1, generator=g))
        self.w = nn.Parameter(torch.randn(8, 5, generator=g) * 0.3)
        self.b = nn.Parameter(torch.randn(5, generator=g))

    def forward(self, x):
        y = F.relu6(self.c1(x) * 3.0)
        y = F.hardtanh(y - 2.5)
        z = F.hardsigmoid(self.c2(y))
        y = y * z + y
        y = F.hardswish(y * 4.0) / 1.5
        y = y * self.scale + self.shift
        y = y * torch.sigmoid(F.adaptive_avg_pool2d(y, 1))
        v = torch.flatten(F.adaptive_avg_pool2d(y, 1).permute(0, 2, 3, 1), 1)
        return v @ self.w + self.b


class ViewFlatten(nn.Module):
    """x.view(x.size(0), -1) with a dynamic batch axis: Shape, Gather, Unsqueeze, Concat, Reshape."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 5, 3, stride=2)
        self.fc = nn.Linear(5 * 4 * 3, 7)

    def forward(self, x):
        x = F.relu(self.c(x))
        return self.fc(x.view(x.size(0), -1))


class Mlp(nn.Module):
    """A 2-D input: Gemm, BatchNormalization on vectors, Dropout, Tanh, Gemm without bias, Softmax."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(20, 32)
        self.bn = nn.BatchNorm1d(32)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(32, 16, bias=False)

    def forward(self, x):
        x = self.drop(torch.tanh(self.bn(self.fc1(x))))
        return torch.softmax(self.fc2(x) * 2.0 + 1.0, dim=-1)


# ---- Graphs built with onnx.helper: what exporters emit but torch 1.13 does not ----------------

def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def helper_model(nodes, inputs, outputs, initializers, opset):
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="chorus-tests")
    onnx.checker.check_model(model)
    return model


def write_helper(outdir, name, model, x, y):
    save(outdir, name, lambda path: onnx.save(model, path), x, y)


def gemm_attributes(outdir):
    """Gemm with transB=0, alpha, beta and a (1, N) C; Identity and Dropout (opset 11 attribute)."""
    rng = np.random.default_rng(11)
    b1, c1, b2, c2 = rand(rng, 8, 5), rand(rng, 5), rand(rng, 3, 5), rand(rng, 1, 3)
    nodes = [
        helper.make_node("Gemm", ["x", "b1", "c1"], ["g1"], name="gemm_b0", alpha=0.5, beta=2.0, transB=0),
        helper.make_node("Relu", ["g1"], ["r1"], name="relu"),
        helper.make_node("Identity", ["r1"], ["i1"], name="identity"),
        helper.make_node("Dropout", ["i1"], ["d1"], name="dropout", ratio=0.3),
        helper.make_node("Gemm", ["d1", "b2", "c2"], ["y"], name="gemm_b1", transB=1),
    ]
    model = helper_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                         [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                         [("b1", b1), ("c1", c1), ("b2", b2), ("c2", c2)], 11)
    x = rand(rng, 2, 8)
    y = np.maximum(0.5 * x @ b1 + 2.0 * c1, 0) @ b2.T + c2
    write_helper(outdir, "gemm_attributes", model, x, y)


def same_pads(size, kernel, stride, upper):
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + kernel - size, 0)
    small = total // 2
    return (small, total - small) if upper else (total - small, small)


def auto_pad(outdir):
    """Conv and pools with auto_pad SAME_UPPER, SAME_LOWER and VALID (even kernels make upper and
    lower differ); Pad with pads as an input (opset 13)."""
    rng = np.random.default_rng(13)
    w1, b1, w2, w3 = rand(rng, 4, 3, 3, 3, scale=0.5), rand(rng, 4), rand(rng, 4, 4, 2, 2, scale=0.5), rand(rng, 5, 4, 2, 2, scale=0.5)
    pads = np.array([0, 0, 1, 0, 0, 0, 0, 2], dtype=np.int64)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["a"], name="conv_same_upper", auto_pad="SAME_UPPER", strides=[2, 2]),
        helper.make_node("Conv", ["a", "w2"], ["b"], name="conv_same_lower", auto_pad="SAME_LOWER"),
        helper.make_node("Conv", ["b", "w3"], ["c"], name="conv_same_upper_even", auto_pad="SAME_UPPER"),
        helper.make_node("MaxPool", ["c"], ["d"], name="pool_valid", kernel_shape=[2, 2], strides=[1, 1], auto_pad="VALID"),
        helper.make_node("AveragePool", ["d"], ["e"], name="avg_same", kernel_shape=[3, 2], auto_pad="SAME_UPPER"),
        helper.make_node("Pad", ["e", "pads"], ["y"], name="pad"),
    ]
    model = helper_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 9, 8])],
                         [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, 5, 5])],
                         [("w1", w1), ("b1", b1), ("w2", w2), ("w3", w3), ("pads", pads)], 13)
    x = torch.from_numpy(rand(rng, 2, 3, 9, 8))

    def same(t, k, s, upper):
        (t0, t1), (l0, l1) = same_pads(t.shape[2], k[0], s, upper), same_pads(t.shape[3], k[1], s, upper)
        return (l0, l1, t0, t1)

    a = F.conv2d(F.pad(x, same(x, (3, 3), 2, True)), torch.from_numpy(w1), torch.from_numpy(b1), stride=2)
    b = F.conv2d(F.pad(a, same(a, (2, 2), 1, False)), torch.from_numpy(w2))
    c = F.conv2d(F.pad(b, same(b, (2, 2), 1, True)), torch.from_numpy(w3))
    d = F.max_pool2d(c, 2, stride=1)
    p = same(d, (3, 2), 1, True)
    sums = F.avg_pool2d(F.pad(d, p), (3, 2), stride=1, divisor_override=1)
    counts = F.avg_pool2d(F.pad(torch.ones_like(d), p), (3, 2), stride=1, divisor_override=1)
    e = sums / counts  # count_include_pad=0: padded cells are not counted
    y = F.pad(e, (0, 2, 1, 0))
    write_helper(outdir, "auto_pad", model, x.numpy(), y.numpy())


def clip_attributes(outdir):
    """Clip with min/max attributes (opset 10, before they became inputs); LeakyRelu's default
    alpha; Softmax's opset-10 default axis."""
    rng = np.random.default_rng(10)
    b = rand(rng, 6, 4)
    nodes = [
        helper.make_node("Clip", ["x"], ["c1"], name="clip_both", min=-0.5, max=0.7),
        helper.make_node("MatMul", ["c1", "b"], ["m"], name="matmul"),
        helper.make_node("Clip", ["m"], ["c2"], name="clip_max", max=0.4),
        helper.make_node("LeakyRelu", ["c2"], ["l"], name="leaky"),
        helper.make_node("Softmax", ["l"], ["y"], name="softmax"),
    ]
    model = helper_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
                         [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [("b", b)], 10)
    x = rand(rng, 2, 6)
    m = np.minimum(np.clip(x, -0.5, 0.7) @ b, 0.4)
    y = torch.softmax(torch.from_numpy(np.where(m >= 0, m, 0.01 * m)), 1).numpy()
    write_helper(outdir, "clip_attributes", model, x, y)


def clip_inputs(outdir):
    """Clip with bounds as inputs (opset 13), one omitted, one from a Constant node; Reshape with a
    Constant shape; a Transpose that is a layout no-op; Softmax over channels of a 4-D value."""
    rng = np.random.default_rng(12)
    w = rand(rng, 4, 6, 1, 1)
    nodes = [
        helper.make_node("Constant", [], ["lo"], name="lo", value_float=-0.25),
        helper.make_node("Constant", [], ["hi"], name="hi", value=numpy_helper.from_array(np.array(0.5, np.float32))),
        helper.make_node("Constant", [], ["shape"], name="shape", value_ints=[1, 6, 1, 1]),
        helper.make_node("Clip", ["x", "", "hi"], ["a"], name="clip_max_input"),
        helper.make_node("Clip", ["a", "lo"], ["b"], name="clip_min_input"),
        helper.make_node("Reshape", ["b", "shape"], ["c"], name="reshape"),
        helper.make_node("Conv", ["c", "w"], ["d"], name="conv1x1"),
        helper.make_node("Softmax", ["d"], ["e"], name="softmax", axis=1),
        helper.make_node("Transpose", ["e"], ["y"], name="transpose", perm=[0, 2, 1, 3]),
    ]
    model = helper_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
                         [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 1])], [("w", w)], 13)
    x = rand(rng, 2, 6)
    b = np.maximum(np.minimum(x, 0.5), -0.25)
    d = b @ w[:, :, 0, 0].T  # (2, 6) -> (2, 4): the 1x1 convolution of a 1x1 image
    y = torch.softmax(torch.from_numpy(d), 1).numpy().reshape(2, 1, 4, 1)
    write_helper(outdir, "clip_inputs", model, x, y)


def lrn(outdir):
    """LRN (torch exports LocalResponseNorm as a decomposition), two window sizes."""
    rng = np.random.default_rng(14)
    w = rand(rng, 7, 3, 3, 3, scale=0.5)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("LRN", ["a"], ["b"], name="lrn3", size=3, alpha=0.05, beta=0.75, bias=2.0),
        helper.make_node("LRN", ["b"], ["y"], name="lrn5", size=5),
    ]
    model = helper_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 5])],
                         [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 7, 6, 5])], [("w", w)], 13)
    x = torch.from_numpy(rand(rng, 2, 3, 6, 5))
    a = F.conv2d(x, torch.from_numpy(w), padding=1)
    b = F.local_response_norm(a, 3, alpha=0.05, beta=0.75, k=2.0)
    y = F.local_response_norm(b, 5, alpha=1e-4, beta=0.75, k=1.0)
    write_helper(outdir, "lrn", model, x.numpy(), y.numpy())


def error_models(outdir):
    """Files the importer must refuse with a clear message (no reference outputs)."""
    rng = np.random.default_rng(15)
    x4 = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])

    def write(name, nodes, inputs, output, initializers=()):
        graph = helper.make_graph(nodes, name, inputs, [output],
                                  [numpy_helper.from_array(v, k) for k, v in initializers])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="chorus-tests")
        onnx.save(model, os.path.join(outdir, name + ".onnx"))
        print("wrote", name)

    write("unsupported_operator", [helper.make_node("Relu", ["x"], ["r"], name="relu"),
                                   helper.make_node("Erf", ["r"], ["y"], name="Foo_3")],
          [x4], helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4]))
    write("moving_transpose", [helper.make_node("Transpose", ["x"], ["y"], name="to_nhwc", perm=[0, 2, 3, 1])],
          [x4], helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 3]))
    write("bad_conv_weight", [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
          [x4], helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2]), [("w", rand(rng, 2, 5, 3, 3))])


class TwoInputsTwoOutputs(nn.Module):
    """An image and a vector in; class scores and a per-pixel map out (multi_io.*)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.meta = nn.Linear(6, 8)
        self.head = nn.Linear(16, 5)
        self.mask = nn.Conv2d(8, 2, 1)

    def forward(self, image, vector):
        f = self.pool(F.relu(self.bn(self.conv(image))))
        g = torch.flatten(self.gap(f), 1)
        h = F.relu(self.meta(vector))
        # Sub and Div of two computed values too.
        scores = F.softmax(self.head(torch.cat([g - h, g / (1 + h * h)], 1)), dim=1)
        return scores, torch.sigmoid(self.mask(f))


def multi_io(outdir):
    """Two inputs and two outputs, by name: multi_io.onnx, multi_io.{image,vector}.npy (inputs)
    and multi_io.{scores,mask}.npy (PyTorch's outputs). Not in the manifest, whose models have
    one input and one output."""
    torch.manual_seed(6)
    module = TwoInputsTwoOutputs().eval()
    randomise_batch_norms(module, 6)
    image, vector = torch.randn(3, 3, 10, 10), torch.randn(3, 6)
    with torch.no_grad():
        scores, mask = module(image, vector)
    torch.onnx.export(module, (image[:1], vector[:1]), os.path.join(outdir, "multi_io.onnx"), opset_version=13,
                      input_names=["image", "vector"], output_names=["scores", "mask"], do_constant_folding=True)
    for name, value in (("image", image), ("vector", vector), ("scores", scores), ("mask", mask)):
        np.save(os.path.join(outdir, f"multi_io.{name}.npy"), np.ascontiguousarray(value.numpy(), dtype=np.float32))
    print("wrote multi_io", tuple(image.shape), tuple(vector.shape), "->", tuple(scores.shape), tuple(mask.shape))


# ---- Transformers -----------------------------------------------------------------------------

def randomise_transformer(module, seed):
    """torchvision zeroes the class token and the head, and LayerNorm starts as the identity:
    give them values so that every weight matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() <= 1 or "token" in name or "head" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.2)


def vit(seed, name=None, **kwargs):
    """torchvision's model `name`, or a VisionTransformer of `kwargs`, randomised."""
    import torchvision.models as models
    from torchvision.models.vision_transformer import VisionTransformer
    torch.manual_seed(seed)
    model = getattr(models, name)(weights=None) if name else VisionTransformer(**kwargs)
    randomise_transformer(model, seed)
    return model


def text_encoder():
    """nn.TransformerEncoder on (N, L, D) embeddings: two post-norm layers with GELU."""
    layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, dropout=0.0, activation="gelu",
                                       batch_first=True)
    return nn.TransformerEncoder(layer, num_layers=2)


def transformers_small(outdir):
    """A ViT of 32x32 images (patches of 8, 2 blocks, 4 heads of 8) at opsets 14 (LayerNorm written
    out) and 17 (LayerNormalization), and a text encoder."""
    tiny = dict(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=10)
    for opset in (14, 17):
        model = vit(7, **tiny)
        export_torch(outdir, f"vit_tiny_op{opset}", model, torch.randn(2, 3, 32, 32), opset, 7)
    torch.manual_seed(8)
    model = text_encoder()
    randomise_transformer(model, 8)
    export_torch(outdir, "text_encoder", model, torch.randn(2, 12, 32), 14, 8)
    transformers_dynamic_batch(outdir)


def transformers_dynamic_batch(outdir):
    """The same ViT and text encoder exported as most users do, with a dynamic batch axis: the
    attention's reshapes and the class token's Expand then read the shapes of computed values."""
    tiny = dict(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=10)
    export_torch(outdir, "vit_tiny_dynamic_batch", vit(9, **tiny), torch.randn(2, 3, 32, 32), 14, 9, dynamic_batch=True)
    torch.manual_seed(10)
    model = text_encoder()
    randomise_transformer(model, 10)
    export_torch(outdir, "text_encoder_dynamic_batch", model, torch.randn(2, 12, 32), 17, 10, dynamic_batch=True)


class MaskedEncoder(nn.Module):
    """The text encoder with a causal attention mask, which Chorus refuses (attention_mask.onnx)."""

    def __init__(self, length):
        super().__init__()
        self.encoder = text_encoder()
        self.register_buffer("mask", torch.triu(torch.full((length, length), float("-inf")), diagonal=1))

    def forward(self, x):
        return self.encoder(x, mask=self.mask)


def transformer_error_models(outdir):
    """A causal mask, and a sequence length left dynamic: refused naming the node or input."""
    torch.manual_seed(9)
    x = torch.randn(1, 12, 32)
    torch.onnx.export(MaskedEncoder(12).eval(), x, os.path.join(outdir, "attention_mask.onnx"), opset_version=14,
                      input_names=["x"], output_names=["y"])
    torch.onnx.export(text_encoder().eval(), x, os.path.join(outdir, "dynamic_length.onnx"), opset_version=14,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {1: "length"}, "y": {1: "length"}})
    print("wrote attention_mask dynamic_length")


def vit_zoo(outdir):
    """torchvision's ViT-B/32 at opset 14 and ViT-B/16 at opset 17 (330 MB each)."""
    for i, (name, opset) in enumerate((("vit_b_32", 14), ("vit_b_16", 17))):
        export_torch(outdir, name, vit(200 + i, name), torch.randn(2, 3, 224, 224), opset, 200 + i)


# Every operator the importer maps, which the small models must cover between them.
REQUIRED_OPERATORS = {
    "Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid",
    "HardSwish", "Tanh", "Softmax", "MaxPool", "AveragePool", "GlobalAveragePool", "BatchNormalization", "Concat",
    "Flatten", "Reshape", "Transpose", "Pad", "Dropout", "Identity", "LRN", "Constant", "LayerNormalization",
    # recognised in groups (attention, layer norm and GELU written out)
    "ReduceMean", "Pow", "Sqrt", "Erf",
    # folded on constants
    "Shape", "Gather", "Unsqueeze", "ConstantOfShape", "Slice", "Cast", "Equal", "Where", "Expand"}


class ClipNet(nn.Module):
    """A small C3D on 5-D clips (N, C, D, H, W): Conv (pads, strides, dilations), MaxPool (ceil_mode),
    AveragePool, BatchNormalization, Relu, GlobalAveragePool and Flatten, then Gemm and Concat."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv3d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm3d(6)
        self.c2 = nn.Conv3d(6, 8, (2, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.c3 = nn.Conv3d(8, 8, 3, padding=2, dilation=2, bias=False)
        self.fc = nn.Linear(8 * 2 * 2 * 2, 5)

    def forward(self, x):
        x = F.relu(self.bn(self.c1(x)))
        x = F.max_pool3d(x, (1, 2, 2), stride=(1, 2, 2))
        x = F.relu(self.c2(x))
        x = F.relu(self.c3(x))
        y = torch.flatten(F.max_pool3d(x, 2, stride=2, ceil_mode=True), 1)
        g = torch.flatten(F.adaptive_avg_pool3d(F.avg_pool3d(x, (1, 3, 3), stride=1, padding=(0, 1, 1),
                                                              count_include_pad=False), 1), 1)
        return torch.cat([torch.softmax(self.fc(y), dim=1), g], 1)


def clip_models(outdir):
    """A small C3D on 5-D inputs against PyTorch, and an input of rank 6 to refuse."""
    torch.manual_seed(6)
    export_torch(outdir, "clip_net", ClipNet(), torch.randn(2, 3, 4, 12, 11), 13, 6)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "input_rank6",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 2, 2, 4, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="chorus-tests")
    onnx.save(model, os.path.join(outdir, "input_rank6.onnx"))
    print("wrote input_rank6")


def check_coverage(outdir):
    with open(os.path.join(outdir, "manifest.txt")) as f:
        names = f.read().split()
    used = set()
    for name in names:
        used |= {n.op_type for n in onnx.load(os.path.join(outdir, name + ".onnx")).graph.node}
    missing = REQUIRED_OPERATORS - used
    if missing:
        sys.exit(f"the small models do not cover {sorted(missing)}")
    print("operators covered:", " ".join(sorted(used)))


def small(outdir):
    torch.manual_seed(0)
    export_torch(outdir, "conv_variants", ConvVariants(), torch.randn(2, 4, 12, 11), 13, 1)
    torch.manual_seed(1)
    export_torch(outdir, "pool_norm", PoolNorm(), torch.randn(2, 3, 13, 11), 11, 2)
    for opset in (11, 13, 17):
        torch.manual_seed(2)
        export_torch(outdir, f"activations_op{opset}", Activations(), torch.randn(2, 3, 10, 9), opset, 3)
    torch.manual_seed(4)
    export_torch(outdir, "mlp", Mlp(), torch.randn(2, 20), 17, 4)
    torch.manual_seed(5)
    export_torch(outdir, "view_flatten", ViewFlatten(), torch.randn(2, 3, 9, 7), 13, 5, dynamic_batch=True)
    gemm_attributes(outdir)
    auto_pad(outdir)
    clip_attributes(outdir)
    clip_inputs(outdir)
    lrn(outdir)
    transformers_small(outdir)
    multi_io(outdir)
    error_models(outdir)
    transformer_error_models(outdir)
    clip_models(outdir)
    check_coverage(outdir)


def zoo(outdir):
    import torchvision.models as models
    cases = [  # name, constructor arguments, input size, opset
        ("resnet18", {}, 64, 13),
        ("mobilenet_v2", {}, 64, 11),
        ("squeezenet1_0", {}, 64, 17),
        ("googlenet", {"aux_logits": False, "init_weights": True}, 64, 13),
        ("alexnet", {}, 224, 11),  # its adaptive pooling exports only where the map is 6x6
        # squeeze-and-excitation (a pooled (1, 1, c) gate multiplied over the map), SiLU and
        # hard swish
        ("efficientnet_b0", {}, 64, 13),
        ("mobilenet_v3_small", {}, 64, 13),
    ]
    for i, (name, kwargs, size, opset) in enumerate(cases):
        torch.manual_seed(100 + i)
        model = getattr(models, name)(weights=None, **kwargs)
        export_torch(outdir, name, model, torch.randn(1, 3, size, size), opset, 100 + i)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("small", "zoo", "vit", "clips"):
        sys.exit(__doc__)
    outdir = sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    manifest = os.path.join(outdir, "manifest.txt")
    if os.path.exists(manifest):
        os.remove(manifest)
    torch.set_num_threads(1)
    {"small": small, "zoo": zoo, "vit": vit_zoo, "clips": clip_models}[sys.argv[1]](outdir)


if __name__ == "__main__":
    main()
