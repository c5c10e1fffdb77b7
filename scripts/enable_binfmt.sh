#!/usr/bin/env bash
# Makes this machine run ARM binaries through qemu-user-static (binfmt_misc), which the
# sysroot build (its maintainer scripts) and Makefile.pi test-qemu need. Idempotent.
#   scripts/enable_binfmt.sh arm64|armhf
set -euo pipefail
arch=${1:?usage: enable_binfmt.sh arm64|armhf}
case "$arch" in
  arm64) qemu=qemu-aarch64 ;;
  armhf) qemu=qemu-arm ;;
  *) echo "enable_binfmt: unknown architecture '$arch'" >&2; exit 2 ;;
esac
if arch-test "$arch" >/dev/null 2>&1; then
  exit 0
fi
# In containers binfmt_misc is often not mounted, and nothing registers qemu at boot.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true
fi
update-binfmts --enable "$qemu" || true
if ! arch-test "$arch"; then
  echo "enable_binfmt: this machine cannot run $arch binaries through qemu-user-static." >&2
  echo "  Needs root, the packages qemu-user-static, binfmt-support and arch-test, and a" >&2
  echo "  kernel with binfmt_misc (in a container: --privileged)." >&2
  exit 1
fi
