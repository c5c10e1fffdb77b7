// A rank that dies or stalls ends the whole job quickly, with a message naming it; a killed
// run resumed with --resume gives the output of an uninterrupted run, byte for byte.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>
#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/data/npy.h"
#include "reference/test_util.h"
#include "supervise/failure_report.h"

namespace chorus {
namespace {

using testing::HasSubstr;

constexpr int kFrames = 20000;  // LeNet-5 runs a few thousand frames a second here
constexpr int kResumeFrames = 6000;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class Failures : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    dir_ = new test::TempDir;
    std::ifstream in(test::source_path("models/lenet5.json"));
    std::stringstream config;
    config << in.rdbuf();
    test::write_random_model(config.str(), model());
    test::write_random_model(config.str(), keras_model());
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string model() { return dir_->path("lenet5.h5"); }
  static std::string keras_model() { return dir_->path("lenet5.keras"); }  // the same, as a Keras 3 archive

  // `chorus run` under mpiexec on LeNet-5.
  static std::string job(int ranks, const std::string& extra) {
    return "timeout -k 5 180 mpiexec --oversubscribe -np " + std::to_string(ranks) + " " CHORUS_BINARY " run " +
           model() + " --quiet " + extra;
  }
  // Runs `command` and injects `mode` (kill, stop) into `rank` once `file` has `lines` lines.
  static test::CommandResult with_fault(const std::string& mode, int rank, const std::string& file, int lines,
                                        const std::string& command) {
    return test::run_command(test::source_path("tests/runtime/fault.sh") + " " + mode + " " + std::to_string(rank) +
                             " " + file + " " + std::to_string(lines) + " -- " + command);
  }
  static double seconds_after_fault(const test::CommandResult& r) {
    std::smatch m;
    if (!std::regex_search(r.output, m, std::regex("fault-seconds: ([0-9.]+)"))) return 1e9;
    return std::stod(m[1]);
  }
  // Four emulated devices of 0.5 G multiply-adds/s (LeNet-5: about 5 ms a frame) on a fast
  // switched network, as DIR/four.json.
  static std::string four_devices(const test::TempDir& dir) {
    const std::string cluster = dir.path("four.json");
    std::ofstream(cluster) << R"({"name": "four", "network": {"bandwidth_mbps": 1000, "latency_ms": 0.1, "shared": false},
      "device_classes": {"dev": {"memory_mb": 512, "profile": {"macs_per_second": {"default": 5e8}}}},
      "hosts": [{"name": "localhost", "class": "dev", "slots": 4}]})";
    return cluster;
  }
  // One uninterrupted process's output of `frames`, to compare a stopped or killed run with.
  static void write_reference(const std::string& frames, const std::string& out, const std::string& file = model()) {
    auto one =
        test::run_command(std::string(CHORUS_BINARY) + " run " + file + " --quiet" + frames + " --output " + out);
    ASSERT_EQ(one.exit_code, 0) << one.output;
  }
  static int job_exit(const test::CommandResult& r) {
    std::smatch m;
    if (!std::regex_search(r.output, m, std::regex("fault-exit: ([0-9]+)"))) return -1;
    return std::stoi(m[1]);
  }

  static test::TempDir* dir_;
};

test::TempDir* Failures::dir_ = nullptr;

TEST_F(Failures, KilledRankEndsTheJobWithin10SecondsNamingRankHostAndStage) {
  test::TempDir dir;
  const std::string out = dir.path("out.npy");
  auto r = with_fault("kill", 1, out + ".journal", 2000,
                      job(3, "--synthetic " + std::to_string(kFrames) + " --strategy pipeline --output " + out));
  ASSERT_THAT(r.output, testing::Not(HasSubstr("fault-hung"))) << r.output;
  EXPECT_NE(job_exit(r), 0) << r.output;
  EXPECT_LT(seconds_after_fault(r), 10.0) << r.output;
  std::cout << "the job ended " << seconds_after_fault(r) << " s after rank 1 was killed\n";
  // mpirun names the dead rank and its host; the survivors name the stage it held.
  EXPECT_THAT(r.output, HasSubstr("process rank 1")) << r.output;
  EXPECT_THAT(r.output, testing::ContainsRegex("waiting for rank 1 on [^,]+, stage 1 \\(fc1\\.\\.fc1\\)")) << r.output;
}

TEST_F(Failures, StalledRankEndsTheJobAfterTheStallTimeoutNamingIt) {
  test::TempDir dir;
  const std::string out = dir.path("out.npy");
  auto r = with_fault("stop", 1, out + ".journal", 2000,
                      job(3, "--synthetic " + std::to_string(kFrames) +
                                 " --strategy pipeline --stall-timeout 2 "
                                 "--output " +
                                 out));
  ASSERT_THAT(r.output, testing::Not(HasSubstr("fault-hung"))) << r.output;
  EXPECT_NE(job_exit(r), 0) << r.output;
  EXPECT_LT(seconds_after_fault(r), 2.0 + 10.0) << r.output;
  std::cout << "the job ended " << seconds_after_fault(r) << " s after rank 1 stopped (stall timeout 2 s)\n";
  EXPECT_THAT(r.output, testing::ContainsRegex("waited 2 s for rank 1 on [^,]+, stage 1 \\(fc1\\.\\.fc1\\)"))
      << r.output;
}

// Kill a rank at a random point, resume, and compare with one uninterrupted process.
TEST_F(Failures, ResumeAfterAKilledRankGivesTheUninterruptedOutputByteForByte) {
  std::mt19937 random(20261126);
  struct Case {
    int ranks;
    std::string strategy;
    int victim;
  };
  for (const Case& c : {Case{2, "pipeline", 0}, Case{3, "pipeline", 1}, Case{3, "replicate", 2}}) {
    SCOPED_TRACE(std::to_string(c.ranks) + " ranks, " + c.strategy + ", rank " + std::to_string(c.victim) + " killed");
    test::TempDir dir;
    const std::string whole = dir.path("whole.npy"), resumed = dir.path("resumed.npy");
    const std::string frames = " --synthetic " + std::to_string(kResumeFrames) + " --seed 7";
    write_reference(frames, whole);
    const int kill_after = std::uniform_int_distribution<int>(200, kResumeFrames / 3)(random);
    auto killed = with_fault("kill", c.victim, resumed + ".journal", kill_after,
                             job(c.ranks, frames + " --strategy " + c.strategy + " --output " + resumed));
    ASSERT_NE(job_exit(killed), 0) << killed.output;
    auto again =
        test::run_command(job(c.ranks, frames + " --strategy " + c.strategy + " --output " + resumed + " --resume"));
    ASSERT_EQ(again.exit_code, 0) << again.output;
    EXPECT_THAT(again.output, HasSubstr("resuming " + resumed + ": "));
    EXPECT_EQ(read_file(resumed), read_file(whole)) << "resumed output differs from the uninterrupted one";
    std::ifstream journal(resumed + ".journal");
    EXPECT_FALSE(journal.good()) << "the journal outlived a finished run";
  }
}

// SIGUSR1 to mpirun stops the job at a frame boundary: the frames in flight finish, every rank
// exits with kStoppedExitCode, the journal stays, and --resume (on another plan) completes it.
TEST_F(Failures, StopOnRequestEndsAtAFrameAndResumeCompletesTheOutput) {
  test::TempDir dir;
  const std::string whole = dir.path("whole.npy"), out = dir.path("out.npy");
  const std::string frames = " --synthetic " + std::to_string(kResumeFrames) + " --seed 8";
  write_reference(frames, whole);
  auto stopped = with_fault("usr1", 0, out + ".journal", 500, job(3, frames + " --strategy pipeline --output " + out));
  ASSERT_EQ(job_exit(stopped), kStoppedExitCode) << stopped.output;
  EXPECT_THAT(stopped.output, HasSubstr("input end   stopped on request (SIGUSR1)"));
  std::smatch m;
  ASSERT_TRUE(std::regex_search(stopped.output, m, std::regex("stopped on request \\(SIGUSR1\\) after frame ([0-9]+) of " +
                                                               std::to_string(kResumeFrames))))
      << stopped.output;
  const int done = std::stoi(m[1]);
  EXPECT_GE(done, 500);
  EXPECT_LT(done, kResumeFrames);
  std::ifstream journal(out + ".journal");
  ASSERT_TRUE(journal.good()) << "a stopped run must keep its journal";
  std::string line;
  int lines = 0;
  while (std::getline(journal, line)) ++lines;
  EXPECT_EQ(lines, done + 1) << "the journal's frames (after its header line) are the frames the run reported";
  auto again = test::run_command(job(2, frames + " --strategy replicate --output " + out + " --resume"));
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_THAT(again.output, HasSubstr("resuming " + out + ": " + std::to_string(done) + " of "));
  EXPECT_EQ(read_file(out), read_file(whole)) << "stopped and resumed output differs from the uninterrupted one";
}

// Coded redundancy: a member of a parity stage stopped (SIGSTOP) for 2 s mid-run costs no frame.
// Its consumer waits --parity-wait for its slice once, then rebuilds its slices from the parity
// and the others without waiting, until the member, continued, has caught up. The outputs equal
// one process's within float tolerance (a rebuilt slice is a difference of sums), in order.
// Over TCP: Open MPI's shared memory lends each sender a fixed pool of fragments, which a
// stopped receiver holds, so there a stopped member soon stalls its producer for every peer.
TEST_F(Failures, ParityStageRebuildsAStoppedMembersSlicesAndLosesNoFrame) {
  test::TempDir dir;
  const std::string whole = dir.path("whole.npy"), out = dir.path("out.npy"), report = dir.path("r.json");
  const std::string frames = " --synthetic " + std::to_string(kFrames) + " --seed 9";
  write_reference(frames, whole);
  const std::string plan = dir.path("parity.json");
  std::ofstream(plan) << R"({"ranks": 5, "stages": [
    {"layers": ["conv1", "pool2"], "mode": "single", "ranks": [0]},
    {"layers": ["flatten", "fc1"], "mode": "split-output", "ranks": [1, 2, 3], "fractions": [0.6, 0.4], "parity": 1},
    {"layers": ["fc2", "predictions"], "mode": "single", "ranks": [4]}]})";
  auto r = with_fault("pause", 2, out + ".journal", 2000,
                      "env OMPI_MCA_btl=tcp,self " + job(5, frames + " --plan " + plan + " --output " + out +
                                                                " --report " + report + " --stall-timeout 30"));
  ASSERT_EQ(job_exit(r), 0) << r.output;
  EXPECT_THAT(r.output, testing::Not(HasSubstr("fault-error"))) << r.output;
  const nlohmann::json j = nlohmann::json::parse(std::ifstream(report));
  ASSERT_EQ(j["frames"], kFrames);
  const int rebuilt = j["ranks"][4]["rebuilt_frames"].value("1", 0);
  std::cout << "rank 4 rebuilt " << rebuilt << " frames of stage 1 while rank 2 was stopped\n";
  EXPECT_GT(rebuilt, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("parity      rank 4 rebuilt " + std::to_string(rebuilt) + " frame(s) of stage 1"));
  const io::NpyArray got = io::read_npy(out), expected = io::read_npy(whole);
  ASSERT_EQ(got.shape, expected.shape);
  double worst = 0;
  for (std::size_t i = 0; i < got.data.size(); ++i) worst = std::max(worst, double(std::fabs(got.data[i] - expected.data[i])));
  EXPECT_LE(worst, 1e-5) << "outputs differ from one process's";
}

TEST_F(Failures, ResumeFromAnArrayInputGivesTheUninterruptedOutput) {
  test::TempDir dir;
  const std::string input = dir.path("frames.npy");
  const int frames = 4000;
  std::vector<float> values(static_cast<std::size_t>(frames) * 28 * 28);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>((i * 2654435761u) % 1000) / 1000.0f;
  io::write_npy(input, {frames, 28, 28, 1}, values.data());
  const std::string whole = dir.path("whole.npy"), resumed = dir.path("resumed.npy");
  auto one = test::run_command(std::string(CHORUS_BINARY) + " run " + model() + " --quiet --input " + input +
                               " --output " + whole);
  ASSERT_EQ(one.exit_code, 0) << one.output;
  auto killed = with_fault("kill", 1, resumed + ".journal", 900,
                           job(2, "--input " + input + " --strategy pipeline --output " + resumed));
  ASSERT_NE(job_exit(killed), 0) << killed.output;
  auto again = test::run_command(job(2, "--input " + input + " --strategy pipeline --output " + resumed + " --resume"));
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(read_file(resumed), read_file(whole));
}

TEST_F(Failures, ResumingAnotherRunIsRefused) {
  test::TempDir dir;
  const std::string out = dir.path("out.npy");
  auto killed = with_fault("kill", 1, out + ".journal", 500,
                           job(2, "--synthetic " + std::to_string(kFrames) + " --strategy pipeline --output " + out));
  ASSERT_NE(job_exit(killed), 0) << killed.output;
  auto other = test::run_command(job(2, "--synthetic " + std::to_string(kFrames) +
                                            " --seed 99 --strategy pipeline "
                                            "--output " +
                                            out + " --resume"));
  EXPECT_NE(other.exit_code, 0);
  EXPECT_THAT(other.output, HasSubstr(out + ".journal: this journal is for another run (input was"));
  auto done =
      test::run_command(job(2, "--synthetic 10 --strategy pipeline --output " + dir.path("none.npy") + " --resume"));
  EXPECT_NE(done.exit_code, 0);
  EXPECT_THAT(done.output, HasSubstr("none.npy.journal: no journal, so nothing to resume"));
}

// From a .keras archive as from an .h5: each attempt's ranks read their weights from it again.
TEST_F(Failures, SuperviseReplansOnTheDevicesLeftAndResumes) {
  for (const std::string& file : {model(), keras_model()}) {
    SCOPED_TRACE(file);
    test::TempDir dir;
    const std::string cluster = four_devices(dir);
    const std::string whole = dir.path("whole.npy"), out = dir.path("out.npy");
    const std::string frames = " --synthetic 3000 --seed 5";
    write_reference(frames, whole, file);
    auto r = with_fault("kill", 2, out + ".journal", 800,
                        "timeout -k 5 180 " CHORUS_BINARY " supervise --emulate --cluster " + cluster + " --work-dir " +
                            dir.path("work") + " -- run " + file + frames + " --quiet --output " + out);
    ASSERT_EQ(job_exit(r), 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr("rank 2 on localhost failed; 3 device(s) left, re-planning")) << r.output;
    EXPECT_THAT(r.output, HasSubstr("attempt 2 on 3 device(s)")) << r.output;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(r.output, m, std::regex("time lost: ([0-9.e+-]+) s"))) << r.output;
    std::cout << "supervise: " << m[1] << " s between the last frame before the kill and the first after\n";
    EXPECT_LT(std::stod(m[1]), 10.0);
    EXPECT_EQ(read_file(out), read_file(whole)) << "the supervised output differs from one uninterrupted process";
  }
}

// A device taken out after a failure answers the probe again (here on the probe's second try):
// the supervisor stops the job at a frame boundary, re-plans with it and resumes; the output is
// byte for byte one uninterrupted process's.
TEST_F(Failures, SuperviseReadmitsADeviceThatAnswersAgain) {
  test::TempDir dir;
  const std::string cluster = four_devices(dir);
  const std::string whole = dir.path("whole.npy"), out = dir.path("out.npy"), tried = dir.path("tried-{host}");
  const std::string frames = " --synthetic 20000 --seed 6";
  write_reference(frames, whole);
  const std::string probe = "test -e " + tried + " || { touch " + tried + "; false; }";
  auto r = with_fault("kill", 1, out + ".journal", 800,
                      "timeout -k 5 180 " CHORUS_BINARY " supervise --emulate --cluster " + cluster + " --work-dir " +
                          dir.path("work") + " --probe-every 0.5 --probe \"" + probe + "\" -- run " + model() + frames +
                          " --quiet --output " + out);
  ASSERT_EQ(job_exit(r), 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("rank 1 on localhost failed; 3 device(s) left, re-planning")) << r.output;
  EXPECT_THAT(r.output, HasSubstr("localhost answers again; stopping the job at the next frame")) << r.output;
  EXPECT_THAT(r.output, HasSubstr("re-admitted localhost")) << r.output;
  EXPECT_THAT(r.output, HasSubstr("attempt 3 on 4 device(s)")) << r.output;
  EXPECT_THAT(r.output, HasSubstr("done after 1 failure(s)")) << r.output;
  EXPECT_THAT(r.output, HasSubstr("1 re-admission(s)")) << r.output;
  EXPECT_EQ(read_file(out), read_file(whole)) << "the supervised output differs from one uninterrupted process";
}

}  // namespace
}  // namespace chorus

namespace chorus {
namespace {

// Which device the supervisor takes out: the end of the chain of waits. Behind a lost link,
// a live rank stalls whoever waits for it, and may say so first.
TEST(FailedRank, FollowsTheWaitsToTheRankThatWaitedForNoOne) {
  const std::string chain =
      "[rank 2 on pi3] chorus: error while streaming: waited 3 s for rank 0 on pi1, the source, for frame 359\n"
      "[rank 0 on pi1] chorus: error while streaming: waited 3 s for rank 1 on pi2, stage 0 (conv1..predictions), "
      "for frame 349\n";
  EXPECT_EQ(supervise::failed_rank(chain), 1);
  EXPECT_EQ(supervise::failed_rank("[rank 2 on pi3] chorus: error while streaming: waited 5 s for rank 1 on pi2\n"), 1);
  EXPECT_EQ(supervise::failed_rank("mpirun noticed that process rank 3 with PID 77 on node pi4 exited on signal 9 "
                                   "(Killed).\n"),
            3);
  const std::string cycle = "[rank 0 on a] x: waited 3 s for rank 1 on b\n[rank 1 on b] x: waited 3 s for rank 0 on a\n";
  const auto r = supervise::failed_rank(cycle);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(*r == 0 || *r == 1);
  EXPECT_FALSE(supervise::failed_rank("nothing here").has_value());
}

}  // namespace
}  // namespace chorus
