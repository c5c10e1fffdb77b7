#!/usr/bin/env bash
# Injects a fault into a running mpiexec job, for the failure tests.
# Usage: fault.sh kill|stop RANK FILE LINES -- COMMAND...
#        fault.sh run ACTION FILE LINES -- COMMAND...
#        fault.sh usr1 - FILE LINES -- COMMAND...
#        fault.sh pause RANK FILE LINES -- COMMAND...
# Starts COMMAND (an mpiexec job) in the background; once FILE has at least LINES lines (an
# output journal, say), sends SIGKILL (kill) or SIGSTOP (stop) to the process of RANK (found by
# its OMPI_COMM_WORLD_RANK), or stops it for PAUSE_S seconds (default 2) then continues it (pause), or runs the shell command ACTION (run: a testbed's link set down,
# its rate changed), or sends SIGUSR1 to the job's mpirun (usr1: stop at a frame boundary),
# then waits for the job to end. Prints the job's output, then
# "fault-exit: CODE" and "fault-seconds: S" (from the fault to the job's end), or "fault-hung"
# when the job outlives the fault by 60 s (it is then killed).
set -u
mode=$1 what=$2 file=$3 lines=$4  # what: RANK, or ACTION for run
shift 5
log=$(mktemp)
"$@" > "$log" 2>&1 &
job=$!
descendants() {
  local c
  for c in $(pgrep -P "$1"); do
    echo "$c"
    descendants "$c"
  done
}
# The process of rank $what, if it has started.
rank_process() {
  local p r
  for p in $(descendants $job); do
    r=$(tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep '^OMPI_COMM_WORLD_RANK=' | cut -d= -f2)
    [ "$r" = "$what" ] && echo "$p" && return
  done
}
# The rank's process is found while the job starts, not after FILE has its lines: walking the
# process tree takes a while on a loaded machine, and a fast job could finish meanwhile.
target=
for _ in $(seq 1 600); do
  case "$mode" in kill|stop|pause) [ -n "$target" ] || target=$(rank_process) ;; esac
  [ -f "$file" ] && [ "$(wc -l < "$file")" -ge "$lines" ] && break
  kill -0 $job 2>/dev/null || break
  sleep 0.05
done
if [ "$mode" = run ]; then
  start=$(date +%s.%N)
  sh -c "$what" || echo "fault-error: the action failed: $what"
elif [ "$mode" = usr1 ]; then
  target=
  for p in $(descendants $job); do
    case "$(cat /proc/$p/comm 2>/dev/null)" in mpirun|mpiexec|orterun) target=$p ;; esac
  done
  [ -n "$target" ] || echo "fault-error: no mpirun under the job (it ended before the fault?)"
  start=$(date +%s.%N)
  [ -n "$target" ] && kill -USR1 "$target"
else
  [ -n "$target" ] || target=$(rank_process)
  if [ -z "$target" ]; then
    cat "$log"
    echo "fault-error: no process of rank $what (the job ended before the fault?)"
    wait $job
    exit 1
  fi
  start=$(date +%s.%N)
  if [ "$mode" = kill ]; then
    kill -KILL "$target"
  elif [ "$mode" = pause ]; then
    kill -STOP "$target"
    sleep "${PAUSE_S:-2}"
    kill -CONT "$target"
  else
    kill -STOP "$target"
  fi
fi
code=
for _ in $(seq 1 1200); do
  if ! kill -0 $job 2>/dev/null; then
    wait $job
    code=$?
    break
  fi
  sleep 0.05
done
end=$(date +%s.%N)
cat "$log"
rm -f "$log"
if [ -z "$code" ]; then
  echo "fault-hung"
  kill -KILL $(descendants $job) $job 2>/dev/null
  exit 1
fi
echo "fault-exit: $code"
echo "fault-seconds: $(awk "BEGIN { print $end - $start }")"
