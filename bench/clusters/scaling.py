#!/usr/bin/python3
"""A model on 1..N emulated devices for the planner's throughput, latency and energy plans:
predicted and measured throughput, latency and energy per frame.

    bench/clusters/scaling.py MODEL.h5 [--class pi3] [--network wifi] [--devices 1-9]
                              [--objectives throughput,latency,energy] [--dilation 1]
                              [--frames 0] [--out build/scaling/NAME] [--predict-only]

For each device count and objective: `chorus plan MODEL --cluster C --objective O` on a cluster
of that many devices of the class (`chorus cluster`, power figures from
profiles/device-classes.json), then `mpirun -np RANKS chorus run --plan --emulate --synthetic F
--report` (RANKS: the plan's, which the energy objective may make fewer than the devices), one
frame at a time (--max-in-flight 1) for the latency plans. Time dilation as in
bench/emulated_runs.py; measured energy is recomputed from each rank's compute and wall time
(undilated) and bytes with the class's power figures, the report's own formula.

Writes OUT/scaling.csv and OUT/scaling.md.
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emulated_runs import ROOT, allow_mpirun_as_root, clusters, plan, sh, stage_summary, write_csv  # noqa: E402


def device_counts(text):
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(x) for x in text.split(",")]


def measured_energy(report, power, dilation):
    """Joules per frame over the run, every rank, times undilated: the report's formula."""
    total = 0.0
    wall = report["wall_s"] / dilation  # every device is on for the whole run
    for r in report["ranks"]:
        compute = r["compute_s"] / dilation
        total += (power["busy_w"] * compute + power["idle_w"] * (wall - compute) +
                  power["radio_j_per_mb_sent"] * r["bytes_sent"] / 1e6 +
                  power["radio_j_per_mb_received"] * r["bytes_received"] / 1e6)
    return total / report["frames"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--class", dest="device_class", default="pi3")
    ap.add_argument("--network", default="wifi")
    ap.add_argument("--devices", default="1-9")
    ap.add_argument("--objectives", default="throughput,latency,energy",
                    help="throughput, latency, energy, and energy@F (least energy with at least F frames/s)")
    ap.add_argument("--dilation", type=float, default=1.0)
    ap.add_argument("--frames", type=int, default=0, help="frames per throughput run (default max(6, 3 x ranks))")
    ap.add_argument("--out", default="")
    ap.add_argument("--predict-only", action="store_true", help="plan and predict, run nothing")
    ap.add_argument("--from-reports", action="store_true",
                    help="run nothing: make the tables again from the reports of an earlier run in OUT")
    a = ap.parse_args()
    build, model = Path(a.build), Path(a.model)
    out = Path(a.out or ROOT / "build" / "scaling" / f"{model.stem}-{a.device_class}-{a.network}")
    out.mkdir(parents=True, exist_ok=True)
    allow_mpirun_as_root()
    power = json.loads((ROOT / "profiles" / "device-classes.json").read_text())["device_classes"][a.device_class].get("power")
    rows = []
    for devices in device_counts(a.devices):
        plain, dilated_cluster = clusters(build, devices, a.dilation, out, a.device_class, a.network)
        for objective in a.objectives.split(","):
            # energy@F: least energy per frame at F frames/s or more (--min-fps, dilated with the cluster).
            kind, _, min_fps = objective.partition("@")
            extra = lambda d: ["--min-fps", float(min_fps) / d] if min_fps else []  # noqa: E731
            try:
                _, real = plan(build, model, "planner", kind, plain, out, extra(1.0))
            except SystemExit as e:  # no plan reaches F frames/s on this few devices
                print(f"   {devices} devices, {objective}: {str(e).splitlines()[-1]}", flush=True)
                continue
            plan_path, dilated = plan(build, model, "planner", kind, dilated_cluster, out, extra(a.dilation))
            pr = real["prediction"]
            ranks = real["ranks"]
            row = {"model": model.stem, "class": a.device_class, "network": a.network, "devices": devices,
                   "objective": objective, "ranks": ranks, "stages": stage_summary(real["stages"]),
                   "predicted_fps": round(pr["throughput_fps"], 3), "predicted_latency_ms": round(pr["latency_ms"], 1),
                   "predicted_j_per_frame": round(pr.get("energy_j_per_frame", float("nan")), 3)}
            if power and kind == "latency":
                # One frame at a time, as the latency run goes: every device on for one latency.
                busy, period = pr["rank_busy_s"], pr["latency_ms"] / 1e3
                radio = pr["energy_j_per_frame"] - sum(power["busy_w"] * b + power["idle_w"] * (pr["period_s"] - b)
                                                      for b in busy)
                row["predicted_j_one_at_a_time"] = round(
                    sum(power["busy_w"] * b + power["idle_w"] * (period - b) for b in busy) + radio, 3)
            if not a.predict_only:
                latency = kind == "latency"
                frames = 6 if latency else a.frames or max(6, 3 * ranks)
                report = out / f"{devices}-{objective}.report.json"
                cmd = ["mpirun", "--oversubscribe", "-np", ranks, build / "chorus", "run", model, "--plan", plan_path,
                       "--emulate", dilated_cluster, "--synthetic", frames, "--report", report,
                       "--stall-timeout", "900", "--quiet"]
                if latency:
                    cmd += ["--max-in-flight", "1"]
                print(f"== {model.stem} on {devices} {a.device_class} ({objective}): {row['stages']}, {frames} frames",
                      flush=True)
                started = time.time()
                if a.from_reports:
                    log = (out / f"{devices}-{objective}.log").read_text()
                else:
                    log = sh(cmd, timeout=7200, log=out / f"{devices}-{objective}.log")
                r = json.loads(report.read_text())
                row.update({
                    "frames": frames, "dilation": a.dilation,
                    "measured_fps": round(r["throughput_fps"] * a.dilation, 3),
                    "measured_latency_p50_ms": round(r["latency_ms"]["p50"] / a.dilation, 1),
                    "measured_j_per_frame": round(measured_energy(r, power, a.dilation), 3) if power else "",
                    "wall_s": round(time.time() - started, 1),
                    "emulation_warnings": sum("warning: this host was slower" in l for l in log.splitlines()),
                })
            print("   ", row, flush=True)
            rows.append(row)
    write_csv(rows, out / "scaling.csv")
    measured = not a.predict_only
    head = ["devices", "objective", "ranks", "plan", "predicted fps", "predicted latency ms", "predicted J/frame"]
    if measured:
        head += ["measured fps", "measured latency p50 ms", "measured J/frame (whole run)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        # A latency plan runs one frame at a time: its energy is predicted for that too (in brackets).
        j = r["predicted_j_per_frame"]
        if "predicted_j_one_at_a_time" in r:
            j = f"{j} ({r['predicted_j_one_at_a_time']})"
        cells = [r["devices"], r["objective"], r["ranks"], r["stages"], r["predicted_fps"], r["predicted_latency_ms"], j]
        if measured:
            cells += [r["measured_fps"], r["measured_latency_p50_ms"], r["measured_j_per_frame"]]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    (out / "scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
