// `chorus supervise --cluster C.json (--hostfile H | --emulate) -- run MODEL --output OUT ...`:
// runs the job, and when a device fails, re-plans on the devices left and resumes.
#include <sstream>

#include "cli/commands.h"
#include "core/error.h"
#include "supervise/supervisor.h"

namespace chorus::cli {

void add_supervise_command(CLI::App& app, int& exit_code) {
  struct Options {
    std::string cluster, hostfile, work_dir = "chorus-supervise", mpirun = "mpirun", probe;
    bool emulate = false, testbed = false;
    int max_failures = 8;
    double probe_every = 10;
    std::vector<std::string> job;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "supervise", "Run a job and survive device failures: re-plan on the devices left and resume (-- run ...)");
  cmd->add_option("--cluster", o->cluster, "The devices (cluster file, e.g. from chorus cluster)")->required();
  auto* hostfile = cmd->add_option("--hostfile", o->hostfile, "Open MPI hostfile of the same hosts, in the same order");
  auto* emulate =
      cmd->add_flag("--emulate", o->emulate, "Run the devices on this machine, each emulated (no hostfile)");
  auto* testbed =
      cmd->add_flag("--testbed", o->testbed,
                    "Run the devices on chorus testbed: network namespaces of this machine (root, no hostfile)");
  // Where the devices are is one choice: a hostfile beside --emulate would be ignored.
  hostfile->excludes(emulate)->excludes(testbed);
  emulate->excludes(testbed);
  cmd->add_option("--work-dir", o->work_dir, "Where each attempt's plan, cluster and host files go");
  cmd->add_option("--mpirun", o->mpirun, "mpirun and its options, e.g. \"mpirun --mca btl tcp,self\"");
  cmd->add_option("--max-failures", o->max_failures, "Give up after this many failures")->check(CLI::Range(0, 1000000));
  cmd->add_option("--probe", o->probe,
                  cat("Shell command that exits 0 when a device taken out answers again ({host}: its name); it is "
                      "then re-admitted at the next frame. Default with --hostfile: \"",
                      supervise::kDefaultProbe, "\"; none with --emulate or --testbed; \"none\": never"));
  cmd->add_option("--probe-every", o->probe_every, "Seconds between probes of the devices taken out")
      ->check(finite_number(1e-3));
  cmd->add_option("job", o->job, "After --: the job, as for chorus (run MODEL --output FILE ...)")->required();
  cmd->callback([o, &exit_code] {
    supervise::SuperviseOptions s;
    s.cluster_path = o->cluster;
    s.hostfile = o->hostfile;
    s.emulate = o->emulate;
    s.testbed = o->testbed;
    s.work_dir = o->work_dir;
    s.max_failures = o->max_failures;
    // No probe unless given, but on a real cluster: its ssh login.
    s.probe = o->probe;
    if (o->probe == "none") s.probe.clear();
    else if (o->probe.empty() && !o->emulate && !o->testbed) s.probe = supervise::kDefaultProbe;
    s.probe_every_s = o->probe_every;
    s.run_args = o->job;
    s.mpirun.clear();
    std::istringstream words(o->mpirun);
    for (std::string w; words >> w;) s.mpirun.push_back(w);
    s.chorus = this_program("supervise");
    exit_code = supervise::supervise(s);
  });
}

}  // namespace chorus::cli
