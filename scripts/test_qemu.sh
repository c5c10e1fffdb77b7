#!/usr/bin/env bash
# Proves a cross-built Chorus under qemu-user: its outputs must match the host build's.
#   scripts/test_qemu.sh ARCH SYSROOT CROSS_BUILD HOST_BUILD
# Correctness only, never timings (qemu runs about 200x slower than the board). Three checks:
#   1. single-rank LeNet-5 with deterministic weights, against the host build;
#   2. a real Keras sample from ../shared/keras-samples, against the host build and the
#      reference output that Keras wrote (skipped, saying so, when ../shared is absent);
#   3. a 2-rank mpirun pipeline of LeNet-5 run by the target's own Open MPI, against the host.
# The target's programs run inside SYSROOT as a chroot: qemu's -L prefix alone misses statx
# on armhf, and 32-bit readdir fails on ext4's 64-bit directory offsets, which Open MPI's
# component search needs; the chroot's own folders are on a tmpfs for that reason.
set -euo pipefail

arch=${1:?usage: test_qemu.sh ARCH SYSROOT CROSS_BUILD HOST_BUILD}
sysroot=$(cd "${2:?}" && pwd)
cross_build=$(cd "${3:?}" && pwd)
host_build=$(cd "${4:?}" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
shared=${CHORUS_SHARED_DIR:-$repo/../shared}
tolerance=${TOLERANCE:-1e-4}

bash "$repo/scripts/enable_binfmt.sh" "$arch"
file "$cross_build/chorus" | grep -q -E 'ARM|aarch64' || {
  echo "test_qemu: $cross_build/chorus is not an ARM binary" >&2
  exit 1
}

# The chroot: the sysroot copied onto a tmpfs, with /proc, /sys, /dev and the work folder.
work=$(mktemp -d /tmp/chorus-qemu.XXXXXX)
root=$work/root
mounts=()
cleanup() {
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[i]}" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$root"
mount -t tmpfs -o size=4g tmpfs "$root"
mounts+=("$root")
cp -a "$sysroot/." "$root/"
for d in proc sys dev dev/shm; do
  mkdir -p "$root/$d"
  mount --bind "/$d" "$root/$d"
  mounts+=("$root/$d")
done
mkdir -p "$root/chorus" "$root/data"
cp "$cross_build/chorus" "$root/chorus/chorus"
data=$root/data

in_chroot() { chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root OMPI_ALLOW_RUN_AS_ROOT=1 \
  OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 "$@"; }

compare() {  # compare NAME GOT WANT
  /usr/bin/python3 - "$@" "$tolerance" <<'EOF'
import sys, numpy as np
name, got, want, tol = sys.argv[1], np.load(sys.argv[2]), np.load(sys.argv[3]), float(sys.argv[4])
if got.shape != want.shape:
    sys.exit(f"test_qemu: {name}: shape {got.shape}, expected {want.shape}")
err = float(np.max(np.abs(got - want)) / max(1e-30, float(np.max(np.abs(want)))))
print(f"test_qemu: {name}: {got.shape} max error {err:.2e} relative to the largest output (limit {tol:g})")
if not err <= tol:
    sys.exit(f"test_qemu: {name}: FAILED")
EOF
}

failures=0
check() {  # check NAME GOT WANT
  if ! compare "$@"; then failures=$((failures + 1)); fi
}

echo "== test_qemu: $arch binary: $(file -b "$cross_build/chorus" | cut -d, -f1-2)"
echo "== qemu: $(in_chroot /chorus/chorus --version 2>&1 | head -1)"

# 1. LeNet-5, one rank.
"$host_build/chorus" init-weights "$repo/models/lenet5.json" --seed 3 -o "$data/lenet5.h5" >/dev/null
"$host_build/chorus" run "$data/lenet5.h5" --synthetic 4 --seed 7 --quiet --output "$data/lenet5.host.npy" >/dev/null
start=$SECONDS
in_chroot /chorus/chorus run /data/lenet5.h5 --synthetic 4 --seed 7 --quiet --output /data/lenet5.qemu.npy >/dev/null
echo "   LeNet-5 on one rank under qemu: $((SECONDS - start)) s"
check "LeNet-5, 1 rank" "$data/lenet5.qemu.npy" "$data/lenet5.host.npy"

# 2. A real Keras model with its Keras-computed reference output.
sample=mnist_seq_k222_listcfg
if [ -f "$shared/keras-samples/$sample.h5" ]; then
  cp "$shared/keras-samples/$sample.h5" "$shared/keras-samples/$sample.input.npy" "$data/"
  "$host_build/chorus" run "$data/$sample.h5" --input "$data/$sample.input.npy" --quiet \
    --output "$data/$sample.host.npy" >/dev/null
  start=$SECONDS
  in_chroot /chorus/chorus run "/data/$sample.h5" --input "/data/$sample.input.npy" --quiet \
    --output "/data/$sample.qemu.npy" >/dev/null
  echo "   $sample on one rank under qemu: $((SECONDS - start)) s"
  check "$sample against the host build" "$data/$sample.qemu.npy" "$data/$sample.host.npy"
  check "$sample against Keras" "$data/$sample.qemu.npy" "$shared/keras-samples/$sample.output.npy"
else
  echo "   SKIPPED the Keras sample: $shared/keras-samples is absent (it is beside the clone in CI)"
fi

# 3. Two ranks, a pipeline, under the target's mpirun. qemu has no process_vm_readv, which
# Open MPI's shared-memory single-copy path uses.
start=$SECONDS
in_chroot mpirun --oversubscribe -np 2 --mca btl self,vader --mca btl_vader_single_copy_mechanism none \
  /chorus/chorus run /data/lenet5.h5 --synthetic 4 --seed 7 --strategy pipeline --quiet \
  --output /data/lenet5.mpi.npy --report /data/lenet5.mpi.json >/dev/null
echo "   LeNet-5 as a 2-rank pipeline under qemu: $((SECONDS - start)) s"
ranks=$(/usr/bin/python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['ranks']))" "$data/lenet5.mpi.json")
if [ "$ranks" != 2 ]; then
  echo "test_qemu: the pipeline's report names $ranks ranks, expected 2" >&2
  failures=$((failures + 1))
fi
check "LeNet-5, 2-rank pipeline" "$data/lenet5.mpi.npy" "$data/lenet5.host.npy"

# 4. A small Vision Transformer exported by PyTorch (attention, layer norm, GELU: their vector
# code in NEON's registers) against PyTorch's output.
vit=vit_tiny_op14
cp "$repo/tests/data/onnx/$vit.onnx" "$repo/tests/data/onnx/$vit.input.npy" "$data/"
start=$SECONDS
in_chroot /chorus/chorus run "/data/$vit.onnx" --input "/data/$vit.input.npy" --quiet --output "/data/$vit.qemu.npy" \
  >/dev/null
echo "   $vit on one rank under qemu: $((SECONDS - start)) s"
check "$vit against PyTorch" "$data/$vit.qemu.npy" "$repo/tests/data/onnx/$vit.output.npy"

# 5. A small C3D on 5-D clips exported by PyTorch (Conv3D, 3-D pooling) against PyTorch's output.
clip=clip_net
cp "$repo/tests/data/onnx/$clip.onnx" "$repo/tests/data/onnx/$clip.input.npy" "$data/"
in_chroot /chorus/chorus run "/data/$clip.onnx" --input "/data/$clip.input.npy" --quiet --output "/data/$clip.qemu.npy" \
  >/dev/null
check "$clip against PyTorch" "$data/$clip.qemu.npy" "$repo/tests/data/onnx/$clip.output.npy"

# 6. Convolutions of every kind with LeakyRelu, Sigmoid and Tanh (the sigmoid's vector code in
# NEON's registers) against PyTorch's output.
conv=conv_variants
cp "$repo/tests/data/onnx/$conv.onnx" "$repo/tests/data/onnx/$conv.input.npy" "$data/"
in_chroot /chorus/chorus run "/data/$conv.onnx" --input "/data/$conv.input.npy" --quiet --output "/data/$conv.qemu.npy" \
  >/dev/null
check "$conv against PyTorch" "$data/$conv.qemu.npy" "$repo/tests/data/onnx/$conv.output.npy"

if [ "$failures" -ne 0 ]; then
  echo "test_qemu: $failures check(s) failed" >&2
  exit 1
fi
echo "test_qemu: all checks passed for $arch"
