#pragma once
// The files a run reads and writes, checked before any work: a run must not write over its own
// model, plan or input (a mistyped or tab-completed --output or --report would destroy them),
// two outputs must not share a file, and the report's folder must be writable before a long
// run, not after it.
#include "runtime/distributed_run.h"

namespace chorus::runtime {

// Throws chorus::Error naming the option and the file it would overwrite. `output_targets`: the
// files --output names (io::output_targets: one per output of the model), each written with
// its journal. `writes_report`: this rank writes the report (rank 0), so it checks that the
// report can be written.
void check_run_paths(const RunOptions& options, const std::vector<std::string>& output_targets, bool writes_report);

}  // namespace chorus::runtime
