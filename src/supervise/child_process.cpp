#include "supervise/child_process.h"

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>

#include "core/error.h"

namespace chorus::supervise {

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

ChildResult run_child(const std::vector<std::string>& argv, const std::function<void()>& every_tick,
                      const std::function<void(int)>& started, double abort_grace_s) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) fail("supervise: cannot create a pipe");
  const pid_t pid = fork();
  if (pid < 0) fail("supervise: cannot start ", argv.at(0));
  if (pid == 0) {
    dup2(pipe_fds[1], STDOUT_FILENO);
    dup2(pipe_fds[1], STDERR_FILENO);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    std::fprintf(stderr, "supervise: cannot run %s\n", argv[0].c_str());
    _exit(127);
  }
  close(pipe_fds[1]);
  if (started) started(static_cast<int>(pid));
  ChildResult r;
  char buffer[4096];
  double aborted_at = -1;  // when a rank said it ends the job
  bool killed = false;
  std::size_t searched = 0;  // the output before this was searched for the abort
  for (bool open = true; open;) {
    pollfd p{pipe_fds[0], POLLIN, 0};
    const int ready = poll(&p, 1, 100);
    if (ready > 0) {
      const ssize_t n = read(pipe_fds[0], buffer, sizeof buffer);
      if (n > 0) {
        std::fwrite(buffer, 1, static_cast<std::size_t>(n), stdout);
        std::fflush(stdout);
        r.output.append(buffer, static_cast<std::size_t>(n));
        if (r.output.size() > (2u << 20)) {
          const std::size_t dropped = r.output.size() - (1u << 20);
          r.output.erase(0, dropped);
          searched = searched > dropped ? searched - dropped : 0;
        }
      } else if (n == 0 || errno != EINTR) {
        open = false;
      }
    }
    every_tick();
    // The child has ended, but a process it started may still hold the pipe (a daemon on a host
    // mpirun lost): stop reading once nothing more is waiting.
    int ended_status = 0;
    if (ready == 0 && waitpid(pid, &ended_status, WNOHANG) == pid) {
      r.exit_code = WIFEXITED(ended_status) ? WEXITSTATUS(ended_status) : 128 + WTERMSIG(ended_status);
      close(pipe_fds[0]);
      return r;
    }
    if (abort_grace_s > 0) {
      // Only what arrived since the last look (and a marker's length before it) is searched.
      static const std::string marker = "chorus: error while streaming";
      if (aborted_at < 0 && r.output.find(marker, std::min(searched, r.output.size())) != std::string::npos)
        aborted_at = now_s();
      searched = r.output.size() >= marker.size() ? r.output.size() - marker.size() : 0;
      if (aborted_at >= 0 && !killed && now_s() - aborted_at > abort_grace_s) {
        // SIGKILL: mpirun, asked with SIGTERM while its abort waits, crashes (Open MPI 4.1).
        std::fprintf(stderr,
                     "chorus: the job still runs %.0f s after a rank ended it (mpirun waits for a host it cannot "
                     "reach?): ending it\n",
                     abort_grace_s);
        kill(pid, SIGKILL);
        killed = true;
      }
    }
  }
  close(pipe_fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace chorus::supervise
