#!/usr/bin/python3
"""One PyTorch contender for bench/compare: rebuilds torchvision's NAME with the state dict that
was exported to ONNX, runs WARMUP + RUNS frames of INPUT (.npy, NCHW) on THREADS threads, saves
the output (.npy) and prints {"ms": [...]} on stdout.

  torch_runner.py NAME STATE_DICT INPUT THREADS WARMUP RUNS OUTPUT
"""
import json
import sys
import time

import numpy as np
import torch
import torchvision

name, state_path, input_path, threads, warmup, runs, output_path = sys.argv[1:8]
torch.set_num_threads(int(threads))
model = getattr(torchvision.models, name)(weights=None)
model.load_state_dict(torch.load(state_path))
model.eval()
x = torch.from_numpy(np.load(input_path))
with torch.inference_mode():
    for _ in range(int(warmup)):
        y = model(x)
    ms = []
    for _ in range(int(runs)):
        t0 = time.perf_counter()
        y = model(x)
        ms.append((time.perf_counter() - t0) * 1e3)
np.save(output_path, y.numpy())
print(json.dumps({"ms": ms, "version": torch.__version__}))
