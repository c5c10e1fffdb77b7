#pragma once
// `chorus run`, on every rank: load the model's graph, derive and validate the plan, load this
// rank's share of the weights, stream the frames, and have rank 0 report. One rank without
// mpirun is the same code path.
#include <string>
#include <vector>

#include "io/data/run_input.h"
#include "runtime/transport.h"

namespace chorus::runtime {

struct RunOptions {
  std::string model, arch;
  std::string plan_path;      // a plan file, or
  std::string strategy;       // a built-in strategy ("" = pipeline)
  std::vector<std::string> inputs;  // --input values: SOURCE, or NAME=SOURCE per model input
  io::RunInputOptions source; // synthetic frames, scaling, video, real time; shapes come from the model
  std::string results;        // --results: one JSON line per frame as it leaves the sink ("-": stdout)
  std::string output;         // .npy / .h5, written by the sink rank frame by frame, with a journal
                              // (one file per output for a model of several: see output_targets)
  bool resume = false;        // continue the output a killed run left (its journal says where)
  std::string report_path;    // JSON report, written by rank 0
  std::string labels;
  int top = -1;  // --top K; -1: not given (none printed, 5 per --results line)
  int threads = 1;
  int max_in_flight = 0;      // frames in the system at once (0: the plan's; 1: one frame at a time)
  double stall_timeout_s = 300;  // a rank waiting longer for a peer ends the job
  double parity_wait_s = 0.1;    // parity stages: wait for the last slice before rebuilding it
  bool quiet = false;         // no plan table (tests)
  std::string emulate;        // cluster file: behave like its devices and network
  std::string pace;           // cluster file: compute like its devices, the network left as it is
  std::string cluster;        // cluster file: check the plan fits its devices' memory (implied by emulate)
};

// Returns the process exit code. Set-up errors are agreed on by all ranks and printed once;
// errors while streaming end the whole job through Transport::abort.
int run_distributed(Transport& transport, const RunOptions& options);

}  // namespace chorus::runtime
