#!/usr/bin/env bash
# Changes the testbed's network under a running job, for the testbed's fault tests.
# Usage: network_fault.sh FILE LINES ACTION -- COMMAND...
# Starts COMMAND (a chorus testbed job) in the background; once FILE has at least LINES lines
# (an output journal), runs ACTION (a shell command: a link set down, a rate changed), then
# waits for the job. Prints the job's output, then "fault-exit: CODE" and "fault-seconds: S"
# (from the action to the job's end).
set -u
file=$1 lines=$2 action=$3
shift 4
log=$(mktemp)
"$@" > "$log" 2>&1 &
job=$!
for _ in $(seq 1 1200); do
  [ -f "$file" ] && [ "$(wc -l < "$file")" -ge "$lines" ] && break
  kill -0 $job 2>/dev/null || break
  sleep 0.05
done
start=$(date +%s.%N)
sh -c "$action" || echo "fault-error: the action failed: $action"
wait $job
code=$?
end=$(date +%s.%N)
cat "$log"
rm -f "$log"
echo "fault-exit: $code"
echo "fault-seconds: $(awk "BEGIN { print $end - $start }")"
