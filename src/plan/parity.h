#pragma once
// Coded redundancy offered by the planner. When a cluster file marks devices unreliable, each
// split-output stage that holds one is cut into a stage per split layer (the layers without
// weights before it ride along) and each gets a parity rank (Stage::parity): a member that
// stalls then costs its consumers a rebuilt slice, not the frame.
#include <string>
#include <vector>

#include "cluster/cluster.h"
#include "model/model.h"
#include "plan/plan.h"

namespace chorus::plan {

// Gives the channel-split stages (split-output; split-tensor and split-input pairs, as split-output
// pieces) of `plan` that hold an unreliable device of `cluster` the parity
// rank `parity_rank` (a device the plan leaves idle). A stage that cannot carry a parity (a
// convolution keeping its slice for the pooling after it, a batch norm folded into a layer,
// layers after its last split one) stays as it was, and `skipped` says why. Returns the number of
// parity stages made.
int add_parity(Plan& plan, const model::Model& model, const cluster::Cluster& cluster, int parity_rank,
               std::vector<std::string>& skipped);

// Whether any device of the cluster is marked unreliable.
bool any_unreliable(const cluster::Cluster& cluster);

}  // namespace chorus::plan
