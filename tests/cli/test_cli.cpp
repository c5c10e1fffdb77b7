// The `chorus` binary end to end: info, init-weights, run and bench on LeNet-5, their output
// text, files and exit codes, and the messages users see for common mistakes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/data/npy.h"
#include "reference/test_util.h"

namespace chorus {
namespace {

using nlohmann::json;
using testing::HasSubstr;

std::string lenet_json() { return test::source_path("models/lenet5.json"); }

// Quotes a path for the shell command line run_chorus builds.
std::string shell_quoted(const std::string& s) { return "'" + s + "'"; }

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + needle.size())) ++n;
  return n;
}

// `chorus init-weights` for LeNet-5 with this seed.
test::CommandResult init_weights(int seed, const std::string& out) {
  return test::run_chorus("init-weights " + shell_quoted(lenet_json()) + " --seed " + std::to_string(seed) + " -o " +
                          shell_quoted(out));
}

// Parses a command's output as JSON; a parse failure fails the test with the output shown.
json parse_output(const test::CommandResult& r) {
  try {
    return json::parse(r.output);
  } catch (const json::exception& e) {
    ADD_FAILURE() << "output is not JSON (" << e.what() << "):\n" << r.output;
    return json();
  }
}

// One LeNet-5 weights file (seed 3) shared by the suite, since writing it is the slow part.
class Cli : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::make_unique<test::TempDir>();
    model_ = dir_->path("lenet_seed3.h5");
    init_result_ = init_weights(3, model_);
  }
  static void TearDownTestSuite() { dir_.reset(); }

  void SetUp() override {
    ASSERT_EQ(init_result_.exit_code, 0) << init_result_.output;
  }

  static std::unique_ptr<test::TempDir> dir_;
  static std::string model_;
  static test::CommandResult init_result_;
};

std::unique_ptr<test::TempDir> Cli::dir_;
std::string Cli::model_;
test::CommandResult Cli::init_result_;

TEST_F(Cli, InfoPrintsLayerTable) {
  auto r = test::run_chorus("info " + shell_quoted(lenet_json()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("conv1"));
  EXPECT_THAT(r.output, HasSubstr("predictions"));
  EXPECT_THAT(r.output, HasSubstr("total"));
  EXPECT_THAT(r.output, HasSubstr("(28, 28, 1)"));
  EXPECT_THAT(r.output, HasSubstr("architecture only"));
}

TEST_F(Cli, InfoJsonHasLayersAndTotals) {
  auto r = test::run_chorus("info --json " + shell_quoted(lenet_json()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json out = parse_output(r);
  ASSERT_TRUE(out.is_object());
  ASSERT_TRUE(out.contains("layers"));
  ASSERT_TRUE(out.contains("totals"));
  ASSERT_TRUE(out["layers"].is_array());
  ASSERT_FALSE(out["layers"].empty());
  EXPECT_EQ(out["layers"].front()["name"], "conv1");
  EXPECT_EQ(out["layers"].back()["name"], "predictions");
  EXPECT_EQ(out["layers"].back()["output_shape"], json({1, 1, 10}));
  EXPECT_EQ(out["totals"]["layers"], out["layers"].size());
  EXPECT_GT(out["totals"]["params"].get<double>(), 0);
  EXPECT_GT(out["totals"]["macs"].get<double>(), 0);
}

TEST_F(Cli, InfoOfWeightsFileSaysNothingIsMissing) {
  auto r = test::run_chorus("info " + shell_quoted(model_));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("predictions"));
  EXPECT_THAT(r.output, testing::Not(HasSubstr("architecture only")));
}

TEST_F(Cli, RunWritesSoftmaxOutputs) {
  const std::string out = dir_->path("run_out.npy");
  auto r = test::run_chorus("run " + shell_quoted(model_) + " --synthetic 4 --output " + shell_quoted(out));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("ms/frame"));
  const io::NpyArray a = io::read_npy(out);
  ASSERT_EQ(a.shape, (std::vector<std::int64_t>{4, 10}));
  for (int n = 0; n < 4; ++n) {
    double sum = 0;
    for (int k = 0; k < 10; ++k) {
      const float p = a.data[n * 10 + k];
      EXPECT_GE(p, 0.0f);
      EXPECT_LE(p, 1.0f);
      sum += p;
    }
    EXPECT_NEAR(sum, 1.0, 1e-4) << "frame " << n;
  }
}

TEST_F(Cli, SameSeedGivesIdenticalOutputs) {
  const std::string again = dir_->path("lenet_seed3_again.h5");
  const std::string other = dir_->path("lenet_seed4.h5");
  ASSERT_EQ(init_weights(3, again).exit_code, 0);
  ASSERT_EQ(init_weights(4, other).exit_code, 0);
  auto outputs_of = [&](const std::string& model, const std::string& name) {
    const std::string out = dir_->path(name);
    auto r = test::run_chorus("run " + shell_quoted(model) + " --synthetic 3 --output " + shell_quoted(out));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return io::read_npy(out);
  };
  const io::NpyArray first = outputs_of(model_, "first.npy");
  const io::NpyArray second = outputs_of(again, "second.npy");
  const io::NpyArray seed4 = outputs_of(other, "seed4.npy");
  EXPECT_EQ(first.shape, second.shape);
  EXPECT_EQ(first.data, second.data);
  // A different seed must change the weights, or the comparison above proves nothing.
  EXPECT_NE(first.data, seed4.data);
}

TEST_F(Cli, TopWithLabelsPrintsLabelNames) {
  const std::string labels = dir_->path("labels.txt");
  {
    std::ofstream out(labels);
    for (int k = 0; k < 10; ++k) out << "digit_label_" << k << "\n";
  }
  auto r = test::run_chorus("run " + shell_quoted(model_) + " --synthetic 2 --top 3 --labels " + shell_quoted(labels));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("frame 0:"));
  EXPECT_THAT(r.output, HasSubstr("frame 1:"));
  // Three labels per frame, two frames.
  EXPECT_EQ(count_of(r.output, "digit_label_"), 6u) << r.output;
}

TEST_F(Cli, RunOnMissingFileFails) {
  const std::string missing = dir_->path("no_such_model.h5");
  auto r = test::run_chorus("run " + shell_quoted(missing) + " --synthetic 1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("chorus: error:"));
  EXPECT_THAT(r.output, HasSubstr("no_such_model.h5"));
}

TEST_F(Cli, RunOnTextFileSaysNotHdf5) {
  const std::string text = dir_->path("readme.h5");
  {
    std::ofstream out(text);
    out << "not a model\n";
  }
  auto r = test::run_chorus("run " + shell_quoted(text) + " --synthetic 1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("chorus: error:"));
  EXPECT_THAT(r.output, HasSubstr("not an HDF5 file"));
}

TEST_F(Cli, RunOnArchitectureAsksForInitWeights) {
  auto r = test::run_chorus("run " + shell_quoted(lenet_json()) + " --synthetic 1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("chorus: error:"));
  EXPECT_THAT(r.output, HasSubstr("init-weights"));
}

TEST_F(Cli, RunWithWrongInputShapeNamesExpectedShape) {
  const std::string input = dir_->path("wrong_shape.npy");
  const std::vector<float> values(2 * 32 * 32 * 1, 0.5f);
  io::write_npy(input, {2, 32, 32, 1}, values.data());
  auto r = test::run_chorus("run " + shell_quoted(model_) + " --input " + shell_quoted(input));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("chorus: error:"));
  EXPECT_THAT(r.output, HasSubstr("wrong_shape.npy"));
  EXPECT_THAT(r.output, HasSubstr("(2, 32, 32, 1)"));
  EXPECT_THAT(r.output, HasSubstr("(N, 28, 28, 1)"));
}

TEST_F(Cli, RunWithRightInputShapeReadsIt) {
  const std::string input = dir_->path("right_shape.npy");
  const std::string out = dir_->path("right_out.npy");
  const std::vector<float> values = test::random_vector(3 * 28 * 28, 17, 0.0f, 1.0f);
  io::write_npy(input, {3, 28, 28, 1}, values.data());
  auto r = test::run_chorus("run " + shell_quoted(model_) + " --input " + shell_quoted(input) + " --output " +
                            shell_quoted(out));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(io::read_npy(out).shape, (std::vector<std::int64_t>{3, 10}));
}

TEST_F(Cli, BenchPrintsRateAndMemory) {
  auto r = test::run_chorus("bench " + shell_quoted(model_) + " --frames 2 --warmup 0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("ms/frame"));
  EXPECT_THAT(r.output, HasSubstr("GFLOP/s"));
  EXPECT_THAT(r.output, HasSubstr("peak RSS"));
}

TEST_F(Cli, BenchJsonHasMedian) {
  auto r = test::run_chorus("bench --json " + shell_quoted(model_) + " --frames 2 --warmup 0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json out = parse_output(r);
  ASSERT_TRUE(out.is_object());
  ASSERT_TRUE(out.contains("ms_per_frame_median"));
  EXPECT_GT(out["ms_per_frame_median"].get<double>(), 0.0);
  EXPECT_EQ(out["frames"], 2);
  EXPECT_GT(out["peak_rss_bytes"].get<double>(), 0.0);
}

// More threads than the host has CPUs are capped with a warning (they would only take turns:
// --threads 100000 once started tens of thousands); 0 means one per CPU; below 0 is an error.
TEST_F(Cli, RunCapsThreadsBeyondTheHostsCpus) {
  auto r = test::run_chorus("run " + shell_quoted(model_) + " --synthetic 2 --quiet --threads 100000");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("warning: --threads 100000 is more than the "));
  EXPECT_THAT(r.output, HasSubstr("CPU(s) of this host; using "));
}

TEST_F(Cli, RunWithZeroThreadsUsesEveryCpuQuietly) {
  auto r = test::run_chorus("run " + shell_quoted(model_) + " --synthetic 2 --quiet --threads 0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, testing::Not(HasSubstr("warning")));
}

TEST_F(Cli, NegativeThreadsAreAnError) {
  for (const char* command : {"run", "bench"}) {
    auto r = test::run_chorus(std::string(command) + " " + shell_quoted(model_) +
                              (std::string(command) == "run" ? " --synthetic 2" : "") + " --threads -2");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_THAT(r.output, HasSubstr("--threads -2: give a count of at least 1, or 0 for one per CPU")) << command;
  }
}

// The report gives each rank's page faults: the first frame's, and per frame after the warm-up.
TEST_F(Cli, RunReportHasPageFaultsPerFrame) {
  const std::string report = dir_->path("faults.json");
  auto r = test::run_chorus("run " + shell_quoted(model_) + " --synthetic 24 --report " + shell_quoted(report));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("faults/fr"));
  const json j = json::parse(std::ifstream(report));
  const json& rank = j["ranks"][0];
  EXPECT_GT(rank["first_frame_minor_faults"].get<double>(), 0);
  EXPECT_GE(rank["steady_frames"].get<int>(), 10);
  EXPECT_GE(rank["minor_faults_per_frame"].get<double>(), 0);
  EXPECT_EQ(rank["heap_allocations_per_frame"].get<double>(), -1) << "no allocation counter was preloaded";
}

}  // namespace
}  // namespace chorus
