#pragma once
// `chorus supervise`: runs a job on a cluster, and when a device fails, takes it out,
// re-plans for the devices left and resumes the output where the journal ends, until every
// frame is done or the model no longer fits. Reports the frames' lost time per failure.
#include <string>
#include <vector>

namespace chorus::supervise {

struct SuperviseOptions {
  std::string cluster_path;           // the devices (a cluster file, e.g. from `chorus cluster`)
  std::string hostfile;               // real runs: the hosts mpirun starts ranks on, same order
  bool emulate = false;               // else: ranks on this machine under --emulate
  bool testbed = false;               // else: on `chorus testbed` (network namespaces, root)
  std::vector<std::string> run_args;  // "run MODEL ... --output FILE ...", as for chorus
  std::string chorus;                 // this program
  std::vector<std::string> mpirun = {"mpirun"};
  std::string work_dir;  // plans, cluster and host files of each attempt
  int max_failures = 8;
};

// Returns the exit code: 0 when every frame is done.
int supervise(const SuperviseOptions& options);

}  // namespace chorus::supervise
