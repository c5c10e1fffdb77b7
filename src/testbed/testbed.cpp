#include "testbed/testbed.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "cluster/cluster.h"
#include "core/error.h"
#include "supervise/child_process.h"
#include "testbed/testbed_layout.h"

namespace chorus::testbed {

namespace fs = std::filesystem;

namespace {

// How long mpirun may take to end the job once a rank has ended it.
constexpr double kAbortGraceSeconds = 5;

struct CommandOutput {
  int status = 0;
  std::string text;
};

// Runs a command (argv, through /bin/sh with every word quoted), stdout and stderr together.
CommandOutput run_quietly(const Command& argv) {
  std::string line;
  for (const auto& w : argv) line += (line.empty() ? "" : " ") + shell_quote(w);
  line += " 2>&1";
  CommandOutput out;
  std::FILE* p = popen(line.c_str(), "r");
  if (!p) fail("testbed: cannot run ", argv.at(0));
  char buffer[4096];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, p)) > 0;) out.text.append(buffer, n);
  const int status = pclose(p);
  out.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  return out;
}

std::string joined(const Command& argv) {
  std::string s;
  for (const auto& w : argv) s += (s.empty() ? "" : " ") + w;
  return s;
}

void run_checked(const Command& argv) {
  const CommandOutput out = run_quietly(argv);
  if (out.status != 0) fail("testbed: `", joined(argv), "` failed: ", out.text.empty() ? "(no output)" : out.text);
}

std::vector<std::string> testbed_namespaces() {
  const CommandOutput out = run_quietly({"ip", "netns", "list"});
  std::vector<std::string> names;
  std::size_t at = 0;
  while (at < out.text.size()) {
    std::size_t end = out.text.find('\n', at);
    if (end == std::string::npos) end = out.text.size();
    const std::string line = out.text.substr(at, end - at);
    const std::string name = line.substr(0, line.find(' '));
    if (name.rfind(kNamespacePrefix, 0) == 0) names.push_back(name);
    at = end + 1;
  }
  return names;
}

// Signals that would end this process end the job instead (the child gets them too, or is sent
// SIGTERM), so that the testbed always comes down.
volatile sig_atomic_t g_job_pid = 0;
volatile sig_atomic_t g_signalled = 0;

void on_signal(int signal) {
  g_signalled = signal;
  if (g_job_pid > 0) kill(g_job_pid, SIGTERM);
}

// SIGUSR1 asks the job to stop at a frame boundary (runtime/stop_request.h): passed on to
// mpirun, which passes it to every rank; the testbed stays up until the job has ended.
void on_stop_request(int) {
  if (g_job_pid > 0) kill(g_job_pid, SIGUSR1);
}

class SignalGuard {
 public:
  SignalGuard() {
    struct sigaction a {};
    a.sa_handler = on_signal;
    sigemptyset(&a.sa_mask);
    for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaction(s, &a, &old_[index(s)]);
    a.sa_handler = on_stop_request;
    a.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &a, &old_[index(SIGUSR1)]);
  }
  ~SignalGuard() {
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGUSR1}) sigaction(s, &old_[index(s)], nullptr);
  }

 private:
  static int index(int s) { return s == SIGINT ? 0 : s == SIGTERM ? 1 : s == SIGHUP ? 2 : 3; }
  struct sigaction old_[4] {};
};

}  // namespace

bool can_make_testbed(std::string* why) {
  if (geteuid() != 0) {
    if (why) *why = "the testbed needs root (network namespaces)";
    return false;
  }
  // What the testbed uses, tried in a namespace of its own: a bridge, a veth pair, an ifb
  // device, a tbf queue and a u32 filter redirecting into it.
  const std::string probe = std::string(kNamespacePrefix) + "probe-" + std::to_string(getpid());
  const std::vector<Command> steps{
      {"ip", "netns", "add", probe},
      {"ip", "netns", "exec", probe, "ip", "link", "add", "br0", "type", "bridge"},
      {"ip", "netns", "exec", probe, "ip", "link", "add", "probe0", "type", "veth", "peer", "name", "probe1"},
      {"ip", "netns", "exec", probe, "ip", "link", "add", "ifb0", "type", "ifb"},
      {"ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "ifb0", "root", "tbf", "rate", "1mbit", "burst",
       "64kb", "latency", "1s"},
      {"ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "probe0", "ingress"},
      {"ip", "netns", "exec", probe, "tc", "filter", "add", "dev", "probe0", "parent", "ffff:", "protocol", "all", "u32",
       "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", "ifb0"}};
  bool ok = true;
  for (const auto& step : steps) {
    const CommandOutput out = run_quietly(step);
    if (out.status != 0) {
      if (why) *why = "`" + joined(step) + "` failed: " + out.text;
      ok = false;
      break;
    }
  }
  run_quietly({"ip", "netns", "del", probe});
  return ok;
}

// Processes still inside a namespace (a rank or daemon of a device whose link went down) keep
// it alive after `ip netns del`: they are killed first.
void kill_processes_in(const std::string& ns) {
  const CommandOutput out = run_quietly({"ip", "netns", "pids", ns});
  if (out.status != 0) return;
  std::size_t at = 0;
  while (at < out.text.size()) {
    std::size_t end = out.text.find('\n', at);
    if (end == std::string::npos) end = out.text.size();
    const int pid = std::atoi(out.text.substr(at, end - at).c_str());
    if (pid > 1 && pid != getpid()) kill(pid, SIGKILL);
    at = end + 1;
  }
}

int testbed_down() {
  int removed = 0;
  for (const auto& ns : testbed_namespaces()) {
    kill_processes_in(ns);
    const CommandOutput out = run_quietly({"ip", "netns", "del", ns});
    if (out.status != 0) std::fprintf(stderr, "chorus testbed: cannot remove %s: %s", ns.c_str(), out.text.c_str());
    else ++removed;
  }
  return removed;
}

int run_testbed(const TestbedOptions& o) {
  if (o.run_args.empty() || o.run_args[0] != "run")
    fail("testbed: give the job after --, as for chorus: -- run MODEL ...");
  for (const char* own : {"--emulate", "--pace"})
    for (const auto& a : o.run_args)
      if (a == own) fail("testbed: leave ", own, " to the testbed (it paces compute; the network is the kernel's)");
  std::string why;
  if (!can_make_testbed(&why)) fail("testbed: ", why);
  if (const auto up = testbed_namespaces(); !up.empty())
    fail("testbed: a testbed is up already (", up.size(), " namespaces, ", up[0],
         " ...): `chorus testbed --down` removes it");

  const cluster::Cluster cluster = cluster::read_cluster(o.cluster_path);
  const TestbedLayout layout = make_testbed_layout(cluster);
  const fs::path dir = o.work_dir.empty() ? fs::temp_directory_path() / ("chorus-testbed-" + std::to_string(getpid()))
                                          : fs::path(o.work_dir);
  fs::create_directories(dir);
  const std::string hostfile = (dir / "hostfile").string(), agent = (dir / "rsh-agent.sh").string();
  std::ofstream(hostfile) << hostfile_text(layout);
  std::ofstream(agent) << rsh_agent_script(layout);
  fs::permissions(agent, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);

  SignalGuard signals;
  int status = 1;
  bool up = false;
  try {
    up = true;  // from the first command on, whatever was made comes down
    for (const auto& c : network_up_commands(layout)) run_checked(c);
    for (const auto& c : shaping_commands(layout)) run_checked(c);
    const auto latency = latency_commands(layout);
    if (!latency.empty()) {
      const CommandOutput probe = run_quietly(latency[0]);
      if (probe.status == 0) {
        for (std::size_t i = 1; i < latency.size(); ++i) run_checked(latency[i]);
      } else {
        std::string reason = probe.text;
        while (!reason.empty() && (reason.back() == '\n' || reason.back() == ' ')) reason.pop_back();
        std::fprintf(stderr,
                     "chorus testbed: note: this kernel has no netem (tc said: %s), so the network's latency "
                     "(%.1f ms a message) is left out; bandwidth is shaped\n",
                     reason.c_str(), layout.latency_s * 1e3);
      }
    }
    if (o.firewall) {
      if (run_quietly({"nft", "--version"}).status != 0)
        fail("testbed: --firewall needs nft (Debian's nftables package)");
      for (const auto& c : firewall_commands(layout)) run_checked(c);
      std::printf("testbed: firewall in every namespace: eth0 admits only the hostfile's %zu addresses\n",
                  layout.devices.size());
    }
    std::printf(
        "testbed: %zu device namespaces on %s, %s %.2f Mbit/s (tbf at %.2f Mbit/s of TCP/IP frames), "
        "hostfile %s\n",
        layout.devices.size(), kSubnet, layout.shared ? "one shared medium at" : "each link at",
        layout.bits_per_s / 1e6, layout.bits_per_s * testbed::kTcpFramingFactor / 1e6, hostfile.c_str());
    std::fflush(stdout);
    if (g_signalled) fail("testbed: interrupted while setting up");

    // mpirun starts in the first device's namespace, as on a real cluster's first host.
    const TestbedDevice& first = layout.devices[0];
    Command job{"ip",     "netns", "exec", first.netns, "unshare", "--uts", "/bin/sh",
                "-c",     "hostname \"$0\" && exec \"$@\"", first.host};
    Command mpirun{"mpirun", "--hostfile", hostfile, "-np", std::to_string(cluster.ranks()), "--bind-to", "none",
                   "--mca", "plm_rsh_agent", agent, "--mca", "pml", "ob1", "--mca", "btl", "tcp,self",
                   "--mca", "btl_tcp_if_include", kSubnet, "--mca", "oob_tcp_if_include", kSubnet,
};
    if (geteuid() == 0) mpirun.push_back("--allow-run-as-root");
    mpirun.insert(mpirun.end(), o.mpirun_extra.begin(), o.mpirun_extra.end());
    mpirun.push_back(o.chorus);
    mpirun.insert(mpirun.end(), o.run_args.begin(), o.run_args.end());
    mpirun.insert(mpirun.end(), {"--pace", o.cluster_path});
    job.insert(job.end(), mpirun.begin(), mpirun.end());
    const auto result = supervise::run_child(job, [] {}, [](int pid) { g_job_pid = pid; }, kAbortGraceSeconds);
    g_job_pid = 0;
    status = result.exit_code;
  } catch (const Error& e) {
    std::fprintf(stderr, "chorus: error: %s\n", e.what());
    status = 1;
  }
  if (up && o.keep) {
    std::printf("testbed: kept (namespaces %s*); `chorus testbed --down` removes it\n", kNamespacePrefix);
  } else if (up) {
    for (const auto& d : layout.devices) kill_processes_in(d.netns);
    for (const auto& c : network_down_commands(layout)) run_quietly(c);
    const auto left = testbed_namespaces();
    if (!left.empty()) {
      std::fprintf(stderr, "chorus testbed: error: %zu namespaces remain (%s ...): run `chorus testbed --down`\n",
                   left.size(), left[0].c_str());
      status = status ? status : 1;
    }
  }
  if (g_signalled) std::fprintf(stderr, "chorus testbed: stopped by signal %d; the testbed is down\n",
                                static_cast<int>(g_signalled));
  if (o.work_dir.empty() && !o.keep) fs::remove_all(dir);
  return status;
}

}  // namespace chorus::testbed
