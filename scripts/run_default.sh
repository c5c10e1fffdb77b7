#!/usr/bin/env bash
# `make run`: the bundled default job. Generates deterministic AlexNet weights once, then
# streams synthetic frames through a 4-rank pipeline on this machine (mpirun, local ranks)
# and prints the plan and the report.
set -euo pipefail
build=${1:-build}
ranks=${RANKS:-4}
model=models/alexnet.json
weights=$build/zoo/alexnet.h5
mkdir -p "$build/zoo"
if [ ! -f "$weights" ]; then
  echo "== generating weights: $build/chorus init-weights $model --seed 1 -o $weights"
  "$build/chorus" init-weights "$model" --seed 1 -o "$weights"
fi
mpi_flags=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi_flags+=(--allow-run-as-root)
cmd=(mpirun "${mpi_flags[@]}" -np "$ranks" "$build/chorus" run "$weights" --synthetic 16 --strategy pipeline
     --top 1 --report "$build/default-report.json")
echo "== ${cmd[*]}"
"${cmd[@]}"
