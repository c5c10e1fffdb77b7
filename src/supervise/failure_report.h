#pragma once
// Which rank failed, read from what a failed `mpirun ... chorus run` printed. A stalled rank
// is named by the rank that timed out waiting for it; a dead one by mpirun, and by the
// survivors' notices of whom they were waiting for.
#include <optional>
#include <string>

namespace chorus::supervise {

std::optional<int> failed_rank(const std::string& job_output);

}  // namespace chorus::supervise
