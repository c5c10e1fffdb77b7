// Throughput and latency from per-frame times.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "report/report.h"

namespace chorus {
namespace {

// W replicas of `each` seconds per frame, fed round robin, replica r starting at r * stagger:
// completions come in bursts of W.
void replica_times(int frames, int w, double each, double stagger, std::vector<double>& start,
                   std::vector<double>& finish) {
  for (int i = 0; i < frames; ++i) {
    const int r = i % w, round = i / w;
    start.push_back(r * stagger + round * each);
    finish.push_back(r * stagger + (round + 1) * each);
  }
}

TEST(Report, PipelineThroughputIsTheSlopeAfterWarmUp) {
  std::vector<double> start, finish;
  for (int i = 0; i < 20; ++i) start.push_back(0.5 * i), finish.push_back(2.0 + 0.5 * i);
  finish[0] += 0.4;  // a slow first frame (still the first done) is warm-up, left out
  report::RunReport r;
  report::summarise_frames(r, start, finish);
  EXPECT_EQ(r.warmup_frames, 4);
  EXPECT_NEAR(r.throughput_fps, 2.0, 1e-9);
  EXPECT_NEAR(r.latency_p50_ms, 2000, 1e-6);
}

TEST(Report, DrainingFramesOfAPipelineAreLeftOut) {
  // 5 stages, 2.2 s per frame in the steady state; the last 3 frames drain at 1.8 s.
  std::vector<double> start(12, 0.0), finish;
  for (int i = 0; i < 12; ++i) finish.push_back(11.0 + 2.2 * std::min(i, 8) + 1.8 * std::max(0, i - 8));
  report::RunReport r;
  report::summarise_frames(r, start, finish, 1, 5);
  EXPECT_EQ(r.cooldown_frames, 4);
  EXPECT_EQ(r.warmup_frames, 4);  // the first S - 1 fill the pipeline
  EXPECT_NEAR(r.throughput_fps, 1 / 2.2, 1e-9);
  report::RunReport short_run;  // too few frames to leave any out: all are fitted
  report::summarise_frames(short_run, std::vector<double>(4, 0.0), {1, 2, 3, 4}, 1, 5);
  EXPECT_EQ(short_run.cooldown_frames, 0);
  EXPECT_NEAR(short_run.throughput_fps, 1.0, 1e-9);
}

TEST(Report, ReplicaBurstsAreFittedOnePointPerRound) {
  // 6 replicas of 1 s, staggered by 0.08 s (inputs sent one after another): 6 frames/s.
  std::vector<double> start, finish;
  replica_times(21, 6, 1.0, 0.08, start, finish);
  report::RunReport by_round, by_frame;
  report::summarise_frames(by_round, start, finish, 6);
  report::summarise_frames(by_frame, start, finish, 1);
  EXPECT_NEAR(by_round.throughput_fps, 6.0, 1e-6);
  // A fit through every completion of so few rounds is off by the burst shape.
  EXPECT_GT(std::abs(by_frame.throughput_fps - 6.0), 0.1);
}

TEST(Report, ARunTooShortForASteadyStateSaysSo) {
  report::RunReport two;
  report::summarise_frames(two, {0.0, 1.0}, {3.0, 4.0});  // the first frame's 3 s include its warm-up
  EXPECT_FALSE(two.steady_state);
  EXPECT_NEAR(two.throughput_fps, 2 / 4.0, 1e-9);  // frames over the run's time, not 1 / (4 - 3)
  EXPECT_EQ(report::report_to_json(two)["throughput_basis"], "whole run");
  std::ostringstream text;
  report::print_report(two, text);
  EXPECT_NE(text.str().find("too few frames for a steady state"), std::string::npos) << text.str();
  report::RunReport three;
  report::summarise_frames(three, {0.0, 1.0, 2.0}, {3.0, 4.0, 5.0});
  EXPECT_TRUE(three.steady_state);
  EXPECT_EQ(report::report_to_json(three)["throughput_basis"], "steady state");
}

TEST(Report, TooFewRoundsFallBackToEveryFrame) {
  std::vector<double> start, finish;
  replica_times(8, 6, 1.0, 0.0, start, finish);
  report::RunReport r;
  report::summarise_frames(r, start, finish, 6);
  EXPECT_GT(r.throughput_fps, 0);
}

}  // namespace
}  // namespace chorus
