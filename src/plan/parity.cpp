#include "plan/parity.h"

#include <algorithm>

#include "core/error.h"
#include "plan/validate.h"

namespace chorus::plan {

bool any_unreliable(const cluster::Cluster& cluster) {
  for (const auto& h : cluster.hosts)
    if (h.unreliable) return true;
  return false;
}

namespace {

// The stage cut after each split layer, every piece a split-output stage with the parity rank
// added; empty (and `why` set) when the stage cannot carry a parity. A channel pair (split-tensor,
// split-input) becomes split-output pieces too: only output slices can be coded.
std::vector<Stage> parity_stages(const model::Model& m, const Stage& st, int parity_rank, std::string& why) {
  const int first = m.find(st.first), last = m.find(st.last);
  if (st.mode == StageMode::split_tensor) {
    const std::vector<SplitRole> tensor_roles = split_roles(m, first, last, StageMode::split_tensor);
    for (int n = first; n <= last; ++n)
      if (tensor_roles[n - first] == SplitRole::heads) {
        why = cat("'", m.node(n).name(), "' is split by heads, which a parity cannot code");
        return {};
      }
  }
  const std::vector<SplitRole> roles = split_roles(m, first, last, StageMode::split_output);
  std::vector<Stage> pieces;
  int start = first;
  for (int n = first; n <= last; ++n) {
    const SplitRole role = roles[n - first];
    if (role == SplitRole::whole) continue;
    if (role != SplitRole::output_slice) {
      why = cat("'", m.node(n).name(), "' keeps its slice for the layer after it");
      return {};
    }
    Stage piece = st;
    piece.mode = StageMode::split_output;
    piece.first = m.node(start).name();
    piece.last = m.node(n).name();
    piece.ranks.push_back(parity_rank);
    piece.parity = 1;
    pieces.push_back(piece);
    start = n + 1;
  }
  if (start <= last) {
    why = cat("layers after its last split one ('", m.node(start).name(), "' ..) would be left without a stage");
    return {};
  }
  return pieces;
}

}  // namespace

int add_parity(Plan& plan, const model::Model& m, const cluster::Cluster& cluster, int parity_rank,
               std::vector<std::string>& skipped) {
  int made = 0;
  for (std::size_t i = 0; i < plan.stages.size(); ++i) {
    const Stage st = plan.stages[i];
    if (st.parity || st.mode == StageMode::single || st.mode == StageMode::replicate) continue;
    if (std::none_of(st.ranks.begin(), st.ranks.end(), [&](int r) { return cluster.unreliable(r); })) continue;
    const std::string label = cat("stage ", st.first, " .. ", st.last);
    if (st.mode == StageMode::split_spatial) {  // a member's rows cannot be rebuilt from the others'
      skipped.push_back(cat(label, ": row bands (split-spatial) cannot carry a parity"));
      continue;
    }
    std::string why;
    std::vector<Stage> pieces = parity_stages(m, st, parity_rank, why);
    if (pieces.empty()) {
      skipped.push_back(cat(label, ": ", why));
      continue;
    }
    Plan trial = plan;
    trial.stages.erase(trial.stages.begin() + static_cast<long>(i));
    trial.stages.insert(trial.stages.begin() + static_cast<long>(i), pieces.begin(), pieces.end());
    try {
      validate_plan(trial, m, 0);
    } catch (const Error& e) {
      skipped.push_back(cat(label, ": ", e.what()));
      continue;
    }
    plan = std::move(trial);
    i += pieces.size() - 1;
    made += static_cast<int>(pieces.size());
  }
  return made;
}

}  // namespace chorus::plan
