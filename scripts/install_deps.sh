#!/usr/bin/env bash
# Installs the Debian 12 packages Chorus builds and tests with. Idempotent: does nothing
# when everything is present, so `make run` / `make test` can call it every time. Arguments
# name extra packages (e.g. python3-matplotlib for `make sweep`). CHORUS_DEPS=build installs
# only what the program needs to build (a Pi building natively: Makefile.pi native).
set -euo pipefail

build_packages=(
  build-essential cmake pkg-config
  libopenmpi-dev openmpi-bin
  libarmadillo-dev libopenblas-dev
  libhdf5-dev zlib1g-dev
  nlohmann-json3-dev libyaml-cpp-dev libcli11-dev libstb-dev
  libonnx-dev libprotobuf-dev
  libavformat-dev libavcodec-dev libavdevice-dev libswscale-dev libavutil-dev
)
# Tests, benchmarks, fuzzing, the deployment checks, the PyTorch-exported test models (and h5py,
# which reads a Keras file into PyTorch for the EfficientNetB0 check), the
# testbed's network tools (ip, tc, nft; its tests run where root may make namespaces), ffmpeg
# (the program, which makes the decoding tests' videos) and GStreamer's RTSP server (an IP
# camera's stream in the video tests).
test_packages=(
  libgtest-dev libgmock-dev libbenchmark-dev iproute2 nftables ffmpeg
  gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  clang libclang-rt-14-dev
  python3-yaml python3-jsonschema python3-numpy
  python3-torch python3-torchvision python3-onnx python3-h5py
)
packages=("${build_packages[@]}")
[ "${CHORUS_DEPS:-all}" = build ] || packages+=("${test_packages[@]}")
packages+=("$@")

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "chorus: installing missing packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=sudo
  else
    echo "chorus: these Debian packages are missing and I am not root (and there is no sudo):" >&2
    echo "  apt-get install ${missing[*]}" >&2
    exit 1
  fi
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get update -qq || ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
  echo "chorus: apt-get could not install: ${missing[*]}" >&2
  echo "  (is this Debian 12 with its package mirrors reachable?)" >&2
  exit 1
fi
