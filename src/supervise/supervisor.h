#pragma once
// `chorus supervise`: runs a job on a cluster, and when a device fails, takes it out,
// re-plans for the devices left and resumes the output where the journal ends, until every
// frame is done or the model no longer fits. Reports the frames' lost time per failure. A device
// taken out that answers again is re-admitted at the next frame boundary.
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
  // Re-admission: a shell command that exits 0 when a device taken out answers again ("{host}"
  // is replaced by its host name), tried every probe_every_s while the job runs; "" never
  // re-admits. When one answers, the job is stopped at a frame boundary (SIGUSR1) and resumed
  // on a plan that includes it.
  std::string probe;
  double probe_every_s = 10;
};

// The probe a real cluster gets when none is given: the ssh login Open MPI's launcher needs.
inline constexpr const char* kDefaultProbe = "ssh -o BatchMode=yes -o ConnectTimeout=5 {host} true";

// Returns the exit code: 0 when every frame is done.
int supervise(const SuperviseOptions& options);

}  // namespace chorus::supervise
