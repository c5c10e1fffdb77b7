#!/usr/bin/python3
"""Exports torchvision's ViT-B/16 and ViT-L/16 with fixed-seed random weights for the
transformer benchmarks (bench/transformers/README.md).

    /usr/bin/python3 bench/transformers/export_vit.py OUTDIR [vit_b_16 vit_l_16 ...]

Writes OUTDIR/NAME.onnx (opset 14: layer norm written out in operators, as most exports in the
wild have it), OUTDIR/NAME.input.npy (one 224x224 frame) and OUTDIR/NAME.output.npy (PyTorch's
output). torchvision zeroes the class token and the head; they get random values too, so that
outputs differ between frames and wrong results show. Skips models already there.
"""
import os
import sys

import numpy as np
import torch
import torchvision


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    names = sys.argv[2:] or ["vit_b_16", "vit_l_16"]
    os.makedirs(out, exist_ok=True)
    for i, name in enumerate(names):
        path = os.path.join(out, name + ".onnx")
        if os.path.exists(path):
            continue
        torch.manual_seed(300 + i)
        model = getattr(torchvision.models, name)(weights=None).eval()
        with torch.no_grad():
            model.class_token.normal_(0, 0.5)
            model.heads.head.weight.normal_(0, 0.02)
            model.heads.head.bias.normal_(0, 0.1)
            x = torch.from_numpy(np.random.default_rng(1).uniform(0, 1, (1, 3, 224, 224)).astype(np.float32))
            y = model(x)
        torch.onnx.export(model, x, path + ".partial", opset_version=14, input_names=["input"],
                          output_names=["output"], do_constant_folding=True)
        os.replace(path + ".partial", path)
        np.save(os.path.join(out, name + ".input.npy"), x.numpy())
        np.save(os.path.join(out, name + ".output.npy"), y.numpy())
        print("wrote", path, f"{os.path.getsize(path) / 1e6:.0f} MB", flush=True)


if __name__ == "__main__":
    main()
