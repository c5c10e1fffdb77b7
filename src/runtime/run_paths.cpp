#include "runtime/run_paths.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include "core/error.h"
#include "io/data/inputs.h"
#include "io/journal/output_journal.h"

namespace chorus::runtime {

namespace fs = std::filesystem;

namespace {

// The file part of a path that may name an HDF5 dataset ("out.h5:/scores").
std::string file_of(const std::string& path) { return io::split_h5_target(path).first; }

bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec;
  return fs::equivalent(a, b, ec) && !ec;
}

// The same path once made absolute and resolved as far as it exists (neither file need exist).
bool same_path(const std::string& a, const std::string& b) {
  std::error_code ea, eb;
  const fs::path pa = fs::weakly_canonical(a, ea), pb = fs::weakly_canonical(b, eb);
  return !ea && !eb && pa == pb;
}

void check_writable(const std::string& path, const char* option) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) fail(option, " ", path, ": is a directory");
  if (fs::exists(path, ec)) {
    if (access(path.c_str(), W_OK) != 0) fail(option, " ", path, ": cannot write (", std::strerror(errno), ")");
    return;
  }
  const fs::path parent = fs::path(path).parent_path().empty() ? fs::path(".") : fs::path(path).parent_path();
  if (!fs::is_directory(parent, ec)) fail(option, " ", path, ": no folder ", parent.string());
  if (access(parent.c_str(), W_OK) != 0)
    fail(option, " ", path, ": cannot write in ", parent.string(), " (", std::strerror(errno), ")");
}

}  // namespace

void check_run_paths(const RunOptions& o, const std::vector<std::string>& output_targets, bool writes_report) {
  std::vector<std::pair<std::string, std::string>> reads = {
      {"the model", o.model},   {"--arch", o.arch},       {"--plan", o.plan_path}, {"--labels", o.labels},
      {"--cluster", o.cluster}, {"--emulate", o.emulate}, {"--pace", o.pace}};
  for (const auto& spec : o.inputs) {
    reads.push_back({"--input", file_of(spec)});
    const auto eq = spec.find('=');  // NAME=SOURCE
    if (eq != std::string::npos) reads.push_back({"--input", file_of(spec.substr(eq + 1))});
  }
  std::vector<std::pair<std::string, std::string>> writes;
  for (const auto& target : output_targets) {
    writes.push_back({"--output", file_of(target)});
    writes.push_back({"--output's journal", io::OutputJournal::journal_path(target)});
  }
  if (!o.report_path.empty()) writes.push_back({"--report", o.report_path});
  if (!o.results.empty() && o.results != "-") writes.push_back({"--results", o.results});
  for (std::size_t i = 0; i < writes.size(); ++i) {
    for (const auto& [what, path] : reads)
      if (!path.empty() && (path == writes[i].second || same_file(path, writes[i].second)))
        fail(writes[i].first, " ", writes[i].second, " is ", what, ": the run would write over it");
    for (std::size_t j = 0; j < i; ++j)
      if (same_path(writes[i].second, writes[j].second))
        fail(writes[j].first, " and ", writes[i].first, " name the same file, ", writes[i].second);
  }
  if (writes_report && !o.report_path.empty()) check_writable(o.report_path, "--report");
}

}  // namespace chorus::runtime
