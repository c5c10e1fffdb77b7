#!/usr/bin/python3
"""A camera at 30 frames/s into a model on emulated devices: frames captured, processed and
dropped, and the latency from capture to result.

    bench/video/realtime.py MODEL.h5 [--class pi3] [--network wifi] [--devices 1,3,9]
                            [--drops oldest,newest] [--seconds 10] [--fps 30] [--queue 10]
                            [--out build/realtime/NAME]

Makes a SECONDS-long 320x240 video at FPS with Debian's ffmpeg (testsrc2, H.264), plans the model
for throughput on each device count (`chorus plan --cluster`), and runs
`mpirun -np N chorus run MODEL --input video.mp4 --realtime --drop D --queue Q --plan P --emulate C
--report R --results R.jsonl`: frames come at the video's rate, wait in a queue of Q, and the
full queue drops the oldest or the newest. The planner's throughput says how many frames the
cluster can take; the rest must be dropped. Writes OUT/realtime.csv and OUT/realtime.md.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emulated_runs import ROOT, allow_mpirun_as_root, clusters, plan, sh, stage_summary, write_csv  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--class", dest="device_class", default="pi3")
    ap.add_argument("--network", default="wifi")
    ap.add_argument("--devices", default="1,3,9")
    ap.add_argument("--drops", default="oldest,newest")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--queue", type=int, default=10)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    build, model = Path(a.build), Path(a.model)
    out = Path(a.out or ROOT / "build" / "realtime" / f"{model.stem}-{a.device_class}-{a.network}")
    out.mkdir(parents=True, exist_ok=True)
    allow_mpirun_as_root()
    video = out / f"camera-{a.fps}fps.mp4"
    frames = int(round(a.seconds * a.fps))
    sh(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={a.fps}", "-frames:v", frames,
        "-c:v", "libx264", "-pix_fmt", "yuv420p", video])
    rows = []
    for devices in [int(d) for d in a.devices.split(",")]:
        plain, _ = clusters(build, devices, 1.0, out, a.device_class, a.network)
        plan_path, p = plan(build, model, "planner", "throughput", plain, out)
        for drop in a.drops.split(","):
            name = f"{devices}-{drop}"
            report = out / f"{name}.report.json"
            print(f"== {model.stem} on {devices} {a.device_class}: {stage_summary(p['stages'])}, drop {drop}", flush=True)
            sh(["mpirun", "--oversubscribe", "-np", p["ranks"], build / "chorus", "run", model, "--input", video,
                "--realtime", "--drop", drop, "--queue", a.queue, "--plan", plan_path, "--emulate", plain, "--report",
                report, "--results", out / f"{name}.jsonl", "--quiet", "--stall-timeout", "600"],
               timeout=3600, log=out / f"{name}.log")
            r = json.loads(report.read_text())
            i = r["input"]
            rows.append({
                "model": model.stem, "devices": devices, "plan": stage_summary(p["stages"]), "drop": drop,
                "video_fps": a.fps, "queue": a.queue,
                "predicted_fps": round(p["prediction"]["throughput_fps"], 2),
                "captured": i["frames_captured"], "processed": i["frames_processed"], "dropped": i["frames_dropped"],
                # Frames taken over the capture's duration: what the cluster kept up with.
                "processed_per_s": round(i["frames_processed"] / (i["frames_captured"] / a.fps), 2),
                "capture_to_result_p50_ms": round(i["latency_ms"]["p50"], 1),
                "capture_to_result_p90_ms": round(i["latency_ms"]["p90"], 1),
                "capture_to_result_p99_ms": round(i["latency_ms"]["p99"], 1),
                "pipeline_latency_p50_ms": round(r["latency_ms"]["p50"], 1),
            })
            print("   ", rows[-1], flush=True)
    write_csv(rows, out / "realtime.csv")
    lines = ["| devices | plan | drop | predicted fps | captured | processed | dropped | processed / s of video | "
             "capture to result p50 / p90 / p99 ms | pipeline latency p50 ms |", "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['devices']} | {r['plan']} | {r['drop']} | {r['predicted_fps']} | {r['captured']} | "
                     f"{r['processed']} | {r['dropped']} | {r['processed_per_s']} | {r['capture_to_result_p50_ms']} / "
                     f"{r['capture_to_result_p90_ms']} / {r['capture_to_result_p99_ms']} | {r['pipeline_latency_p50_ms']} |")
    (out / "realtime.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
