#!/usr/bin/env bash
# `make run`: the bundled default job. Generates deterministic AlexNet weights once, then runs
# synthetic frames through it and prints the result.
set -euo pipefail
build=${1:-build}
model=models/alexnet.json
weights=$build/zoo/alexnet.h5
mkdir -p "$build/zoo"
if [ ! -f "$weights" ]; then
  echo "== generating weights: $build/chorus init-weights $model --seed 1 -o $weights"
  "$build/chorus" init-weights "$model" --seed 1 -o "$weights"
fi
echo "== $build/chorus run $weights --synthetic 8 --top 3"
"$build/chorus" run "$weights" --synthetic 8 --top 3
