#!/usr/bin/env bash
# Builds a Debian bookworm root for a Raspberry Pi architecture (arm64 or armhf) holding the
# same -dev packages as the host build, for cross compiling (cmake/toolchains/) and for running
# the cross-built binary under qemu-user (Makefile.pi test-qemu).
#
#   scripts/make_sysroot.sh ARCH DIR [MIRROR]
#
# Why a sysroot: Debian 12's arm64 libopenmpi-dev, libhdf5-dev and libarmadillo-dev are not
# co-installable beside the amd64 ones with multiarch. The packages are really installed
# (maintainer scripts run under qemu through binfmt_misc), so the alternatives that name
# libblas.so.3 and Open MPI's files exist; their absolute links are then made relative, so
# that the cross linker and qemu's -L prefix resolve them inside DIR, not on the host.
set -euo pipefail

arch=${1:?usage: make_sysroot.sh ARCH DIR [MIRROR]}
dir=${2:?usage: make_sysroot.sh ARCH DIR [MIRROR]}
mirror=${3:-http://deb.debian.org/debian}
# Security updates are left out unless asked for: the sysroot only links the binary, each Pi
# installs its own runtime packages, and one suite fewer is one fewer mirror to be mid-sync.
security=${SECURITY_MIRROR:-}

case "$arch" in
  arm64 | armhf) ;;
  *) echo "make_sysroot: ARCH must be arm64 or armhf, not '$arch'" >&2; exit 2 ;;
esac

# Keep in step with scripts/install_deps.sh (the host build's packages) and docker/Dockerfile.
packages=(
  libc6-dev libstdc++-12-dev
  libopenmpi-dev openmpi-bin
  libarmadillo-dev libopenblas-dev
  libhdf5-dev zlib1g-dev
  nlohmann-json3-dev libyaml-cpp-dev libcli11-dev libstb-dev
  libonnx-dev libprotobuf-dev
  libavformat-dev libavcodec-dev libavdevice-dev libswscale-dev libavutil-dev
)

bash "$(dirname "$0")/enable_binfmt.sh" "$arch"

if [ -e "$dir" ]; then
  echo "make_sysroot: $dir exists; remove it to rebuild" >&2
  exit 1
fi
mkdir -p "$(dirname "$dir")"
tmp="$dir.partial"
rm -rf "$tmp"
include=$(IFS=,; echo "${packages[*]}")
echo "make_sysroot: building $dir for $arch from $mirror (a few minutes: packages are configured under qemu)"
sources=("deb $mirror bookworm main" "deb $mirror bookworm-updates main")
[ -n "$security" ] && sources+=("deb $security bookworm-security main")
# A mirror caught mid-sync fails apt's size checks; a later try usually finds it consistent.
for attempt in 1 2 3; do
  rm -rf "$tmp"
  if mmdebstrap --variant=apt --arch="$arch" --mode=root --include="$include" bookworm "$tmp" "${sources[@]}"; then
    break
  fi
  if [ "$attempt" -eq 3 ]; then
    echo "make_sysroot: mmdebstrap failed three times (is $mirror reachable?)" >&2
    exit 1
  fi
  echo "make_sysroot: mmdebstrap failed (try $attempt of 3); trying again in 30 s" >&2
  sleep 30
done

# Absolute symlinks (libblas.so.3 -> /etc/alternatives/... -> /usr/lib/...) would point into
# the build machine; make each one relative to its own folder inside the sysroot.
root=$(cd "$tmp" && pwd)
find "$root" -type l -lname '/*' -print0 | while IFS= read -r -d '' link; do
  target=$(readlink "$link")
  ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$root$target")" "$link"
done
mv "$tmp" "$dir"
echo "make_sysroot: $dir is ready ($(du -sh "$dir" | cut -f1))"
