#include "supervise/supervisor.h"

#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include "cluster/cluster.h"
#include "cluster/hostfile.h"
#include "core/error.h"
#include "io/data/inputs.h"
#include "io/journal/output_journal.h"
#include "io/model_file.h"
#include "plan/planner.h"
#include "supervise/child_process.h"
#include "supervise/failure_report.h"

namespace chorus::supervise {

namespace fs = std::filesystem;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// The value after `flag` in the run arguments ("" when absent).
std::string argument(const std::vector<std::string>& args, const std::string& flag) {
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == flag && i + 1 < args.size()) return args[i + 1];
    if (args[i].rfind(flag + "=", 0) == 0) return args[i].substr(flag.size() + 1);  // --output=FILE
  }
  return "";
}

// Whether `args` give `flag`, as FLAG or FLAG=VALUE.
bool gives(const std::vector<std::string>& args, const std::string& flag) {
  for (const auto& a : args)
    if (a == flag || a.rfind(flag + "=", 0) == 0) return true;
  return false;
}

// Counts the frames an output journal records, reading only what was added since last time.
class JournalWatch {
 public:
  explicit JournalWatch(std::string path) : path_(std::move(path)) {}
  void poll() {
    std::ifstream in(path_, std::ios::binary);
    if (!in) return;  // not there yet, or removed at the end
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    if (size < offset_) offset_ = 0, lines_ = 0;  // rewritten by a resume
    if (size == offset_) return;
    in.seekg(offset_);
    std::string added(static_cast<std::size_t>(size - offset_), '\0');
    in.read(added.data(), static_cast<std::streamsize>(added.size()));
    lines_ += std::count(added.begin(), added.end(), '\n');
    offset_ = size;
    last_growth_ = now();
  }
  double last_growth() const { return last_growth_; }

 private:
  std::string path_;
  std::streamoff offset_ = 0;
  long lines_ = 0;
  double last_growth_ = 0;
};

// The devices of the run: the cluster file's, less the slots taken out after failures (under
// emulation a failed rank is one slot of a host; on a real cluster or the testbed, the host).
class Devices {
 public:
  explicit Devices(cluster::Cluster all) : all_(std::move(all)) {}

  // The cluster of the devices in service, in the cluster file's order.
  cluster::Cluster in_service() const {
    cluster::Cluster c = all_;
    c.hosts.clear();
    for (auto h : all_.hosts) {
      const auto it = out_.find(h.name);
      h.slots -= it == out_.end() ? 0 : it->second;
      if (h.slots > 0) c.hosts.push_back(h);
    }
    return c;
  }
  // Takes out one slot of `host` (an emulated device), or all of it (a real host).
  void take_out(const std::string& host, bool whole_host) {
    for (const auto& h : all_.hosts)
      if (h.name == host) out_[host] = whole_host ? h.slots : std::min(h.slots, out_[host] + 1);
  }
  bool any_out() const { return !out_.empty(); }
  // Hosts with slots taken out.
  std::vector<std::string> out() const {
    std::vector<std::string> hosts;
    for (const auto& [host, slots] : out_) hosts.push_back(host);
    return hosts;
  }
  void bring_back(const std::string& host) { out_.erase(host); }

 private:
  cluster::Cluster all_;
  std::map<std::string, int> out_;
};

// The host of `rank` in `c`.
std::string host_of(const cluster::Cluster& c, int rank) {
  int r = rank;
  for (const auto& h : c.hosts) {
    if (r < h.slots) return h.name;
    r -= h.slots;
  }
  fail("supervise: rank ", rank, " is not in the cluster of ", c.ranks(), " device(s)");
}

// Runs the probe for `host` ("{host}" replaced), at most 20 s; true when it exits 0.
bool answers(const std::string& probe, const std::string& host) {
  std::string command = probe;
  for (std::size_t at; (at = command.find("{host}")) != std::string::npos;) command.replace(at, 6, host);
  std::string quoted;  // inside '...' for sh -c
  for (char c : command) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  const int status = std::system(("timeout -k 2 20 sh -c '" + quoted + "' >/dev/null 2>&1").c_str());
  return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

int supervise(const SuperviseOptions& o) {
  if (o.run_args.size() < 2 || o.run_args[0] != "run")
    fail("supervise: give the job after --, as for chorus: -- run MODEL --output FILE ...");
  for (const char* own : {"--plan", "--strategy", "--emulate", "--resume"})
    if (gives(o.run_args, own)) fail("supervise: leave ", own, " to the supervisor (it plans, emulates and resumes)");
  const std::string model_path = o.run_args[1];
  const std::string output = argument(o.run_args, "--output");
  if (output.empty()) fail("supervise: the job needs --output FILE, so that a failed run can be resumed");
  if (o.emulate && o.testbed) fail("supervise: --emulate or --testbed, not both");
  if (!o.emulate && !o.testbed && o.hostfile.empty())
    fail("supervise: give --hostfile (or --emulate or --testbed to run on this machine)");

  const cluster::Cluster all = cluster::read_cluster(o.cluster_path);
  std::vector<cluster::HostfileEntry> hosts;
  if (!o.emulate && !o.testbed) {
    hosts = cluster::read_hostfile(o.hostfile);
    std::vector<std::string> a, b;
    for (const auto& h : hosts) a.push_back(h.name);
    for (const auto& h : all.hosts) b.push_back(h.name);
    if (a != b) fail("supervise: ", o.hostfile, " and ", o.cluster_path, " must list the same hosts in the same order");
  }
  if (!(o.probe_every_s > 0) || !std::isfinite(o.probe_every_s))
    fail("supervise: --probe-every ", o.probe_every_s, " s is not a number of seconds above 0");
  if (o.mpirun.empty()) fail("supervise: --mpirun is empty (give mpirun and its options)");
  const auto structure = io::load_model_structure(model_path, argument(o.run_args, "--arch"), /*optimize=*/true);
  std::error_code made;
  fs::create_directories(o.work_dir, made);
  if (made || !fs::is_directory(o.work_dir))
    fail("supervise: --work-dir ", o.work_dir, ": cannot make this folder",
         made ? cat(" (", made.message(), ")") : std::string(" (a file has its name)"));

  // Progress is read from the first output's journal (a model of several outputs writes all
  // of a frame's outputs before the next frame).
  JournalWatch journal(io::OutputJournal::journal_path(io::output_targets(output, structure.model.output_names())[0]));
  Devices devices(all);
  std::vector<double> lost;    // per failure: from the last frame before it to the first after
  std::vector<double> paused;  // per re-admission: from the last frame before the stop to the first after
  std::vector<double>* gap = nullptr;  // which of the two the next attempt's first frame ends
  double last_before = 0;      // the last frame before the failure or the stop
  int failures = 0;
  for (int attempt = 0;; ++attempt) {
    // Plan for the devices in service; stop when the model no longer fits on them.
    const cluster::Cluster cluster = devices.in_service();
    plan::PlannerOptions po;
    po.model_key = cluster::model_key(model_path);
    plan::Plan p;
    try {
      p = plan::make_planned_plan(structure.model, cluster, po);
    } catch (const Error& e) {
      std::fprintf(stderr, "chorus supervise: cannot go on with %d device(s): %s\n", cluster.ranks(), e.what());
      return 1;
    }
    p.model = model_path;
    const std::string tag = std::to_string(attempt);
    const std::string plan_path = (fs::path(o.work_dir) / ("plan-" + tag + ".json")).string();
    const std::string cluster_path = (fs::path(o.work_dir) / ("cluster-" + tag + ".json")).string();
    plan::write_plan(p, plan_path);
    std::ofstream(cluster_path) << cluster::cluster_to_json(cluster).dump(2) << "\n";
    std::vector<std::string> argv = o.mpirun;
    if (o.testbed) {
      // A testbed of the devices in service: their namespaces, the network shaped, paced compute.
      argv = {o.chorus, "testbed", "--cluster", cluster_path, "--"};
    } else if (o.emulate) {
      argv.insert(argv.end(), {"--oversubscribe", "-np", std::to_string(cluster.ranks())});
    } else {
      const std::string hostfile = (fs::path(o.work_dir) / ("hosts-" + tag)).string();
      std::ofstream h(hostfile);
      for (const auto& host : cluster.hosts) h << host.name << " slots=" << host.slots << "\n";
      argv.insert(argv.end(), {"--hostfile", hostfile, "-np", std::to_string(cluster.ranks())});
    }
    if (!o.testbed) argv.push_back(o.chorus);
    argv.insert(argv.end(), o.run_args.begin(), o.run_args.end());
    argv.insert(argv.end(), {"--plan", plan_path});
    if (o.emulate) argv.insert(argv.end(), {"--emulate", cluster_path});
    if (attempt > 0) argv.push_back("--resume");
    std::cout << "chorus supervise: attempt " << attempt + 1 << " on " << cluster.ranks() << " device(s), predicted "
              << p.prediction["throughput_fps"].get<double>() << " frames/s\n"
              << std::flush;

    // While it runs: the first frame after a failure or a stop, and the devices out, probed.
    bool resumed = attempt == 0;
    int child = 0;
    double probed_at = now();
    std::vector<std::string> answered;  // devices out that answered: the job is being stopped for them
    bool stop_sent = false;
    const ChildResult r = run_child(
        argv,
        [&] {
          journal.poll();
          if (!resumed && journal.last_growth() > last_before) {
            resumed = true;
            gap->push_back(journal.last_growth() - last_before);
            std::cout << "chorus supervise: frames flow again " << gap->back() << " s after the last one before the "
                      << (gap == &lost ? "failure" : "stop") << "\n"
                      << std::flush;
          }
          if (o.probe.empty() || stop_sent || !devices.any_out()) return;
          if (answered.empty() && now() - probed_at >= o.probe_every_s) {
            for (const auto& host : devices.out())
              if (answers(o.probe, host)) answered.push_back(host);
            probed_at = now();
          }
          // Only once this attempt's frames flow: every rank is past its set-up and handles
          // SIGUSR1, which would end a process still starting (the default action).
          if (answered.empty() || child <= 0 || !resumed) return;
          stop_sent = true;
          std::cout << "chorus supervise: " << answered[0];
          for (std::size_t i = 1; i < answered.size(); ++i) std::cout << ", " << answered[i];
          std::cout << (answered.size() > 1 ? " answer" : " answers")
                    << " again; stopping the job at the next frame to re-plan with "
                    << (answered.size() > 1 ? "them" : "it") << "\n"
                    << std::flush;
          kill(child, SIGUSR1);  // mpirun (or chorus testbed) passes it on to every rank
        },
        [&](int pid) { child = pid; }, /*abort_grace_s=*/15);  // a host that dropped off the network would hold mpirun for minutes
    journal.poll();
    last_before = journal.last_growth();
    for (const auto& host : answered) {
      devices.bring_back(host);
      std::cout << "chorus supervise: re-admitted " << host << "\n";
    }
    if (r.exit_code == 0) {
      std::cout << "chorus supervise: done after " << failures << " failure(s)";
      for (std::size_t i = 0; i < lost.size(); ++i) std::cout << (i ? ", " : "; time lost: ") << lost[i] << " s";
      if (!paused.empty()) std::cout << "; " << paused.size() << " re-admission(s)";
      for (std::size_t i = 0; i < paused.size(); ++i) std::cout << (i ? ", " : ", paused ") << paused[i] << " s";
      std::cout << "\n";
      return 0;
    }
    if (r.exit_code == kStoppedExitCode) {
      if (answered.empty()) {
        std::fprintf(stderr, "chorus supervise: the job was stopped on request (SIGUSR1), not by the supervisor: "
                             "stopping\n");
        return r.exit_code;
      }
      std::cout << "chorus supervise: stopped at a frame boundary; " << devices.in_service().ranks()
                << " device(s), re-planning\n"
                << std::flush;
      gap = &paused;
      continue;
    }
    const auto rank = failed_rank(r.output);
    if (!rank) {
      std::fprintf(stderr,
                   "chorus supervise: the job failed (exit %d) and no rank was named: not a device "
                   "failure, stopping\n",
                   r.exit_code);
      return r.exit_code;
    }
    if (++failures > o.max_failures) {
      std::fprintf(stderr,
                   "chorus supervise: %d failure(s), more than --max-failures %d; stopping (the frames so far are in "
                   "%s, with its journal: chorus run ... --resume runs the rest)\n",
                   failures, o.max_failures, output.c_str());
      return 1;
    }
    // The rank is one of this attempt's cluster (before any device was brought back).
    const std::string host = host_of(cluster, *rank);
    devices.take_out(host, !o.emulate);  // a testbed's host is a device
    gap = &lost;
    std::cout << "chorus supervise: rank " << *rank << " on " << host << " failed; " << devices.in_service().ranks()
              << " device(s) left, re-planning\n"
              << std::flush;
    if (devices.in_service().hosts.empty()) {
      std::fprintf(stderr, "chorus supervise: no devices left\n");
      return 1;
    }
  }
}

}  // namespace chorus::supervise
