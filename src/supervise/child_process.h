#pragma once
// Runs a command as a child process, passing its output through and keeping the end of it,
// with a callback every tick while it runs (the supervisor watches the output journal).
#include <functional>
#include <string>
#include <vector>

namespace chorus::supervise {

struct ChildResult {
  int exit_code = 0;   // 128 + signal when it was killed
  std::string output;  // stdout and stderr together, the last 1 MB
};

// `started`, when given, is told the child's pid (to forward signals to it). With
// `abort_grace_s` > 0, a child (mpirun) still running that long after a chorus rank said it
// ends the job ("error while streaming") is killed: mpirun waits for the daemon of a host it can
// no longer reach until TCP gives up, some 15 minutes.
ChildResult run_child(const std::vector<std::string>& argv, const std::function<void()>& every_tick,
                      const std::function<void(int)>& started = {}, double abort_grace_s = 0);

}  // namespace chorus::supervise
