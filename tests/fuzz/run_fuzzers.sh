#!/usr/bin/env bash
# Fuzzes every parser for a bounded time with libFuzzer (clang + AddressSanitizer), starting
# from the seed corpus and the inputs that once crashed. `make test` runs it after CTest.
# Usage: tests/fuzz/run_fuzzers.sh [SECONDS_PER_TARGET (default 20)] [BUILD_DIR (build-fuzz)]
# A crash, a timeout (an input taking over 25 s, AddressSanitizer included) or memory beyond 2 GB fails the run; the input
# is kept under BUILD_DIR/artifacts: copy it to tests/fuzz/regressions/TARGET/ with the fix, so
# that CTest replays it from then on.
set -euo pipefail
seconds=${1:-20}
build=${2:-build-fuzz}
root=$(cd "$(dirname "$0")/../.." && pwd)
targets=(keras_config keras_h5 keras_archive onnx plan cluster hostfile npy image journal video)

if ! command -v clang++ >/dev/null; then
  echo "fuzz: clang++ is missing (apt-get install clang); scripts/install_deps.sh installs it" >&2
  exit 1
fi
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCHORUS_FUZZ=ON > "$build.configure.log" 2>&1 || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" -j "$(nproc)" --target "${targets[@]/#/fuzz_}" > "$build.build.log" 2>&1 \
  || { tail -40 "$build.build.log"; exit 1; }

mkdir -p "$build/artifacts"
# No leak checks: HDF5 and yaml-cpp keep caches for the process's life. A C malloc that cannot be
# met returns NULL, as it does outside AddressSanitizer (HDF5 asks for sizes read from a corrupt
# file and reports the failure); C++ `new` still fails the run, and so do allocations over 2 GB.
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1
export CHORUS_HDF5_PROBE_S=1        # a file HDF5 hangs on is given up after 1 s (30 s by default), so the
                                    # fuzzer spends its time on new inputs (a valid one takes milliseconds)
failed=()
for t in "${targets[@]}"; do
  work="$build/corpus/$t"
  mkdir -p "$work"
  seeds=("$root/tests/fuzz/corpus/$t")
  [ -d "$root/tests/fuzz/regressions/$t" ] && seeds+=("$root/tests/fuzz/regressions/$t")
  log="$build/fuzz_$t.log"
  if "$build/fuzz_$t" "$work" "${seeds[@]}" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 \
       -malloc_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$build/artifacts/${t}-" > "$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    echo "fuzz $t: no crash in ${seconds} s (${runs} inputs)"
  else
    echo "fuzz $t: FAILED, see $log and $build/artifacts/" >&2
    # The last report is the fuzzer's own: earlier ones may come from HDF5 probe children
    # (io/hdf5/hdf5_probe), which die on corrupt files by design and are reported as errors.
    grep -E "ERROR|SUMMARY|Test unit written" "$log" | tail -3 >&2
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
  exit 1
fi
