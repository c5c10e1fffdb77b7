// Emulation must deliver what the cluster file says: a device's configured speed and a link's
// configured bandwidth, each within 10 %.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "reference/test_util.h"

using namespace chorus;
using nlohmann::json;

namespace {

json run_report(const std::string& command, const std::string& report) {
  auto r = test::run_chorus(command);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return json::parse(std::ifstream(report));
}

// Runs a model whose first layer ("act") hands a 2 MB frame (128x128x32 floats) to the rest
// ("relu6", "gap") as a plan of two stages on two ranks under mpiexec (with `mpi_options`),
// emulating `cluster`; returns the report, or an empty object when the job failed.
json run_wide_two_stages(const json& cluster, const std::string& mpi_options) {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  test::TempDir dir;
  const char* config = R"({"class_name": "Sequential", "config": {"name": "wide", "layers": [
   {"class_name": "InputLayer", "config": {"name": "in", "batch_input_shape": [null, 128, 128, 32]}},
   {"class_name": "Activation", "config": {"name": "act", "activation": "relu"}},
   {"class_name": "ReLU", "config": {"name": "relu6", "max_value": 6.0}},
   {"class_name": "GlobalAveragePooling2D", "config": {"name": "gap"}}]}})";
  test::write_random_model(config, dir.path("wide.h5"));
  std::ofstream(dir.path("cluster.json")) << cluster.dump();
  json plan = {{"ranks", 2},
               {"stages", {{{"layers", {"act", "act"}}, {"ranks", {0}}}, {{"layers", {"relu6", "gap"}}, {"ranks", {1}}}}}};
  std::ofstream(dir.path("plan.json")) << plan.dump();
  std::string cmd = "timeout -k 5 120 mpiexec --oversubscribe -np 2 " + mpi_options + " " CHORUS_BINARY " run " +
                    dir.path("wide.h5") + " --synthetic 12 --quiet --plan " + dir.path("plan.json") + " --emulate " +
                    dir.path("cluster.json") + " --report " + dir.path("r.json") + " 2>&1";
  const int status = std::system(cmd.c_str());
  EXPECT_EQ(status, 0);
  if (status != 0) return json::object();
  return json::parse(std::ifstream(dir.path("r.json")));
}

}  // namespace

TEST(Emulation, DeviceRunsAtItsProfileSpeed) {
  // LeNet-5 at 2 M multiply-adds per second: 0.42 M MACs -> about 0.21 s per frame, far slower
  // than this host, so the pacing decides.
  test::TempDir dir;
  test::write_random_model(std::string(std::istreambuf_iterator<char>(
                               *std::make_unique<std::ifstream>(test::source_path("models/lenet5.json"))), {}),
                           dir.path("lenet5.h5"));
  json cluster = {{"name", "slow"},
                  {"network", {{"bandwidth_mbps", 100.0}, {"latency_ms", 1.0}, {"shared", true}}},
                  {"device_classes",
                   {{"slow", {{"memory_mb", 512}, {"profile", {{"device", "slow"}, {"macs_per_second", {{"default", 2e6}}}}}}}}},
                  {"hosts", {{{"name", "a"}, {"class", "slow"}}}}};
  std::ofstream(dir.path("cluster.json")) << cluster.dump();
  json r = run_report("run " + dir.path("lenet5.h5") + " --synthetic 4 --quiet --emulate " + dir.path("cluster.json") +
                          " --report " + dir.path("r.json"),
                      dir.path("r.json"));
  auto info = test::run_chorus("info " + dir.path("lenet5.h5") + " --json");
  const double macs = json::parse(info.output)["totals"]["macs"].get<double>();
  const double expected = macs / 2e6;
  const double per_frame = r["ranks"][0]["compute_s"].get<double>() / 4;
  EXPECT_NEAR(per_frame, expected, 0.1 * expected) << "expected " << expected << " s per frame";
  EXPECT_NEAR(1.0 / r["throughput_fps"].get<double>(), expected, 0.1 * expected);
}

TEST(Emulation, AClusterLargerThanTheJobIsSaid) {
  // One cluster file serves jobs of 1 to N devices; the devices a job leaves out are named, not
  // dropped without a word.
  test::TempDir dir;
  test::write_random_model(std::string(std::istreambuf_iterator<char>(
                                           *std::make_unique<std::ifstream>(test::source_path("models/lenet5.json"))),
                                       {}),
                           dir.path("lenet5.h5"));
  json cluster = {
      {"name", "three"},
      {"network", {{"bandwidth_mbps", 100.0}, {"latency_ms", 1.0}, {"shared", true}}},
      {"device_classes",
       {{"fast", {{"memory_mb", 512}, {"profile", {{"device", "fast"}, {"macs_per_second", {{"default", 1e12}}}}}}}}},
      {"hosts", {{{"name", "alpha"}, {"class", "fast"}}, {{"name", "beta"}, {"class", "fast"}, {"slots", 2}}}}};
  std::ofstream(dir.path("cluster.json")) << cluster.dump();
  auto r =
      test::run_chorus("run " + dir.path("lenet5.h5") + " --synthetic 2 --quiet --emulate " + dir.path("cluster.json"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, testing::HasSubstr("has 3 device slots; this job's 1 rank(s) run as the first 1 (alpha)"));
}

TEST(Emulation, LinkDeliversItsBandwidth) {
  // Two fast devices; stage 0 (a relu) hands a 2 MB frame to stage 1 over a 40 Mbit/s link:
  // 0.42 s per frame on the wire, which bounds the pipeline. A switched network, so that the
  // results going back to the sink do not queue behind frames reserved ahead on a shared medium
  // (which is right for WiFi, but makes a short run's rate wobble).
  const double mbps = 40.0;
  json cluster = {{"name", "link"},
                  {"network", {{"bandwidth_mbps", mbps}, {"latency_ms", 1.0}, {"shared", false}}},
                  {"device_classes",
                   {{"fast", {{"memory_mb", 4096}, {"profile", {{"device", "fast"}, {"macs_per_second", {{"default", 1e15}}}}}}}}},
                  {"hosts", {{{"name", "a"}, {"class", "fast"}}, {{"name", "b"}, {"class", "fast"}}}}};
  json r = run_wide_two_stages(cluster, "");
  ASSERT_FALSE(r.empty());
  const double bytes = r["ranks"][0]["bytes_sent_per_frame"].get<double>();
  ASSERT_GT(bytes, 2e6);
  const double expected = bytes / (mbps * 1e6 / 8) + 0.001;
  EXPECT_NEAR(1.0 / r["throughput_fps"].get<double>(), expected, 0.1 * expected) << "bytes per frame " << bytes;
}

TEST(Emulation, LargeFramesMoveWhileStagesCompute) {
  // Two stages of 0.15 s each hand a 2 MB frame over a fast link. Shared-memory MPI without its
  // single-copy mechanism (as Open MPI chose by default on a 16-core VM; TCP likewise) moves such a message
  // only inside MPI calls on both sides; a rank sleeping in emulated compute makes none, so
  // without the transport's progress thread the stages take turns: 0.30 s per frame, not 0.15.
  const double stage_s = 0.15;
  json profile = {{"device", "paced"},
                  {"layer_seconds", {{"wide", {{"act", stage_s}, {"relu6", stage_s}, {"gap", 0.0}}}}}};
  json cluster = {{"name", "fast-link"},
                  {"network", {{"bandwidth_mbps", 10000.0}, {"latency_ms", 0.05}, {"shared", false}}},
                  {"device_classes", {{"paced", {{"memory_mb", 4096}, {"profile", profile}}}}},
                  {"hosts", {{{"name", "a"}, {"class", "paced"}}, {{"name", "b"}, {"class", "paced"}}}}};
  json r = run_wide_two_stages(cluster, "--mca btl self,vader --mca btl_vader_single_copy_mechanism none");
  ASSERT_FALSE(r.empty());
  ASSERT_GT(r["ranks"][0]["bytes_sent_per_frame"].get<double>(), 2e6);
  EXPECT_NEAR(1.0 / r["throughput_fps"].get<double>(), stage_s, 0.15 * stage_s);
}

// A layer split over the members of a stage takes each member its share of the device's time,
// not the whole layer's (it was once paced twice: at its share, then again in full).
TEST(Emulation, SplitLayerTakesEachMemberItsShare) {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  test::TempDir dir;
  test::write_random_model(R"({"class_name": "Sequential", "config": {"name": "one_dense", "layers": [
   {"class_name": "InputLayer", "config": {"name": "in", "batch_input_shape": [null, 256]}},
   {"class_name": "Dense", "config": {"name": "fc", "units": 512}}]}})",
                           dir.path("dense.h5"));
  // 131,072 multiply-adds at 2 M a second: 65.5 ms for the whole layer, 32.8 ms for half.
  json cluster = {{"name", "slow2"},
                  {"network", {{"bandwidth_mbps", 1000.0}, {"latency_ms", 0.1}, {"shared", false}}},
                  {"device_classes",
                   {{"slow", {{"memory_mb", 512}, {"profile", {{"device", "slow"}, {"macs_per_second", {{"default", 2e6}}}}}}}}},
                  {"hosts", {{{"name", "a"}, {"class", "slow"}}, {{"name", "b"}, {"class", "slow"}}}}};
  std::ofstream(dir.path("cluster.json")) << cluster.dump();
  const std::string cmd = "timeout -k 5 120 mpiexec --oversubscribe -np 2 " CHORUS_BINARY " run " + dir.path("dense.h5") +
                          " --synthetic 8 --quiet --strategy split-output --emulate " + dir.path("cluster.json") +
                          " --report " + dir.path("r.json");
  auto r = test::run_command(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json report = json::parse(std::ifstream(dir.path("r.json")));
  const double half = 131072 / 2e6 / 2;
  for (int k = 0; k < 2; ++k) {
    const double per_frame = report["ranks"][k]["compute_s"].get<double>() / report["ranks"][k]["frames"].get<double>();
    EXPECT_NEAR(per_frame, half, 0.15 * half) << "rank " << k;
  }
}

TEST(Emulation, EnergyPerFrameIsTheModelsFormulaOfTheRunsOwnFigures) {
  // LeNet-5 as two stages on two emulated devices with power figures: the report's energy per
  // frame, per rank and in total, is busy watts x compute + idle watts x the rest of the run's
  // wall time + the radio's joules per megabyte for the bytes each rank moved, over the frames;
  // and it is near what the plan's cost model predicts for its steady state.
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  test::TempDir dir;
  test::write_random_model(std::string(std::istreambuf_iterator<char>(
                               *std::make_unique<std::ifstream>(test::source_path("models/lenet5.json"))), {}),
                           dir.path("lenet5.h5"));
  const json power = {{"idle_w", 1.4}, {"busy_w", 3.7}, {"radio_j_per_mb_sent", 2.27}, {"radio_j_per_mb_received", 1.1}};
  json cluster = {{"name", "powered"},
                  {"network", {{"bandwidth_mbps", 100.0}, {"latency_ms", 1.0}, {"shared", false}}},
                  {"device_classes",
                   {{"slow", {{"memory_mb", 512},
                              {"profile", {{"device", "slow"}, {"macs_per_second", {{"default", 1e7}}}}},
                              {"power", power}}}}},
                  {"hosts", {{{"name", "a"}, {"class", "slow"}}, {{"name", "b"}, {"class", "slow"}}}}};
  std::ofstream(dir.path("cluster.json")) << cluster.dump();
  const auto r = test::run_command("timeout -k 5 120 mpiexec --oversubscribe -np 2 " CHORUS_BINARY " run " +
                                   dir.path("lenet5.h5") + " --synthetic 40 --quiet --strategy pipeline --emulate " +
                                   dir.path("cluster.json") + " --report " + dir.path("r.json") + " 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json report = json::parse(std::ifstream(dir.path("r.json")));
  const double frames = report["frames"], wall = report["wall_s"];
  double total = 0;
  for (const auto& rank : report["ranks"]) {
    const double compute = rank["compute_s"];
    const double expected = (3.7 * compute + 1.4 * (wall - compute) + 2.27 * rank["bytes_sent"].get<double>() / 1e6 +
                             1.1 * rank["bytes_received"].get<double>() / 1e6) /
                            frames;
    EXPECT_NEAR(rank["energy_j_per_frame"].get<double>(), expected, 1e-9 * expected);
    total += expected;
  }
  EXPECT_NEAR(report["energy_j_per_frame"].get<double>(), total, 1e-9 * total);
  EXPECT_THAT(report["energy_basis"].get<std::string>(), ::testing::HasSubstr("estimate"));
  // The whole run (with its fill and drain, and ranks starting apart) against the steady state
  // the planner predicts.
  const double predicted = report["extra"]["predicted_energy"]["energy_j_per_frame"];
  EXPECT_NEAR(total, predicted, 0.25 * predicted) << "measured " << total << " J/frame, predicted " << predicted;

  // A real run (--cluster, no --emulate) on a host the file does not name says that the watts
  // are its devices' and the times this machine's.
  const auto here = test::run_command(CHORUS_BINARY " run " + dir.path("lenet5.h5") + " --synthetic 2 --cluster " +
                                      dir.path("cluster.json") + " 2>&1");
  ASSERT_EQ(here.exit_code, 0) << here.output;
  EXPECT_THAT(here.output, ::testing::HasSubstr("does not name: the energy figure applies its devices' power to this "
                                                "machine's times"));

  // A device without power figures (rank 0 here) leaves the total out and says why; the others
  // keep theirs.
  cluster["device_classes"]["bare"] = {{"memory_mb", 512},
                                       {"profile", {{"device", "bare"}, {"macs_per_second", {{"default", 1e7}}}}}};
  cluster["hosts"][0]["class"] = "bare";
  std::ofstream(dir.path("mixed.json")) << cluster.dump();
  const auto mixed = test::run_command("timeout -k 5 120 mpiexec --oversubscribe -np 2 " CHORUS_BINARY " run " +
                                       dir.path("lenet5.h5") + " --synthetic 20 --strategy pipeline --emulate " +
                                       dir.path("mixed.json") + " --report " + dir.path("m.json") + " 2>&1");
  ASSERT_EQ(mixed.exit_code, 0) << mixed.output;
  EXPECT_THAT(mixed.output, ::testing::HasSubstr("energy      per rank only (no total: no power figures in"));
  const json m = json::parse(std::ifstream(dir.path("m.json")));
  EXPECT_FALSE(m.contains("energy_j_per_frame"));
  EXPECT_THAT(m["energy_basis"].get<std::string>(), ::testing::HasSubstr("rank(s) 0 (bare)"));
  EXPECT_EQ(m["ranks"][0]["energy_j_per_frame"].get<double>(), -1.0);
  const double compute = m["ranks"][1]["compute_s"];
  const double expected = (3.7 * compute + 1.4 * (m["wall_s"].get<double>() - compute) +
                           2.27 * m["ranks"][1]["bytes_sent"].get<double>() / 1e6 +
                           1.1 * m["ranks"][1]["bytes_received"].get<double>() / 1e6) /
                          m["frames"].get<double>();
  EXPECT_NEAR(m["ranks"][1]["energy_j_per_frame"].get<double>(), expected, 1e-9 * expected);
}
