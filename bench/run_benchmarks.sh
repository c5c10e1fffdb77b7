#!/usr/bin/env bash
# Layer benchmarks and whole-model timings for the zoo. Usage: bench/run_benchmarks.sh [BUILD]
# OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are left as the environment sets them unless
# CHORUS_BENCH_NATIVE_BLAS=1, which unsets both (for every case in this run alike).
set -euo pipefail
build=${1:-build}
if [ "${CHORUS_BENCH_NATIVE_BLAS:-0}" = 1 ]; then
  unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
  echo "note: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for this run (OpenBLAS picks its native kernels)"
else
  echo "note: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} as set by the environment"
fi
"$build/bench/bench_layers" --benchmark_min_time=0.2
mkdir -p "$build/zoo"
for m in lenet5 alexnet vgg16 resnet18 resnet50 mobilenetv2 xception; do
  [ -f "$build/zoo/$m.h5" ] || "$build/chorus" init-weights "models/$m.json" --seed 1 -o "$build/zoo/$m.h5" >/dev/null
  echo "== $m"
  "$build/chorus" bench "$build/zoo/$m.h5" --frames 5 --warmup 1 --threads "${THREADS:-1}" | grep -E "time|rate|memory"
done
