#!/usr/bin/env bash
# Makefile.pi's deploy and run, as `make -n` prints them for a 9-Pi hostfile: one copy per host
# to the same path, the plan and cluster with them, and mpirun on the first host over TCP on the
# chosen interface only. Also: unknown architectures and boards are refused.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
fail() { echo "FAILED: $*" >&2; echo "--- make -n printed:" >&2; echo "$out" >&2; exit 1; }

hostfile=$(mktemp)
trap 'rm -f "$hostfile"' EXIT
printf '# three Pis\npi-a slots=1\n\npi-b slots=1   # comment\npi-c\npi-a\n' > "$hostfile"

out=$(make -s -f Makefile.pi -n deploy run HOSTFILE="$hostfile" IFACE=wlan1 REMOTE_DIR=/srv/chorus WEIGHTS=README.md)
for h in pi-a pi-b pi-c; do
  n=$(grep -c "^rsync .*build-arm64/chorus README.md out/pi/plan.json out/pi/cluster.json $h:/srv/chorus/\$" <<<"$out" || true)
  [ "$n" -eq 1 ] || fail "expected one copy to $h, found $n"
done
[ "$(grep -c '^rsync .*build-arm64/chorus' <<<"$out")" -eq 3 ] || fail "expected 3 copies (pi-a twice in the hostfile counts once)"
grep -q "rsync .* $hostfile pi-a:/srv/chorus/hostfile" <<<"$out" || fail "hostfile not copied to the first host"
grep -q "^ssh .* pi-a 'cd /srv/chorus && mpirun --hostfile hostfile" <<<"$out" || fail "mpirun not started on the first host"
grep -q -- "--mca btl tcp,self,vader --mca btl_tcp_if_include wlan1 --mca oob_tcp_if_include wlan1" <<<"$out" \
  || fail "transport settings missing"
grep -q -- "/srv/chorus/chorus run /srv/chorus/README.md --plan /srv/chorus/plan.json" <<<"$out" || fail "run command"

# The real 9-Pi hostfile of the docs.
out=$(make -s -f Makefile.pi -n deploy run HOSTFILE=hostfiles/pi9 WEIGHTS=README.md)
[ "$(grep -c '^rsync .*build-arm64/chorus' <<<"$out")" -eq 9 ] || fail "hostfiles/pi9: expected 9 copies"

out=$(make -s -f Makefile.pi -n build ARCH=armhf PI=pi4)
grep -q "cmake/toolchains/arm-linux-gnueabihf.cmake" <<<"$out" || fail "armhf toolchain"
grep -q -- '-DCHORUS_CPU_FLAGS="-mcpu=cortex-a72 -mfpu=neon-fp-armv8 -mfloat-abi=hard"' <<<"$out" || fail "armhf pi4 flags"

out=$(make -s -f Makefile.pi -n build ARCH=armel 2>&1 || true)
grep -q "ARCH must be arm64 or armhf" <<<"$out" || fail "ARCH=armel not refused"
out=$(make -s -f Makefile.pi -n build PI=pi1 2>&1 || true)
grep -q "PI must be pi3, pi4 or pi5" <<<"$out" || fail "PI=pi1 not refused"
echo "Makefile.pi: deploy/run dry runs and refusals as expected"
