// `chorus testbed --cluster C.json [--keep] -- run MODEL ...`: runs the job on a cluster of
// network namespaces on this machine (root), the network shaped by the kernel; `--down` removes
// a testbed left up.
#include "cli/commands.h"
#include "core/error.h"
#include "testbed/testbed.h"

namespace chorus::cli {

void add_testbed_command(CLI::App& app, int& exit_code) {
  struct Options {
    std::string cluster, work_dir;
    bool keep = false, down = false, firewall = false;
    std::vector<std::string> job;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "testbed", "Run a job on network namespaces of this machine, one per device, links shaped by the kernel "
                 "(root; -- run ...)");
  cmd->add_option("--cluster", o->cluster, "The devices and network (cluster file)");
  cmd->add_flag("--keep", o->keep, "Leave the namespaces up after the job (remove them with --down)");
  cmd->add_flag("--firewall", o->firewall,
                "Firewall each namespace (nftables): only the hostfile's addresses may connect");
  cmd->add_flag("--down", o->down, "Remove every namespace a testbed left up, and nothing else");
  cmd->add_option("--work-dir", o->work_dir, "Where the hostfile and launcher agent go (default: a temporary one)");
  cmd->add_option("job", o->job, "After --: the job, as for chorus (run MODEL ...)");
  cmd->callback([o, &exit_code] {
    if (o->down) {
      if (!o->job.empty() || !o->cluster.empty()) fail("testbed: --down takes no cluster and no job");
      const int removed = testbed::testbed_down();
      std::printf("testbed: removed %d namespace(s)\n", removed);
      return;
    }
    if (o->cluster.empty()) fail("testbed: give --cluster FILE (or --down)");
    testbed::TestbedOptions t;
    t.cluster_path = o->cluster;
    t.run_args = o->job;
    t.work_dir = o->work_dir;
    t.keep = o->keep;
    t.firewall = o->firewall;
    t.chorus = this_program("testbed");
    exit_code = testbed::run_testbed(t);
  });
}

}  // namespace chorus::cli
