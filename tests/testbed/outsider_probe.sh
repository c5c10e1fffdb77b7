#!/usr/bin/env bash
# Whether a host may connect to a device of a testbed that is up (chorus testbed --keep).
# Usage: outsider_probe.sh
# Listens on TCP port 7000 in chorus-tb-pi2, then connects from chorus-tb-pi1 (a device of the
# hostfile) and from a namespace joined to the testbed's bridge at 10.231.0.200 (an address
# outside the hostfile). Prints "device: connected|refused" and "outsider: connected|refused",
# and removes the outsider.
set -u
py=/usr/bin/python3
ip netns exec chorus-tb-pi2 $py -c '
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7000)); s.listen(8); s.settimeout(10)
end = time.time() + 10
while time.time() < end:
    try:
        c, _ = s.accept(); c.close()
    except OSError:
        break
' &
listener=$!
sleep 0.5
ip netns add chorus-tb-outsider
ip netns exec chorus-tb-hub ip link add ctbx type veth peer name eth0 netns chorus-tb-outsider
ip netns exec chorus-tb-hub ip link set ctbx master br0
ip netns exec chorus-tb-hub ip link set ctbx up
ip netns exec chorus-tb-outsider ip addr add 10.231.0.200/24 dev eth0
ip netns exec chorus-tb-outsider ip link set eth0 up
connect='
import socket, sys
try:
    socket.create_connection(("10.231.0.2", 7000), timeout=2).close(); print("connected")
except OSError:
    print("refused")
'
echo "device: $(ip netns exec chorus-tb-pi1 $py -c "$connect")"
echo "outsider: $(ip netns exec chorus-tb-outsider $py -c "$connect")"
ip netns del chorus-tb-outsider
kill $listener 2>/dev/null
wait $listener 2>/dev/null
exit 0
