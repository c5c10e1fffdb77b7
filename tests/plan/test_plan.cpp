// Plans without MPI: JSON, validation messages, split bounds, strategies, live values, row
// bands, and stage workers checked against model.forward, alone and as threads that exchange
// buffers the way the MPI runtime does.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <numeric>
#include <set>
#include <thread>

#include "core/error.h"
#include "core/parallel.h"
#include "io/keras/keras_model.h"
#include "io/model_file.h"
#include "model/optimize.h"
#include "partition/frame_traffic.h"
#include "partition/hand_off.h"
#include "partition/layer_parts.h"
#include "partition/live_values.h"
#include "partition/row_bands.h"
#include "partition/stage_worker.h"
#include "plan/band_geometry.h"
#include "plan/plan.h"
#include "plan/split_sums.h"
#include "plan/stage_exchanges.h"
#include "plan/strategies.h"
#include "plan/validate.h"
#include "reference/keras_vit.h"
#include "reference/test_util.h"

using namespace chorus;
using plan::Plan;
using plan::Stage;
using plan::StageMode;
using testing::HasSubstr;

namespace {

// A chain with every layer kind a split touches. After the optimiser the nodes are
//   0 c1 (bn1 folded, r1 fused) 24x24x8   1 p1 12x12x8   2 zp 14x14x8   3 c2 6x6x12
//   4 dw (bn2 folded) 6x6x24              5 c3 6x6x6     6 gap 6        7 fc 5
const char* kChainConfig = R"({"class_name": "Functional", "config": {"name": "chain", "layers": [
 {"class_name": "InputLayer", "name": "in", "config": {"name": "in", "batch_input_shape": [null, 24, 24, 3]}, "inbound_nodes": []},
 {"class_name": "Conv2D", "name": "c1", "config": {"name": "c1", "filters": 8, "kernel_size": [3, 3], "padding": "same"}, "inbound_nodes": [[["in", 0, 0, {}]]]},
 {"class_name": "BatchNormalization", "name": "bn1", "config": {"name": "bn1", "axis": -1, "epsilon": 0.001}, "inbound_nodes": [[["c1", 0, 0, {}]]]},
 {"class_name": "Activation", "name": "r1", "config": {"name": "r1", "activation": "relu"}, "inbound_nodes": [[["bn1", 0, 0, {}]]]},
 {"class_name": "MaxPooling2D", "name": "p1", "config": {"name": "p1", "pool_size": [2, 2]}, "inbound_nodes": [[["r1", 0, 0, {}]]]},
 {"class_name": "ZeroPadding2D", "name": "zp", "config": {"name": "zp", "padding": [[1, 1], [1, 1]]}, "inbound_nodes": [[["p1", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "c2", "config": {"name": "c2", "filters": 12, "kernel_size": [3, 3], "strides": [2, 2], "padding": "valid", "activation": "relu"}, "inbound_nodes": [[["zp", 0, 0, {}]]]},
 {"class_name": "DepthwiseConv2D", "name": "dw", "config": {"name": "dw", "kernel_size": [3, 3], "padding": "same", "depth_multiplier": 2, "use_bias": false}, "inbound_nodes": [[["c2", 0, 0, {}]]]},
 {"class_name": "BatchNormalization", "name": "bn2", "config": {"name": "bn2", "axis": -1, "epsilon": 0.001}, "inbound_nodes": [[["dw", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "c3", "config": {"name": "c3", "filters": 6, "kernel_size": [1, 1], "activation": "relu"}, "inbound_nodes": [[["bn2", 0, 0, {}]]]},
 {"class_name": "GlobalAveragePooling2D", "name": "gap", "config": {"name": "gap"}, "inbound_nodes": [[["c3", 0, 0, {}]]]},
 {"class_name": "Dense", "name": "fc", "config": {"name": "fc", "units": 5}, "inbound_nodes": [[["gap", 0, 0, {}]]]}
], "input_layers": [["in", 0, 0]], "output_layers": [["fc", 0, 0]]}})";

// A residual block: c1 feeds both c2 and the add. Nodes after the optimiser:
//   0 c1   1 c2   2 c3   3 add (relu r fused)   4 c4   5 gap   6 fc (2 units)
const char* kResidualConfig = R"({"class_name": "Functional", "config": {"name": "res", "layers": [
 {"class_name": "InputLayer", "name": "in", "config": {"name": "in", "batch_input_shape": [null, 8, 8, 4]}, "inbound_nodes": []},
 {"class_name": "Conv2D", "name": "c1", "config": {"name": "c1", "filters": 8, "kernel_size": [3, 3], "padding": "same", "activation": "relu"}, "inbound_nodes": [[["in", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "c2", "config": {"name": "c2", "filters": 8, "kernel_size": [3, 3], "padding": "same", "activation": "relu"}, "inbound_nodes": [[["c1", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "c3", "config": {"name": "c3", "filters": 8, "kernel_size": [3, 3], "padding": "same"}, "inbound_nodes": [[["c2", 0, 0, {}]]]},
 {"class_name": "Add", "name": "add", "config": {"name": "add"}, "inbound_nodes": [[["c3", 0, 0, {}], ["c1", 0, 0, {}]]]},
 {"class_name": "ReLU", "name": "r", "config": {"name": "r"}, "inbound_nodes": [[["add", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "c4", "config": {"name": "c4", "filters": 4, "kernel_size": [1, 1], "activation": "relu"}, "inbound_nodes": [[["r", 0, 0, {}]]]},
 {"class_name": "GlobalAveragePooling2D", "name": "gap", "config": {"name": "gap"}, "inbound_nodes": [[["c4", 0, 0, {}]]]},
 {"class_name": "Dense", "name": "fc", "config": {"name": "fc", "units": 2}, "inbound_nodes": [[["gap", 0, 0, {}]]]}
], "input_layers": [["in", 0, 0]], "output_layers": [["fc", 0, 0]]}})";

// conv 3x3 stride 1 same (16 rows) -> max pool 2x2 (8 rows) -> conv 3x3 stride 2 same (4 rows).
const char* kBandConfig = R"({"class_name": "Functional", "config": {"name": "band", "layers": [
 {"class_name": "InputLayer", "name": "in", "config": {"name": "in", "batch_input_shape": [null, 16, 16, 2]}, "inbound_nodes": []},
 {"class_name": "Conv2D", "name": "c1", "config": {"name": "c1", "filters": 4, "kernel_size": [3, 3], "padding": "same"}, "inbound_nodes": [[["in", 0, 0, {}]]]},
 {"class_name": "MaxPooling2D", "name": "p", "config": {"name": "p", "pool_size": [2, 2]}, "inbound_nodes": [[["c1", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "c2", "config": {"name": "c2", "filters": 4, "kernel_size": [3, 3], "strides": [2, 2], "padding": "same"}, "inbound_nodes": [[["p", 0, 0, {}]]]}
], "input_layers": [["in", 0, 0]], "output_layers": [["c2", 0, 0]]}})";

// Eight 3x3 convolutions on 8x8 with uneven widths, so the multiply-adds differ per layer.
std::string conv_chain_config(const std::vector<int>& filters) {
  nlohmann::json layers = nlohmann::json::array();
  layers.push_back({{"class_name", "InputLayer"},
                    {"name", "in"},
                    {"config", {{"name", "in"}, {"batch_input_shape", {nullptr, 8, 8, 2}}}},
                    {"inbound_nodes", nlohmann::json::array()}});
  std::string previous = "in";
  for (std::size_t i = 0; i < filters.size(); ++i) {
    std::string name = "k" + std::to_string(i + 1);
    layers.push_back(
        {{"class_name", "Conv2D"},
         {"name", name},
         {"config", {{"name", name}, {"filters", filters[i]}, {"kernel_size", {3, 3}}, {"padding", "same"}}},
         {"inbound_nodes", {{{previous, 0, 0, nlohmann::json::object()}}}}});
    previous = name;
  }
  nlohmann::json config{{"class_name", "Functional"},
                        {"config",
                         {{"name", "convs"},
                          {"layers", layers},
                          {"input_layers", {{"in", 0, 0}}},
                          {"output_layers", {{previous, 0, 0}}}}}};
  return config.dump();
}

// The optimised graph of a config, without weights.
model::Model structure_of(const std::string& config_json) {
  auto spec = io::parse_keras_config(nlohmann::json::parse(config_json), "test config");
  model::Model m = io::build_keras_model(spec, "test config");
  model::optimize(m);
  return m;
}

using test::error_of;

Stage stage(const std::string& first, const std::string& last, StageMode mode, std::vector<int> ranks,
            std::vector<double> fractions = {}) {
  return Stage{first, last, mode, std::move(ranks), std::move(fractions), {}};
}

Plan make_plan(int ranks, std::vector<Stage> stages) {
  Plan p;
  p.ranks = ranks;
  p.stages = std::move(stages);
  return p;
}

std::string validate_error(const Plan& p, const model::Model& m, int world_size = 0) {
  return error_of([&] { plan::validate_plan(p, m, world_size); });
}

// Checks the plan's stages are contiguous and cover every node once.
void expect_covers_model(const plan::ResolvedPlan& rp, const model::Model& m) {
  int next = 0;
  for (const auto& s : rp.stages) {
    EXPECT_EQ(s.first, next);
    EXPECT_LE(s.first, s.last);
    next = s.last + 1;
  }
  EXPECT_EQ(next, static_cast<int>(m.nodes().size()));
}

// ---------------------------------------------------------------------------------------------
// Running stages without MPI.

// Every node's output of a fully loaded model, computed node by node into fresh tensors.
std::vector<Tensor> all_values(const model::Model& m, const Tensor& input) {
  std::vector<Tensor> values(m.nodes().size());
  for (std::size_t n = 0; n < m.nodes().size(); ++n) {
    std::vector<const Tensor*> in;
    for (int i : m.nodes()[n].inputs) in.push_back(i == model::kModelInput ? &input : &values[i]);
    m.nodes()[n].layer->forward(in, values[n]);
  }
  return values;
}

// The buffers of one all_gather round, shared by the member threads of a split stage.
class ThreadGroup {
 public:
  explicit ThreadGroup(int members) : members_(members), slots_(members) {}

  void all_gather(int member, const std::vector<float>& mine, const std::vector<std::size_t>& counts,
                  std::vector<std::vector<float>>& parts) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (static_cast<int>(counts.size()) != members_ || mine.size() != counts[member])
      problems_.push_back(cat("member ", member, " round ", round_, ": sent ", mine.size(), " floats, counts say ",
                              member < static_cast<int>(counts.size()) ? counts[member] : 0));
    const long round = round_;
    auto& agreed = counts_[round];
    if (agreed.empty())
      agreed = counts;
    else if (agreed != counts)
      problems_.push_back(cat("member ", member, " round ", round, ": counts differ"));
    slots_[member] = mine;
    if (++arrived_ == members_) {
      // Keep this round's buffers apart: a fast member may start the next round at once.
      results_[round] = slots_;
      arrived_ = 0;
      ++round_;
      changed_.notify_all();
    } else if (!changed_.wait_for(lock, std::chrono::seconds(20), [&] { return round_ > round || aborted_; })) {
      aborted_ = true;
      changed_.notify_all();
      fail("thread exchange: member ", member, " waited 20 s for the others in round ", round);
    }
    if (aborted_ && round_ <= round) fail("thread exchange: another member failed");
    parts = results_.at(round);
  }

  // Point to point, for swap_parts: a message from one member to another, taken in order.
  void post(int from, int to, std::vector<float> data) {
    std::lock_guard<std::mutex> lock(mutex_);
    mail_[{from, to}].push_back(std::move(data));
    changed_.notify_all();
  }
  std::vector<float> take(int from, int to) {
    std::unique_lock<std::mutex> lock(mutex_);
    auto& queue = mail_[{from, to}];
    if (!changed_.wait_for(lock, std::chrono::seconds(20), [&] { return !queue.empty() || aborted_; })) {
      aborted_ = true;
      changed_.notify_all();
      fail("thread exchange: member ", to, " waited 20 s for member ", from);
    }
    if (queue.empty()) fail("thread exchange: another member failed");
    std::vector<float> data = std::move(queue.front());
    queue.pop_front();
    return data;
  }

  // A member failed: wake the others so they fail too instead of waiting forever.
  void abort() {
    std::lock_guard<std::mutex> lock(mutex_);
    aborted_ = true;
    changed_.notify_all();
  }

  long rounds() const { return round_; }
  void note(const std::string& problem) {
    std::lock_guard<std::mutex> lock(mutex_);
    problems_.push_back(problem);
  }
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  const int members_;
  std::mutex mutex_;
  std::condition_variable changed_;
  int arrived_ = 0;
  long round_ = 0;
  bool aborted_ = false;
  std::vector<std::vector<float>> slots_;
  std::map<long, std::vector<std::vector<float>>> results_;
  std::map<long, std::vector<std::size_t>> counts_;
  std::map<std::pair<int, int>, std::deque<std::vector<float>>> mail_;
  std::vector<std::string> problems_;
};

class ThreadExchange : public partition::PeerExchange {
 public:
  ThreadExchange(ThreadGroup& group, int member) : group_(group), member_(member) {}
  void all_gather(const float* mine, const std::vector<std::size_t>& counts, float* gathered) override {
    std::vector<std::vector<float>> parts;
    group_.all_gather(member_, std::vector<float>(mine, mine + counts[member_]), counts, parts);
    for (const auto& p : parts) gathered = std::copy(p.begin(), p.end(), gathered);
  }
  void swap_parts(const std::vector<Part>& sends, const std::vector<Part>& receives) override {
    start_swap(sends, receives);
    finish_swap();
  }
  // As the runtime does: the parts arrive only in finish_swap, so a band that read its halo
  // before then would compute from stale rows.
  void start_swap(const std::vector<Part>& sends, const std::vector<Part>& receives) override {
    for (const Part& p : sends) group_.post(member_, p.member, std::vector<float>(p.data, p.data + p.count));
    pending_ = receives;
  }
  void finish_swap() override {
    for (const Part& r : pending_) {
      const std::vector<float> data = group_.take(r.member, member_);
      if (data.size() != r.count)
        group_.note(cat("member ", member_, " expected ", r.count, " floats from member ", r.member, ", got ",
                        data.size()));
      std::copy_n(data.begin(), std::min(data.size(), r.count), r.data);
    }
    pending_.clear();
  }
  // As the runtime leaves them: after a reduce-scatter only this member's share of each frame
  // holds sums, so a worker that read the rest would compute from NaNs.
  void end_sums(int id) override {
    PeerExchange::end_sums(id);
    const OpenSums& sums = open_sums(id);
    if (sums.root != plan::kSumsScattered) return;
    const std::vector<std::size_t>& shares = *sums.shares;
    for (std::size_t at = 0; at < sums.count; at += shares.back())
      for (std::size_t i = 0; i < shares.back(); ++i)
        if (i < shares[member_] || i >= shares[member_ + 1]) sums.data[at + i] = std::nanf("");
  }

 private:
  ThreadGroup& group_;
  int member_;
  std::vector<Part> pending_;
};

// Runs a worker on `values` (copied into its inputs) and returns copies of its outputs.
std::vector<Tensor> run_worker(partition::StageWorker& worker, const std::vector<Tensor>& values,
                               partition::PeerExchange* exchange) {
  for (int k = 0; k < worker.inputs(); ++k) worker.input(k) = values.at(k);
  worker.run(exchange);
  std::vector<Tensor> out;
  for (int k = 0; k < worker.outputs(); ++k) out.push_back(worker.output(k));
  return out;
}

// What member `member` of stage s is sent of `values`, as the runtime sends it
// (partition::stage_input_rows): the rest is NaN, so a worker that read it would compute NaNs.
std::vector<Tensor> sent_to(const model::Model& m, const plan::ResolvedPlan& rp, int s, int member,
                            const std::vector<Tensor>& values) {
  const std::vector<partition::InputRows> rows = partition::stage_input_rows(m, rp, s, member);
  std::vector<Tensor> sent;
  for (std::size_t k = 0; k < values.size(); ++k) {
    const Tensor& v = values[k];
    sent.emplace_back(v.frames(), v.shape());
    std::fill(sent.back().data(), sent.back().data() + sent.back().size(), std::nanf(""));
    std::vector<float> packed(rows.at(k).floats());
    for (int f = 0; f < v.frames(); ++f) {
      partition::pack_input_rows(rows[k], v.frame(f), packed.data());
      partition::unpack_input_rows(rows[k], packed.data(), sent.back().frame(f));
    }
  }
  return sent;
}

// One rank's own copy of the model and its own weight reader, as every MPI rank has.
struct RankState {
  io::KerasModelStructure structure;
  std::unique_ptr<io::KerasWeightReader> reader;
};

struct PlanRun {
  Tensor output;
  bool handed_tiles = false;  // a split-spatial stage handed its tiles straight on
  long exchanges = 0;  // all_gather rounds over all split stages
};

// Runs a validated plan on `input` the way the runtime would, stage after stage, with one
// model instance per rank; stages of several ranks run their members on threads. Every
// member's outputs are compared with the fully loaded model's values.
PlanRun run_plan(const std::string& h5, const plan::ResolvedPlan& rp, const Tensor& input) {
  model::Model full = io::load_keras_model(h5);
  const std::vector<Tensor> reference = all_values(full, input);
  auto reference_of = [&](int v) -> const Tensor& { return v == model::kModelInput ? input : reference.at(v); };

  std::vector<std::unique_ptr<RankState>> ranks;
  for (int r = 0; r < rp.plan.ranks; ++r) {
    auto state = std::make_unique<RankState>();
    state->structure = io::load_keras_structure(h5, "", /*optimize=*/true);
    state->reader = std::make_unique<io::KerasWeightReader>(h5, state->structure.spec);
    ranks.push_back(std::move(state));
  }
  // Workers are made here, on one thread: they read HDF5, which need not be thread-safe.
  std::vector<std::vector<std::unique_ptr<partition::StageWorker>>> workers(rp.stages.size());
  for (std::size_t s = 0; s < rp.stages.size(); ++s)
    for (std::size_t k = 0; k < rp.stages[s].ranks.size(); ++k) {
      RankState& rank = *ranks.at(rp.stages[s].ranks[k]);
      workers[s].push_back(std::make_unique<partition::StageWorker>(rank.structure.model, rp, static_cast<int>(s),
                                                                    static_cast<int>(k), *rank.reader));
    }

  PlanRun result;
  const model::Model& m = ranks[0]->structure.model;
  std::vector<Tensor> values{input};
  // Where the stage before handed its tiles on (plan::hands_tiles_on): what each member
  // was sent, put together from the tiles' pieces as the runtime does.
  std::vector<std::vector<Tensor>> handed;
  const auto inputs_of = [&](int s, int k) { return handed.empty() ? sent_to(m, rp, s, k, values) : handed.at(k); };
  for (std::size_t s = 0; s < rp.stages.size(); ++s) {
    const int members = static_cast<int>(workers[s].size());
    std::vector<std::vector<Tensor>> outputs(members);
    if (members == 1) {
      outputs[0] = run_worker(*workers[s][0], handed.empty() ? values : handed.at(0), nullptr);
    } else {
      ThreadGroup group(members);
      std::vector<std::string> errors(members);
      std::vector<std::thread> threads;
      for (int k = 0; k < members; ++k)
        threads.emplace_back([&, k] {
          try {
            ThreadExchange exchange(group, k);
            outputs[k] = run_worker(*workers[s][k], inputs_of(static_cast<int>(s), k), &exchange);
          } catch (const std::exception& e) {
            errors[k] = e.what();
            group.abort();
          }
        });
      for (auto& t : threads) t.join();
      for (int k = 0; k < members; ++k) EXPECT_EQ(errors[k], "") << "stage " << s << " member " << k;
      for (const auto& problem : group.problems()) ADD_FAILURE() << "stage " << s << ": " << problem;
      result.exchanges += group.rounds();
    }
    const std::vector<int> live = partition::live_values(m, rp, static_cast<int>(s));
    handed.clear();
    if (plan::hands_tiles_on(m, rp.stages[s])) {
      // Each receiver's input from every member's pieces; it must be exactly what it takes
      // of the value (partition::stage_input_rows), NaN elsewhere.
      const partition::TileHandOff hand_off = partition::tile_hand_off(m, rp, static_cast<int>(s));
      const int next = static_cast<int>(s) + 1;
      const int receivers =
          next == static_cast<int>(rp.stages.size()) ? 1 : static_cast<int>(rp.stages[next].ranks.size());
      const Tensor& whole = reference_of(live.at(0));
      for (int r = 0; r < receivers; ++r) {
        Tensor value(whole.frames(), whole.shape());
        std::fill(value.data(), value.data() + value.size(), std::nanf(""));
        for (int g = 0; g < members; ++g) {
          std::vector<float> packed(hand_off.floats(g, r));
          for (int f = 0; f < value.frames(); ++f) {
            partition::pack_pieces(hand_off.pieces[g][r], outputs[g].at(0).frame(f), packed.data());
            partition::unpack_pieces(hand_off.pieces[g][r], packed.data(), value.frame(f));
          }
        }
        const Tensor expected = sent_to(m, rp, next, r, {whole}).at(0);
        std::size_t wrong = 0;
        for (std::size_t j = 0; j < value.size(); ++j)
          if (std::isnan(value.data()[j]) != std::isnan(expected.data()[j]) ||
              std::fabs(value.data()[j] - expected.data()[j]) > 1e-4f * (1.0f + std::fabs(expected.data()[j])))
            ++wrong;
        EXPECT_EQ(wrong, 0u) << "stage " << s << "'s tiles handed to receiver " << r;
        handed.push_back({std::move(value)});
      }
      result.handed_tiles = true;
      continue;
    }
    for (int k = 0; k < members; ++k) {
      if (outputs[k].size() != live.size()) {
        ADD_FAILURE() << "stage " << s << " member " << k << ": " << outputs[k].size() << " outputs for " << live.size()
                      << " live values";
        return result;
      }
      for (std::size_t i = 0; i < live.size(); ++i) {
        // The stage's last layer is whole only on member 0, which hands it on.
        if (k > 0 && live[i] == rp.stages[s].last) continue;
        EXPECT_LT(max_relative_error(outputs[k][i], reference_of(live[i])), 1e-5)
            << "stage " << s << " (" << plan::mode_name(rp.stages[s].mode) << ") member " << k << " value " << live[i];
      }
    }
    values = std::move(outputs[0]);
  }
  if (!handed.empty()) values = handed.at(0);  // the last stage's tiles, handed to the sink
  EXPECT_EQ(values.size(), 1u);
  if (values.size() == 1) {
    EXPECT_LT(max_relative_error(values[0], full.forward(input)), 1e-5);
    result.output = std::move(values[0]);
  }
  return result;
}

// Writes the chain and residual models with random weights once for the whole suite.
class StageWorkerTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    set_compute_threads(1);  // the threads below stand for ranks; keep each to one thread
    dir_ = new test::TempDir;
    test::write_random_model(kChainConfig, dir_->path("chain.h5"), 11);
    test::write_random_model(kResidualConfig, dir_->path("res.h5"), 12);
    test::write_random_model(test::kKerasVitConfig, dir_->path("vit.h5"), 13);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string chain_h5() { return dir_->path("chain.h5"); }
  static std::string residual_h5() { return dir_->path("res.h5"); }
  static std::string vit_h5() { return dir_->path("vit.h5"); }

  static test::TempDir* dir_;
};
test::TempDir* StageWorkerTest::dir_ = nullptr;

}  // namespace

// ---------------------------------------------------------------------------------------------
// 1. Plan JSON

// Partial sums are reduced in up to eight parts of whole positions (of channels, for one
// frame's vector); each member sends every other its share of each part and the sums of its
// own: 2 (k - 1) / k of the sums in all.
TEST(SplitSums, PartsCoverTheOutputAndEachMemberSendsTwoOfKOfIt) {
  EXPECT_EQ(plan::sum_parts({1, 197, 768}, 1, true),
            (std::vector<std::size_t>{0, 24 * 768, 49 * 768, 73 * 768, 98 * 768, 123 * 768, 147 * 768, 172 * 768,
                                      197 * 768}));
  EXPECT_EQ(plan::sum_parts({1, 197, 768}, 1, false), (std::vector<std::size_t>{0, 197 * 768}));  // a convolution
  // One frame's vector: parts of at least 512 channels, up to eight; one for a smaller vector,
  // and positions again for two frames.
  EXPECT_EQ(plan::sum_parts({1, 1, 4096}, 1, true),
            (std::vector<std::size_t>{0, 512, 1024, 1536, 2048, 2560, 3072, 3584, 4096}));
  EXPECT_EQ(plan::sum_parts({1, 1, 1500}, 1, true), (std::vector<std::size_t>{0, 1500 / 2, 1500}));
  EXPECT_EQ(plan::sum_parts({1, 1, 1000}, 1, true), (std::vector<std::size_t>{0, 1000}));
  EXPECT_EQ(plan::sum_parts({1, 1, 4096}, 2, true), (std::vector<std::size_t>{0, 4096, 8192}));
  EXPECT_EQ(plan::sum_parts({1, 1, 4096}, 1, false), (std::vector<std::size_t>{0, 4096}));
  EXPECT_EQ(plan::sum_parts({1, 3, 5}, 1, true), (std::vector<std::size_t>{0, 5, 10, 15}));
  EXPECT_EQ(plan::sum_parts({2, 2, 3}, 2, true).back(), 2u * 2 * 2 * 3);
  for (const Shape out : {Shape{1, 197, 768}, Shape{1, 1, 4097}, Shape{7, 7, 13}, Shape{1, 2, 3}})
    for (int k = 2; k <= 9; ++k) {
      SCOPED_TRACE(cat(out.str(), ", ", k, " members"));
      const auto parts = plan::sum_parts(out, 1, true);
      for (int from = 0; from < k; ++from) {
        std::size_t sent = 0, own = 0, reduced = 0;
        for (int to = 0; to < k; ++to) sent += plan::sum_floats_to_peer(parts, k, from, to, -1);
        for (int to = 0; to < k; ++to) reduced += plan::sum_floats_to_peer(parts, k, from, to, 0);
        for (std::size_t p = 0; p + 1 < parts.size(); ++p)
          own += plan::sum_share_begin(parts[p], parts[p + 1], k, from + 1) -
                 plan::sum_share_begin(parts[p], parts[p + 1], k, from);
        // Every share but its own to its owner, then its own share's sum to the k - 1 others
        // (an all-reduce), or to member 0 alone (a reduce: nothing more from member 0).
        EXPECT_EQ(sent, out.size() - own + (k - 1) * own);
        EXPECT_EQ(reduced, out.size() - own + (from == 0 ? 0 : own));
        EXPECT_EQ(plan::sum_floats_to_peer(parts, k, from, from, -1), 0u);
      }
    }
}

TEST(PlanJson, RoundTripKeepsEveryField) {
  Plan p;
  p.model = "models/chain.h5";
  p.ranks = 3;
  p.source = 1;
  p.sink = 2;
  p.max_in_flight = 7;
  p.stages = {
      stage("c1", "p1", StageMode::single, {0}), stage("zp", "c2", StageMode::split_output, {1, 2}, {0.25, 0.75}),
      stage("dw", "c3", StageMode::split_input, {2, 0}, {0.6, 0.4}),
      stage("gap", "gap", StageMode::split_spatial, {0, 1, 2}), stage("fc", "fc", StageMode::replicate, {1, 2})};
  p.prediction = {{"bottleneck_ms", 1.5}, {"stages", {{{"ms", 0.5}}, {{"ms", 1.5}}}}};

  // Through text, as a file would carry it.
  Plan q = plan::plan_from_json(nlohmann::json::parse(plan::plan_to_json(p).dump(2)), "round trip");
  EXPECT_EQ(q.model, p.model);
  EXPECT_EQ(q.ranks, 3);
  EXPECT_EQ(q.source, 1);
  EXPECT_EQ(q.sink, 2);
  EXPECT_EQ(q.max_in_flight, 7);
  EXPECT_EQ(q.prediction, p.prediction);
  ASSERT_EQ(q.stages.size(), p.stages.size());
  for (std::size_t i = 0; i < p.stages.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(q.stages[i].first, p.stages[i].first);
    EXPECT_EQ(q.stages[i].last, p.stages[i].last);
    EXPECT_EQ(q.stages[i].mode, p.stages[i].mode);
    EXPECT_EQ(q.stages[i].ranks, p.stages[i].ranks);
    EXPECT_EQ(q.stages[i].fractions, p.stages[i].fractions);
  }
  // The mode is written by name.
  EXPECT_EQ(plan::plan_to_json(p)["stages"][1]["mode"], "split-output");
}

TEST(PlanJson, WriteAndReadFile) {
  test::TempDir dir;
  Plan p = make_plan(
      2, {stage("a", "b", StageMode::single, {1}), stage("c", "d", StageMode::split_spatial, {0, 1}, {0.3, 0.7})});
  plan::write_plan(p, dir.path("plan.json"));
  Plan q = plan::read_plan(dir.path("plan.json"));
  EXPECT_EQ(q.ranks, 2);
  EXPECT_EQ(q.max_in_flight, 0);        // not written when 0, read back as 0
  EXPECT_TRUE(q.prediction.is_null());  // absent stays absent
  ASSERT_EQ(q.stages.size(), 2u);
  EXPECT_EQ(q.stages[1].mode, StageMode::split_spatial);
  EXPECT_EQ(q.stages[1].fractions, (std::vector<double>{0.3, 0.7}));
  EXPECT_TRUE(q.stages[0].fractions.empty());
}

TEST(PlanJson, ReadErrorsNameTheFile) {
  test::TempDir dir;
  const std::string missing = dir.path("missing-plan.json");
  EXPECT_THAT(error_of([&] { plan::read_plan(missing); }), HasSubstr(missing));

  const std::string broken = dir.path("broken-plan.json");
  std::ofstream(broken) << "{ \"ranks\": 2, \"stages\": [ ";
  std::string message = error_of([&] { plan::read_plan(broken); });
  EXPECT_THAT(message, HasSubstr(broken));
  EXPECT_THAT(message, HasSubstr("JSON"));

  // Valid JSON that is not a plan names the source too.
  EXPECT_THAT(error_of([] {
                plan::plan_from_json(nlohmann::json{{"stages", nlohmann::json::array()}}, "x.json");
              }),
              HasSubstr("x.json"));
  EXPECT_THAT(error_of([] {
                plan::plan_from_json(
                    nlohmann::json::parse(R"({"ranks": 1, "stages": [{"layers": ["a"], "ranks": [0]}]})"), "y.json");
              }),
              HasSubstr("stages[0].layers"));
}

// A key the reader does not know is refused, naming it: a typo ("moed") would otherwise leave
// the stage single without a word. So are a count of ranks no cluster has, and a folder.
TEST(PlanJson, UnknownKeysManyRanksAndFoldersAreRefused) {
  const auto error = [](const std::string& text) {
    return error_of([&] { plan::plan_from_json(nlohmann::json::parse(text), "p.json"); });
  };
  EXPECT_THAT(error(R"({"ranks": 2, "stagez": 1, "stages": []})"), HasSubstr("p.json: unknown key 'stagez'"));
  EXPECT_THAT(error(R"({"ranks": 2, "stages": [{"layers": ["a", "b"], "ranks": [0, 1], "moed": "split-output"}]})"),
              HasSubstr("p.json: stages[0]: unknown key 'moed'"));
  EXPECT_THAT(error(R"({"ranks": 100000, "stages": []})"), HasSubstr("p.json: ranks is 100000: at most 4096"));
  EXPECT_THAT(error(R"({"ranks": 2})"), HasSubstr("p.json: stages is missing"));
  EXPECT_THAT(error(R"({"ranks": 1, "max_in_flight": 0, "stages": []})"),
              HasSubstr("p.json: max_in_flight is 0: at least 1"));
  test::TempDir dir;
  EXPECT_THAT(error_of([&] { plan::read_plan(dir.path("")); }), HasSubstr("is a directory, not a plan file"));
}

// Whole numbers are whole: 2.5 columns, a rank 3.9 or a sink of true are refused, naming the
// field, not read as 2, 3 or 1; nor does 2^32 + 2 wrap to 2.
TEST(PlanJson, WholeNumbersMustBeWhole) {
  const auto error = [](const std::string& text) {
    return error_of([&] { plan::plan_from_json(nlohmann::json::parse(text), "p.json"); });
  };
  const std::string stage = R"("layers": ["a", "b"], "mode": "split-spatial")";
  EXPECT_THAT(error(R"({"ranks": 2, "stages": [{)" + stage + R"(, "ranks": [0, 1], "columns": 2.5}]})"),
              HasSubstr("p.json: stages[0].columns must be a whole number, got 2.5"));
  EXPECT_THAT(error(R"({"ranks": 2, "stages": [{)" + stage + R"(, "ranks": [0, 1], "columns": true}]})"),
              HasSubstr("stages[0].columns must be a whole number, got true"));
  EXPECT_THAT(error(R"({"ranks": 2, "stages": [{)" + stage + R"(, "ranks": [0, 1], "columns": 4294967298}]})"),
              HasSubstr("stages[0].columns is out of range: 4294967298"));
  EXPECT_THAT(error(R"({"ranks": 2, "stages": [{)" + stage + R"(, "ranks": [0, 3.9]}]})"),
              HasSubstr("stages[0].ranks[1] must be a whole number, got 3.9"));
  EXPECT_THAT(error(R"({"ranks": 4.7, "stages": []})"), HasSubstr("p.json: ranks must be a whole number, got 4.7"));
  EXPECT_THAT(error(R"({"ranks": 2, "sink": 1.5, "stages": []})"), HasSubstr("sink must be a whole number, got 1.5"));
  EXPECT_THAT(error(R"({"ranks": 2, "sink": -18446744073709551618, "stages": []})"), HasSubstr("sink must be"));
  EXPECT_NO_THROW(plan::plan_from_json(nlohmann::json::parse(R"({"ranks": 2, "sink": 1, "stages": [{)" + stage +
                                                             R"(, "ranks": [0, 1], "columns": 2}]})"),
                                       "p.json"));
}

TEST(PlanJson, ParseModeListsTheNames) {
  EXPECT_EQ(plan::parse_mode("split-spatial"), StageMode::split_spatial);
  for (auto mode : {StageMode::single, StageMode::replicate, StageMode::split_output, StageMode::split_input,
                    StageMode::split_spatial})
    EXPECT_EQ(plan::parse_mode(plan::mode_name(mode)), mode);
  std::string message = error_of([] { plan::parse_mode("split-depth"); });
  EXPECT_THAT(message, HasSubstr("split-depth"));
  for (const char* name : {"single", "replicate", "split-output", "split-input", "split-spatial"})
    EXPECT_THAT(message, HasSubstr(name));
  // A bad mode inside a plan file is reported the same way.
  EXPECT_THAT(error_of([] {
                plan::plan_from_json(
                    nlohmann::json::parse(
                        R"({"ranks": 1, "stages": [{"layers": ["a", "b"], "mode": "split-depth", "ranks": [0]}]})"),
                    "z.json");
              }),
              HasSubstr("split-depth"));
}

// ---------------------------------------------------------------------------------------------
// 2. validate_plan

TEST(ValidatePlan, ChainModelHasTheExpectedNodes) {
  // The other tests rely on these indices.
  model::Model m = structure_of(kChainConfig);
  std::vector<std::string> names;
  for (const auto& n : m.nodes()) names.push_back(n.name());
  EXPECT_EQ(names, (std::vector<std::string>{"c1", "p1", "zp", "c2", "dw", "c3", "gap", "fc"}));
  model::Model r = structure_of(kResidualConfig);
  names.clear();
  for (const auto& n : r.nodes()) names.push_back(n.name());
  EXPECT_EQ(names, (std::vector<std::string>{"c1", "c2", "c3", "add", "c4", "gap", "fc"}));
}

TEST(ValidatePlan, UnknownLayer) {
  model::Model m = structure_of(kChainConfig);
  EXPECT_THAT(validate_error(make_plan(1, {stage("c1", "fc9", StageMode::single, {0})}), m), HasSubstr("'fc9'"));
  EXPECT_THAT(validate_error(make_plan(1, {stage("conv0", "fc", StageMode::single, {0})}), m),
              HasSubstr("unknown layer 'conv0'"));
}

TEST(ValidatePlan, OverlapGapAndLeftover) {
  model::Model m = structure_of(kChainConfig);
  EXPECT_THAT(
      validate_error(
          make_plan(2, {stage("c1", "c2", StageMode::single, {0}), stage("c2", "fc", StageMode::single, {1})}), m),
      HasSubstr("overlaps"));
  std::string gap = validate_error(
      make_plan(2, {stage("c1", "p1", StageMode::single, {0}), stage("dw", "fc", StageMode::single, {1})}), m);
  EXPECT_THAT(gap, HasSubstr("gap"));
  EXPECT_THAT(gap, HasSubstr("'zp'"));  // the first layer in no stage
  std::string left = validate_error(make_plan(1, {stage("c1", "c2", StageMode::single, {0})}), m);
  EXPECT_THAT(left, HasSubstr("'dw'"));
  EXPECT_THAT(left, HasSubstr("in no stage"));
  EXPECT_THAT(validate_error(make_plan(1, {stage("c2", "c1", StageMode::single, {0})}), m), HasSubstr("comes after"));
}

TEST(ValidatePlan, RanksAndWorldSize) {
  model::Model m = structure_of(kChainConfig);
  Plan three = make_plan(3, {stage("c1", "c2", StageMode::single, {0}), stage("dw", "c3", StageMode::single, {1}),
                             stage("gap", "fc", StageMode::single, {2})});
  EXPECT_NO_THROW(plan::validate_plan(three, m, 3));
  EXPECT_NO_THROW(plan::validate_plan(three, m, 0));  // 0 skips the world-size check
  EXPECT_THAT(validate_error(three, m, 2), HasSubstr("made for 3 rank(s) but the job has 2"));

  EXPECT_THAT(validate_error(make_plan(2, {stage("c1", "fc", StageMode::single, {2})}), m),
              HasSubstr("rank 2 is not among the 2 ranks"));
  EXPECT_THAT(validate_error(make_plan(2, {stage("c1", "fc", StageMode::split_output, {1, 1})}), m),
              HasSubstr("rank 1 is listed twice"));
  EXPECT_THAT(validate_error(make_plan(2, {stage("c1", "fc", StageMode::single, {0, 1})}), m),
              HasSubstr("exactly one rank"));
  Plan bad_sink = make_plan(2, {stage("c1", "fc", StageMode::single, {0})});
  bad_sink.sink = 2;
  EXPECT_THAT(validate_error(bad_sink, m), HasSubstr("sink"));
}

TEST(ValidatePlan, Fractions) {
  model::Model m = structure_of(kChainConfig);
  auto split = [](std::vector<double> fractions) {
    return make_plan(2, {stage("c1", "fc", StageMode::split_output, {0, 1}, std::move(fractions))});
  };
  EXPECT_THAT(validate_error(split({1.0}), m), HasSubstr("1 fractions for 2 ranks"));
  EXPECT_THAT(validate_error(split({0.5, 0.4}), m), HasSubstr("sum to"));
  EXPECT_THAT(validate_error(split({1.5, -0.5}), m), HasSubstr("positive"));
  EXPECT_THAT(validate_error(split({1.0, 0.0}), m), HasSubstr("positive"));
  EXPECT_NO_THROW(plan::validate_plan(split({0.7, 0.3}), m, 2));
}

TEST(ValidatePlan, SplitKindsThatDoNotFit) {
  model::Model m = structure_of(kChainConfig);
  // Depthwise layers mix no channels, so they have no input-channel split.
  Plan dw_input =
      make_plan(2, {stage("c1", "c2", StageMode::single, {0}), stage("dw", "dw", StageMode::split_input, {0, 1}),
                    stage("c3", "fc", StageMode::single, {0})});
  std::string message = validate_error(dw_input, m);
  EXPECT_THAT(message, HasSubstr("cannot be split by input channels"));
  EXPECT_THAT(message, HasSubstr("'dw'"));
  // ... but they do split by output channels.
  Plan dw_output = dw_input;
  dw_output.stages[1].mode = StageMode::split_output;
  EXPECT_NO_THROW(plan::validate_plan(dw_output, m, 2));

  // A stage of pooling and padding only has nothing to split.
  Plan pool_only =
      make_plan(2, {stage("c1", "c1", StageMode::single, {0}), stage("p1", "zp", StageMode::split_output, {0, 1}),
                    stage("c2", "fc", StageMode::single, {1})});
  EXPECT_THAT(validate_error(pool_only, m), HasSubstr("none of its layers"));
}

TEST(ValidatePlan, SplitSpatialHandsOnOneValue) {
  model::Model m = structure_of(kResidualConfig);
  // c1 feeds c2 and the add after the stage: a branch leaves from inside the stage.
  Plan branch =
      make_plan(2, {stage("c1", "c3", StageMode::split_spatial, {0, 1}), stage("add", "fc", StageMode::single, {0})});
  EXPECT_THAT(validate_error(branch, m), HasSubstr("hand on only its last layer's output"));
  // The add reads c1, a second value from outside a stage that starts at c3 (which reads c2).
  Plan second_input =
      make_plan(2, {stage("c1", "c2", StageMode::single, {0}), stage("c3", "add", StageMode::split_spatial, {0, 1}),
                    stage("c4", "fc", StageMode::single, {0})});
  EXPECT_THAT(validate_error(second_input, m), HasSubstr("one value from outside"));
  // The whole residual block, add included, runs as bands, and so does the chain inside it.
  Plan block =
      make_plan(2, {stage("c1", "add", StageMode::split_spatial, {0, 1}), stage("c4", "fc", StageMode::single, {0})});
  EXPECT_NO_THROW(plan::validate_plan(block, m, 2));
  Plan inner =
      make_plan(2, {stage("c1", "c1", StageMode::single, {0}), stage("c2", "c3", StageMode::split_spatial, {0, 1}),
                    stage("add", "fc", StageMode::single, {0})});
  EXPECT_NO_THROW(plan::validate_plan(inner, m, 2));
  // Groups may be cut only where one value is alive: not inside the block.
  Plan cut_inside =
      make_plan(2, {stage("c1", "c4", StageMode::split_spatial, {0, 1}), stage("gap", "fc", StageMode::single, {0})});
  cut_inside.stages[0].exchange_after = {"c2"};
  EXPECT_THAT(validate_error(cut_inside, m),
              HasSubstr("exchange_after may cut the stage only where one value is alive"));
  Plan cut_after = cut_inside;
  cut_after.stages[0].exchange_after = {"add"};
  EXPECT_NO_THROW(plan::validate_plan(cut_after, m, 2));
}

TEST(ValidatePlan, TooFewChannelsOrRows) {
  model::Model m = structure_of(kResidualConfig);
  // fc has 2 units: three parts would leave one empty.
  Plan p =
      make_plan(3, {stage("c1", "gap", StageMode::single, {0}), stage("fc", "fc", StageMode::split_output, {0, 1, 2})});
  std::string message = validate_error(p, m);
  EXPECT_THAT(message, HasSubstr("too few"));
  EXPECT_THAT(message, HasSubstr("'fc'"));
  // Uneven fractions can starve a part where even ones would not: 8 channels, a 1% share.
  Plan starved = make_plan(
      2, {stage("c1", "c1", StageMode::split_output, {0, 1}, {0.99, 0.01}), stage("c2", "fc", StageMode::single, {0})});
  EXPECT_THAT(validate_error(starved, m), HasSubstr("too few"));
  // Rows: c4 output has 8 rows, nine bands cannot all have one.
  Plan rows = make_plan(9, {stage("c1", "add", StageMode::single, {0}),
                            stage("c4", "c4", StageMode::split_spatial, {0, 1, 2, 3, 4, 5, 6, 7, 8}),
                            stage("gap", "fc", StageMode::single, {0})});
  EXPECT_THAT(validate_error(rows, m), HasSubstr("too few"));
}

TEST(ValidatePlan, MixedPlanResolves) {
  model::Model m = structure_of(kChainConfig);
  Plan p = make_plan(
      3, {stage("c1", "zp", StageMode::split_spatial, {0, 1}),
          stage("c2", "c2", StageMode::split_output, {1, 2}, {0.75, 0.25}),
          stage("dw", "dw", StageMode::split_output, {0, 1, 2}), stage("c3", "c3", StageMode::split_input, {2, 0}),
          stage("gap", "fc", StageMode::replicate, {1, 2})});
  plan::ResolvedPlan rp = plan::validate_plan(p, m, 3);
  ASSERT_EQ(rp.stages.size(), 5u);
  std::vector<std::pair<int, int>> ranges;
  for (const auto& s : rp.stages) ranges.push_back({s.first, s.last});
  EXPECT_EQ(ranges, (std::vector<std::pair<int, int>>{{0, 2}, {3, 3}, {4, 4}, {5, 5}, {6, 7}}));
  EXPECT_EQ(rp.stages[1].mode, StageMode::split_output);
  EXPECT_EQ(rp.stages[1].ranks, (std::vector<int>{1, 2}));
  EXPECT_EQ(rp.stages[1].fractions, (std::vector<double>{0.75, 0.25}));
  ASSERT_EQ(rp.stages[2].fractions.size(), 3u);  // empty means equal shares
  for (double f : rp.stages[2].fractions) EXPECT_DOUBLE_EQ(f, 1.0 / 3);
  EXPECT_EQ(rp.stages[3].ranks, (std::vector<int>{2, 0}));
  // The sink (rank 0) also computes, in stages of up to 3 members: it trails by 3 frames, and
  // the default window makes room for that.
  EXPECT_EQ(rp.sink_lag, 3);
  EXPECT_EQ(rp.max_in_flight, 2 * 5 + 2 + 3);
  expect_covers_model(rp, m);
  p.max_in_flight = 4;
  EXPECT_EQ(plan::validate_plan(p, m, 3).max_in_flight, 4);
}

// The sink's rank computes a replica of the first half and collects the second half's frames:
// a frame it computed is collected only after the second half's replicas had their turns.
TEST(ValidatePlan, SinkTrailsEveryReplicatedStageAfterItsOwn) {
  model::Model m = structure_of(kChainConfig);
  Plan p = make_plan(
      7, {stage("c1", "c2", StageMode::replicate, {0, 1, 2}), stage("dw", "fc", StageMode::replicate, {3, 4, 5, 6})});
  plan::ResolvedPlan rp = plan::validate_plan(p, m, 7);
  EXPECT_EQ(rp.sink_lag, 3 + (4 - 1));
  EXPECT_EQ(rp.burst_frames, 3);
  EXPECT_EQ(rp.max_in_flight, 7 + 2 + 2 + 6 + 2 * 3);
  // In the last stage the sink trails only its own stage's replicas.
  p.stages[0].ranks = {1, 2, 3};
  p.stages[1].ranks = {0, 4, 5, 6};
  EXPECT_EQ(plan::validate_plan(p, m, 7).sink_lag, 4);
}

TEST(ValidatePlan, MergedNamesResolveToTheirNode) {
  model::Model m = structure_of(kChainConfig);
  ASSERT_EQ(m.find("bn1"), 0);
  ASSERT_EQ(m.find("r1"), 0);
  ASSERT_EQ(m.find("bn2"), 4);
  // Stages named by the folded batch norm and fused activation of c1, and bn2 folded into dw.
  Plan p = make_plan(2, {stage("bn1", "r1", StageMode::single, {0}), stage("p1", "bn2", StageMode::single, {1}),
                         stage("c3", "fc", StageMode::single, {0})});
  plan::ResolvedPlan rp = plan::validate_plan(p, m, 2);
  EXPECT_EQ(rp.stages[0].first, 0);
  EXPECT_EQ(rp.stages[0].last, 0);
  EXPECT_EQ(rp.stages[1].first, 1);
  EXPECT_EQ(rp.stages[1].last, 4);
  EXPECT_EQ(rp.stages[2].first, 5);
  // A stage that starts at a name merged into the previous stage's last node overlaps it.
  Plan overlap = make_plan(2, {stage("c1", "c1", StageMode::single, {0}), stage("bn1", "fc", StageMode::single, {1})});
  EXPECT_THAT(validate_error(overlap, m), HasSubstr("overlaps"));
}

// ---------------------------------------------------------------------------------------------
// 3. split_bounds

TEST(SplitBounds, EvenAndUneven) {
  EXPECT_EQ(plan::split_bounds(10, {0.5, 0.5}), (std::vector<int>{0, 5, 10}));
  EXPECT_EQ(plan::split_bounds(12, {1.0 / 3, 1.0 / 3, 1.0 / 3}), (std::vector<int>{0, 4, 8, 12}));
  EXPECT_EQ(plan::split_bounds(10, {0.5, 0.3, 0.2}), (std::vector<int>{0, 5, 8, 10}));
  EXPECT_EQ(plan::split_bounds(7, {1.0 / 3, 1.0 / 3, 1.0 / 3}), (std::vector<int>{0, 2, 5, 7}));
  EXPECT_EQ(plan::split_bounds(9, {1.0}), (std::vector<int>{0, 9}));
  EXPECT_EQ(plan::split_bounds(100, {0.25, 0.75}), (std::vector<int>{0, 25, 100}));
}

TEST(SplitBounds, MonotoneAndEndAtTheExtent) {
  const std::vector<std::vector<double>> cases{
      {0.5, 0.3, 0.2}, {0.1, 0.1, 0.8},           {0.9, 0.05, 0.05},          {0.25, 0.25, 0.25, 0.25},
      {0.7, 0.3},      {0.2, 0.2, 0.2, 0.2, 0.2}, {1.0 / 7, 2.0 / 7, 4.0 / 7}};
  for (const auto& fractions : cases)
    for (int extent : {1, 2, 3, 5, 7, 8, 13, 64, 1000, 1001}) {
      SCOPED_TRACE(testing::Message() << "extent " << extent << ", " << fractions.size() << " parts");
      auto b = plan::split_bounds(extent, fractions);
      ASSERT_EQ(b.size(), fractions.size() + 1);
      EXPECT_EQ(b.front(), 0);
      EXPECT_EQ(b.back(), extent);
      int total = 0;
      for (std::size_t r = 0; r + 1 < b.size(); ++r) {
        EXPECT_LE(b[r], b[r + 1]);
        total += b[r + 1] - b[r];
        // Each part is within one unit of its exact share of the extent.
        double cumulative = std::accumulate(fractions.begin(), fractions.begin() + r + 1, 0.0);
        EXPECT_LE(std::abs(b[r + 1] - cumulative * extent), 1.0);
      }
      EXPECT_EQ(total, extent);
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Strategies

namespace {

double stage_macs(const model::Model& m, int first, int last) {
  double macs = 0;
  for (int n = first; n <= last; ++n) macs += m.cost(n).macs;
  return macs;
}

}  // namespace

TEST(Strategies, PipelineOneStagePerRankAndBalanced) {
  const std::vector<int> filters{5, 11, 7, 3, 13, 6, 9, 4};
  model::Model m = structure_of(conv_chain_config(filters));
  ASSERT_EQ(m.nodes().size(), 8u);
  const int ranks = 3;
  Plan p = plan::make_strategy_plan("pipeline", m, ranks);
  EXPECT_EQ(p.ranks, ranks);
  plan::ResolvedPlan rp = plan::validate_plan(p, m, ranks);
  ASSERT_EQ(rp.stages.size(), 3u);
  for (int k = 0; k < ranks; ++k) {
    EXPECT_EQ(rp.stages[k].mode, StageMode::single);
    EXPECT_EQ(rp.stages[k].ranks, std::vector<int>{k});
  }
  expect_covers_model(rp, m);

  double planned = 0, planned_with_layers = 0;
  for (const auto& s : rp.stages) {
    planned = std::max(planned, stage_macs(m, s.first, s.last));
    planned_with_layers = std::max(planned_with_layers, stage_macs(m, s.first, s.last) + (s.last - s.first + 1));
  }
  // Brute force over every pair of cuts: stages [0, a), [a, b), [b, 8).
  const int n = 8;
  double best = 1e300, best_with_layers = 1e300;
  for (int a = 1; a < n; ++a)
    for (int b = a + 1; b < n; ++b) {
      double worst = std::max({stage_macs(m, 0, a - 1), stage_macs(m, a, b - 1), stage_macs(m, b, n - 1)});
      best = std::min(best, worst);
      best_with_layers =
          std::min(best_with_layers, std::max({stage_macs(m, 0, a - 1) + a, stage_macs(m, a, b - 1) + (b - a),
                                               stage_macs(m, b, n - 1) + (n - b)}));
    }
  // The planner counts one extra unit per layer so no stage is free: its plan is optimal for
  // that cost exactly, and for multiply-adds alone up to those few units.
  EXPECT_DOUBLE_EQ(planned_with_layers, best_with_layers);
  EXPECT_LE(planned, best + n);
  EXPECT_GE(planned, best);
  EXPECT_LT(planned, stage_macs(m, 0, n - 1) / 2);  // far from putting everything on one rank
}

TEST(Strategies, PipelineOnEveryRankCount) {
  model::Model m = structure_of(kChainConfig);
  for (int ranks = 1; ranks <= 8; ++ranks) {
    SCOPED_TRACE(ranks);
    Plan p = plan::make_strategy_plan("pipeline", m, ranks);
    plan::ResolvedPlan rp = plan::validate_plan(p, m, ranks);
    EXPECT_EQ(rp.stages.size(), static_cast<std::size_t>(ranks));
    expect_covers_model(rp, m);
  }
  std::string message = error_of([&] { plan::make_strategy_plan("pipeline", m, 9); });
  EXPECT_THAT(message, HasSubstr("8 layers"));
  EXPECT_THAT(message, HasSubstr("9 ranks"));
}

TEST(Strategies, Replicate) {
  model::Model m = structure_of(kChainConfig);
  Plan p = plan::make_strategy_plan("replicate", m, 4);
  plan::ResolvedPlan rp = plan::validate_plan(p, m, 4);
  ASSERT_EQ(rp.stages.size(), 1u);
  EXPECT_EQ(rp.stages[0].mode, StageMode::replicate);
  EXPECT_EQ(rp.stages[0].ranks, (std::vector<int>{0, 1, 2, 3}));
  expect_covers_model(rp, m);
  // One rank: nothing to replicate.
  EXPECT_EQ(plan::make_strategy_plan("replicate", m, 1).stages[0].mode, StageMode::single);
}

TEST(Strategies, SplitPlansValidateAndUseAllRanks) {
  for (const char* config : {kChainConfig, kResidualConfig}) {
    model::Model m = structure_of(config);
    for (const char* strategy : {"split-output", "split-input", "split-spatial", "pipeline", "replicate"})
      for (int ranks : {1, 2, 3}) {
        SCOPED_TRACE(testing::Message() << strategy << " on " << m.node(0).name() << ".." << m.nodes().back().name()
                                        << " (" << m.nodes().size() << " nodes), " << ranks << " ranks");
        Plan p = plan::make_strategy_plan(strategy, m, ranks);
        plan::ResolvedPlan rp;
        ASSERT_NO_THROW(rp = plan::validate_plan(p, m, ranks));
        expect_covers_model(rp, m);
        bool any_split = false;
        for (const auto& s : rp.stages) {
          if (s.mode == StageMode::single) {
            if (std::string(strategy) != "pipeline") {
              EXPECT_EQ(s.ranks, std::vector<int>{0});
            }
          } else {
            any_split = true;
            std::vector<int> all(ranks);
            std::iota(all.begin(), all.end(), 0);
            EXPECT_EQ(s.ranks, all);
          }
        }
        if (ranks > 1 && std::string(strategy) != "pipeline") {
          EXPECT_TRUE(any_split);
        }
      }
  }
}

TEST(Strategies, SplitStagesWhereTheLayersAllowIt) {
  model::Model chain = structure_of(kChainConfig);
  auto ranges = [](const Plan& p) {
    std::vector<std::string> out;
    for (const auto& s : p.stages) out.push_back(s.first + ".." + s.last + " " + plan::mode_name(s.mode));
    return out;
  };
  // Every layer of the chain splits by output channels or rides along.
  EXPECT_EQ(ranges(plan::make_strategy_plan("split-output", chain, 3)),
            (std::vector<std::string>{"c1..fc split-output"}));
  // The depthwise layer has no input split: it runs alone on rank 0 between two split stages.
  EXPECT_EQ(ranges(plan::make_strategy_plan("split-input", chain, 3)),
            (std::vector<std::string>{"c1..c2 split-input", "dw..dw single", "c3..fc split-input"}));
  // Rows run out at the global pooling, which ends the stage (each member pools its rows); the
  // tail runs on rank 0.
  EXPECT_EQ(ranges(plan::make_strategy_plan("split-spatial", chain, 3)),
            (std::vector<std::string>{"c1..gap split-spatial", "fc..fc single"}));
  // The residual model's last layer has 2 units: too few for 3 parts, so it runs on rank 0.
  model::Model res = structure_of(kResidualConfig);
  Plan p = plan::make_strategy_plan("split-output", res, 3);
  ASSERT_FALSE(p.stages.empty());
  EXPECT_EQ(p.stages.back().last, "fc");
  EXPECT_EQ(p.stages.back().first, "fc");
  EXPECT_EQ(p.stages.back().mode, StageMode::single);
  EXPECT_EQ(p.stages.back().ranks, std::vector<int>{0});
}

TEST(Strategies, UnknownNameListsTheNames) {
  model::Model m = structure_of(kChainConfig);
  std::string message = error_of([&] { plan::make_strategy_plan("split-depth", m, 2); });
  EXPECT_THAT(message, HasSubstr("split-depth"));
  for (const auto& name : plan::strategy_names()) EXPECT_THAT(message, HasSubstr(name));
  EXPECT_EQ(plan::strategy_names().size(), 6u);
}

// ---------------------------------------------------------------------------------------------
// 5. Live values

TEST(LiveValues, SkipConnectionCrossesCuts) {
  model::Model m = structure_of(kResidualConfig);
  const int c1 = 0, c2 = 1, c3 = 2, fc = 6;
  // Cut inside the block, after c2: c3 needs c2, the add later needs c1.
  plan::ResolvedPlan two = plan::validate_plan(
      make_plan(2, {stage("c1", "c2", StageMode::single, {0}), stage("c3", "fc", StageMode::single, {1})}), m, 2);
  EXPECT_EQ(partition::live_values(m, two, -1), std::vector<int>{model::kModelInput});
  EXPECT_EQ(partition::live_values(m, two, 0), (std::vector<int>{c1, c2}));
  EXPECT_EQ(partition::live_values(m, two, 1), std::vector<int>{fc});
  EXPECT_EQ(partition::live_floats(m, partition::live_values(m, two, 0)), 2u * 8 * 8 * 8);
  EXPECT_EQ(partition::live_floats(m, {model::kModelInput}), 8u * 8 * 4);

  // The block over three stages: c1 stays alive across both cuts.
  plan::ResolvedPlan three = plan::validate_plan(
      make_plan(3, {stage("c1", "c2", StageMode::single, {0}), stage("c3", "c3", StageMode::single, {1}),
                    stage("add", "fc", StageMode::single, {2})}),
      m, 3);
  EXPECT_EQ(partition::live_values(m, three, 0), (std::vector<int>{c1, c2}));
  EXPECT_EQ(partition::live_values(m, three, 1), (std::vector<int>{c1, c3}));
  EXPECT_EQ(partition::live_values(m, three, 2), std::vector<int>{fc});

  // A cut right after c1: only c1 crosses (read by c2 and by the add).
  plan::ResolvedPlan early = plan::validate_plan(
      make_plan(2, {stage("c1", "c1", StageMode::single, {0}), stage("c2", "fc", StageMode::single, {1})}), m, 2);
  EXPECT_EQ(partition::live_values(m, early, 0), std::vector<int>{c1});
  // A cut after the block: only the add's output.
  plan::ResolvedPlan late = plan::validate_plan(
      make_plan(2, {stage("c1", "add", StageMode::single, {0}), stage("c4", "fc", StageMode::single, {1})}), m, 2);
  EXPECT_EQ(partition::live_values(m, late, 0), std::vector<int>{3});
}

// ---------------------------------------------------------------------------------------------
// 6. Row bands

TEST(RowBands, InputRowsOfEachBand) {
  model::Model m = structure_of(kBandConfig);
  ASSERT_EQ(m.nodes().size(), 3u);
  ASSERT_EQ(m.node(0).layer->output_shape().h, 16);
  ASSERT_EQ(m.node(1).layer->output_shape().h, 8);
  ASSERT_EQ(m.node(2).layer->output_shape().h, 4);
  // Output rows of c2 in three even bands: split_bounds(4, thirds) = {0, 1, 3, 4}.
  const auto bounds = plan::split_bounds(4, {1.0 / 3, 1.0 / 3, 1.0 / 3});
  ASSERT_EQ(bounds, (std::vector<int>{0, 1, 3, 4}));
  // Output row y of each layer reads input rows [y*stride - pad_top, y*stride - pad_top + kernel):
  //   c2: 3x3 stride 2 'same' on 8 rows -> 4 rows: total pad (4-1)*2+3-8 = 1, Keras puts it
  //       at the bottom, so pad_top = 0: rows [a, b) read [2a, 2(b-1)+3).
  //   p:  2x2 stride 2, no padding: rows [a, b) read [2a, 2b).
  //   c1: 3x3 stride 1 'same', pad_top = 1: rows [a, b) read [a-1, b+1).
  // Band 0, c2 rows [0,1): c2 reads [0,3); p reads [0,6); c1 reads [-1,7) -> clipped [0,7).
  // Band 1, c2 rows [1,3): c2 reads [2,7); p reads [4,14); c1 reads [3,15).
  // Band 2, c2 rows [3,4): c2 reads [6,9) -> clipped to the 8 rows [6,8); p reads [12,16);
  //         c1 reads [11,17) -> clipped [11,16).
  using Rows = std::vector<std::pair<int, int>>;
  const std::vector<Rows> expected{{{0, 7}, {0, 6}, {0, 3}}, {{3, 15}, {4, 14}, {2, 7}}, {{11, 16}, {12, 16}, {6, 8}}};
  for (int b = 0; b < 3; ++b) {
    SCOPED_TRACE(b);
    EXPECT_EQ(plan::band_input_rows(m, 0, 2, bounds[b], bounds[b + 1]), expected[b]);
  }
  // The whole output reads every row of every layer's input (c2's bottom row through its padding).
  EXPECT_EQ(plan::band_input_rows(m, 0, 2, 0, 4), (Rows{{0, 16}, {0, 16}, {0, 8}}));
}

TEST(RowBands, BandsCoverTheImage) {
  model::Model m = structure_of(kBandConfig);
  for (const std::vector<double>& fractions :
       std::vector<std::vector<double>>{{0.5, 0.5}, {0.5, 0.3, 0.2}, {0.25, 0.25, 0.25, 0.25}}) {
    SCOPED_TRACE(fractions.size());
    const auto bounds = plan::split_bounds(4, fractions);
    std::vector<int> output_hits(4, 0), input_hits(16, 0);
    for (std::size_t b = 0; b + 1 < bounds.size(); ++b) {
      auto rows = plan::band_input_rows(m, 0, 2, bounds[b], bounds[b + 1]);
      for (int y = bounds[b]; y < bounds[b + 1]; ++y) ++output_hits[y];
      // Every layer's rows stay inside its input.
      const int heights[] = {16, 16, 8};  // input rows of c1, p, c2
      for (int l = 0; l < 3; ++l) {
        EXPECT_GE(rows[l].first, 0);
        EXPECT_LE(rows[l].second, heights[l]);
        EXPECT_LT(rows[l].first, rows[l].second);
        // A layer's input rows are the previous layer's output rows, which the next needs.
        if (l > 0) {
          auto next_needs = plan::band_input_rows(m, l, 2, bounds[b], bounds[b + 1]).front();
          EXPECT_EQ(next_needs, rows[l]);
        }
      }
      for (int y = rows[0].first; y < rows[0].second; ++y) ++input_hits[y];
    }
    // Output rows: each exactly once. Input rows: each at least once (halos overlap).
    for (int y = 0; y < 4; ++y) EXPECT_EQ(output_hits[y], 1) << "output row " << y;
    for (int y = 0; y < 16; ++y) EXPECT_GE(input_hits[y], 1) << "input row " << y;
    EXPECT_EQ(plan::band_input_rows(m, 0, 2, bounds[0], bounds[1]).front().first, 0);
    EXPECT_EQ(plan::band_input_rows(m, 0, 2, bounds[bounds.size() - 2], bounds.back()).front().second, 16);
  }
}

TEST(RowBands, ResidualBlockRowsAreWhatEveryReaderNeeds) {
  // Nodes 0 c1, 1 c2, 2 c3 (3x3 'same' on 8 rows), 3 add (c3 + c1).
  model::Model m = structure_of(kResidualConfig);
  EXPECT_TRUE(plan::is_band_graph(m, 0, 3));
  EXPECT_TRUE(plan::is_band_graph(m, 1, 2));
  EXPECT_FALSE(plan::is_band_graph(m, 0, 2));  // c1 is read by the add, after the range
  EXPECT_TRUE(plan::is_band_graph(m, 1, 3));   // c2 and the add read c1, the one value from outside
  EXPECT_FALSE(plan::is_band_graph(m, 2, 3));  // c3 reads c2, the add c1: two values from outside
  // Rows [2, 5) of the add: c3 computes them reading c2 [1, 6), c2 those reading c1 [0, 7); c1
  // computes [0, 7), what c2 reads, which holds the add's [2, 5), and reads the input [0, 8)
  // with one padded row on top.
  using Rows = std::vector<std::pair<int, int>>;
  auto rows = plan::band_rows(m, 0, 3, 2, 5);
  Rows out, need;
  for (const auto& r : rows) out.emplace_back(r.out_begin, r.out_end), need.emplace_back(r.need.begin, r.need.end);
  EXPECT_EQ(out, (Rows{{0, 7}, {1, 6}, {2, 5}, {2, 5}}));
  EXPECT_EQ(need, (Rows{{0, 8}, {0, 7}, {1, 6}, {2, 5}}));
  EXPECT_EQ(rows[0].need.pad_top, 1);
  EXPECT_EQ(plan::band_reads(m, 0, 3, rows), (std::pair<int, int>{0, 8}));
  // The top band [0, 3): the add's rows are inside c1's [0, 5); the block reads input [0, 6).
  rows = plan::band_rows(m, 0, 3, 0, 3);
  EXPECT_EQ((std::pair<int, int>{rows[0].out_begin, rows[0].out_end}), (std::pair<int, int>{0, 5}));
  EXPECT_EQ(plan::band_reads(m, 0, 3, rows), (std::pair<int, int>{0, 6}));
}

TEST(RowBands, InteriorReadsOnlyTheMembersOwnRows) {
  // c2 and c3 of the residual model: two 3x3 'same' layers on 8 rows, so output row r reads
  // input rows [r - 2, r + 3), clipped to the image.
  model::Model m = structure_of(kResidualConfig);
  // A band at the bottom, [2, 8), holding input rows [2, 8): rows 4.. read nothing above row 2.
  EXPECT_EQ(plan::band_interior(m, 1, 2, 2, 8, 2, 8), (std::pair<int, int>{4, 8}));
  // At the top, [0, 5) holding [0, 5): rows 0..2 read nothing below row 5.
  EXPECT_EQ(plan::band_interior(m, 1, 2, 0, 5, 0, 5), (std::pair<int, int>{0, 3}));
  // In the middle, a band of two rows holding four: every row needs a neighbour's.
  EXPECT_EQ(plan::band_interior(m, 1, 2, 3, 5, 2, 6).first, plan::band_interior(m, 1, 2, 3, 5, 2, 6).second);
  // A band that holds its whole receptive field waits for nothing.
  EXPECT_EQ(plan::band_interior(m, 1, 2, 3, 5, 1, 7), (std::pair<int, int>{3, 5}));
  // Through the block (c1 .. add), from the model's input rows.
  EXPECT_TRUE(plan::band_overlaps_halo(m, 0, 3));
  // The planner's form, from the reads of each output row worked out once, gives the same.
  const auto reads = plan::band_row_reads(m, 1, 2, plan::Axis::rows);
  ASSERT_EQ(reads.size(), 8u);
  EXPECT_EQ(reads[0], (std::pair<int, int>{0, 3}));
  EXPECT_EQ(reads[4], (std::pair<int, int>{2, 7}));
  for (int out_begin = 0; out_begin < 8; ++out_begin)
    for (int out_end = out_begin + 1; out_end <= 8; ++out_end)
      for (int own_begin = 0; own_begin < 8; ++own_begin)
        for (int own_end = own_begin + 1; own_end <= 8; ++own_end)
          EXPECT_EQ(plan::band_interior(reads, 8, out_begin, out_end, own_begin, own_end),
                    plan::band_interior(m, 1, 2, out_begin, out_end, own_begin, own_end))
              << out_begin << " " << out_end << " " << own_begin << " " << own_end;
}

// band_groups says whether its bands are feasible as bands_are_feasible does (the planner asks it
// instead): a band of no rows, or one that reads none of some layer, is not.
TEST(RowBands, GroupsSayWhetherEveryBandReadsEveryLayer) {
  model::Model m = structure_of(kResidualConfig);
  for (const std::vector<double>& fractions : std::vector<std::vector<double>>{{1.0},
                                                                               {0.5, 0.5},
                                                                               {0.3, 0.3, 0.4},
                                                                               {0.9, 0.1},
                                                                               {0.95, 0.05},
                                                                               std::vector<double>(8, 0.125),
                                                                               std::vector<double>(9, 1.0 / 9)}) {
    for (int last = 0; last <= 3; ++last) {
      SCOPED_TRACE(cat(fractions.size(), " parts, [0, ", last, "]"));
      bool feasible = false;
      plan::band_groups(m, 0, {last}, fractions, 1, &feasible);
      const int rows = m.node(last).layer->output_shape().h;
      EXPECT_EQ(feasible, plan::bands_are_feasible(m, 0, last, plan::split_bounds(rows, fractions)));
    }
  }
}

TEST(RowBands, ZeroPaddingInTheChain) {
  // Chain model: p1 (12 rows) -> zp (14 rows, one padded row each side) -> c2 (3x3 stride 2 valid, 6 rows).
  model::Model m = structure_of(kChainConfig);
  // c2 rows [0,3) read zp rows [0,7); zp row 0 is padding, rows 1..6 are p1 rows 0..5.
  EXPECT_EQ(plan::band_input_rows(m, 2, 3, 0, 3), (std::vector<std::pair<int, int>>{{0, 6}, {0, 7}}));
  // c2 rows [3,6) read zp rows [6,13); those are p1 rows 5..11, padded row 13 is not read.
  EXPECT_EQ(plan::band_input_rows(m, 2, 3, 3, 6), (std::vector<std::pair<int, int>>{{5, 12}, {6, 13}}));
}

// ---------------------------------------------------------------------------------------------
// 7. Stage workers against model.forward

TEST_F(StageWorkerTest, OneMemberInEveryMode) {
  model::Model m = structure_of(kChainConfig);
  const Tensor input = test::random_tensor(2, m.input_shape(), 21);
  const std::vector<double> whole{1.0};
  struct Case {
    const char* name;
    std::vector<Stage> stages;
  };
  const std::vector<Case> cases{
      {"single", {stage("c1", "fc", StageMode::single, {0}, whole)}},
      {"split-output", {stage("c1", "fc", StageMode::split_output, {0}, whole)}},
      {"split-input",
       {stage("c1", "c2", StageMode::split_input, {0}, whole), stage("dw", "dw", StageMode::single, {0}, whole),
        stage("c3", "fc", StageMode::split_input, {0}, whole)}},
      {"split-spatial",
       {stage("c1", "c3", StageMode::split_spatial, {0}, whole), stage("gap", "fc", StageMode::single, {0}, whole)}},
      {"replicate", {stage("c1", "fc", StageMode::replicate, {0}, whole)}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    plan::ResolvedPlan rp = plan::validate_plan(make_plan(1, c.stages), m, 1);
    PlanRun run = run_plan(chain_h5(), rp, input);
    EXPECT_EQ(run.output.shape(), (Shape{1, 1, 5}));
  }
}

TEST_F(StageWorkerTest, OneMemberPipelineThroughTheSkip) {
  // The residual block cut twice: c1 travels across both cuts to the add.
  model::Model m = structure_of(kResidualConfig);
  const Tensor input = test::random_tensor(3, m.input_shape(), 22);
  plan::ResolvedPlan rp = plan::validate_plan(
      make_plan(1, {stage("c1", "c2", StageMode::single, {0}), stage("c3", "c3", StageMode::split_output, {0}),
                    stage("add", "c4", StageMode::split_input, {0}), stage("gap", "fc", StageMode::single, {0})}),
      m, 1);
  run_plan(residual_h5(), rp, input);
}

TEST_F(StageWorkerTest, ThreeMembersSplitOutput) {
  model::Model m = structure_of(kChainConfig);
  const Tensor input = test::random_tensor(2, m.input_shape(), 31);
  plan::ResolvedPlan rp =
      plan::validate_plan(make_plan(3, {stage("c1", "fc", StageMode::split_output, {0, 1, 2}, {0.5, 0.3, 0.2})}), m, 3);
  PlanRun run = run_plan(chain_h5(), rp, input);
  EXPECT_EQ(run.exchanges, 5);  // p1 (c1's slices pooled), c2, dw, gap (c3's pooled), fc
}

// Coded redundancy: a parity stage's members compute their slices before the activation and
// the parity member the sum of all of them (narrower ones padded), so that any one slice is the
// parity less the others; joined, with the activation, they are the layer's output. A
// convolution (after a padding every member computes whole) and a dense layer with uneven slices.
namespace {
Stage parity_stage(const std::string& first, const std::string& last, std::vector<int> ranks,
                   std::vector<double> fractions = {}) {
  Stage st = stage(first, last, StageMode::split_output, std::move(ranks), std::move(fractions));
  st.parity = 1;
  return st;
}
Plan parity_plan() {
  Plan p = make_plan(5, {stage("c1", "p1", StageMode::single, {0}), parity_stage("zp", "c2", {1, 2, 3}),
                         stage("dw", "gap", StageMode::single, {0}), parity_stage("fc", "fc", {1, 2, 3, 4}, {0.5, 0.3, 0.2})});
  return p;
}
}  // namespace

TEST_F(StageWorkerTest, ParityIsTheSumOfTheSlicesSoAnyOneCanBeRebuilt) {
  const Tensor input = test::random_tensor(2, structure_of(kChainConfig).input_shape(), 91);
  model::Model full = io::load_keras_model(chain_h5());
  const std::vector<Tensor> reference = all_values(full, input);
  const plan::ResolvedPlan rp = plan::validate_plan(parity_plan(), full, 5);
  for (int s : {1, 3}) {
    SCOPED_TRACE("stage " + std::to_string(s));
    const plan::ResolvedStage& st = rp.stages[s];
    const std::vector<int> before = partition::live_values(full, rp, s - 1);
    std::vector<Tensor> values;
    for (int v : before) values.push_back(reference.at(v));
    std::vector<Tensor> slices;
    for (std::size_t k = 0; k < st.ranks.size(); ++k) {
      RankState rank;
      rank.structure = io::load_keras_structure(chain_h5(), "", /*optimize=*/true);
      rank.reader = std::make_unique<io::KerasWeightReader>(chain_h5(), rank.structure.spec);
      partition::StageWorker worker(rank.structure.model, rp, s, static_cast<int>(k), *rank.reader);
      const auto out = run_worker(worker, values, nullptr);
      ASSERT_EQ(out.size(), 1u);
      slices.push_back(out[0]);
    }
    const Tensor& expected = reference.at(st.last);
    const Shape shape = expected.shape();
    const std::size_t pixels = expected.size() / shape.c;
    const auto bounds = plan::split_bounds(shape.c, st.fractions);
    const int k = st.data_members();
    const int widest = slices[k].shape().c;
    for (int g = 0; g < k; ++g) EXPECT_EQ(slices[g].shape().c, bounds[g + 1] - bounds[g]) << g;
    // Rebuild every slice in turn from the parity and the others; join them with the activation.
    const layers::Activation act = partition::layer_activation(full.node(st.last));
    for (int missing = -1; missing < k; ++missing) {
      Tensor joined(expected.frames(), shape);
      for (int g = 0; g < k; ++g) {
        const int w = bounds[g + 1] - bounds[g];
        for (std::size_t p = 0; p < pixels; ++p)
          for (int j = 0; j < w; ++j) {
            float v = slices[g].data()[p * w + j];
            if (g == missing) {
              v = slices[k].data()[p * widest + j];
              for (int o = 0; o < k; ++o)
                if (o != g && j < bounds[o + 1] - bounds[o]) v -= slices[o].data()[p * (bounds[o + 1] - bounds[o]) + j];
            }
            joined.data()[p * shape.c + bounds[g] + j] = v;
          }
      }
      act.apply(joined.data(), joined.size(), shape.c);
      EXPECT_LT(max_relative_error(joined, expected), 1e-5) << "slice " << missing << " rebuilt";
    }
  }
}

TEST(ValidatePlan, ParityStages) {
  model::Model m = structure_of(kChainConfig);
  const plan::ResolvedPlan rp = plan::validate_plan(parity_plan(), m, 5);
  EXPECT_EQ(rp.stages[1].parity, 1);
  EXPECT_EQ(rp.stages[1].data_members(), 2);
  EXPECT_EQ(rp.stages[3].fractions, (std::vector<double>{0.5, 0.3, 0.2}));
  const auto with = [&](int s, const std::function<void(Stage&)>& change) {
    Plan p = parity_plan();
    change(p.stages[s]);
    return validate_error(p, m, 5);
  };
  EXPECT_THAT(with(1, [](Stage& st) { st.mode = StageMode::split_input; }),
              HasSubstr("parity applies to split-output stages only"));
  EXPECT_THAT(with(1, [](Stage& st) { st.parity = 2; }), HasSubstr("parity must be 0 or 1, got 2"));
  EXPECT_THAT(with(1, [](Stage& st) { st.ranks = {1}; }), HasSubstr("parity needs at least two ranks"));
  EXPECT_THAT(with(3, [](Stage& st) { st.fractions = {0.25, 0.25, 0.25, 0.25}; }),
              HasSubstr("4 fractions for 3 ranks (the parity rank has none)"));
  // Consumers may compute slices too (their own is never late): the next stage on the members,
  // the sink one of them.
  EXPECT_EQ(with(2, [](Stage& st) { st.ranks = {2}; }), "<no chorus::Error thrown>");
  EXPECT_EQ(with(3, [](Stage& st) { st.ranks = {0, 2, 3, 4}; }), "<no chorus::Error thrown>");
  // Only the last layer split; no batch norm folded into it; nothing else crossing the cut.
  Plan two_splits = make_plan(5, {stage("c1", "p1", StageMode::single, {0}), parity_stage("zp", "dw", {1, 2, 3}),
                                  stage("bn2", "fc", StageMode::single, {0})});
  EXPECT_THAT(validate_error(two_splits, m, 5), HasSubstr("only the stage's last layer may be split; 'c2' is split too"));
  Plan folded = make_plan(5, {parity_stage("c1", "c1", {1, 2, 3}), stage("bn1", "fc", StageMode::single, {0})});
  EXPECT_THAT(validate_error(folded, m, 5), HasSubstr("no batch norm folded into it ('c1' has 'bn1')"));
  Plan depthwise = make_plan(5, {stage("c1", "c2", StageMode::single, {0}), parity_stage("dw", "dw", {1, 2, 3}),
                                 stage("c3", "fc", StageMode::single, {0})});
  EXPECT_THAT(validate_error(depthwise, m, 5), HasSubstr("must be a Dense or Conv2D layer split by output channels"));
  model::Model res = structure_of(kResidualConfig);
  Plan skip = make_plan(4, {stage("c1", "c2", StageMode::single, {0}), parity_stage("c3", "c3", {1, 2, 3}),
                            stage("add", "fc", StageMode::single, {0})});
  EXPECT_THAT(validate_error(skip, res, 4), HasSubstr("only the output of 'c3' may leave the stage, but 'add' also reads"));
  // Written and read back.
  const Plan back = plan::plan_from_json(plan::plan_to_json(parity_plan()), "test");
  EXPECT_EQ(back.stages[1].parity, 1);
  EXPECT_EQ(back.stages[0].parity, 0);
  EXPECT_FALSE(plan::plan_to_json(parity_plan())["stages"][0].contains("parity"));
}

TEST(SplitRoles, PoolingTakesTheConvolutionsSlice) {
  // A convolution whose only reader is a pooling keeps its output slice; the pooling runs on
  // it and its output is what the members gather: a quarter of the bytes after a 2x2 pooling.
  model::Model m = structure_of(kChainConfig);
  using R = plan::SplitRole;
  EXPECT_EQ(plan::split_roles(m, 0, 7, StageMode::split_output),
            (std::vector<R>{R::kept_slice, R::output_slice, R::whole, R::output_slice, R::output_slice, R::kept_slice,
                            R::output_slice, R::output_slice}));
  // A stage that ends at the convolution gathers it there.
  EXPECT_EQ(plan::split_roles(m, 0, 0, StageMode::split_output), (std::vector<R>{R::output_slice}));
  const plan::ResolvedPlan rp =
      plan::validate_plan(make_plan(2, {stage("c1", "fc", StageMode::split_output, {0, 1})}), m, 2);
  const auto traffic = partition::frame_traffic(m, rp, 1, 0);
  // Per frame and direction: p1's 12x12x4 floats, c2's 6x6x6, dw's 6x6x12, gap's 3; fc's 2 to
  // rank 0 only (the stage's last layer is gathered to member 0, which hands it on); rank 0, the
  // source, also sends rank 1 the 24x24x3 input.
  const double floats = 12 * 12 * 4 + 6 * 6 * 6 + 6 * 6 * 12 + 3;
  EXPECT_NEAR(traffic.at(0, 1), (24 * 24 * 3 + floats) * sizeof(float), 1e-9);
  EXPECT_NEAR(traffic.at(1, 0), (floats + 2) * sizeof(float), 1e-9);
}

TEST_F(StageWorkerTest, TransformerBlockSplitByHeadsComputesBehindItsReductions) {
  // Three members, a head each: behind attention's reduction the residual add, the norm and the
  // MLP pair compute part by part, and behind the MLP's the next add and norm; every member's
  // values equal one process's, for one frame and for a batch of two (whose parts cross frames).
  model::Model m = structure_of(test::kKerasVitConfig);
  const int first = m.find("ln1"), last = m.find("ln3");
  ASSERT_GE(first, 0);
  const auto runs = plan::part_runs(m, first, last, plan::split_roles(m, first, last, StageMode::split_tensor));
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(m.node(runs[0].reduced).name(), "mha");
  EXPECT_EQ(m.node(runs[1].first).name(), "add2");
  EXPECT_EQ(runs[1].last, last);
  plan::ResolvedPlan rp = plan::validate_plan(make_plan(3, {stage("patches", "tokens", StageMode::single, {0}),
                                                            stage("ln1", "ln3", StageMode::split_tensor, {0, 1, 2}),
                                                            stage("pool", "head", StageMode::single, {1})}),
                                              m, 3);
  for (int frames : {1, 2}) {
    SCOPED_TRACE(cat(frames, " frame(s)"));
    run_plan(vit_h5(), rp, test::random_tensor(frames, m.input_shape(), 40 + frames));
  }
}

TEST_F(StageWorkerTest, ThreeMembersSplitInput) {
  model::Model m = structure_of(kChainConfig);
  const Tensor input = test::random_tensor(2, m.input_shape(), 32);
  // c1 has 3 input channels: one each. c3 (24 inputs) and fc (6) take 0.5 / 0.3 / 0.2 on ranks 2, 0, 1.
  plan::ResolvedPlan rp = plan::validate_plan(
      make_plan(3, {stage("c1", "c2", StageMode::split_input, {0, 1, 2}), stage("dw", "dw", StageMode::single, {1}),
                    stage("c3", "fc", StageMode::split_input, {2, 0, 1}, {0.5, 0.3, 0.2})}),
      m, 3);
  PlanRun run = run_plan(chain_h5(), rp, input);
  EXPECT_EQ(run.exchanges, 4);  // c1, c2, c3, fc
}

TEST_F(StageWorkerTest, ThreeMembersSplitSpatial) {
  model::Model m = structure_of(kChainConfig);
  const Tensor input = test::random_tensor(2, m.input_shape(), 33);
  // c3 has 6 rows: bands [0,3), [3,5), [5,6), through the pooling, padding and strided conv.
  plan::ResolvedPlan rp =
      plan::validate_plan(make_plan(3, {stage("c1", "c3", StageMode::split_spatial, {0, 1, 2}, {0.5, 0.3, 0.2}),
                                        stage("gap", "fc", StageMode::single, {2})}),
                          m, 3);
  PlanRun run = run_plan(chain_h5(), rp, input);
  // No member gathers: each hands its band straight to rank 2, the next stage.
  EXPECT_EQ(run.exchanges, 0);
  EXPECT_TRUE(run.handed_tiles);
  // Narrow bands: two members with a single row each, [0,1) and [1,2), the third [2,6).
  plan::ResolvedPlan narrow =
      plan::validate_plan(make_plan(3, {stage("c1", "c3", StageMode::split_spatial, {2, 0, 1}, {0.2, 0.2, 0.6}),
                                        stage("gap", "fc", StageMode::single, {0})}),
                          m, 3);
  run_plan(chain_h5(), narrow, input);
}

TEST_F(StageWorkerTest, BandsThroughAResidualBlock) {
  // The bands run through both branches; the add reads a crop of c1's rows (c2's halo is
  // wider). Even and uneven fractions, one-row bands, and the block followed by a group of its
  // own; the bands gathered, or ending in the global pooling, where each member pools its own
  // rows and member 0 joins the pools.
  model::Model m = structure_of(kResidualConfig);
  const Tensor input = test::random_tensor(2, m.input_shape(), 41);
  for (const std::vector<double>& fractions :
       std::vector<std::vector<double>>{{0.5, 0.5}, {0.5, 0.3, 0.2}, {0.125, 0.125, 0.75}, {0.25, 0.25, 0.25, 0.25}})
    for (const auto& [last, after] : {std::pair{"c4", "gap"}, std::pair{"gap", "fc"}}) {
      SCOPED_TRACE(cat(fractions[0] + fractions.size(), " ", last));
      const int members = static_cast<int>(fractions.size());
      std::vector<int> ranks(members);
      for (int r = 0; r < members; ++r) ranks[r] = members - 1 - r;
      Plan p = make_plan(members, {stage("c1", last, StageMode::split_spatial, ranks, fractions),
                                   stage(after, "fc", StageMode::single, {0})});
      plan::ResolvedPlan rp = plan::validate_plan(p, m, members);
      EXPECT_EQ(rp.stages[0].group_ends, std::vector<int>{m.find("c4")});  // the bands end before the pooling
      run_plan(residual_h5(), rp, input);
      p.stages[0].exchange_after = {"add"};
      run_plan(residual_h5(), plan::validate_plan(p, m, members), input);
    }
}

TEST_F(StageWorkerTest, TilesThroughAResidualBlock) {
  // A grid of tiles cuts the columns too: each member is sent its tile and their halo, swaps
  // halo rows, columns and corners with up to eight neighbours between groups, and computes its
  // interior while they travel. Grids of 2x2 (even and uneven), 1x2, 2x3 and 1x4; the tiles
  // gathered, or pooled where the global pooling ends the stage; with and without a group cut.
  model::Model m = structure_of(kResidualConfig);
  const Tensor input = test::random_tensor(2, m.input_shape(), 42);
  struct Grid {
    std::vector<double> fractions;
    int columns;
  };
  for (const Grid& grid : std::vector<Grid>{{{0.25, 0.25, 0.25, 0.25}, 2},
                                            {{0.1, 0.2, 0.3, 0.4}, 2},
                                            {{0.5, 0.5}, 2},
                                            {std::vector<double>(6, 1.0 / 6), 3},
                                            {{0.25, 0.25, 0.25, 0.25}, 4}})
    for (const auto& [last, after] : {std::pair{"c4", "gap"}, std::pair{"gap", "fc"}}) {
      const int members = static_cast<int>(grid.fractions.size());
      SCOPED_TRACE(
          cat(members / grid.columns, "x", grid.columns, " tiles, fractions from ", grid.fractions[0], ", ", last));
      std::vector<int> ranks(members);
      for (int r = 0; r < members; ++r) ranks[r] = members - 1 - r;
      Plan p = make_plan(members, {stage("c1", last, StageMode::split_spatial, ranks, grid.fractions),
                                   stage(after, "fc", StageMode::single, {0})});
      p.stages[0].columns = grid.columns;
      run_plan(residual_h5(), plan::validate_plan(p, m, members), input);
      p.stages[0].exchange_after = {"c1", "add"};
      run_plan(residual_h5(), plan::validate_plan(p, m, members), input);
    }
}

TEST_F(StageWorkerTest, TilesThroughPoolingPaddingAndStridedLayers) {
  // The chain's max pooling, zero padding (of columns too), strided valid convolution and
  // depthwise convolution, in a 2x2 grid with uneven fractions, fused and with halo swaps.
  model::Model m = structure_of(kChainConfig);
  const Tensor input = test::random_tensor(2, m.input_shape(), 43);
  Plan p = make_plan(4, {stage("c1", "c3", StageMode::split_spatial, {2, 0, 1, 3}, {0.3, 0.2, 0.3, 0.2}),
                         stage("gap", "fc", StageMode::single, {0})});
  p.stages[0].columns = 2;
  run_plan(chain_h5(), plan::validate_plan(p, m, 4), input);
  p.stages[0].exchange_after = {"p1", "c2"};
  run_plan(chain_h5(), plan::validate_plan(p, m, 4), input);
  // The plan file carries the grid.
  EXPECT_EQ(plan::plan_from_json(plan::plan_to_json(p), "t").stages[0].columns, 2);
}

TEST(PlanValidation, GridsOfTiles) {
  model::Model m = structure_of(kChainConfig);
  Plan p = make_plan(
      4, {stage("c1", "c3", StageMode::split_spatial, {0, 1, 2, 3}), stage("gap", "fc", StageMode::single, {0})});
  p.stages[0].columns = 3;
  EXPECT_THAT(validate_error(p, m), HasSubstr("columns must be a positive divisor of its 4 ranks"));
  p.stages[0].columns = 0;
  EXPECT_THAT(validate_error(p, m), HasSubstr("columns must be a positive divisor"));
  // c3's output is 6 columns wide: too few for 8 columns of tiles.
  Plan wide = make_plan(8, {stage("c1", "c3", StageMode::split_spatial, {0, 1, 2, 3, 4, 5, 6, 7}),
                            stage("gap", "fc", StageMode::single, {0})});
  wide.stages[0].columns = 8;
  EXPECT_THAT(validate_error(wide, m), HasSubstr("has 6 columns: too few for 8 columns of tiles"));
  Plan other =
      make_plan(2, {stage("c1", "c3", StageMode::split_output, {0, 1}), stage("gap", "fc", StageMode::single, {0})});
  other.stages[0].columns = 2;
  EXPECT_THAT(validate_error(other, m), HasSubstr("columns applies to split-spatial stages only"));
}

TEST_F(StageWorkerTest, EveryStrategyPlanWithThreeRanks) {
  for (const std::string& h5 : {chain_h5(), residual_h5()}) {
    io::KerasModelStructure s = io::load_keras_structure(h5, "", true);
    const Tensor input = test::random_tensor(2, s.model.input_shape(), 41);
    for (const auto& strategy : plan::strategy_names()) {
      SCOPED_TRACE(strategy + " on " + h5);
      plan::ResolvedPlan rp = plan::validate_plan(plan::make_strategy_plan(strategy, s.model, 3), s.model, 3);
      run_plan(h5, rp, input);
    }
  }
}

namespace {

// conv 'same' on 4 rows -> ZeroPadding2D of 2 rows top and bottom (8 rows) -> Flatten -> Dense.
const char* kPadTailConfig = R"({"class_name": "Functional", "config": {"name": "padtail", "layers": [
 {"class_name": "InputLayer", "name": "in", "config": {"name": "in", "batch_input_shape": [null, 4, 4, 2]}, "inbound_nodes": []},
 {"class_name": "Conv2D", "name": "c", "config": {"name": "c", "filters": 3, "kernel_size": [3, 3], "padding": "same"}, "inbound_nodes": [[["in", 0, 0, {}]]]},
 {"class_name": "ZeroPadding2D", "name": "zp", "config": {"name": "zp", "padding": [[2, 2], [0, 0]]}, "inbound_nodes": [[["c", 0, 0, {}]]]},
 {"class_name": "Flatten", "name": "flat", "config": {"name": "flat"}, "inbound_nodes": [[["zp", 0, 0, {}]]]},
 {"class_name": "Dense", "name": "fc", "config": {"name": "fc", "units": 3}, "inbound_nodes": [[["flat", 0, 0, {}]]]}
], "input_layers": [["in", 0, 0]], "output_layers": [["fc", 0, 0]]}})";

// A plan must either be rejected up front by validate_plan, naming `layer`, or run and give the
// one-process answer: accepting it and then failing while loading or running is the bug.
void expect_rejected_or_runs_named(const Plan& p, const model::Model& m, const std::string& h5, const Tensor& input,
                                   const std::string& layer) {
  plan::ResolvedPlan rp;
  try {
    rp = plan::validate_plan(p, m, p.ranks);
  } catch (const Error& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr("'" + layer + "'"));
    return;
  }
  EXPECT_NO_THROW(run_plan(h5, rp, input));
}

void expect_rejected_or_runs(const Plan& p, const model::Model& m, const std::string& h5, const Tensor& input) {
  expect_rejected_or_runs_named(p, m, h5, input, "zp");
}

}  // namespace

TEST_F(StageWorkerTest, BandOfPaddingRowsOnly) {
  // zp has 14 rows, the first and last of them padding. A band of just one of those rows reads
  // no rows of its input at all.
  model::Model m = structure_of(kChainConfig);
  const Tensor input = test::random_tensor(2, m.input_shape(), 51);
  for (const std::vector<double>& fractions : std::vector<std::vector<double>>{{0.05, 0.95}, {0.95, 0.05}}) {
    SCOPED_TRACE(fractions[0]);
    expect_rejected_or_runs(make_plan(2, {stage("c1", "zp", StageMode::split_spatial, {0, 1}, fractions),
                                          stage("c2", "fc", StageMode::single, {0})}),
                            m, chain_h5(), input);
  }
  // Split evenly over 8 ranks (a grid of 4 x 2), zp's 8 rows would give the first and last
  // grid rows padding rows only: the split-spatial strategy ends its tile stage before zp
  // instead. Over 4 ranks (2 x 2) each grid row of zp reads 2 rows of c, so zp joins the stage.
  test::TempDir dir;
  test::write_random_model(kPadTailConfig, dir.path("padtail.h5"), 13);
  model::Model pad = structure_of(kPadTailConfig);
  Plan p = plan::make_strategy_plan("split-spatial", pad, 8);
  ASSERT_EQ(p.stages.size(), 2u);
  EXPECT_EQ(p.stages[0].last, "c");
  EXPECT_EQ(p.stages[0].columns, 2);
  expect_rejected_or_runs(p, pad, dir.path("padtail.h5"), test::random_tensor(2, pad.input_shape(), 52));
  p = plan::make_strategy_plan("split-spatial", pad, 4);
  ASSERT_EQ(p.stages.size(), 2u);
  EXPECT_EQ(p.stages[0].last, "zp");
  EXPECT_EQ(p.stages[0].columns, 2);
  expect_rejected_or_runs(p, pad, dir.path("padtail.h5"), test::random_tensor(2, pad.input_shape(), 52));
}

namespace {

// A classifier tail: Dense with softmax (a Softmax layer fused into it by the optimiser).
const char* kSoftmaxConfig = R"({"class_name": "Functional", "config": {"name": "cls", "layers": [
 {"class_name": "InputLayer", "name": "in", "config": {"name": "in", "batch_input_shape": [null, 6, 6, 3]}, "inbound_nodes": []},
 {"class_name": "Conv2D", "name": "c", "config": {"name": "c", "filters": 8, "kernel_size": [3, 3], "padding": "same", "activation": "relu"}, "inbound_nodes": [[["in", 0, 0, {}]]]},
 {"class_name": "GlobalAveragePooling2D", "name": "gap", "config": {"name": "gap"}, "inbound_nodes": [[["c", 0, 0, {}]]]},
 {"class_name": "Dense", "name": "fc", "config": {"name": "fc", "units": 6}, "inbound_nodes": [[["gap", 0, 0, {}]]]},
 {"class_name": "Softmax", "name": "sm", "config": {"name": "sm"}, "inbound_nodes": [[["fc", 0, 0, {}]]]}
], "input_layers": [["in", 0, 0]], "output_layers": [["sm", 0, 0]]}})";

}  // namespace

TEST_F(StageWorkerTest, SplitSoftmaxLayer) {
  // Softmax normalises over all channels: a part cannot apply it to its own slice alone.
  test::TempDir dir;
  test::write_random_model(kSoftmaxConfig, dir.path("cls.h5"), 14);
  model::Model m = structure_of(kSoftmaxConfig);
  ASSERT_EQ(m.nodes().size(), 3u);
  ASSERT_EQ(m.find("sm"), 2);
  const Tensor input = test::random_tensor(2, m.input_shape(), 61);
  for (StageMode mode : {StageMode::split_output, StageMode::split_input}) {
    SCOPED_TRACE(plan::mode_name(mode));
    Plan p = make_plan(3, {stage("c", "gap", StageMode::single, {0}), stage("fc", "sm", mode, {0, 1, 2})});
    expect_rejected_or_runs_named(p, m, dir.path("cls.h5"), input, "fc");
  }
  // The split-output strategy puts the classifier in a split stage on its own accord.
  for (const char* strategy : {"split-output", "split-input"}) {
    SCOPED_TRACE(strategy);
    expect_rejected_or_runs_named(plan::make_strategy_plan(strategy, m, 3), m, dir.path("cls.h5"), input, "fc");
  }
}

namespace {

// Windows a band must get right at the image edges: a dilated conv, 'same' average pooling
// (Keras leaves padding out of the average), 'same' max pooling, a strided depthwise conv.
const char* kWindowsConfig = R"({"class_name": "Functional", "config": {"name": "windows", "layers": [
 {"class_name": "InputLayer", "name": "in", "config": {"name": "in", "batch_input_shape": [null, 15, 9, 3]}, "inbound_nodes": []},
 {"class_name": "Conv2D", "name": "a", "config": {"name": "a", "filters": 4, "kernel_size": [3, 3], "dilation_rate": [2, 2], "padding": "same"}, "inbound_nodes": [[["in", 0, 0, {}]]]},
 {"class_name": "AveragePooling2D", "name": "ap", "config": {"name": "ap", "pool_size": [3, 3], "strides": [2, 2], "padding": "same"}, "inbound_nodes": [[["a", 0, 0, {}]]]},
 {"class_name": "MaxPooling2D", "name": "mp", "config": {"name": "mp", "pool_size": [3, 3], "strides": [1, 1], "padding": "same"}, "inbound_nodes": [[["ap", 0, 0, {}]]]},
 {"class_name": "DepthwiseConv2D", "name": "dwc", "config": {"name": "dwc", "kernel_size": [3, 3], "strides": [2, 2], "padding": "same", "activation": "tanh"}, "inbound_nodes": [[["mp", 0, 0, {}]]]}
], "input_layers": [["in", 0, 0]], "output_layers": [["dwc", 0, 0]]}})";

}  // namespace

TEST_F(StageWorkerTest, BandsThroughEveryWindowKind) {
  test::TempDir dir;
  test::write_random_model(kWindowsConfig, dir.path("windows.h5"), 15);
  model::Model m = structure_of(kWindowsConfig);
  ASSERT_EQ(m.nodes().size(), 4u);
  ASSERT_EQ(m.output_shape(), (Shape{4, 3, 4}));
  const Tensor input = test::random_tensor(2, m.input_shape(), 71);
  for (const std::vector<double>& fractions :
       std::vector<std::vector<double>>{{0.5, 0.3, 0.2}, {0.25, 0.25, 0.5}, {1.0 / 3, 1.0 / 3, 1.0 / 3}}) {
    SCOPED_TRACE(fractions[0]);
    plan::ResolvedPlan rp =
        plan::validate_plan(make_plan(3, {stage("a", "dwc", StageMode::split_spatial, {0, 1, 2}, fractions)}), m, 3);
    run_plan(dir.path("windows.h5"), rp, input);
  }
  // Four one-row bands, and bands that end inside the stage (the average pooling).
  run_plan(dir.path("windows.h5"),
           plan::validate_plan(make_plan(4, {stage("a", "dwc", StageMode::split_spatial, {3, 2, 1, 0})}), m, 4), input);
  run_plan(dir.path("windows.h5"),
           plan::validate_plan(make_plan(3, {stage("a", "ap", StageMode::split_spatial, {0, 1, 2}, {0.5, 0.3, 0.2}),
                                             stage("mp", "dwc", StageMode::split_output, {2, 1})}),
                               m, 3),
           input);
}

// An Xception block: two separable convolutions (batch norms folded in), a strided max pooling,
// a strided 1x1 shortcut and the add; then a separable convolution with a depth multiplier.
const char* kXceptionBlockConfig = R"({"class_name": "Functional", "config": {"name": "xblock", "layers": [
 {"class_name": "InputLayer", "name": "in", "config": {"name": "in", "batch_input_shape": [null, 14, 7, 4]}, "inbound_nodes": []},
 {"class_name": "SeparableConv2D", "name": "s1", "config": {"name": "s1", "filters": 8, "kernel_size": [3, 3], "padding": "same", "use_bias": false}, "inbound_nodes": [[["in", 0, 0, {}]]]},
 {"class_name": "BatchNormalization", "name": "s1_bn", "config": {"name": "s1_bn", "axis": -1}, "inbound_nodes": [[["s1", 0, 0, {}]]]},
 {"class_name": "Activation", "name": "s1_relu", "config": {"name": "s1_relu", "activation": "relu"}, "inbound_nodes": [[["s1_bn", 0, 0, {}]]]},
 {"class_name": "SeparableConv2D", "name": "s2", "config": {"name": "s2", "filters": 8, "kernel_size": [3, 3], "padding": "same", "use_bias": false}, "inbound_nodes": [[["s1_relu", 0, 0, {}]]]},
 {"class_name": "BatchNormalization", "name": "s2_bn", "config": {"name": "s2_bn", "axis": -1}, "inbound_nodes": [[["s2", 0, 0, {}]]]},
 {"class_name": "MaxPooling2D", "name": "pool", "config": {"name": "pool", "pool_size": [3, 3], "strides": [2, 2], "padding": "same"}, "inbound_nodes": [[["s2_bn", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "short", "config": {"name": "short", "filters": 8, "kernel_size": [1, 1], "strides": [2, 2], "padding": "same", "use_bias": false}, "inbound_nodes": [[["in", 0, 0, {}]]]},
 {"class_name": "BatchNormalization", "name": "short_bn", "config": {"name": "short_bn", "axis": -1}, "inbound_nodes": [[["short", 0, 0, {}]]]},
 {"class_name": "Add", "name": "add", "config": {"name": "add"}, "inbound_nodes": [[["pool", 0, 0, {}], ["short_bn", 0, 0, {}]]]},
 {"class_name": "SeparableConv2D", "name": "s3", "config": {"name": "s3", "filters": 6, "kernel_size": [3, 3], "depth_multiplier": 2, "padding": "same", "activation": "relu"}, "inbound_nodes": [[["add", 0, 0, {}]]]}
], "input_layers": [["in", 0, 0]], "output_layers": [["s3", 0, 0]]}})";

TEST_F(StageWorkerTest, BandsThroughAnXceptionBlock) {
  test::TempDir dir;
  test::write_random_model(kXceptionBlockConfig, dir.path("xblock.h5"), 16);
  model::Model m = structure_of(kXceptionBlockConfig);
  const Tensor input = test::random_tensor(2, m.input_shape(), 73);
  for (const std::vector<double>& fractions :
       std::vector<std::vector<double>>{{0.5, 0.5}, {0.5, 0.3, 0.2}, {0.25, 0.25, 0.25, 0.25}}) {
    SCOPED_TRACE(fractions[0] + fractions.size());
    const int members = static_cast<int>(fractions.size());
    std::vector<int> ranks(members);
    for (int r = 0; r < members; ++r) ranks[r] = r;
    Plan p = make_plan(members, {stage("s1", "s3", StageMode::split_spatial, ranks, fractions)});
    run_plan(dir.path("xblock.h5"), plan::validate_plan(p, m, members), input);
    p.stages[0].exchange_after = {"add"};
    run_plan(dir.path("xblock.h5"), plan::validate_plan(p, m, members), input);
  }
}

Stage with_exchanges(Stage s, std::vector<std::string> after) {
  s.exchange_after = std::move(after);
  return s;
}

TEST_F(StageWorkerTest, BandGroupsSwapOnlyTheirHalos) {
  // A split-spatial stage cut into groups: each a fused band, the members swapping between
  // groups only the rows their neighbours' next bands read. Every grouping, even fractions and
  // uneven, one-row bands (thinner than the halo: rows come from members two away), and through
  // the chain's padding, pooling and strided layers, equals one process.
  test::TempDir dir;
  test::write_random_model(kWindowsConfig, dir.path("windows.h5"), 15);
  model::Model w = structure_of(kWindowsConfig);
  const Tensor windows_input = test::random_tensor(2, w.input_shape(), 72);
  for (const std::vector<std::string>& after :
       std::vector<std::vector<std::string>>{{"a"}, {"ap"}, {"mp"}, {"a", "ap", "mp"}, {"a", "mp"}})
    for (const std::vector<double>& fractions :
         std::vector<std::vector<double>>{{0.5, 0.3, 0.2}, {1.0 / 3, 1.0 / 3, 1.0 / 3}}) {
      SCOPED_TRACE(after.size() + 10 * fractions[0]);
      plan::ResolvedPlan rp = plan::validate_plan(
          make_plan(3, {with_exchanges(stage("a", "dwc", StageMode::split_spatial, {0, 1, 2}, fractions), after)}), w,
          3);
      EXPECT_EQ(rp.stages[0].group_ends.size(), after.size() + 1);
      run_plan(dir.path("windows.h5"), rp, windows_input);
    }
  // Four one-row bands of the output, in reverse rank order.
  run_plan(dir.path("windows.h5"),
           plan::validate_plan(make_plan(4, {with_exchanges(stage("a", "dwc", StageMode::split_spatial, {3, 2, 1, 0}),
                                                            {"a", "ap", "mp"})}),
                               w, 4),
           windows_input);

  model::Model m = structure_of(kChainConfig);
  const Tensor input = test::random_tensor(2, m.input_shape(), 34);
  for (const std::vector<std::string>& after :
       std::vector<std::vector<std::string>>{{"c1"}, {"p1"}, {"zp", "dw"}, {"c1", "p1", "zp", "c2", "dw"}}) {
    SCOPED_TRACE(after.front());
    plan::ResolvedPlan rp = plan::validate_plan(
        make_plan(3, {with_exchanges(stage("c1", "c3", StageMode::split_spatial, {0, 1, 2}, {0.5, 0.3, 0.2}), after),
                      stage("gap", "fc", StageMode::single, {2})}),
        m, 3);
    run_plan(chain_h5(), rp, input);
  }

  // Bad groupings are refused before anything loads, naming the stage and the layer.
  const auto refused = [&](std::vector<std::string> after, int ranks = 3) {
    std::vector<int> all(ranks);
    for (int r = 0; r < ranks; ++r) all[r] = r;
    return error_of([&] {
      plan::validate_plan(make_plan(ranks, {with_exchanges(stage("c1", "c3", StageMode::split_spatial, all), after),
                                            stage("gap", "fc", StageMode::single, {0})}),
                          m, ranks);
    });
  };
  EXPECT_THAT(refused({"nope"}), HasSubstr("exchange_after names unknown layer 'nope'"));
  EXPECT_THAT(refused({"c3"}), HasSubstr("exchange_after names 'c3', which is not one of the stage's layers before its last"));
  EXPECT_THAT(refused({"fc"}), HasSubstr("which is not one of the stage's layers"));
  EXPECT_THAT(refused({"c2", "p1"}), HasSubstr("exchange_after must list layers in model order, once each ('p1')"));
  EXPECT_THAT(refused({"c2"}, 8), HasSubstr("the output of 'c2' has 6 rows: too few for 8 bands"));
  // Enough rows for three bands, but a share that rounds to none: the error says whose, and what
  // would do (running totals 2.5, 3.4 of c3's 6 rows round to 3 and 3).
  EXPECT_THAT(error_of([&] {
                plan::validate_plan(
                    make_plan(3, {stage("c1", "c3", StageMode::split_spatial, {0, 1, 2}, {0.4183, 0.1555, 0.4262}),
                                  stage("gap", "fc", StageMode::single, {0})}),
                    m, 3);
              }),
              HasSubstr("has 6 rows: too few for 3 bands with these fractions (the share of rank 1, 0.1555 of 6, "
                        "rounds to none; give each part at least 1/6)"));
  EXPECT_THAT(error_of([&] {
                plan::validate_plan(make_plan(2, {with_exchanges(stage("c1", "fc", StageMode::split_output, {0, 1}),
                                                                 {"c2"})}),
                                    m, 2);
              }),
              HasSubstr("exchange_after applies to split-spatial stages only"));
  // The plan file carries the groups.
  Plan p = make_plan(3, {with_exchanges(stage("c1", "c3", StageMode::split_spatial, {0, 1, 2}), {"p1", "dw"}),
                         stage("gap", "fc", StageMode::single, {0})});
  EXPECT_EQ(plan::plan_from_json(plan::plan_to_json(p), "x").stages[0].exchange_after,
            (std::vector<std::string>{"p1", "dw"}));
}

// A clip: Conv3D 'same' on 4 images of 6 rows, a global pooling of the clip, then Dense.
const char* kPooledClipConfig = R"({"class_name": "Sequential", "config": {"name": "pooled_clip", "layers": [
 {"class_name": "InputLayer", "config": {"name": "in", "batch_input_shape": [null, 4, 6, 5, 2]}},
 {"class_name": "Conv3D", "config": {"name": "c", "filters": 6, "kernel_size": [3, 3, 3], "padding": "same", "activation": "relu"}},
 {"class_name": "GlobalAveragePooling3D", "config": {"name": "gp"}},
 {"class_name": "Dense", "config": {"name": "fc", "units": 3}}]}})";

TEST_F(StageWorkerTest, BandsEndInAGlobalPooling) {
  // The residual model's bands ending in its global average pooling on several members are in
  // BandsThroughAResidualBlock; here one member, maxima, clips and the plans refused.
  model::Model m = structure_of(kResidualConfig);
  const Tensor input = test::random_tensor(2, m.input_shape(), 43);
  run_plan(residual_h5(),
           plan::validate_plan(make_plan(1, {stage("c1", "gap", StageMode::split_spatial, {0}),
                                             stage("fc", "fc", StageMode::single, {0})}),
                               m, 1),
           input);

  // Maxima join as well as sums; and clips, whose bands are rows of every image.
  test::TempDir dir;
  std::string max_config = kResidualConfig;
  max_config.replace(max_config.find("GlobalAveragePooling2D"), 22, "GlobalMaxPooling2D");
  test::write_random_model(max_config, dir.path("res_max.h5"), 16);
  run_plan(dir.path("res_max.h5"),
           plan::validate_plan(make_plan(3, {stage("c1", "gap", StageMode::split_spatial, {2, 0, 1}, {0.2, 0.5, 0.3}),
                                             stage("fc", "fc", StageMode::single, {1})}),
                               structure_of(max_config), 3),
           input);
  for (const char* kind : {"GlobalAveragePooling3D", "GlobalMaxPooling3D"}) {
    SCOPED_TRACE(kind);
    std::string clip_config = kPooledClipConfig;
    clip_config.replace(clip_config.find("GlobalAveragePooling3D"), 22, kind);
    test::write_random_model(clip_config, dir.path("clip.h5"), 17);
    const model::Model clip = structure_of(clip_config);
    run_plan(dir.path("clip.h5"),
             plan::validate_plan(make_plan(3, {stage("c", "gp", StageMode::split_spatial, {0, 1, 2}, {0.5, 0.3, 0.2}),
                                               stage("fc", "fc", StageMode::single, {0})}),
                                 clip, 3),
             test::random_tensor(2, clip.input_shape(), 44));
  }

  // The pooling joins the bands, so no group may end at the layer before it, and a global
  // pooling anywhere but at the end of the stage cannot run on rows.
  EXPECT_THAT(error_of([&] {
                plan::validate_plan(
                    make_plan(2, {with_exchanges(stage("c1", "gap", StageMode::split_spatial, {0, 1}), {"c4"}),
                                  stage("fc", "fc", StageMode::single, {0})}),
                    m, 2);
              }),
              HasSubstr("exchange_after names 'c4', which is not one of the stage's layers before its last band "
                        "layer 'c4' (the global pooling 'gap' joins the bands)"));
  EXPECT_THAT(error_of([&] {
                plan::validate_plan(make_plan(2, {stage("c1", "fc", StageMode::split_spatial, {0, 1})}), m, 2);
              }),
              HasSubstr("layer 'gap' (GlobalAveragePooling2D) cannot be split into row bands"));
}

TEST_F(StageWorkerTest, DenseAfterFlattenSplits) {
  // Flatten (no weights) rides along in a split stage; the dense layer reads 8x4x3 = 96 features.
  test::TempDir dir;
  test::write_random_model(kPadTailConfig, dir.path("padtail.h5"), 16);
  model::Model m = structure_of(kPadTailConfig);
  const Tensor input = test::random_tensor(3, m.input_shape(), 81);
  run_plan(
      dir.path("padtail.h5"),
      plan::validate_plan(make_plan(3, {stage("c", "flat", StageMode::split_output, {0, 1, 2}),  // c: one filter each
                                        stage("fc", "fc", StageMode::split_input, {1, 2, 0}, {0.2, 0.3, 0.5})}),
                          m, 3),
      input);
}

TEST(InputSlices, SplitInputMembersTakeOnlyTheirSliceOfAVector) {
  model::Model m = structure_of(kPadTailConfig);  // c, zp, flat, fc (96 features)
  const int c = m.find("c"), zp = m.find("zp"), flat = m.find("flat"), fc = m.find("fc");
  // Through the Flatten, the dense layer's input slices are slices of zp's output; without it,
  // of the Flatten's.
  const plan::InputSlices s = plan::input_slices(m, flat, fc, StageMode::split_input, {0.5, 0.25, 0.25});
  EXPECT_EQ(s.value, zp);
  EXPECT_FALSE(s.channels);
  EXPECT_EQ(s.parts, (std::vector<std::pair<int, int>>{{0, 48}, {48, 72}, {72, 96}}));
  EXPECT_EQ(plan::input_slices(m, fc, fc, StageMode::split_input, {0.5, 0.5}).value, flat);
  // Not split by input, one member, or the sliced layer not first (but for a Flatten).
  EXPECT_FALSE(plan::input_slices(m, flat, fc, StageMode::split_output, {0.5, 0.5}).any());
  EXPECT_FALSE(plan::input_slices(m, flat, fc, StageMode::split_input, {1.0}).any());
  EXPECT_FALSE(plan::input_slices(m, zp, fc, StageMode::split_input, {0.5, 0.5}).any());
  // A convolution split by input, the stage's first layer, reads its channels of every position
  // of the model's input (4x4x2): one channel each, of each of the 16 positions.
  const plan::InputSlices channels = plan::input_slices(m, c, fc, StageMode::split_input, {0.4, 0.6});
  EXPECT_EQ(channels.value, model::kModelInput);
  EXPECT_TRUE(channels.channels);
  EXPECT_EQ(channels.parts, (std::vector<std::pair<int, int>>{{0, 1}, {1, 2}}));
  EXPECT_EQ(channels.floats(m, 1), 16u);
  // What each member is sent: its 48 floats, not all 96 (the distributed traffic test holds
  // the ranks' bytes equal to this model).
  const plan::ResolvedPlan rp = plan::validate_plan(
      make_plan(3, {stage("c", "zp", StageMode::single, {0}), stage("flat", "fc", StageMode::split_input, {1, 2})}), m,
      3);
  const partition::FrameTraffic traffic = partition::frame_traffic(m, rp, 1, 0);
  EXPECT_EQ(traffic.at(0, 1), 48 * sizeof(float));
  EXPECT_EQ(traffic.at(0, 2), 48 * sizeof(float));
  const auto rows = partition::stage_input_rows(m, rp, 1, 1);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].begin, 48);
  EXPECT_EQ(rows[0].end, 96);
  EXPECT_EQ(rows[0].floats(), 48u);

  // An ONNX Flatten reorders the 4x3x5 feature map into (c, h, w) order: the members' halves of
  // the 60 features are channels 0-2 and 2-4 (channel 2 holds features of both), of each of the
  // 12 positions.
  const model::Model onnx = io::load_model_file(test::source_path("tests/data/onnx/view_flatten.onnx"));
  const int conv = onnx.find("/c/Conv"), flatten = onnx.find("/Reshape"), gemm = onnx.find("/fc/Gemm");
  const plan::InputSlices reordered = plan::input_slices(onnx, flatten, gemm, StageMode::split_input, {0.5, 0.5});
  EXPECT_EQ(reordered.value, conv);
  EXPECT_TRUE(reordered.channels);
  EXPECT_EQ(reordered.parts, (std::vector<std::pair<int, int>>{{0, 3}, {2, 5}}));
  EXPECT_EQ(reordered.floats(onnx, 1), 36u);
  const plan::ResolvedPlan onnx_plan =
      plan::validate_plan(make_plan(3, {stage("/c/Conv", "/c/Conv", StageMode::single, {0}),
                                        stage("/Reshape", "/fc/Gemm", StageMode::split_input, {1, 2})}),
                          onnx, 3);
  const auto channel_rows = partition::stage_input_rows(onnx, onnx_plan, 1, 1);
  ASSERT_EQ(channel_rows.size(), 1u);
  EXPECT_EQ(channel_rows[0].begin, 2);
  EXPECT_EQ(channel_rows[0].end, 5);
  EXPECT_EQ(channel_rows[0].height, 5);
  EXPECT_EQ(channel_rows[0].images, 12);
  EXPECT_EQ(partition::frame_traffic(onnx, onnx_plan, 1, 0).at(0, 2), 36 * sizeof(float));
}

// Dense layers on vectors, one after another, for reduce-scatters: d1 20 -> 16 (relu), d2 -> 12
// (a batch norm folded), d3 -> 7 (softmax), d4 -> 5 (softmax).
const char* kDenseChainConfig = R"({"class_name": "Functional", "config": {"name": "dense_chain", "layers": [
 {"class_name": "InputLayer", "name": "in", "config": {"name": "in", "batch_input_shape": [null, 20]}, "inbound_nodes": []},
 {"class_name": "Dense", "name": "d1", "config": {"name": "d1", "units": 16, "activation": "relu"}, "inbound_nodes": [[["in", 0, 0, {}]]]},
 {"class_name": "Dense", "name": "d2", "config": {"name": "d2", "units": 12}, "inbound_nodes": [[["d1", 0, 0, {}]]]},
 {"class_name": "BatchNormalization", "name": "bn", "config": {"name": "bn", "axis": -1, "epsilon": 0.001}, "inbound_nodes": [[["d2", 0, 0, {}]]]},
 {"class_name": "Dense", "name": "d3", "config": {"name": "d3", "units": 7, "activation": "softmax"}, "inbound_nodes": [[["bn", 0, 0, {}]]]},
 {"class_name": "Dense", "name": "d4", "config": {"name": "d4", "units": 5, "activation": "softmax"}, "inbound_nodes": [[["d3", 0, 0, {}]]]}
], "input_layers": [["in", 0, 0]], "output_layers": [["d4", 0, 0]]}})";

// A split-input stage of Dense layers on vectors reduce-scatters each layer's sums into the next
// one's input slices: each member adds up and finishes only its own slice (the thread exchange,
// like the runtime, leaves the rest undefined: NaN), sends no sums back, and the outputs equal
// one process. A softmax, which needs every sum, and the stage's last layer reduce as before.
// Split by output, each layer takes the slices of the one before member by member.
TEST_F(StageWorkerTest, DenseLayersReduceScatterAndTakeGatheredSlicesAsTheyArrive) {
  test::TempDir dir;
  test::write_random_model(kDenseChainConfig, dir.path("dense.h5"), 17);
  model::Model m = structure_of(kDenseChainConfig);
  const int d1 = m.find("d1"), d2 = m.find("d2"), d3 = m.find("d3"), d4 = m.find("d4");
  const std::vector<double> fractions{0.5, 0.3, 0.2};
  const auto roles = plan::split_roles(m, d1, d4, StageMode::split_input);
  // d2's 16 inputs: 8, 5 and 3 of them; d3's 12: 6, 4 and 2. d3 ends in a softmax, d4 the stage.
  EXPECT_EQ(plan::scatter_shares(m, d1, d4, roles, fractions, d1), (std::vector<std::size_t>{0, 8, 13, 16}));
  EXPECT_EQ(plan::scatter_shares(m, d1, d4, roles, fractions, d2), (std::vector<std::size_t>{0, 6, 10, 12}));
  EXPECT_TRUE(plan::scatter_shares(m, d1, d4, roles, fractions, d3).empty());
  EXPECT_TRUE(plan::scatter_shares(m, d1, d4, roles, fractions, d4).empty());
  EXPECT_TRUE(plan::scatter_shares(m, d1, d1, {roles[0]}, fractions, d1).empty());  // the stage's last

  for (int frames : {1, 3}) {
    SCOPED_TRACE(cat(frames, " frames"));
    const Tensor input = test::random_tensor(frames, m.input_shape(), 91 + frames);
    run_plan(dir.path("dense.h5"),
             plan::validate_plan(make_plan(3, {stage("d1", "d4", StageMode::split_input, {2, 0, 1}, fractions)}), m, 3),
             input);
    run_plan(dir.path("dense.h5"),
             plan::validate_plan(make_plan(3, {stage("d1", "d1", StageMode::single, {0}),
                                               stage("d2", "d4", StageMode::split_input, {1, 2}, {0.25, 0.75})}),
                                 m, 3),
             input);
  }

  // Split by output, d2 and d3 take the slices of the layer before as they arrive (the thread
  // exchange hands them over at once; the MPI tests take them as they come).
  for (int frames : {1, 3}) {
    const Tensor input = test::random_tensor(frames, m.input_shape(), 95 + frames);
    run_plan(
        dir.path("dense.h5"),
        plan::validate_plan(make_plan(3, {stage("d1", "d4", StageMode::split_output, {1, 2, 0}, fractions)}), m, 3),
        input);
  }

  // The bytes: in [d1, d2] on members 0, 1, 2, member 1 sends member 2 its contribution to 2's
  // share of d1 (3 floats) and of d2's reduction to member 0 (4 of 12); member 2 sends member 0
  // its 8 of d1, and of d2 its 4 and the sums of its own share (4).
  const plan::ResolvedPlan rp =
      plan::validate_plan(make_plan(3, {stage("d1", "d2", StageMode::split_input, {0, 1, 2}, fractions),
                                        stage("d3", "d4", StageMode::single, {0})}),
                          m, 3);
  const partition::FrameTraffic traffic = partition::frame_traffic(m, rp, 1, 0);
  EXPECT_EQ(traffic.at(1, 2), (3 + 4) * sizeof(float));
  EXPECT_EQ(traffic.at(2, 1), (5 + 4) * sizeof(float));
  EXPECT_EQ(traffic.at(2, 0), (8 + 4 + 4) * sizeof(float));
}

// Convolutions split by output, each read only by the next: c1 into c2, the pooling of c2's kept
// slice into c3, c3 into c4 (whose softmax runs after its own gather). Nodes after the optimiser:
//   0 c1 (relu)   1 c2 (bn, relu folded)   2 p   3 c3 (relu)   4 c4 (softmax)   5 flat   6 fc
const char* kConvPairsConfig = R"({"class_name": "Functional", "config": {"name": "conv_pairs", "layers": [
 {"class_name": "InputLayer", "name": "in", "config": {"name": "in", "batch_input_shape": [null, 10, 10, 5]}, "inbound_nodes": []},
 {"class_name": "Conv2D", "name": "c1", "config": {"name": "c1", "filters": 10, "kernel_size": [3, 3], "padding": "same", "activation": "relu"}, "inbound_nodes": [[["in", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "c2", "config": {"name": "c2", "filters": 8, "kernel_size": [3, 3], "padding": "same"}, "inbound_nodes": [[["c1", 0, 0, {}]]]},
 {"class_name": "BatchNormalization", "name": "bn", "config": {"name": "bn", "axis": -1, "epsilon": 0.001}, "inbound_nodes": [[["c2", 0, 0, {}]]]},
 {"class_name": "Activation", "name": "r", "config": {"name": "r", "activation": "relu"}, "inbound_nodes": [[["bn", 0, 0, {}]]]},
 {"class_name": "MaxPooling2D", "name": "p", "config": {"name": "p", "pool_size": [2, 2]}, "inbound_nodes": [[["r", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "c3", "config": {"name": "c3", "filters": 6, "kernel_size": [1, 1], "activation": "relu"}, "inbound_nodes": [[["p", 0, 0, {}]]]},
 {"class_name": "Conv2D", "name": "c4", "config": {"name": "c4", "filters": 5, "kernel_size": [3, 3], "strides": [2, 2], "activation": "softmax"}, "inbound_nodes": [[["c3", 0, 0, {}]]]},
 {"class_name": "Flatten", "name": "flat", "config": {"name": "flat"}, "inbound_nodes": [[["c4", 0, 0, {}]]]},
 {"class_name": "Dense", "name": "fc", "config": {"name": "fc", "units": 10}, "inbound_nodes": [[["flat", 0, 0, {}]]]}
], "input_layers": [["in", 0, 0]], "output_layers": [["fc", 0, 0]]}})";

// A convolution split by output whose slices are all-gathered into the next convolution: the
// next convolves its own member's channels first and each other member's as they arrive, then
// adds the bias (a batch norm's shift folded in) and the activation; the outputs equal one
// process on 2 and 3 members, even and uneven, for one and three frames.
TEST_F(StageWorkerTest, ConvolutionsTakeGatheredSlicesAsTheyArrive) {
  test::TempDir dir;
  test::write_random_model(kConvPairsConfig, dir.path("pairs.h5"), 23);
  model::Model m = structure_of(kConvPairsConfig);
  const int c1 = m.find("c1"), c4 = m.find("c4"), fc = m.find("fc");
  const auto roles = plan::split_roles(m, c1, fc, StageMode::split_output);
  std::vector<int> overlapped;
  for (int n = c1; n < fc; ++n)
    if (plan::gather_overlaps_next(m, c1, fc, roles, n)) overlapped.push_back(n);
  EXPECT_EQ(overlapped, (std::vector<int>{c1, m.find("p"), m.find("c3")}));
  EXPECT_FALSE(plan::gather_overlaps_next(m, c1, fc, roles, c4));  // c4 feeds a Flatten
  for (int frames : {1, 3}) {
    SCOPED_TRACE(cat(frames, " frames"));
    const Tensor input = test::random_tensor(frames, m.input_shape(), 31 + frames);
    run_plan(dir.path("pairs.h5"),
             plan::validate_plan(make_plan(3, {stage("c1", "fc", StageMode::split_output, {2, 0, 1}, {0.5, 0.3, 0.2})}),
                                 m, 3),
             input);
    run_plan(dir.path("pairs.h5"),
             plan::validate_plan(make_plan(1, {stage("c1", "fc", StageMode::split_output, {0})}), m, 1),
             input);  // one member: nothing to gather
    run_plan(dir.path("pairs.h5"),
             plan::validate_plan(make_plan(3, {stage("c1", "c1", StageMode::single, {0}),
                                               stage("c2", "c4", StageMode::split_output, {1, 2}),
                                               stage("flat", "fc", StageMode::single, {0})}),
                                 m, 3),
             input);
  }
}

// What each split layer moves, as the prediction and `chorus plan` say it: reduce-scatters,
// reductions in parts, gathers, slices kept for a pooling, bands, and what each member is sent.
TEST(StageExchanges, SayHowEachSplitLayerMovesItsOutput) {
  const auto describe = [](const model::Model& m, const plan::ResolvedStage& s) {
    std::vector<std::string> out;
    for (const plan::LayerExchange& e : plan::stage_exchanges(m, s))
      out.push_back(cat(m.node(e.node).name(), ": ", e.how, e.parts > 1 ? cat(" in ", e.parts, " parts") : ""));
    return out;
  };
  const model::Model dense = structure_of(kDenseChainConfig);
  const plan::ResolvedPlan dense_plan = plan::validate_plan(
      make_plan(3, {stage("d1", "d4", StageMode::split_input, {0, 1, 2}, {0.5, 0.3, 0.2})}), dense, 3);
  EXPECT_EQ(describe(dense, dense_plan.stages[0]),
            (std::vector<std::string>{"d1: reduce-scatter into d2's input slices",
                                      "d2: reduce-scatter into d3's input slices", "d3: all-reduce of the partial sums",
                                      "d4: partial sums reduced to member 0"}));
  EXPECT_EQ(plan::stage_input_kind(dense, dense_plan.stages[0]), "its slice of the model's input");
  // By output: d2 and d3 multiply each member's slice of the layer before as it arrives; d3's
  // softmax needs all its channels before d4 can take them.
  const plan::ResolvedPlan by_output = plan::validate_plan(
      make_plan(3, {stage("d1", "d4", StageMode::split_output, {0, 1, 2}, {0.5, 0.3, 0.2})}), dense, 3);
  EXPECT_EQ(describe(dense, by_output.stages[0]),
            (std::vector<std::string>{"d1: all-gather of the slices, which d2 takes as they arrive",
                                      "d2: all-gather of the slices, which d3 takes as they arrive",
                                      "d3: all-gather of the slices", "d4: slices gathered to member 0"}));

  // Channels: c1 keeps its slice for the pooling, whose slices are all-gathered; the last layer's
  // slices go to member 0. Bands: rows and halo in, bands gathered out. One member: nothing.
  const model::Model chain = structure_of(kChainConfig);
  const plan::ResolvedPlan chain_plan =
      plan::validate_plan(make_plan(3, {stage("c1", "fc", StageMode::split_output, {0, 1, 2})}), chain, 3);
  const std::vector<std::string> channels = describe(chain, chain_plan.stages[0]);
  ASSERT_EQ(channels.size(), 7u);  // every layer with weights, and the two poolings that take a slice
  EXPECT_EQ(channels.front(), "c1: slice kept on its member for p1");
  EXPECT_EQ(channels[1], "p1: all-gather of the slices");
  EXPECT_EQ(channels.back(), "fc: slices gathered to member 0");
  EXPECT_EQ(plan::stage_input_kind(chain, chain_plan.stages[0]), "the whole input");
  const plan::ResolvedPlan band_plan = plan::validate_plan(
      make_plan(3,
                {stage("c1", "c3", StageMode::split_spatial, {0, 1, 2}), stage("gap", "fc", StageMode::single, {0})}),
      chain, 3);
  // c3's output is all the next stage takes: the bands go to it straight from their members.
  EXPECT_EQ(
      describe(chain, band_plan.stages[0]),
      (std::vector<std::string>{"c3: bands handed straight to the next stage's members (each its part of them)"}));
  EXPECT_EQ(plan::stage_input_kind(chain, band_plan.stages[0]), "its rows and their halo");
  EXPECT_TRUE(plan::stage_exchanges(chain, band_plan.stages[1]).empty());
}

// ---------------------------------------------------------------------------------------------
// The planner against exhaustive search over its own cost model.

#include "cluster/cluster.h"
#include "plan/parity.h"
#include "plan/planner.h"

namespace {

cluster::Cluster small_cluster(int devices, bool shared, double mbps) {
  cluster::Cluster c;
  c.name = "test";
  c.network.bandwidth_bytes_per_s = mbps * 1e6 / 8;
  c.network.latency_s = 0.001;
  c.network.shared = shared;
  cluster::DeviceClass d;
  d.name = "dev";
  d.memory_bytes = 1e9;
  d.profile.name = "dev";
  d.profile.macs_per_second["default"] = 1e8;
  c.classes["dev"] = d;
  for (int i = 0; i < devices; ++i) c.hosts.push_back({"h" + std::to_string(i), "dev", 1});
  return c;
}

// Every plan: cut points x group sizes x modes, stages on consecutive ranks from 0.
double exhaustive_best_period(const model::Model& m, const cluster::Cluster& c) {
  const int n = static_cast<int>(m.nodes().size()), devices = c.ranks();
  double best = 1e300;
  std::vector<plan::Stage> stages;
  std::function<void(int, int)> search = [&](int first, int rank) {
    if (first == n) {
      Plan p;
      p.ranks = devices;
      p.stages = stages;
      try {
        best = std::min(best, plan::predict(m, c, "test", p).period_s);
      } catch (const Error&) {
      }
      return;
    }
    for (int last = first; last < n; ++last)
      for (int k = 1; rank + k <= devices; ++k)
        for (StageMode mode : {StageMode::single, StageMode::replicate, StageMode::split_output,
                               StageMode::split_input, StageMode::split_spatial, StageMode::split_tensor}) {
          if ((mode == StageMode::single) != (k == 1)) continue;
          std::vector<int> ranks;
          for (int g = 0; g < k; ++g) ranks.push_back(rank + g);
          stages.push_back({m.node(first).name(), m.node(last).name(), mode, ranks, {}, {}});
          search(last + 1, rank + k);
          stages.pop_back();
        }
  };
  search(0, 0);
  return best;
}

}  // namespace

TEST(Planner, FindsTheExhaustiveOptimumOfItsCostModel) {
  const char* config = R"({"class_name": "Sequential", "config": {"name": "p", "layers": [
   {"class_name": "InputLayer", "config": {"name": "in", "batch_input_shape": [null, 16, 16, 3]}},
   {"class_name": "Conv2D", "config": {"name": "c1", "filters": 16, "kernel_size": [3, 3], "padding": "same", "activation": "relu"}},
   {"class_name": "Conv2D", "config": {"name": "c2", "filters": 16, "kernel_size": [3, 3], "padding": "same", "activation": "relu"}},
   {"class_name": "MaxPooling2D", "config": {"name": "p1", "pool_size": [2, 2]}},
   {"class_name": "Flatten", "config": {"name": "f"}},
   {"class_name": "Dense", "config": {"name": "d", "units": 32}}]}})";
  model::Model m = structure_of(config);
  for (int devices : {2, 3, 4})
    for (bool shared : {true, false})
      for (double mbps : {10.0, 1000.0}) {
        SCOPED_TRACE(cat(devices, " devices, shared ", shared, ", ", mbps, " Mbit/s"));
        cluster::Cluster c = small_cluster(devices, shared, mbps);
        plan::PlannerOptions o;
        o.model_key = "test";
        Plan p = plan::make_planned_plan(m, c, o);
        plan::validate_plan(p, m, devices);
        const double planned = plan::predict(m, c, "test", p).period_s;
        const double best = exhaustive_best_period(m, c);
        EXPECT_NEAR(planned, best, 1e-6 * best);
        EXPECT_NEAR(p.prediction["period_s"].get<double>(), planned, 1e-6 * planned);
      }
}

// On a switched network the links work at once, but a sender's own link carries every frame it
// hands out: four replicas fed by rank 0 over 0.01 Mbit/s links take 3/4 of each 3 KB frame
// through it (1.84 s), which the prediction names, and the planner keeps the frames at home.
TEST(Planner, ASwitchedNetworksSenderLinkBoundsThePeriod) {
  const char* config = R"({"class_name": "Sequential", "config": {"name": "p", "layers": [
   {"class_name": "InputLayer", "config": {"name": "in", "batch_input_shape": [null, 16, 16, 3]}},
   {"class_name": "Conv2D", "config": {"name": "c1", "filters": 16, "kernel_size": [3, 3], "padding": "same", "activation": "relu"}},
   {"class_name": "Flatten", "config": {"name": "f"}},
   {"class_name": "Dense", "config": {"name": "d", "units": 32}}]}})";
  model::Model m = structure_of(config);
  const cluster::Cluster c = small_cluster(4, /*shared=*/false, 0.01);
  const Plan replicas = plan::make_strategy_plan("replicate", m, 4);
  const nlohmann::json predicted = plan::prediction_json(m, c, "test", replicas);
  const double link_s = 0.75 * 16 * 16 * 3 * 4 * 8 / 0.01e6;
  EXPECT_NEAR(predicted["period_s"].get<double>(), link_s, 1e-3 * link_s);
  EXPECT_EQ(predicted["bottleneck"], "the network link into stage 0");
  EXPECT_NEAR(predicted["stages"][0]["input_link_s"].get<double>(), link_s, 1e-3 * link_s);
  plan::PlannerOptions o;
  o.model_key = "test";
  const Plan p = plan::make_planned_plan(m, c, o);
  const double one_device = plan::predict(m, c, "test", plan::make_strategy_plan("pipeline", m, 1)).period_s;
  EXPECT_LE(plan::predict(m, c, "test", p).period_s, one_device * (1 + 1e-6));
}

// A split strategy that leaves layers whole, for having fewer parts than ranks, says which.
TEST(Strategies, ANoteNamesTheLayersLeftWholeForTooFewParts) {
  model::Model m = structure_of(kChainConfig);
  EXPECT_EQ(plan::strategy_note("split-output", m, 2), "");
  EXPECT_EQ(plan::strategy_note("pipeline", m, 16), "");
  const std::string note = plan::strategy_note("split-output", m, 7);
  EXPECT_THAT(note, HasSubstr("split-output leaves "));
  EXPECT_THAT(note, HasSubstr("whole on rank 0, with fewer parts to split than the 7 ranks (c3 has 6"));
  EXPECT_THAT(note, Not(HasSubstr("c1 has")));  // 8 filters over 7 ranks split
}

TEST(Planner, RefusesAModelThatCannotFit) {
  model::Model m = structure_of(kChainConfig);
  cluster::Cluster c = small_cluster(2, true, 100);
  for (auto& [name, d] : c.classes) d.memory_bytes = 1000;  // 1 kB devices
  plan::PlannerOptions o;
  try {
    plan::make_planned_plan(m, c, o);
    FAIL() << "planned for devices that cannot hold a layer";
  } catch (const Error& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr("needs about"));
    EXPECT_THAT(std::string(e.what()), HasSubstr("MB each"));
  }
}

TEST(Planner, APlanThatDoesNotFitTheDevicesIsRefusedWithTheNumbers) {
  model::Model m = structure_of(kChainConfig);
  cluster::Cluster c = small_cluster(2, true, 100);
  Plan whole = make_plan(2, {stage(m.node(0).name(), m.node(static_cast<int>(m.nodes().size()) - 1).name(),
                                   StageMode::replicate, {0, 1})});
  EXPECT_NO_THROW(plan::check_plan_fits(m, c, "test", whole));
  for (auto& [name, d] : c.classes) d.memory_bytes = 1000;  // 1 kB devices
  try {
    plan::check_plan_fits(m, c, "test", whole);
    FAIL() << "a plan that cannot fit was accepted";
  } catch (const Error& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr("plan: rank 0 (a dev with 0.001 MB for Chorus) would hold stage 0 ("));
    EXPECT_THAT(std::string(e.what()), HasSubstr("MB of weights and activations; refusing to start"));
  }
}

// A transformer too large for one device (as ViT-L/16's 1.2 GB is for a 1 GB Pi 3): the planner
// cuts it so that every rank holds less than its memory, and the plan runs as planned.
TEST(Planner, TransformerLargerThanADeviceIsCutToFit) {
  model::Model m = io::load_model_file(test::source_path("tests/data/onnx/vit_tiny_op14.onnx"));
  double weights = 0;
  for (const auto& node : m.nodes()) weights += static_cast<double>(node.layer->weight_bytes());
  for (plan::Objective objective : {plan::Objective::throughput, plan::Objective::latency}) {
    cluster::Cluster c = small_cluster(4, false, 1000);
    for (auto& [name, d] : c.classes) d.memory_bytes = 0.6 * weights;
    plan::PlannerOptions o;
    o.objective = objective;
    Plan p = plan::make_planned_plan(m, c, o);
    plan::validate_plan(p, m, 4);
    EXPECT_NO_THROW(plan::check_plan_fits(m, c, "test", p));
    // No rank holds every layer whole: the model is pipelined or split.
    EXPECT_TRUE(p.stages.size() >= 2 ||
                (p.stages[0].mode != StageMode::single && p.stages[0].mode != StageMode::replicate));
    for (const auto& st : p.prediction["stages"]) EXPECT_TRUE(st["fits"].get<bool>());
  }
}

TEST(Planner, PredictsAPlansOwnDevicesInAnyOrder) {
  // A hand-written plan on a cluster of two kinds of device lists its ranks in any order: the
  // prediction uses those devices (it once took the first rank and the ones after it, and a
  // list ending on the last rank ran off the cluster: an internal error).
  model::Model m = structure_of(kChainConfig);
  cluster::Cluster c = small_cluster(4, true, 50);
  cluster::DeviceClass slow = c.classes["dev"];
  slow.name = "slow";
  slow.profile.macs_per_second["default"] = 1e7;
  c.classes["slow"] = slow;
  c.hosts[3].device_class = "slow";
  const auto predicted = [&](StageMode mode, std::vector<int> ranks) {
    return plan::prediction_json(m, c, "test", make_plan(4, {stage("c1", "fc", mode, std::move(ranks))}));
  };
  for (StageMode mode : {StageMode::replicate, StageMode::split_output}) {
    const auto slow_last = predicted(mode, {0, 3}), slow_first = predicted(mode, {3, 0});
    const auto both_fast = predicted(mode, {0, 1});
    // Member 0 alone takes the last layer's parts, so the order changes only what it receives.
    EXPECT_NEAR(slow_last["rank_busy_s"][3].get<double>(), slow_first["rank_busy_s"][3].get<double>(),
                1e-3 * slow_last["rank_busy_s"][3].get<double>());
    EXPECT_GT(slow_last["rank_busy_s"][3].get<double>(), 0.0);
    EXPECT_EQ(slow_last["rank_busy_s"][1].get<double>(), 0.0);  // rank 1 is not in the plan
    EXPECT_LT(slow_last["throughput_fps"].get<double>(), both_fast["throughput_fps"].get<double>());
  }
}

// Where memory is short, the plan that runs every stage on the devices from rank 0 on (which the
// latency search finds) also has the higher throughput: VGG16 on two Pi 3 with 512 MB each
// cannot hold two disjoint stages well. The throughput objective once returned 0.140 frames/s
// there against the latency objective's 0.233 (a first-use review); it now takes the faster.
TEST(Planner, ThroughputObjectiveIsNoSlowerThanTheLatencyPlanWhereMemoryIsShort) {
  test::TempDir dir;
  nlohmann::json cluster = {
      {"name", "short-of-memory"},
      {"network", {{"bandwidth_mbps", 62.24}, {"latency_ms", 2}, {"shared", true}}},
      {"device_classes",
       {{"pi3-512", {{"profile", test::source_path("profiles/pi3-paper.json")}, {"memory_mb", 512}}}}},
      {"hosts", {{{"name", "a"}, {"class", "pi3-512"}}, {{"name", "b"}, {"class", "pi3-512"}}}}};
  std::ofstream(dir.path("c.json")) << cluster.dump();
  const cluster::Cluster c = cluster::read_cluster(dir.path("c.json"));
  std::ifstream file(test::source_path("models/vgg16.json"));
  model::Model m = structure_of(std::string(std::istreambuf_iterator<char>(file), {}));
  plan::PlannerOptions o;
  o.model_key = "vgg16";
  o.objective = plan::Objective::latency;
  const Plan latency = plan::make_planned_plan(m, c, o);
  o.objective = plan::Objective::throughput;
  const Plan throughput = plan::make_planned_plan(m, c, o);
  EXPECT_GE(throughput.prediction["throughput_fps"].get<double>(), latency.prediction["throughput_fps"].get<double>());
  EXPECT_GT(throughput.prediction["throughput_fps"].get<double>(), 0.2);
  EXPECT_EQ(throughput.prediction["objective"], "throughput");
  EXPECT_NO_THROW(plan::check_plan_fits(m, c, "vgg16", throughput));
}

TEST(Planner, LatencyPlanGroupsBandsAndReusesDevices) {
  // VGG16 on 9 Pi 3 over shared WiFi: one frame at a time, every stage may use the devices from
  // rank 0 on, and a long split-spatial stage swaps halos between groups rather than carry a
  // halo that grows through thirteen layers. Its prediction is below the plan of disjoint device
  // groups with one fused band per stage (3.87 s when that was all the planner had) and below
  // the issue's target of 2.2 s.
  std::ifstream file(test::source_path("models/vgg16.json"));
  model::Model m = structure_of(std::string(std::istreambuf_iterator<char>(file), {}));
  const cluster::Cluster c = cluster::read_cluster(test::source_path("hostfiles/pi3-wifi-9.json"));
  plan::PlannerOptions o;
  o.objective = plan::Objective::latency;
  o.model_key = "vgg16";
  const Plan p = plan::make_planned_plan(m, c, o);
  const plan::ResolvedPlan r = plan::validate_plan(p, m, 9);
  EXPECT_NO_THROW(plan::check_plan_fits(m, c, "vgg16", p));
  const double latency = p.prediction["latency_ms"];
  EXPECT_LT(latency, 2200.0);
  bool grouped = false;
  for (const auto& st : r.stages) {
    EXPECT_EQ(st.ranks.front(), 0);  // every stage from rank 0: each takes its input locally
    grouped |= st.mode == StageMode::split_spatial && st.group_ends.size() > 1;
  }
  EXPECT_TRUE(grouped) << plan::plan_to_json(p).dump();
  EXPECT_GE(r.stages.size(), 2u);
  // The same plan predicted again from its file (groups and all) gives the same figure.
  const Plan again = plan::plan_from_json(plan::plan_to_json(p), "again");
  EXPECT_NEAR(plan::prediction_json(m, c, "vgg16", again)["latency_ms"].get<double>(), latency, 1e-9 * latency);
  // Without groups (each split-spatial stage one fused band) the same stages are slower.
  Plan fused = again;
  for (auto& st : fused.stages) st.exchange_after.clear();
  EXPECT_GT(plan::prediction_json(m, c, "vgg16", fused)["latency_ms"].get<double>(), latency);
}

// A split-spatial stage's members start as their own parts of its input arrive: the source
// (member 0) computes its tile while the others' travel, one after another on the shared
// WiFi. Tiny YOLOv2's fused 2x2 tiles on four Pi 3 (the split-spatial strategy): each member
// reads about 70 % of the 2 MB input, so the input takes half a second of air. The prediction
// waits for the last member's part, not for every part before anyone starts: it lies between
// the stage's compute plus the last part alone and the compute plus the whole input (the
// emulator measured 1291 ms where the prediction was 1596 ms before members started apart).
TEST(Planner, SplitSpatialMembersStartAsTheirInputsArrive) {
  std::ifstream file(test::source_path("models/tinyyolov2.json"));
  model::Model m = structure_of(std::string(std::istreambuf_iterator<char>(file), {}));
  const cluster::Cluster c = cluster::read_cluster(test::source_path("hostfiles/pi3-wifi-9.json"));
  Plan p = plan::make_strategy_plan("split-spatial", m, 4);
  ASSERT_EQ(p.stages.size(), 1u);
  ASSERT_EQ(p.stages[0].columns, 2);
  const nlohmann::json prediction = plan::prediction_json(m, c, "tinyyolov2", p);
  const double latency = prediction["latency_ms"].get<double>() / 1e3;
  const double compute = prediction["stages"][0]["compute_s"];
  const partition::FrameTraffic traffic = partition::frame_traffic(m, plan::validate_plan(p, m, 4), 1, 0);
  double input_bytes = 0, last_part = 0;
  for (int g = 1; g < 4; ++g) input_bytes += traffic.at(0, g), last_part = traffic.at(0, g);
  const double input_s = c.network.transfer_seconds(input_bytes);
  ASSERT_GT(input_s, 0.3 * compute) << "the input must weigh for this test to say anything";
  EXPECT_LT(latency, compute + input_s) << "every member waited for the whole input";
  EXPECT_GT(latency, compute + c.network.transfer_seconds(last_part));
}

// A split-spatial stage whose members hand their tiles straight on (plan::hands_tiles_on)
// gathers nothing: its time ends with its slowest member, and the stage after it takes its
// input from all of them, less the part its own device made. VGG16's convolutions in seven
// bands (block5_pool has seven rows) on Pi 3 over shared WiFi, then the dense layers on rank
// 0: the prediction is the bands' cost and the dense layers' with all but rank 0's own tile
// over the air (the runtime's pieces, partition::tile_hand_off, say how much that is). When it
// counted the input as rank 0's own, the latency planner put a free stage on one device behind
// every hand-off; its own plan never does now. The same bands into fc1 split by input on nine
// ranks: what crosses the air is the pieces between different ranks.
TEST(Planner, TilesHandedOnCostNoGatherAndTravelToTheNextStage) {
  std::ifstream file(test::source_path("models/vgg16.json"));
  model::Model m = structure_of(std::string(std::istreambuf_iterator<char>(file), {}));
  const cluster::Cluster c = cluster::read_cluster(test::source_path("hostfiles/pi3-wifi-9.json"));
  const int pool = m.find("block5_pool"), flatten = m.find("flatten");
  const int last = static_cast<int>(m.nodes().size()) - 1;
  Plan p;
  p.ranks = 7;
  p.stages.push_back(Stage{"block1_conv1", "block5_pool", StageMode::split_spatial, {0, 1, 2, 3, 4, 5, 6}, {}, {}});
  p.stages[0].exchange_after = {"block1_pool", "block2_pool", "block3_pool", "block4_pool"};
  p.stages.push_back(Stage{"flatten", "predictions", StageMode::single, {0}, {}, {}});
  const plan::ResolvedPlan r = plan::validate_plan(p, m, 7);
  ASSERT_TRUE(plan::hands_tiles_on(m, r.stages[0]));
  const partition::TileHandOff hand_off = partition::tile_hand_off(m, r, 0);
  const plan::StageCost bands =
      plan::stage_cost(m, c, "vgg16", 0, pool, 0, 7, StageMode::split_spatial, 0, r.stages[0].group_ends);
  const plan::StageCost dense = plan::stage_cost(m, c, "vgg16", flatten, last, 0, 1, StageMode::single, 0);
  const double tiles = static_cast<double>(m.cost(pool).output_bytes);
  const double own = static_cast<double>(hand_off.floats(0, 0)) * sizeof(float);
  ASSERT_GT(own, 0.1 * tiles);
  ASSERT_LT(own, 0.2 * tiles);
  const double expected =
      bands.input_s + bands.latency_s + c.network.transfer_seconds(tiles - own) + c.network.latency_s + dense.latency_s;
  EXPECT_NEAR(plan::prediction_json(m, c, "vgg16", p)["latency_ms"].get<double>(), expected * 1e3, 1e-6 * expected);
  // The bands' medium time: their input and halos, no gather of the tiles. Of what the run
  // moves, all but the tiles handed to rank 0.
  const partition::FrameTraffic traffic = partition::frame_traffic(m, r, 1, 0);
  double stage_bytes = 0;
  for (int from = 0; from < 7; ++from) {
    for (int to = 0; to < 7; ++to) stage_bytes += from == to ? 0.0 : traffic.at(from, to);
    if (from > 0) stage_bytes -= static_cast<double>(hand_off.floats(from, 0)) * sizeof(float);
  }
  EXPECT_NEAR(bands.medium_s, c.network.transfer_seconds(stage_bytes), 0.02 * bands.medium_s);

  // Into fc1 split by input on nine ranks: each member takes its run of the flattened tiles,
  // less what its own band holds of that run (ranks 7 and 8 made none). The bytes that cross
  // the air are those of the runtime's pieces between different ranks.
  Plan sliced = p;
  sliced.ranks = 9;
  sliced.stages[1] = Stage{"flatten", "fc1", StageMode::split_input, {0, 1, 2, 3, 4, 5, 6, 7, 8}, {}, {}};
  sliced.stages.push_back(Stage{"fc2", "predictions", StageMode::single, {0}, {}, {}});
  const plan::ResolvedPlan rs = plan::validate_plan(sliced, m, 9);
  const partition::TileHandOff to_slices = partition::tile_hand_off(m, rs, 0);
  double crossing = 0;
  for (int from = 0; from < 7; ++from)
    for (int to = 0; to < 9; ++to) crossing += from == to ? 0.0 : static_cast<double>(to_slices.floats(from, to));
  ASSERT_GT(crossing, 0.5 * tiles / sizeof(float));
  const int fc1 = m.find("fc1");
  const plan::StageCost slices = plan::stage_cost(m, c, "vgg16", flatten, fc1, 0, 9, StageMode::split_input, 0);
  const plan::StageCost rest = plan::stage_cost(m, c, "vgg16", fc1 + 1, last, 0, 1, StageMode::single, 0);
  const double expected_sliced = bands.input_s + bands.latency_s +
                                 c.network.transfer_seconds(crossing * sizeof(float)) + c.network.latency_s +
                                 slices.latency_s + rest.latency_s;
  EXPECT_NEAR(plan::prediction_json(m, c, "vgg16", sliced)["latency_ms"].get<double>(), expected_sliced * 1e3,
              1e-6 * expected_sliced);

  plan::PlannerOptions o;
  o.objective = plan::Objective::latency;
  o.model_key = "vgg16";
  const Plan planned = plan::make_planned_plan(m, c, o);
  const plan::ResolvedPlan rp = plan::validate_plan(planned, m, 9);
  int handed = 0;
  for (std::size_t s = 0; s + 1 < rp.stages.size(); ++s)
    if (plan::hands_tiles_on(m, rp.stages[s])) {
      ++handed;
      EXPECT_GT(rp.stages[s + 1].ranks.size(), 1u) << plan::plan_to_json(planned).dump();
    }
  EXPECT_GE(handed, 1) << plan::plan_to_json(planned).dump();
}

// On unlike devices the fractions follow their speed, and a Pi 3 beside a laptop may get less
// than a row or a channel of a layer: the planner keeps only candidates whose own fractions
// give every member some of every split layer, so the plans it writes validate. A Pi 3, four
// Pi 4, a laptop and a Pi 3 on gigabit (VGG16 and LeNet-5 once came back with stages that
// validate_plan refused: "7 rows: too few for 6 bands"), C3D on the shipped mixed cluster
// ("needs no input rows of layer 'zeropad5'"), and Pi 3 and Pi 4 in turn (candidates copied to
// the runs of devices of the same kinds).
TEST(Planner, PlansOnUnlikeDevicesValidate) {
  test::TempDir dir;
  nlohmann::json cluster = {
      {"name", "unlike"},
      {"network", {{"bandwidth_mbps", 940}, {"latency_ms", 0.1}, {"shared", false}}},
      {"device_classes",
       {{"pi3", {{"profile", test::source_path("profiles/pi3-paper.json")}, {"memory_mb", 1024}}},
        {"pi4", {{"profile", test::source_path("profiles/pi4-estimate.json")}, {"memory_mb", 4096}}},
        {"laptop", {{"profile", test::source_path("profiles/host.json")}, {"memory_mb", 8192}}}}},
      {"hosts", nlohmann::json::array()}};
  int h = 0;
  for (const char* kind : {"pi3", "pi4", "pi4", "pi4", "laptop", "pi4", "pi3"})
    cluster["hosts"].push_back({{"name", cat("h", h++)}, {"class", kind}});
  std::ofstream(dir.path("unlike.json")) << cluster.dump();
  // Two kinds in turn: the planner costs a run of devices once and copies it to the runs of the
  // same kinds in the same order.
  cluster["hosts"] = nlohmann::json::array();
  for (int g = 0; g < 8; ++g) cluster["hosts"].push_back({{"name", cat("t", g)}, {"class", g % 2 ? "pi4" : "pi3"}});
  std::ofstream(dir.path("in-turn.json")) << cluster.dump();
  struct Case {
    const char* model;
    std::string cluster;
  };
  for (const Case& c : {Case{"vgg16", dir.path("unlike.json")}, Case{"lenet5", dir.path("unlike.json")},
                        Case{"c3d", test::source_path("hostfiles/mixed.json")}, Case{"vgg16", dir.path("in-turn.json")},
                        Case{"resnet18", dir.path("in-turn.json")}})
    for (const plan::Objective objective : {plan::Objective::latency, plan::Objective::throughput}) {
      SCOPED_TRACE(
          cat(c.model, " on ", c.cluster, objective == plan::Objective::latency ? ", latency" : ", throughput"));
      std::ifstream file(test::source_path(cat("models/", c.model, ".json")));
      model::Model m = structure_of(std::string(std::istreambuf_iterator<char>(file), {}));
      const cluster::Cluster cl = cluster::read_cluster(c.cluster);
      plan::PlannerOptions o;
      o.objective = objective;
      o.model_key = c.model;
      const Plan p = plan::make_planned_plan(m, cl, o);
      EXPECT_NO_THROW(plan::validate_plan(p, m, cl.ranks())) << plan::plan_to_json(p).dump();
    }
}

// A camera's frame is wider than tall: a border across it costs more halo than one down it, so
// the latency planner cuts a wide image into strips of columns or grids of more columns than
// rows, and a tall one the other way. Tiny YOLOv2 (fully convolutional) on 256x832 and 832x256
// frames, nine Pi 3 over shared WiFi: each plan's split-spatial stage is turned to its image,
// and the same plan turned the other way predicts slower.
TEST(Planner, TurnsTilesToTheImagesLongerSide) {
  std::ifstream file(test::source_path("models/tinyyolov2.json"));
  const nlohmann::json spec = nlohmann::json::parse(std::string(std::istreambuf_iterator<char>(file), {}));
  const cluster::Cluster c = cluster::read_cluster(test::source_path("hostfiles/pi3-wifi-9.json"));
  int compared = 0;
  for (const bool wide : {true, false})
    for (const int max_group : {0, 6}) {  // nine members (strips or bands), or six (2x3 or 3x2)
      SCOPED_TRACE(cat(wide ? "wide" : "tall", ", stages of up to ", max_group, " devices"));
      nlohmann::json turned = spec;
      for (auto& layer : turned["config"]["layers"])
        if (layer["class_name"] == "InputLayer")
          layer["config"]["batch_input_shape"] =
              wide ? nlohmann::json{nullptr, 256, 832, 3} : nlohmann::json{nullptr, 832, 256, 3};
      model::Model m = structure_of(turned.dump());
      plan::PlannerOptions o;
      o.objective = plan::Objective::latency;
      o.model_key = "tinyyolov2";
      o.max_group = max_group;
      const Plan p = plan::make_planned_plan(m, c, o);
      const plan::ResolvedPlan r = plan::validate_plan(p, m, 9);
      const double latency = p.prediction["latency_ms"];
      int spatial = 0;
      for (std::size_t s = 0; s < r.stages.size(); ++s) {
        const auto& st = r.stages[s];
        if (st.mode != StageMode::split_spatial || st.ranks.size() < 2) continue;
        ++spatial;
        const int members = static_cast<int>(st.ranks.size()), rows = members / st.columns;
        if (wide)
          EXPECT_GE(st.columns, rows) << plan::plan_to_json(p).dump();
        else
          EXPECT_LE(st.columns, rows) << plan::plan_to_json(p).dump();
        if (st.columns == rows) continue;  // a square grid has no other way round
        Plan other = p;
        other.stages[s].columns = rows;
        try {
          plan::validate_plan(other, m, 9);
        } catch (const Error&) {
          continue;  // turned, its tiles would be thinner than the last layers' output
        }
        ++compared;
        EXPECT_GT(plan::prediction_json(m, c, "tinyyolov2", other)["latency_ms"].get<double>(), latency)
            << "turned: " << plan::plan_to_json(other).dump();
      }
      EXPECT_GE(spatial, 1) << plan::plan_to_json(p).dump();
    }
  EXPECT_GE(compared, 2);
}

// A ViT block in a split-tensor stage: attention by heads, the MLP's first Dense keeps its
// slice and the second reads it, the norms and adds in full on every member.
// A cluster file that marks a device unreliable: the latency planner keeps the last device for
// parities and cuts VGG16's dense tail (a split-output stage holding the unreliable device) into
// a parity stage per dense layer on it; the plan validates, its prediction says so and what the
// plan without parity would do, and the cost of the parities is small. Nothing unreliable, no
// parity; a stage that cannot carry one is named with the reason.
TEST(Planner, OffersParityWhereTheClusterMarksDevicesUnreliable) {
  std::ifstream file(test::source_path("models/vgg16.json"));
  model::Model m = structure_of(std::string(std::istreambuf_iterator<char>(file), {}));
  cluster::Cluster c = cluster::read_cluster(test::source_path("hostfiles/pi3-wifi-9.json"));
  plan::PlannerOptions o;
  o.objective = plan::Objective::latency;
  o.model_key = "vgg16";
  const Plan reliable = plan::make_planned_plan(m, c, o);
  EXPECT_FALSE(reliable.prediction.contains("parity"));
  for (const auto& st : reliable.stages) EXPECT_EQ(st.parity, 0);
  c.hosts[2].unreliable = true;
  const Plan p = plan::make_planned_plan(m, c, o);
  const plan::ResolvedPlan r = plan::validate_plan(p, m, 9);
  int parity_stages = 0;
  for (const auto& st : r.stages) {
    if (!st.parity) continue;
    ++parity_stages;
    EXPECT_EQ(st.ranks.back(), 8);  // the device kept for them
    EXPECT_NE(std::find(st.ranks.begin(), st.ranks.end(), 2), st.ranks.end());
    EXPECT_EQ(st.last, st.first + (m.node(st.first).name() == "flatten" ? 1 : 0));  // one dense layer each
  }
  EXPECT_EQ(parity_stages, 3) << plan::plan_to_json(p).dump();
  EXPECT_EQ(p.prediction["parity"]["stages"], 3);
  // The convolutions' row bands hold the unreliable device too, and say that they stay uncoded.
  EXPECT_THAT(p.prediction["parity"]["not_coded"].dump(), HasSubstr("row bands (split-spatial) cannot carry a parity"));
  // The parities cost little beyond the device kept for them: against a plan on the other eight
  // (on nine, the convolutions take a 3x3 grid of tiles, which eight cannot make).
  const double with = p.prediction["latency_ms"], without = p.prediction["parity"]["without_parity"]["latency_ms"];
  EXPECT_LT(without, with);
  cluster::Cluster eight = c;
  eight.hosts.pop_back();
  eight.hosts[2].unreliable = false;
  const Plan on_eight = plan::make_planned_plan(m, eight, o);
  EXPECT_LT(with, 1.1 * static_cast<double>(on_eight.prediction["latency_ms"]));
  // A tail whose split-output stage cannot be cut so (a convolution keeping its slice for its
  // pooling) stays as it was, and the prediction says why.
  model::Model chain = structure_of(kChainConfig);
  cluster::Cluster three = small_cluster(3, true, 62);
  three.hosts[1].unreliable = true;
  Plan tail = make_plan(3, {stage("c1", "c2", StageMode::single, {0}), stage("dw", "fc", StageMode::split_output, {0, 1})});
  ASSERT_NO_THROW(plan::validate_plan(tail, chain, 3));
  std::vector<std::string> skipped;
  EXPECT_EQ(plan::add_parity(tail, chain, three, 2, skipped), 0);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_THAT(skipped[0], HasSubstr("'c3' keeps its slice for the layer after it"));
  Plan dense = make_plan(3, {stage("c1", "gap", StageMode::single, {0}), stage("fc", "fc", StageMode::split_output, {0, 1})});
  EXPECT_EQ(plan::add_parity(dense, chain, three, 2, skipped), 1);
  EXPECT_EQ(dense.stages[1].ranks, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(dense.stages[1].parity, 1);
}

// split-tensor pairs a layer with the next where that moves fewer bytes than gathering both:
// where the first's output is larger than the second's. VGG16's tail (flatten, fc1 4096, fc2
// 4096, predictions 1000) pairs fc2 with the predictions and all-gathers fc1, where pairing
// from the front (fc1 with fc2, then the predictions gathered) all-reduced 4096 sums; its first
// block gathers block1_conv1 and keeps block1_conv2's slice for the pooling (a quarter of the
// bytes) rather than all-reduce block1_conv2's 224 x 224 x 64 sums.
TEST(SplitRoles, SplitTensorPairsLayersWhereThatMovesFewerBytes) {
  std::ifstream file(test::source_path("models/vgg16.json"));
  model::Model m = structure_of(std::string(std::istreambuf_iterator<char>(file), {}));
  using R = plan::SplitRole;
  const int flatten = m.find("flatten"), predictions = m.find("predictions");
  EXPECT_EQ(plan::split_roles(m, flatten, predictions, StageMode::split_tensor),
            (std::vector<R>{R::whole, R::output_slice, R::kept_slice, R::input_slice}));
  const int conv1 = m.find("block1_conv1"), pool = m.find("block1_pool");
  EXPECT_EQ(plan::split_roles(m, conv1, pool, StageMode::split_tensor),
            (std::vector<R>{R::output_slice, R::kept_slice, R::output_slice}));
  // Equal widths tie: the earlier layer pairs (fc1 with fc2 where the stage ends at fc2).
  EXPECT_EQ(plan::split_roles(m, flatten, m.find("fc2"), StageMode::split_tensor),
            (std::vector<R>{R::whole, R::kept_slice, R::input_slice}));
}

TEST(SplitRoles, TransformerBlockSplitsByHeadsAndMlpPair) {
  model::Model m = io::load_model_file(test::source_path("tests/data/onnx/vit_tiny_op14.onnx"));
  const int first = m.find("/encoder/layers/encoder_layer_0/ln_1"), last = m.find("/encoder/layers/encoder_layer_0/Add_1");
  ASSERT_GE(first, 0);
  ASSERT_GE(last, first);
  const auto roles = plan::split_roles(m, first, last, plan::StageMode::split_tensor);
  std::vector<std::string> got;
  for (int n = first; n <= last; ++n) {
    const auto r = roles[n - first];
    got.push_back(m.node(n).layer->type() + ":" +
                  (r == plan::SplitRole::heads          ? "heads"
                   : r == plan::SplitRole::kept_slice   ? "kept"
                   : r == plan::SplitRole::input_slice  ? "input"
                   : r == plan::SplitRole::output_slice ? "output"
                                                        : "whole"));
  }
  EXPECT_EQ(got, (std::vector<std::string>{"LayerNormalization:whole", "MultiHeadAttention:heads", "Add:whole",
                                           "LayerNormalization:whole", "Dense:kept", "Dense:input", "Add:whole"}));
  // The same range as split-input would split the Dense layers by input and refuse attention.
  plan::Plan p;
  p.ranks = 2;
  p.stages.push_back({m.node(0).name(), m.node(first - 1).name(), plan::StageMode::single, {0}, {}, {}});
  p.stages.push_back({m.node(first).name(), m.node(last).name(), plan::StageMode::split_input, {0, 1}, {}, {}});
  p.stages.push_back({m.node(last + 1).name(), m.nodes().back().name(), plan::StageMode::single, {1}, {}, {}});
  EXPECT_THAT(error_of([&] { plan::validate_plan(p, m, 2); }),
              HasSubstr("layer '/encoder/layers/encoder_layer_0/self_attention' (MultiHeadAttention) cannot be split by "
                        "input channels"));
  p.stages[1].mode = plan::StageMode::split_tensor;
  EXPECT_NO_THROW(plan::validate_plan(p, m, 2));
  p.stages[1].ranks = {0, 1, 2, 3, 4};
  p.ranks = 5;
  EXPECT_THAT(error_of([&] { plan::validate_plan(p, m, 5); }), HasSubstr("has 4 heads: too few for 5 parts"));
}

TEST(PartRuns, TransformerLayersComputeBehindEachReduction) {
  model::Model m = io::load_model_file(test::source_path("tests/data/onnx/vit_tiny_op14.onnx"));
  const int first = m.find("/encoder/layers/encoder_layer_0/ln_1"),
            last = m.find("/encoder/layers/encoder_layer_1/Add_1");
  ASSERT_GE(first, 0);
  ASSERT_GT(last, first);
  const auto roles = plan::split_roles(m, first, last, plan::StageMode::split_tensor);
  std::vector<std::string> got;
  for (const plan::PartRun& r : plan::part_runs(m, first, last, roles))
    got.push_back(m.node(r.reduced).name() + " > " + m.node(r.first).name() + " .. " + m.node(r.last).name() +
                  (r.consumer >= 0 ? " > " + m.node(r.consumer).name() : ""));
  const std::string b0 = "/encoder/layers/encoder_layer_0/", b1 = "/encoder/layers/encoder_layer_1/";
  // Behind attention: the residual add, the norm and the MLP pair, whose second half reduces
  // its own sums; behind those, the next add and norm, and the next attention takes the norm's
  // parts (its projections) as they come.
  EXPECT_EQ(got, (std::vector<std::string>{
                     b0 + "self_attention > " + b0 + "Add .. " + b0 + "mlp/mlp.3/MatMul",
                     b0 + "mlp/mlp.3/MatMul > " + b0 + "Add_1 .. " + b1 + "ln_1 > " + b1 + "self_attention",
                     b1 + "self_attention > " + b1 + "Add .. " + b1 + "mlp/mlp.3/MatMul",
                     b1 + "mlp/mlp.3/MatMul > " + b1 + "Add_1 .. " + b1 + "Add_1",
                 }));
  // The stage's last layer reduces only to member 0: nothing follows it.
  const int fc2 = m.find(b1 + "mlp/mlp.3/MatMul");
  EXPECT_EQ(plan::part_runs(m, first, fc2, plan::split_roles(m, first, fc2, plan::StageMode::split_tensor)).size(), 3u);
  // One position (a CNN's dense layers): nothing to compute in parts.
  model::Model chain = structure_of(kChainConfig);
  EXPECT_TRUE(plan::part_runs(chain, 0, 7, plan::split_roles(chain, 0, 7, plan::StageMode::split_tensor)).empty());
}

TEST(Planner, SplitTensorHidesReductionsBehindTheLayersThatFollowThem) {
  // Two transformer blocks split by heads and MLP pairs on two members: four reductions of an
  // (L x D) tensor, each member sending 2 (k - 1) / k of it over its own link.
  model::Model m = io::load_model_file(test::source_path("tests/data/onnx/vit_tiny_op14.onnx"));
  const int first = m.find("/encoder/layers/encoder_layer_0/ln_1"),
            last = m.find("/encoder/layers/encoder_layer_1/Add_1");
  const double out_bytes = static_cast<double>(m.node(last).layer->output_shape().size()) * sizeof(float);
  const auto cost = [&](double mbps, double latency_s) {
    cluster::Cluster c = small_cluster(2, false, mbps);
    c.network.latency_s = latency_s;
    return plan::stage_cost(m, c, "test", first, last, 0, 2, StageMode::split_tensor, 0).compute_s;
  };
  const double compute = cost(1e9, 0);  // the network all but free
  for (double mbps : {10.0, 50.0, 200.0}) {
    SCOPED_TRACE(cat(mbps, " Mbit/s"));
    const double links = 4 * out_bytes / (mbps * 1e6 / 8);  // 2 (k - 1) / k = 1 of each reduction
    const double waited = compute + links;                  // each reduction waited for in full
    const double got = cost(mbps, 0);
    EXPECT_GE(got, std::max(compute, links));  // neither the compute nor the links can be cut
    // The layers behind each reduction compute while it is on the links: at least half of the
    // shorter of the two is hidden.
    EXPECT_LT(got, waited - 0.5 * std::min(compute, links));
  }
}

// c1 split by output on two members, its slices all-gathered into c2: c2 convolves its own
// member's half of c1's channels while the other half travels, so the stage takes the shorter of
// that work (half c2's outputs from half its inputs: a quarter of its time) and the transfer
// less than the same stage whose c1 ends in a softmax, whose channels must all be in first.
TEST(Planner, ConvolutionTakesTheGatheredSlicesWhileTheyTravel) {
  const model::Model relu = structure_of(kConvPairsConfig);
  std::string softmax_config = kConvPairsConfig;
  const std::string c1_relu = R"("padding": "same", "activation": "relu"}, "inbound_nodes": [[["in")";
  softmax_config.replace(softmax_config.find(c1_relu), c1_relu.size(),
                         R"("padding": "same", "activation": "softmax"}, "inbound_nodes": [[["in")");
  const model::Model softmax = structure_of(softmax_config.c_str());
  const int c1 = relu.find("c1"), c2 = relu.find("c2");
  const double c1_bytes = static_cast<double>(relu.node(c1).layer->output_shape().size()) * sizeof(float);
  for (double mbps : {0.5, 50.0, 500.0}) {  // the last: the transfer is the shorter
    SCOPED_TRACE(cat(mbps, " Mbit/s"));
    const cluster::Cluster c = small_cluster(2, false, mbps);
    const auto cost = [&](const model::Model& m) {
      return plan::stage_cost(m, c, "test", c1, c2, 0, 2, StageMode::split_output, 0).compute_s;
    };
    const double own = plan::stage_cost(relu, c, "test", c2, c2, 0, 1, StageMode::single, 0).compute_s / 4;
    const double transfer = c1_bytes / 2 / c.network.bandwidth_bytes_per_s;  // each link: the other half
    EXPECT_NEAR(cost(softmax) - cost(relu), std::min(own, transfer), 1e-9);
  }
}

// A stage holding both calls of a shared layer counts its weights once, as the rank that runs it
// loads them once: c and its second call on one device need the memory of c alone (their outputs
// are the same size), and a stage of the second call alone needs the weights again.
TEST(Planner, SharedLayerWeighsOnceInAStageHoldingBothCalls) {
  const char* config = R"({"class_name": "Functional", "config": {"name": "shared", "layers": [
   {"class_name": "InputLayer", "name": "in", "config": {"name": "in", "batch_input_shape": [null, 12, 12, 6]}, "inbound_nodes": []},
   {"class_name": "Conv2D", "name": "c", "config": {"name": "c", "filters": 6, "kernel_size": [3, 3], "padding": "same", "activation": "relu"},
    "inbound_nodes": [[["in", 0, 0, {}]], [["c", 0, 0, {}]]]},
   {"class_name": "Add", "name": "add", "config": {"name": "add"}, "inbound_nodes": [[["c", 0, 0, {}], ["c", 1, 0, {}]]]},
   {"class_name": "GlobalAveragePooling2D", "name": "gap", "config": {"name": "gap"}, "inbound_nodes": [[["add", 0, 0, {}]]]}],
   "input_layers": [["in", 0, 0]], "output_layers": [["gap", 0, 0]]}})";
  const model::Model m = structure_of(config);
  const int c = m.find("c"), call = m.find("c_call1");
  const cluster::Cluster cl = small_cluster(1, false, 100);
  const auto memory = [&](int first, int last) {
    return plan::stage_cost(m, cl, "test", first, last, 0, 1, StageMode::single, 0).memory_bytes;
  };
  const double weights = (3 * 3 * 6 * 6 + 6) * sizeof(float);
  EXPECT_EQ(memory(c, call), memory(c, c));
  EXPECT_EQ(memory(call, call), memory(c, c));
  EXPECT_EQ(memory(c, c), weights + 2.0 * 12 * 12 * 6 * sizeof(float));
  // Split by output alike, the second call takes the first's part (plan::shared_split_part).
  const cluster::Cluster two = small_cluster(2, false, 100);
  const auto split_memory = [&](int first, int last) {
    return plan::stage_cost(m, two, "test", first, last, 0, 2, StageMode::split_output, 0).memory_bytes;
  };
  const auto roles = plan::split_roles(m, c, call, StageMode::split_output);
  EXPECT_EQ(plan::shared_split_part(m, c, call, roles, call), c);
  EXPECT_EQ(split_memory(c, call), split_memory(c, c));
}

// ---------------------------------------------------------------------------------------------
// Energy per frame: the prediction's formula, and the planner's energy objective.

#include "energy/energy.h"

namespace {

cluster::Cluster powered_cluster(int devices) {
  cluster::Cluster c = small_cluster(devices, true, 50);
  c.classes["dev"].power = {1.5, 4.0, 2.0, 1.0};  // idle and busy watts, radio J/MB sent and received
  return c;
}

}  // namespace

TEST(Energy, PredictionIsBusyAndIdleWattsOverThePeriodPlusTheRadio) {
  model::Model m = structure_of(kChainConfig);
  const cluster::Cluster c = powered_cluster(3);
  const Plan p = plan::make_strategy_plan("pipeline", m, 3);
  const energy::FrameEnergy e = energy::predicted_energy(m, c, "test", p, 40);
  // By hand from the cost model's own figures: each rank busy for its compute per frame, idle
  // for the rest of the period, and its radio for the traffic model's bytes.
  const nlohmann::json prediction = plan::prediction_json(m, c, "test", p);
  const double period = prediction["period_s"];
  const auto traffic = partition::frame_traffic(m, plan::validate_plan(p, m, 3), 1000, 40);
  double total = 0;
  for (int r = 0; r < 3; ++r) {
    double sent = 0, received = 0;
    for (int q = 0; q < 3; ++q) sent += traffic.at(r, q), received += traffic.at(q, r);
    const double busy = prediction["rank_busy_s"][r];
    const double expected = 4.0 * busy + 1.5 * (period - busy) + 2.0 * sent / 1e6 + 1.0 * received / 1e6;
    EXPECT_NEAR(e.rank_j[r], expected, 1e-12 * expected) << "rank " << r;
    EXPECT_GT(busy, 0.0);
    total += expected;
  }
  EXPECT_NEAR(e.total_j, total, 1e-12 * total);
}

TEST(Energy, ObjectiveTakesTheLeastEnergyAboveTheMinimumRate) {
  model::Model m = structure_of(kChainConfig);
  const cluster::Cluster c = powered_cluster(4);
  plan::PlannerOptions o;
  o.model_key = "test";
  const Plan least = energy::plan_for_energy(m, c, o, 0, 40);
  const auto& candidates = least.prediction["energy_candidates"];
  ASSERT_EQ(candidates.size(), 8u);  // throughput and latency plans on 1..4 devices
  double lowest = 1e300, fastest = 0;
  for (const auto& k : candidates) {
    lowest = std::min(lowest, k["energy_j_per_frame"].get<double>());
    fastest = std::max(fastest, k["throughput_fps"].get<double>());
  }
  EXPECT_EQ(least.prediction["objective"], "energy");
  EXPECT_DOUBLE_EQ(least.prediction["energy_j_per_frame"].get<double>(), lowest);
  EXPECT_EQ(least.ranks, 1);  // one device: no radio, no idle time
  // A rate one device cannot reach: the cheapest plan that reaches it.
  const double one_device = plan::make_planned_plan(m, cluster::first_devices(c, 1), o).prediction["throughput_fps"];
  const Plan fast = energy::plan_for_energy(m, c, o, 1.5 * one_device, 40);
  EXPECT_GE(fast.prediction["throughput_fps"].get<double>(), 1.5 * one_device);
  for (const auto& k : candidates) {
    if (k["throughput_fps"].get<double>() < 1.5 * one_device) continue;
    EXPECT_LE(fast.prediction["energy_j_per_frame"].get<double>(), k["energy_j_per_frame"].get<double>() + 1e-12);
  }
  EXPECT_THAT(test::error_of([&] { energy::plan_for_energy(m, c, o, 10 * fastest, 40); }),
              HasSubstr("no plan reaches --min-fps"));
  EXPECT_THAT(test::error_of([&] { energy::plan_for_energy(m, small_cluster(2, true, 50), o, 0, 40); }),
              HasSubstr("needs every device's power"));
}

TEST(Energy, ClusterFilesCarryPowerAndRefuseNonsense) {
  const nlohmann::json base = {{"network", {{"bandwidth_mbps", 62.24}}},
                               {"device_classes",
                                {{"pi", {{"memory_mb", 1024},
                                         {"profile", {{"device", "pi"}, {"macs_per_second", {{"default", 1e9}}}}},
                                         {"power", {{"idle_w", 1.4}, {"busy_w", 3.7}, {"radio_j_per_mb_sent", 2.27},
                                                    {"radio_j_per_mb_received", 1.1}}}}}}},
                               {"hosts", {{{"name", "a"}, {"class", "pi"}, {"slots", 2}}, {{"name", "b"}, {"class", "pi"}}}}};
  const cluster::Cluster c = cluster::cluster_from_json(base, "c.json", ".");
  EXPECT_TRUE(c.power_known());
  EXPECT_DOUBLE_EQ(c.device_of(2).power.radio_j_per_mb_sent, 2.27);
  // 2 s busy and 1 s idle, 1 MB out and 2 MB in.
  EXPECT_DOUBLE_EQ(c.device_of(0).power.joules(2, 3, 1e6, 2e6), 3.7 * 2 + 1.4 + 2.27 + 2 * 1.1);
  // Round trip, and the first devices of it.
  EXPECT_DOUBLE_EQ(cluster::cluster_from_json(cluster::cluster_to_json(c), "x", ".").device_of(1).power.busy_w, 3.7);
  EXPECT_EQ(cluster::first_devices(c, 1).ranks(), 1);
  EXPECT_EQ(cluster::first_devices(c, 2).hosts.size(), 1u);
  EXPECT_EQ(cluster::first_devices(c, 3).ranks(), 3);
  nlohmann::json bad = base;
  bad["device_classes"]["pi"]["power"]["idle_w"] = -1;
  EXPECT_THAT(test::error_of([&] { cluster::cluster_from_json(bad, "c.json", "."); }), HasSubstr("power figures"));
  bad = base;
  bad["device_classes"]["pi"]["power"]["busy_w"] = 1.0;
  EXPECT_THAT(test::error_of([&] { cluster::cluster_from_json(bad, "c.json", "."); }), HasSubstr("busy_w 1 is below"));
}

TEST(Energy, AWiredNetworksPerByteEnergyReplacesTheRadios) {
  // A network that gives its own per-byte energy (a wired one: 0) replaces the devices' radio
  // figures, in the cluster file, its round trip, and the prediction; one that does not keeps them.
  model::Model m = structure_of(kChainConfig);
  cluster::Cluster wifi = powered_cluster(3);
  cluster::Cluster wired = wifi;
  wired.network.energy_j_per_mb_sent = 0.0;
  wired.network.energy_j_per_mb_received = 0.25;
  EXPECT_DOUBLE_EQ(wifi.power_of(1).radio_j_per_mb_sent, 2.0);
  EXPECT_DOUBLE_EQ(wired.power_of(1).radio_j_per_mb_sent, 0.0);
  EXPECT_DOUBLE_EQ(wired.power_of(1).radio_j_per_mb_received, 0.25);
  const cluster::Cluster back = cluster::cluster_from_json(cluster::cluster_to_json(wired), "x", ".");
  EXPECT_EQ(back.network.energy_j_per_mb_sent, 0.0);
  EXPECT_EQ(back.network.energy_j_per_mb_received, 0.25);
  EXPECT_FALSE(cluster::cluster_from_json(cluster::cluster_to_json(wifi), "x", ".").network.energy_j_per_mb_sent);

  const Plan p = plan::make_strategy_plan("pipeline", m, 3);
  const auto traffic = partition::frame_traffic(m, plan::validate_plan(p, m, 3), 1000, 40);
  const energy::FrameEnergy on_wifi = energy::predicted_energy(m, wifi, "test", p, 40);
  const energy::FrameEnergy on_wire = energy::predicted_energy(m, wired, "test", p, 40);
  for (int r = 0; r < 3; ++r) {
    double sent = 0, received = 0;
    for (int q = 0; q < 3; ++q) sent += traffic.at(r, q), received += traffic.at(q, r);
    EXPECT_GT(sent + received, 0.0);
    const double radio = 2.0 * sent / 1e6 + 1.0 * received / 1e6, wire = 0.25 * received / 1e6;
    EXPECT_NEAR(on_wifi.rank_j[r] - on_wire.rank_j[r], radio - wire, 1e-9 * on_wifi.rank_j[r]) << "rank " << r;
  }

  // With nothing spent per byte, replicas cost what one device costs per frame: of plans of
  // equal energy the objective takes the fastest.
  wired.network.energy_j_per_mb_received = 0.0;
  plan::PlannerOptions o;
  o.model_key = "test";
  const Plan least = energy::plan_for_energy(m, wired, o, 0, 40);
  const double least_j = least.prediction["energy_j_per_frame"];
  for (const auto& k : least.prediction["energy_candidates"]) {
    if (std::fabs(k["energy_j_per_frame"].get<double>() - least_j) <= 1e-9 * least_j) {
      EXPECT_GE(least.prediction["throughput_fps"].get<double>(), k["throughput_fps"].get<double>()) << k.dump();
    }
  }
  EXPECT_GT(least.ranks, 1);

  nlohmann::json file = cluster::cluster_to_json(wired);
  file["network"]["energy_j_per_mb_sent"] = -1;
  EXPECT_THAT(test::error_of([&] { cluster::cluster_from_json(file, "c.json", "."); }),
              HasSubstr("c.json: network: energy_j_per_mb_sent must be zero or positive joules per megabyte, not -1"));
}
