#pragma once
// `chorus testbed`: runs a job on a cluster made of network namespaces on this machine (root
// only). Each device of the cluster file is a namespace with its own address; the links are
// shaped by the kernel from the cluster's network (testbed_layout.h); Open MPI starts the ranks
// with its own rsh launcher, the agent entering each device's namespace where ssh would log in,
// and moves data over TCP only (btl tcp,self). Compute is paced to each device's profile
// (`chorus run --pace`); the network is the kernel's. Whatever ends the job, the namespaces,
// links and queues are removed, unless asked to keep them.
#include <string>
#include <vector>

namespace chorus::testbed {

struct TestbedOptions {
  std::string cluster_path;
  std::vector<std::string> run_args;  // "run MODEL ...", as for chorus
  std::string chorus;                 // this program
  std::string work_dir;               // hostfile and agent script ("" : a fresh directory under /tmp)
  bool keep = false;                  // leave the testbed up after the job (remove with down)
  bool firewall = false;              // nftables in each namespace: only the hostfile's addresses
  std::vector<std::string> mpirun_extra;  // more mpirun options
};

// Builds the testbed, runs the job, removes the testbed; returns the job's exit code.
int run_testbed(const TestbedOptions& options);

// Removes every namespace a testbed made (chorus-tb-*); returns how many.
int testbed_down();

// Whether this process may make network namespaces here (root with CAP_SYS_ADMIN and the `ip`
// tool); `why` says what is missing.
bool can_make_testbed(std::string* why);

}  // namespace chorus::testbed
