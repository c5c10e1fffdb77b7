#pragma once
// A plan is plain data: which ranks run which contiguous range of layers, and how. It is
// written and read as JSON (docs/plan-format.md), validated against the model before anything
// runs, and every rank derives the same one.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace chorus::plan {

enum class StageMode {
  single,         // one rank runs the range
  replicate,      // data parallel: frames dealt to the ranks in proportion to `fractions`
  split_output,   // each rank computes a slice of the output channels of conv/dense layers
  split_input,    // each rank takes a slice of the input channels, partial sums are added
  split_spatial,  // each rank computes a band of rows through the whole (fused) range
  split_tensor,   // transformer tensor parallelism: attention by heads, Dense pairs as an output
                  // slice kept by its rank then an input slice, one sum per pair (SplitRole)
};

std::string mode_name(StageMode mode);
// Parses "single", "replicate", "split-output", ...; throws chorus::Error listing the names.
StageMode parse_mode(const std::string& name);

struct Stage {
  std::string first, last;        // layer names, inclusive, in the model's topological order
  StageMode mode = StageMode::single;
  std::vector<int> ranks;
  std::vector<double> fractions;  // one per rank, summing to 1; empty means equal shares
  // split-spatial: layers after which the members swap halo rows with their neighbours; the
  // layers between two of them run as fused bands (empty: the whole stage is one fused band).
  std::vector<std::string> exchange_after;
  // split-spatial only: the columns of a grid of tiles (1: row bands). The ranks, in order, fill
  // the grid row by row, so there are ranks / columns rows of tiles; each row of the grid takes
  // its ranks' fractions added up, and each column of the grid likewise.
  int columns = 1;
  // split-output only, 0 or 1: coded redundancy. The last rank listed computes the sum of the
  // others' output slices (its weights are their slices added, padded to the widest), and every
  // rank sends its slice straight to the stage's consumers, which rebuild a slice that is late
  // from the parity and the rest. `fractions` then has one entry per rank but the parity's.
  int parity = 0;
};

// The most ranks a plan may name: far above any edge cluster (a hostfile takes as many slots),
// and low enough that a mistyped count is refused instead of filling memory with ranks.
constexpr int kMostRanks = 4096;
// Frames in flight at most: each holds its buffers on every rank it passes.
constexpr int kMostInFlight = 65536;

struct Plan {
  std::string model;              // informational: what the plan was made for
  int ranks = 1;                  // the MPI world size the plan needs
  int source = 0;                 // rank that reads inputs
  int sink = 0;                   // rank that collects outputs
  int max_in_flight = 0;          // frames in the pipeline at once; 0 = max(2 x stages, ranks + stages) + 2
  std::vector<Stage> stages;
  nlohmann::json prediction;      // written by the planner; carried along unread
};

// JSON conversion; from_json throws chorus::Error naming `source` and the bad field.
Plan plan_from_json(const nlohmann::json& j, const std::string& source);
nlohmann::json plan_to_json(const Plan& plan);
Plan read_plan(const std::string& path);
void write_plan(const Plan& plan, const std::string& path);

}  // namespace chorus::plan
