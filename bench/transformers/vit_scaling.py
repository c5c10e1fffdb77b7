#!/usr/bin/python3
"""Vision Transformers across emulated Raspberry Pi 4s (engine calibration): ViT-L/16 throughput
on 16 devices against one, ViT-B/16 latency split by heads on 4 devices against one.

    bench/transformers/vit_scaling.py [--build build] [--zoo build/zoo] [--out build/vit_scaling]
                                      [--dilation 6] [--cases l16-1,l16-16,b16-1,b16-4]

Models come from bench/transformers/export_vit.py (run first). Devices are `pi4-engine`
(profiles/pi4-engine.json: Chorus' own layer times on this host scaled to a Pi 4, an estimate)
on switched gigabit Ethernet (hostfiles/pi4-gigabit-{4,16}.json).

Time dilation (bench/emulated_runs.py). Sixteen Pi 4s compute ViT-L/16 faster than two host
cores can (a Pi 4 is estimated at 1/2.8 of one host core): run undilated, the emulation would
time this host, not the Pis. So each case runs on a cluster DILATION times slower in everything,
which the host can keep up with; the script checks that the prediction scales by D.

Each case: `chorus plan` (prediction), then `mpirun -np N chorus run --plan --emulate --synthetic
F --report`, with `--max-in-flight 1` for latency cases (one frame at a time). Writes
OUT/vit_scaling.csv and OUT/vit_scaling.md.

--testbed (root) runs each case on `chorus testbed` instead: a network namespace per device,
links shaped by the kernel (the dilated cluster's bandwidth), TCP between the ranks and Open MPI's
own launcher; compute is paced as under --emulate (docs/testbed.md).
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emulated_runs import ROOT, allow_mpirun_as_root, clusters, plan, sh, stage_summary, write_csv  # noqa: E402
# name -> (model, devices, how, objective[, device class, network]): how is a strategy or
# "planner". l16-16-planner replicates ViT-L on every device: 16 copies of its 1.2 GB exceed
# this host's memory, so it is planned (predicted) but not run here.
CASES = {
    "l16-1": ("vit_l_16", 1, "pipeline", "throughput"),
    "l16-16": ("vit_l_16", 16, "pipeline", "throughput"),
    "l16-16-planner": ("vit_l_16", 16, "planner", "throughput"),
    "b16-1": ("vit_b_16", 1, "pipeline", "latency"),
    "b16-4": ("vit_b_16", 4, "split-tensor", "latency"),
    "b16-4-planner": ("vit_b_16", 4, "planner", "latency"),
    # 1 GB Pi 3s on WiFi: ViT-L/16 fits none, the planner must cut it.
    "l16-16-pi3": ("vit_l_16", 16, "planner", "throughput", "pi3-engine", "wifi"),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--zoo", default=str(ROOT / "build" / "zoo"))
    ap.add_argument("--out", default=str(ROOT / "build" / "vit_scaling"))
    ap.add_argument("--dilation", type=float, default=6.0)
    ap.add_argument("--frames", type=int, default=0,
                    help="frames per throughput case (default 4 x devices); replicas deal frames round-robin, so a "
                         "count that is not a multiple of each stage's replicas leaves some replicas a frame more")
    ap.add_argument("--cases", default="l16-1,l16-16,b16-1,b16-4,b16-4-planner,l16-16-pi3")
    ap.add_argument("--testbed", action="store_true",
                    help="run on chorus testbed: network namespaces, the kernel's shaped network (root)")
    a = ap.parse_args()
    build, zoo, out = Path(a.build), Path(a.zoo), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    allow_mpirun_as_root()
    rows = []
    for name in a.cases.split(","):
        model_name, devices, how, objective, *where = CASES[name]
        model = zoo / f"{model_name}.onnx"
        if not model.exists():
            sys.exit(f"{model}: missing; run bench/transformers/export_vit.py {zoo} first")
        plain, cluster = clusters(build, devices, a.dilation, out, *where)
        # The prediction for the real cluster, and for the dilated one the run uses.
        _, real = plan(build, model, how, objective, plain, out)
        plan_path, dilated = plan(build, model, how, objective, cluster, out)
        pr, pd = real["prediction"], dilated["prediction"]
        scale_error = abs(pd["throughput_fps"] * a.dilation / pr["throughput_fps"] - 1)
        # One frame at a time for latency; otherwise enough frames to fill the pipeline and then
        # time a steady state of 2 x devices frames.
        frames = 6 if objective == "latency" else a.frames or max(6, 4 * devices)
        report = out / f"{name}.report.json"
        run = ["run", model, "--plan", plan_path, "--synthetic", frames, "--report", report, "--stall-timeout", "600",
               "--quiet"]
        if a.testbed:
            cmd = [build / "chorus", "testbed", "--cluster", cluster, "--"] + run
        else:
            cmd = ["mpirun", "--oversubscribe", "-np", devices, build / "chorus"] + run + ["--emulate", cluster]
        if objective == "latency":
            cmd += ["--max-in-flight", "1"]
        print(f"== {name}: {model_name} on {devices} {plain.stem} ({how}, {objective}), {frames} frames, "
              f"dilation {a.dilation:g}", flush=True)
        started = time.time()
        log = sh(cmd, timeout=7200, log=out / f"{name}.log")
        r = json.loads(report.read_text())
        late = [l for l in log.splitlines() if "warning: this host was slower" in l]
        row = {
            "case": name, "model": model_name, "cluster": plain.stem, "devices": devices, "plan": how,
            "objective": objective,
            "stages": stage_summary(dilated["stages"]),
            "frames": frames, "dilation": a.dilation,
            "predicted_fps": round(pr["throughput_fps"], 3),
            "measured_fps": round(r["throughput_fps"] * a.dilation, 3),
            "predicted_latency_ms": round(pr["latency_ms"], 1),
            "measured_latency_p50_ms": round(r["latency_ms"]["p50"] / a.dilation, 1),
            "prediction_scales": f"{100 * scale_error:.2f} %",
            "wall_s": round(time.time() - started, 1),
            "emulation_warnings": len(late),
            "network": "testbed" if a.testbed else "emulated",
        }
        metric = "latency" if objective == "latency" else "fps"
        pred = row["predicted_latency_ms"] if metric == "latency" else row["predicted_fps"]
        meas = row["measured_latency_p50_ms"] if metric == "latency" else row["measured_fps"]
        row["error_pct"] = round(100 * (meas / pred - 1), 1)
        print("   ", row, flush=True)
        rows.append(row)
    write_csv(rows, out / "vit_scaling.csv")
    lines = ["| case | cluster | network | plan | stages | predicted fps | measured fps | predicted latency ms | "
             "measured latency p50 ms | error % | emulation warnings |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} ({r['objective']}) | {r['cluster']} | {r['network']} | {r['plan']} | {r['stages']} | "
                     f"{r['predicted_fps']} | {r['measured_fps']} | {r['predicted_latency_ms']} | "
                     f"{r['measured_latency_p50_ms']} | {r['error_pct']} | {r['emulation_warnings']} |")
    (out / "vit_scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
