// The `chorus` binary end to end: info, init-weights, run and bench on LeNet-5, their output
// text, files and exit codes, and the messages users see for common mistakes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
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
  // A 3-D layer's output one image deep keeps its depth (C3D's pool5).
  r = test::run_chorus("info " + test::source_path("models/c3d.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, testing::ContainsRegex("pool5 +MaxPooling3D +\\(1, 4, 4, 512\\)"));
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

// A directory given as the model is said to be one; a TensorFlow SavedModel gets how to convert it.
TEST_F(Cli, RunOnADirectorySaysSo) {
  const std::string folder = dir_->path("a_folder");
  std::filesystem::create_directories(folder);
  for (const char* command : {"run", "info"}) {
    auto r = test::run_chorus(std::string(command) + " " + shell_quoted(folder) +
                              (std::string(command) == "run" ? " --synthetic 1" : ""));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_THAT(r.output, HasSubstr(folder + ": is a directory, not a model file (.h5, .keras or .onnx)"));
  }
  std::ofstream(folder + "/saved_model.pb") << "";
  auto r = test::run_chorus("info " + shell_quoted(folder));
  EXPECT_THAT(r.output, HasSubstr(folder + ": is a TensorFlow SavedModel directory, which Chorus does not read"));
}

// NaN weights run without an error and give NaN outputs: the load says where they are.
TEST_F(Cli, NanWeightsAreNamedWhenLoaded) {
  if (test::run_command("/usr/bin/python3 -c 'import h5py, numpy'").exit_code != 0)
    GTEST_SKIP() << "python3-h5py or python3-numpy is not installed";
  const std::string copy = dir_->path("nan_weights.h5");
  std::filesystem::copy_file(model_, copy, std::filesystem::copy_options::overwrite_existing);
  const auto poke = test::run_command(
      "/usr/bin/python3 -c \"import h5py, numpy as np\n"
      "f = h5py.File('" +
      copy +
      "', 'r+')\n"
      "def nan(name, d):\n"
      "    if isinstance(d, h5py.Dataset) and name.endswith('kernel:0') and 'fc1' in name:\n"
      "        v = d[...]; v.flat[:3] = np.nan; d[...] = v\n"
      "f.visititems(nan)\n\"");
  ASSERT_EQ(poke.exit_code, 0) << poke.output;
  auto r = test::run_chorus("run " + shell_quoted(copy) + " --synthetic 1 --quiet");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("nan_weights.h5: layer 'fc1': weight 'kernel' holds 3 NaN or infinite value(s) of"));
}

// Writes that fail (a full disk, here a file-size limit) say so and leave what was there:
// init-weights crashed at exit and truncated the old file, profile said "wrote".
TEST_F(Cli, FailedWritesSaySoAndLeaveTheOldFile) {
  const std::string old_file = dir_->path("keep.h5"), chorus = CHORUS_BINARY;
  std::filesystem::copy_file(model_, old_file, std::filesystem::copy_options::overwrite_existing);
  const auto before = std::filesystem::file_size(old_file);
  // 64 KB at most per file: a MobileNetV2's weights (14 MB) cannot be written.
  auto r = test::run_command("sh -c \"trap '' XFSZ; ulimit -f 128; " + chorus + " init-weights " +
                             test::source_path("models/mobilenetv2.json") + " -o " + old_file + "\"");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("keep.h5: not written: "));
  EXPECT_EQ(std::filesystem::file_size(old_file), before);
  EXPECT_FALSE(std::filesystem::exists(dir_->path("keep.partial.h5")));
  r = test::run_chorus("profile " + shell_quoted(model_) + " --frames 1 -o /dev/full");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("/dev/full: cannot write the device profile (No space left on device)"));
  // One profile is one device.
  r = test::run_chorus("profile " + shell_quoted(model_) + " --frames 1 -o " + dir_->path("p.json") + " --merge " +
                       test::source_path("profiles/pi3-paper.json"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("is the profile of 'pi3'; this machine is measured as 'host'"));
  // A negative latency was taken as "not given".
  std::ofstream(dir_->path("hosts.txt")) << "pi1\npi2\n";
  r = test::run_chorus("cluster " + dir_->path("hosts.txt") + " --class pi3 --bandwidth-mbps 10 --latency-ms -1");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("-1 is below 0"));
}

// supervise names what is wrong with its own options, and reads --output=FILE as run does.
TEST_F(Cli, SuperviseOptionsAreChecked) {
  const std::string cluster = dir_->path("four.json");
  std::ofstream(cluster) << R"({"name": "four", "network": {"bandwidth_mbps": 1000, "latency_ms": 0.1, "shared": false},
    "device_classes": {"dev": {"memory_mb": 512, "profile": {"macs_per_second": {"default": 1e9}}}},
    "hosts": [{"name": "localhost", "class": "dev", "slots": 2}]})";
  const std::string job = " -- run " + shell_quoted(model_) + " --synthetic 20 --output=" + dir_->path("s.npy");
  const std::string supervise = "supervise --cluster " + cluster + " --emulate ";
  auto r = test::run_chorus(supervise + "--probe-every nan" + job);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("--probe-every: a finite number, not nan"));
  r = test::run_chorus(supervise + "--work-dir " + shell_quoted(model_) + job);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--work-dir " + model_ + ": cannot make this folder"));
  r = test::run_chorus(supervise + "--mpirun ''" + job);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--mpirun is empty"));
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  r = test::run_chorus(supervise + "--work-dir " + dir_->path("work") + job);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("done after 0 failure(s)"));
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

// A run writes over none of the files it reads: a mistyped --output or --report would destroy
// the model or the input. Refused before any work, and the model still runs afterwards.
TEST_F(Cli, RunRefusesToWriteOverItsOwnFiles) {
  const std::string input = dir_->path("keep_input.npy");
  const std::vector<float> values(28 * 28, 0.5f);
  io::write_npy(input, {1, 28, 28, 1}, values.data());
  auto r = test::run_chorus("run " + shell_quoted(model_) + " --synthetic 1 --output " + shell_quoted(model_));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("is the model: the run would write over it"));
  r = test::run_chorus("run " + shell_quoted(model_) + " --synthetic 1 --report " + shell_quoted(model_));
  EXPECT_THAT(r.output, HasSubstr("--report " + model_ + " is the model"));
  r = test::run_chorus("run " + shell_quoted(model_) + " --input " + shell_quoted(input) + " --output " +
                       shell_quoted(input));
  EXPECT_THAT(r.output, HasSubstr("is --input: the run would write over it"));
  const std::string both = dir_->path("both.json");
  r = test::run_chorus("run " + shell_quoted(model_) + " --synthetic 1 --report " + shell_quoted(both) + " --results " +
                       shell_quoted(both));
  EXPECT_THAT(r.output, HasSubstr("--report and --results name the same file"));
  // A model of several outputs writes one file per output, out.<name>.npy: those are checked.
  const std::string scores = dir_->path("out.scores.npy");
  r = test::run_chorus("run " + shell_quoted(test::source_path("tests/data/onnx/multi_io.onnx")) + " --input image=" +
                       shell_quoted(scores) + " --input vector=v.npy --output " + shell_quoted(dir_->path("out.npy")));
  EXPECT_THAT(r.output, HasSubstr("--output " + scores + " is --input: the run would write over it"));
  r = test::run_chorus("run " + shell_quoted(model_) + " --input " + shell_quoted(input) + " --top 1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("frame 0:"));
}

// A report that cannot be written is found before the run, with the reason, not after it.
TEST_F(Cli, UnwritableReportIsRefusedBeforeTheRun) {
  auto r = test::run_chorus("run " + shell_quoted(model_) + " --synthetic 2 --report " +
                            shell_quoted(dir_->path("no_such_folder/r.json")));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("no folder"));
  EXPECT_THAT(r.output, testing::Not(HasSubstr("throughput"))) << "the run went ahead";
  r = test::run_chorus("run " + shell_quoted(model_) + " --synthetic 2 --report " + shell_quoted(dir_->path("")));
  EXPECT_THAT(r.output, HasSubstr("is a directory"));
}

// --mean and --std take one value or one per channel (LeNet-5 has one), no zero deviation, and
// none of it for synthetic frames: each would otherwise change every output without a word.
TEST_F(Cli, NormalisationMustFitTheInput) {
  const std::string input = dir_->path("norm_input.npy");
  const std::vector<float> values(28 * 28, 0.5f);
  io::write_npy(input, {1, 28, 28, 1}, values.data());
  const std::string run = "run " + shell_quoted(model_) + " --input " + shell_quoted(input);
  auto r = test::run_chorus(run + " --mean 0.1 0.2");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--mean has 2 values, but input"));
  EXPECT_THAT(r.output, HasSubstr("has 1 channel(s)"));
  r = test::run_chorus(run + " --std 0");
  EXPECT_THAT(r.output, HasSubstr("--std 0: every standard deviation must be a finite non-zero number"));
  r = test::run_chorus("run " + shell_quoted(model_) + " --synthetic 2 --mean 0.5");
  EXPECT_THAT(r.output, HasSubstr("--synthetic frames are noise"));
  r = test::run_chorus(run + " --mean 0.5 --std 0.25 --top 1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST_F(Cli, NoFramesIsAnError) {
  auto r = test::run_chorus("run " + shell_quoted(model_) + " --synthetic 0");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--synthetic 0: give at least 1 frame"));
  const std::string empty = dir_->path("no_frames.npy");
  io::write_npy(empty, {0, 28, 28, 1}, nullptr);
  const std::string report = dir_->path("no_frames.json");
  r = test::run_chorus("run " + shell_quoted(model_) + " --input " + shell_quoted(empty) + " --report " +
                       shell_quoted(report));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("no_frames.npy (0 frames): no frames to run"));
}

// With --results -, standard output is the JSON lines alone (a pipe into jq); the report goes
// to standard error.
TEST_F(Cli, ResultsOnStandardOutputAreJsonLinesAlone) {
  auto r = test::run_command("(" + std::string(CHORUS_BINARY) + " run " + shell_quoted(model_) +
                             " --synthetic 3 --top 2 --results - 2>/dev/null)");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::istringstream lines(r.output);
  int frames = 0;
  for (std::string line; std::getline(lines, line);) {
    ASSERT_NO_THROW(json::parse(line)) << "not a JSON line: " << line;
    EXPECT_EQ(json::parse(line)["frame"].get<int>(), frames++);
  }
  EXPECT_EQ(frames, 3);
  // --top K classes per line (5 when not given); --top 0 none, the frame and its latency only.
  for (const auto& [top, classes] : {std::pair{"", 5u}, {" --top 1", 1u}, {" --top 0", 0u}}) {
    r = test::run_command("(" + std::string(CHORUS_BINARY) + " run " + shell_quoted(model_) + " --synthetic 1" + top +
                          " --results - 2>/dev/null)");
    ASSERT_EQ(r.exit_code, 0) << top << ": " << r.output;
    EXPECT_EQ(json::parse(r.output)["top"].size(), classes) << top;
  }
  r = test::run_chorus("run " + shell_quoted(model_) + " --synthetic 1 --top -1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("--top -1 is below 0"));
}

// An option given 0 where 0 is also its unset value ("the plan's") is refused, not taken as unset.
TEST_F(Cli, MaxInFlightZeroIsRefused) {
  for (const char* value : {"0", "-1"}) {
    auto r = test::run_chorus("run " + shell_quoted(model_) + " --synthetic 1 --max-in-flight " + value);
    EXPECT_EQ(r.exit_code, 1) << value;
    EXPECT_THAT(r.output, HasSubstr(std::string("--max-in-flight ") + value + " is below 1"));
  }
}

// A plan of fewer ranks than the cluster's slots is predicted on its first devices, as chorus
// run --emulate runs it; more ranks than slots, or a planner asked for a count, are refused.
TEST_F(Cli, PlanOfFewerRanksThanTheClusterIsPredictedOnItsFirstDevices) {
  const std::string cluster = test::source_path("hostfiles/pi4-gigabit-4.json"), out = dir_->path("two.json");
  auto r = test::run_chorus("plan " + shell_quoted(model_) + " --strategy pipeline --ranks 2 --cluster " + cluster +
                            " --output " + shell_quoted(out));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("the plan's 2 rank(s) are predicted on the first 2"));
  EXPECT_THAT(r.output, HasSubstr("pipeline on pi4-gigabit-4 (first 2): predicted"));
  r = test::run_chorus("plan " + shell_quoted(model_) + " --from " + shell_quoted(out) + " --cluster " + cluster +
                       " --output " + shell_quoted(dir_->path("again.json")));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = test::run_chorus("plan " + shell_quoted(model_) + " --strategy pipeline --ranks 6 --cluster " + cluster);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("--ranks 6 asks for 6 rank(s); the cluster has 4 device slot(s)"));
  r = test::run_chorus("plan " + shell_quoted(model_) + " --ranks 2 --cluster " + cluster);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("the planner uses the devices of the cluster file"));
}

TEST_F(Cli, PlanRefusesPlannerOptionsWithoutACluster) {
  for (const char* option : {"--objective latency", "--min-fps 3", "--max-group 2"}) {
    auto r = test::run_chorus("plan " + shell_quoted(model_) + " --ranks 2 " + option);
    EXPECT_EQ(r.exit_code, 1) << option << ": " << r.output;
    EXPECT_THAT(r.output, HasSubstr("goes with --cluster FILE")) << option;
  }
  // With a cluster but a plan given (--strategy, --from), the planner's options would be ignored.
  const std::string cluster = test::source_path("hostfiles/pi3-wifi-8.json");
  for (const char* option : {"--objective energy", "--min-fps 3", "--max-group 2"}) {
    auto r =
        test::run_chorus("plan " + shell_quoted(model_) + " --cluster " + cluster + " --strategy pipeline " + option);
    EXPECT_EQ(r.exit_code, 1) << option << ": " << r.output;
    EXPECT_THAT(r.output, HasSubstr("is for the planner; --strategy gives the plan")) << option;
  }
  for (const char* option : {"--min-fps -1", "--min-fps nan"}) {
    auto r =
        test::run_chorus("plan " + shell_quoted(model_) + " --cluster " + cluster + " --objective energy " + option);
    EXPECT_NE(r.exit_code, 0) << option;
    EXPECT_THAT(r.output, HasSubstr("--min-fps:")) << option;
  }
  // A directory named as the cluster file.
  auto r = test::run_chorus("plan " + shell_quoted(model_) + " --cluster " + shell_quoted(dir_->path("")));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("is a directory, not a cluster file"));
  r = test::run_chorus("init-weights " + shell_quoted(dir_->path("")) + " -o " + shell_quoted(dir_->path("w.h5")));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("is a directory, not an architecture file"));
  r = test::run_chorus("plan " + shell_quoted(model_) + " --ranks 0");
  EXPECT_THAT(r.output, HasSubstr("--ranks 0: give at least 1"));
  r = test::run_chorus("plan " + shell_quoted(model_) + " --strategy replicate --ranks 100000000");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("at most 4096"));
}

// Options that would be dropped or read wrongly without a word are named instead.
TEST_F(Cli, OptionsThatWouldBeDroppedOrMisreadAreNamed) {
  const std::string labels = dir_->path("two_labels.txt");
  std::ofstream(labels) << "zero\none\n";
  auto r = test::run_chorus("run " + shell_quoted(model_) + " --synthetic 1 --labels " + shell_quoted(labels));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--labels names the classes that --top or --results print"));
  r = test::run_chorus("run " + shell_quoted(model_) + " --synthetic 1 --top 2 --labels " + shell_quoted(labels));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("two_labels.txt has 2 labels; the model's output has 10 classes"));
  r = test::run_chorus("run " + shell_quoted(model_) + " --synthetic 1 --seed -1");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("a seed is a whole number of 0 or more"));
  r = test::run_chorus("init-weights " + shell_quoted(lenet_json()) + " -o " + shell_quoted(dir_->path("w.h5")) +
                       " --seed -5");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("a seed is a whole number of 0 or more"));
  r = test::run_chorus("init-weights " + shell_quoted(lenet_json()) + " -o " + shell_quoted(dir_->path("w.h5")) +
                       " --seed 99999999999999999999");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("a seed is at most 18446744073709551615"));
  r = test::run_chorus("init-weights " + shell_quoted(lenet_json()) + " -o " + shell_quoted(dir_->path("w.onnx")));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("write a Keras .h5 (or .hdf5) file or a .keras archive"));
  // A cluster file's mistake names the host, in words rather than the JSON library's codes.
  const std::string cluster = dir_->path("nameless.json");
  std::ofstream(cluster) << R"({"network": {"bandwidth_mbps": 100}, "device_classes": {"d": {"memory_mb": 512,
      "profile": {"device": "d", "macs_per_second": {"default": 1e9}}}}, "hosts": [{"class": "d"}]})";
  r = test::run_chorus("plan " + shell_quoted(model_) + " --cluster " + shell_quoted(cluster));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("nameless.json: malformed cluster file: hosts[0]: key 'name' not found"));
  EXPECT_THAT(r.output, testing::Not(HasSubstr("json.exception")));
  // A Keras file named .onnx is read by its content, as one named .h5 is.
  const std::string misnamed = dir_->path("keras_named.onnx");
  std::filesystem::copy_file(model_, misnamed, std::filesystem::copy_options::overwrite_existing);
  r = test::run_chorus("run " + shell_quoted(misnamed) + " --synthetic 1 --top 1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("frame 0:"));
  // Weights that do not fit the architecture name the file once, not twice.
  r = test::run_chorus("run " + shell_quoted(model_) + " --arch " +
                       shell_quoted(test::source_path("models/mobilenetv2.json")) + " --synthetic 1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(count_of(r.output, "lenet_seed3.h5"), 1u) << r.output;
  // --output NAME=FILE, as --input takes, is refused: it named a file "mask=m.scores.npy".
  r = test::run_chorus("run " + shell_quoted(test::source_path("tests/data/onnx/multi_io.onnx")) +
                       " --input image=" + shell_quoted(test::source_path("tests/data/onnx/multi_io.image.npy")) +
                       " --input vector=" + shell_quoted(test::source_path("tests/data/onnx/multi_io.vector.npy")) +
                       " --output mask=" + shell_quoted(dir_->path("m.npy")));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output,
              HasSubstr(": --output takes one file, not NAME=FILE; a model of several outputs writes one file "
                        "per output, FILE.NAME.npy"));
  // One --scale for a model of an image and a vector reaches the vector too: said.
  r = test::run_chorus("run " + shell_quoted(test::source_path("tests/data/onnx/multi_io.onnx")) +
                       " --input image=" + shell_quoted(test::source_path("tests/data/onnx/multi_io.image.npy")) +
                       " --input vector=" + shell_quoted(test::source_path("tests/data/onnx/multi_io.vector.npy")) +
                       " --scale 0.5");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output,
              HasSubstr("--scale, --mean and --std apply to every input of the model, 'vector' (not an image)"));
  // An architecture file given --arch as well is refused, not described without it.
  r = test::run_chorus("info " + shell_quoted(lenet_json()) + " --arch " +
                       shell_quoted(test::source_path("models/mobilenetv2.json")));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("is an architecture file already; --arch names the architecture of a weights-only"));
}

}  // namespace
}  // namespace chorus
