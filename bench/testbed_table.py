#!/usr/bin/python3
"""Compares two bench/sweep runs of the same plans: in-process emulation and the testbed.

    bench/testbed_table.py EMULATED/sweep.csv TESTBED/sweep.csv [...more pairs]

Prints a Markdown table: per model, devices and strategy, the planner's prediction, the
measured throughput under --emulate and on the testbed (the kernel's shaped network), their
difference, the median latencies and the bytes each frame put on the network.
"""
import csv
import sys


def rows(path):
    with open(path) as f:
        return {(r["model"], r["devices"], r["strategy"]): r for r in csv.DictReader(f)}


def num(v):
    return float(v) if v not in ("", None) else None


def main():
    if len(sys.argv) < 3 or len(sys.argv) % 2 != 1:
        sys.exit(__doc__)
    print("| model | devices | strategy | predicted img/s | emulated img/s | testbed img/s | testbed / emulated |"
          " latency p50 s (emulated, testbed) | MB per frame |")
    print("|---|---|---|---|---|---|---|---|---|")
    for emulated_path, testbed_path in zip(sys.argv[1::2], sys.argv[2::2]):
        emulated, testbed = rows(emulated_path), rows(testbed_path)
        for key in sorted(emulated, key=lambda k: (k[0], int(k[1]), k[2])):
            e, t = emulated[key], testbed.get(key, {})
            fe, ft = num(e.get("measured_fps")), num(t.get("measured_fps"))
            if fe is None and ft is None:
                continue
            ratio = f"{100 * (ft / fe - 1):+.1f} %" if fe and ft else "-"
            le, lt = num(e.get("latency_p50_ms")), num(t.get("latency_p50_ms"))
            lat = f"{le / 1e3:.2f}, {lt / 1e3:.2f}" if le is not None and lt is not None else "-"
            print(f"| {key[0]} | {key[1]} | {key[2]} | {e.get('predicted_fps', '')} | {fe if fe is not None else '-'} |"
                  f" {ft if ft is not None else '-'} | {ratio} | {lat} | {e.get('bytes_per_frame_mb', '')} |")


if __name__ == "__main__":
    main()
