"""Helpers for benchmarks that plan a model for an emulated cluster and run it under mpirun
(bench/transformers/vit_scaling.py, bench/clusters/scaling.py): commands, cluster files made
with `chorus cluster` (optionally time-dilated), plans.

Time dilation. A cluster D times slower in everything, compute (the profile's times x D) and
network (bandwidth / D, latency x D), lets this host keep up with devices that together compute
faster than its two cores (D > 1), or shortens runs of slow devices (D < 1) as long as the host
still keeps up. Measured throughput is multiplied by D and latency divided by D; the planner's
prediction on the dilated cluster is the undilated one scaled by D (its model is linear in
both). Chorus' own overheads on the host (copies, MPI calls) are not dilated.
"""
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def allow_mpirun_as_root():
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")


def write_csv(rows, path):
    """Rows of dicts as CSV, with every key any row has."""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def sh(cmd, timeout=None, log=None):
    t = time.time()
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    if log:
        Path(log).write_text(" ".join(map(str, cmd)) + "\n" + p.stdout + p.stderr)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}) after {time.time() - t:.0f} s: {' '.join(map(str, cmd))}\n"
                 f"{p.stdout[-2000:]}{p.stderr[-3000:]}")
    return p.stdout + p.stderr


def clusters(build, devices, dilation, out, device_class="pi4-engine", network="gigabit"):
    """N devices of a class on a network, as they are and D times slower, profiles embedded."""
    hostfile = out / f"pis{devices}"
    hostfile.write_text("".join(f"pi{i} slots=1\n" for i in range(1, devices + 1)))
    plain = out / f"{device_class}-{network}-{devices}.json"
    path = out / f"{device_class}-{network}-{devices}-dilated{dilation:g}.json"
    for target in (plain, path):
        sh([build / "chorus", "cluster", hostfile, "--class", device_class, "--network", network, "--embed-profiles",
            "--classes", ROOT / "profiles" / "device-classes.json", "--name", target.stem, "-o", target])
    c = json.loads(path.read_text())
    for cls in c["device_classes"].values():
        p = cls["profile"]
        p["macs_per_second"] = {k: v / dilation for k, v in p["macs_per_second"].items()}
        p["seconds_per_layer"] = p.get("seconds_per_layer", 0.0) * dilation
        p["layer_seconds"] = {m: {l: t * dilation for l, t in ls.items()} for m, ls in p["layer_seconds"].items()}
    c["network"]["bandwidth_mbps"] /= dilation
    c["network"]["latency_ms"] *= dilation
    path.write_text(json.dumps(c, indent=1))
    return plain, path


def stage_summary(stages):
    """"replicate x7 + replicate x9", or "16 stages, single x1 each" for a long pipeline."""
    parts = [f"{s['mode']} x{len(s['ranks'])}" for s in stages]
    if len(parts) > 3 and len(set(parts)) == 1:
        return f"{len(parts)} stages, {parts[0]} each"
    return " + ".join(parts)


def plan(build, model, how, objective, cluster, out, extra=()):
    """`chorus plan` with a strategy (or "planner") and an objective; the plan file and its JSON."""
    path = out / f"{Path(model).stem}-{cluster.stem}-{how}-{objective}{'-' + '-'.join(map(str, extra)) if extra else ''}.plan.json"
    cmd = [build / "chorus", "plan", model, "--cluster", cluster, "-o", path, *extra]
    if how != "planner":
        cmd += ["--strategy", how]
    if objective != "throughput":
        cmd += ["--objective", objective]
    sh(cmd)
    return path, json.loads(path.read_text())
