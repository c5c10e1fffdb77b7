#include "supervise/supervisor.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

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
  for (std::size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == flag) return args[i + 1];
  return "";
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

// Takes the failed rank's device out: under emulation one slot, on a real cluster its host.
std::string remove_device(cluster::Cluster& c, int rank, bool whole_host) {
  int r = rank;
  for (auto it = c.hosts.begin(); it != c.hosts.end(); ++it) {
    if (r < it->slots) {
      const std::string name = it->name;
      if (whole_host || it->slots == 1) {
        c.hosts.erase(it);
      } else {
        --it->slots;
      }
      return name;
    }
    r -= it->slots;
  }
  fail("supervise: rank ", rank, " is not in the cluster of ", c.ranks(), " device(s)");
}

}  // namespace

int supervise(const SuperviseOptions& o) {
  if (o.run_args.size() < 2 || o.run_args[0] != "run")
    fail("supervise: give the job after --, as for chorus: -- run MODEL --output FILE ...");
  for (const char* own : {"--plan", "--strategy", "--emulate", "--resume"})
    if (std::find(o.run_args.begin(), o.run_args.end(), own) != o.run_args.end())
      fail("supervise: leave ", own, " to the supervisor (it plans, emulates and resumes)");
  const std::string model_path = o.run_args[1];
  const std::string output = argument(o.run_args, "--output");
  if (output.empty()) fail("supervise: the job needs --output FILE, so that a failed run can be resumed");
  if (o.emulate && o.testbed) fail("supervise: --emulate or --testbed, not both");
  if (!o.emulate && !o.testbed && o.hostfile.empty())
    fail("supervise: give --hostfile (or --emulate or --testbed to run on this machine)");

  cluster::Cluster cluster = cluster::read_cluster(o.cluster_path);
  std::vector<cluster::HostfileEntry> hosts;
  if (!o.emulate && !o.testbed) {
    hosts = cluster::read_hostfile(o.hostfile);
    std::vector<std::string> a, b;
    for (const auto& h : hosts) a.push_back(h.name);
    for (const auto& h : cluster.hosts) b.push_back(h.name);
    if (a != b) fail("supervise: ", o.hostfile, " and ", o.cluster_path, " must list the same hosts in the same order");
  }
  const auto structure = io::load_model_structure(model_path, argument(o.run_args, "--arch"), /*optimize=*/true);
  fs::create_directories(o.work_dir);

  // Progress is read from the first output's journal (a model of several outputs writes all
  // of a frame's outputs before the next frame).
  JournalWatch journal(io::OutputJournal::journal_path(io::output_targets(output, structure.model.output_names())[0]));
  std::vector<double> lost;
  double failed_at = 0;  // last frame before the failure
  for (int attempt = 0;; ++attempt) {
    // Plan for the devices left; stop when the model no longer fits on them.
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
      // A testbed of the devices left: their namespaces, the network shaped, paced compute.
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

    bool resumed = attempt == 0;
    const ChildResult r = run_child(argv, [&] {
      journal.poll();
      if (!resumed && journal.last_growth() > failed_at) {  // the first frame after the failure
        resumed = true;
        lost.push_back(journal.last_growth() - failed_at);
        std::cout << "chorus supervise: frames flow again " << lost.back() << " s after the last one before the "
                  << "failure\n"
                  << std::flush;
      }
    }, {}, /*abort_grace_s=*/15);  // a host that dropped off the network would hold mpirun for minutes
    journal.poll();
    if (r.exit_code == 0) {
      std::cout << "chorus supervise: done after " << attempt << " failure(s)";
      for (std::size_t i = 0; i < lost.size(); ++i) std::cout << (i ? ", " : "; time lost: ") << lost[i] << " s";
      std::cout << "\n";
      return 0;
    }
    failed_at = journal.last_growth();
    const auto rank = failed_rank(r.output);
    if (!rank) {
      std::fprintf(stderr,
                   "chorus supervise: the job failed (exit %d) and no rank was named: not a device "
                   "failure, stopping\n",
                   r.exit_code);
      return r.exit_code;
    }
    if (attempt + 1 > o.max_failures) {
      std::fprintf(stderr, "chorus supervise: %d failures, stopping\n", attempt + 1);
      return 1;
    }
    const std::string host = remove_device(cluster, *rank, !o.emulate);  // a testbed's host is a device
    std::cout << "chorus supervise: rank " << *rank << " on " << host << " failed; " << cluster.ranks()
              << " device(s) left, re-planning\n"
              << std::flush;
    if (cluster.hosts.empty()) {
      std::fprintf(stderr, "chorus supervise: no devices left\n");
      return 1;
    }
  }
}

}  // namespace chorus::supervise
