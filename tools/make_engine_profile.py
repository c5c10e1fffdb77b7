#!/usr/bin/env python3
"""Writes profiles/pi3-engine.json: the *engine* calibration of an emulated Raspberry Pi 3
(and, with --device pi4, profiles/pi4-engine.json for a Raspberry Pi 4).

Chorus' own layer times measured on the development host (profiles/host.json, `chorus profile`,
1 thread) are scaled by an estimated host / Pi 3 speed ratio built from published sgemm figures,
so that emulation estimates what Chorus itself would do on real Pis. It is an estimate, not a
measurement: see docs/results.md for the sources and the uncertainty.

    python3 tools/make_engine_profile.py [--host-sgemm-gflops 100] [-o profiles/pi3-engine.json]
    python3 tools/make_engine_profile.py --device pi4 [-o profiles/pi4-engine.json]

The Pi 4 is the Pi 3 estimate made 2.5x faster, the factor profiles/pi4-estimate.json already
assumes (Cortex-A72 at 1.5 GHz against Cortex-A53 at 1.2 GHz, a wider NEON pipeline, LPDDR4):
an estimate on an estimate, not a measurement.
"""
import argparse
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent

# One Cortex-A53 core, OpenBLAS sgemm with its Cortex-A53 kernel: 6.4 GFLOP/s at n=2048 on the
# RK3399's A53 cluster (about 1.42 GHz) - OpenMathLib/OpenBLAS pull request 2643.
A53_SGEMM_GFLOPS = 6.4
A53_SGEMM_CLOCK_GHZ = 1.42
PI3_CLOCK_GHZ = 1.2  # Raspberry Pi 3 Model B
# Four A53 cores share one LPDDR2 bus: ncnn runs VGG16 2.64x faster on 4 threads than on 1 on
# a Snapdragon 410 (4x A53 at 1.2 GHz: 2222 ms vs 841 ms; Tencent/ncnn benchmark/README.md).
PI3_FOUR_THREAD_SPEEDUP = 2222.08 / 840.82
# A Raspberry Pi 4 against a Pi 3, as profiles/pi4-estimate.json assumes it.
PI4_OVER_PI3 = 2.5


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default=str(ROOT / "profiles/host.json"))
    ap.add_argument("--host-sgemm-gflops", type=float, default=100.0,
                    help="this host's 1-thread sgemm rate when host.json was measured "
                         "(bench_layers BM_Sgemm on VGG16 conv shapes: 67-121 GFLOP/s, OPENBLAS_CORETYPE=Haswell)")
    ap.add_argument("--device", choices=("pi3", "pi4"), default="pi3")
    ap.add_argument("-o", "--output")
    a = ap.parse_args()
    output = a.output or str(ROOT / f"profiles/{a.device}-engine.json")

    pi3_gflops = A53_SGEMM_GFLOPS * PI3_CLOCK_GHZ / A53_SGEMM_CLOCK_GHZ * PI3_FOUR_THREAD_SPEEDUP
    device_gflops = pi3_gflops * (PI4_OVER_PI3 if a.device == "pi4" else 1.0)
    ratio = a.host_sgemm_gflops / device_gflops
    host = json.loads(pathlib.Path(a.host).read_text())
    pi4 = (f", x {PI4_OVER_PI3} for a Raspberry Pi 4 (the factor of pi4-estimate.json, not measured)"
           if a.device == "pi4" else "")
    out = {
        "device": f"{a.device}-engine",
        "calibration": (
            f"engine (estimate): Chorus' own layer times on the development host ({host.get('calibration', '')}) "
            f"x {ratio:.2f}, the host's 1-thread sgemm rate ({a.host_sgemm_gflops:g} GFLOP/s) over an estimated "
            f"Raspberry Pi {a.device[-1]} 4-thread sgemm rate ({device_gflops:.1f} GFLOP/s: OpenBLAS Cortex-A53 kernel "
            f"{A53_SGEMM_GFLOPS} GFLOP/s at {A53_SGEMM_CLOCK_GHZ} GHz scaled to {PI3_CLOCK_GHZ} GHz, "
            f"x {PI3_FOUR_THREAD_SPEEDUP:.2f} for 4 threads as ncnn gains on 4x A53{pi4}); see docs/results.md"),
        f"host_to_{a.device}_ratio": ratio,
        "seconds_per_layer": host.get("seconds_per_layer", 0.0) * ratio,
        "macs_per_second": {k: v / ratio for k, v in host["macs_per_second"].items()},
        "layer_seconds": {m: {l: t * ratio for l, t in layers.items()} for m, layers in host["layer_seconds"].items()},
    }
    pathlib.Path(output).write_text(json.dumps(out, indent=2) + "\n")
    total = {m: sum(l.values()) for m, l in out["layer_seconds"].items()}
    print(f"wrote {output}: ratio {ratio:.2f}; " + ", ".join(f"{m} {t:.2f} s/frame" for m, t in total.items()))


if __name__ == "__main__":
    main()
