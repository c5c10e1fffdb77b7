#pragma once
// What a run measured, as plain data: rank 0 prints it as a table and writes it as JSON
// (docs/report-format.md). Sweeps and plots read the JSON, so its keys are stable.
#include <nlohmann/json.hpp>
#include <ostream>
#include <map>
#include <string>
#include <vector>

namespace chorus::report {

// One rank's figures over the whole run.
struct RankStats {
  int rank = 0;
  std::string host;
  std::string layers;             // what it holds, e.g. "block1_conv1 .. block3_pool"
  int frames = 0;                 // stage tasks it ran
  double compute_s = 0;           // running layers
  double exchange_s = 0;          // inside split stages: waiting for and swapping parts
  double send_s = 0;              // handing results on (posting sends, waiting for them to leave)
  double wait_s = 0;              // waiting for input from earlier stages (or credits)
  double wall_s = 0;              // from the first frame to the end
  double bytes_sent = 0, bytes_received = 0;
  // The same per peer rank (index: the peer's rank): data, swaps and credits; not the
  // end-of-stream messages.
  std::vector<double> bytes_sent_to, bytes_received_from;
  double weight_bytes = 0;
  double peak_rss_bytes = 0;
  // Whether frames allocate: page faults (getrusage, the whole process) during the rank's
  // first frame, and per frame over the steady state (its frames after the warm-up; -1 when the
  // run was too short to have one). Heap allocations likewise, only where a test build counts
  // them (-1 otherwise): Chorus' own (and every library's but Open MPI's and FFmpeg's), Open
  // MPI's, and FFmpeg's (a video input's decoder).
  double first_frame_minor_faults = 0, first_frame_major_faults = 0;
  int steady_frames = 0;
  double minor_faults_per_frame = -1, major_faults_per_frame = -1;
  double first_frame_heap_allocations = -1, heap_allocations_per_frame = -1;
  double mpi_heap_allocations_per_frame = -1, ffmpeg_heap_allocations_per_frame = -1;
  // Rank 0's clock minus this rank's, as estimated at start-up, and the estimate's uncertainty
  // (half its round trip); frame times in the report are on rank 0's clock.
  double clock_offset_s = 0, clock_uncertainty_s = 0;
  // Joules per frame of its device over the run's wall time (energy/energy.h); -1 when the device's power
  // is not known.
  double energy_j_per_frame = -1;
  // Parity stages this rank consumes: frames whose output it rebuilt from the parity because a
  // member's slice was late (stage -> frames).
  std::map<int, int> rebuilt_frames;
  double idle_s() const;          // wall - compute - exchange - send - wait
};

// The input as the source rank saw it: for a real-time feed, what the camera captured, what the
// pipeline took and what the full queue dropped, and the latency from capture to result; for
// any input that ended before its natural end, why.
struct InputStats {
  std::string source;              // the input's description
  bool realtime = false;
  long frames_captured = 0, frames_processed = 0, frames_dropped = 0;
  double fps = 0;                  // the rate frames became available at
  int queue = 0;
  std::string drop_policy;
  double latency_p50_ms = 0, latency_p90_ms = 0, latency_p99_ms = 0, latency_max_ms = 0;  // capture to result
  std::string ended_early;         // "" when the input reached its end
  bool present() const { return realtime || !ended_early.empty(); }
};

// Capture-to-result latency percentiles into `input` from per-frame capture and finish times.
void summarise_capture(InputStats& input, const std::vector<double>& captured, const std::vector<double>& finish);

struct RunReport {
  std::string model;
  std::string plan;               // one-line summary of the plan
  int ranks = 1;
  int frames = 0;
  int warmup_frames = 0;
  int cooldown_frames = 0;
  double wall_s = 0;
  double throughput_fps = 0;      // steady state: frames after warm-up over their time
  // False when the run was too short for a steady state (under 3 frames): throughput_fps is
  // then the whole run's, warm-up included, and says so.
  bool steady_state = false;
  double latency_p50_ms = 0, latency_p90_ms = 0, latency_p99_ms = 0, latency_max_ms = 0, latency_mean_ms = 0;
  std::vector<double> frame_start_s, frame_finish_s;  // per frame, from the first start
  std::vector<RankStats> ranks_stats;
  InputStats input;               // in the JSON and the table when present()
  double energy_j_per_frame = -1;  // every rank's, per frame; -1 when not every device's power is known
  std::string energy_basis;        // where the figure comes from (an estimate from power figures)
  nlohmann::json extra;           // e.g. the planner's prediction, carried along
};

// Fills throughput and latency fields from per-frame start and finish times (seconds, one
// clock), frame i started at start[i] and finished at finish[i]. `round`: frames finish in
// bursts of this many (the replicas of a replicated stage, fed round robin); 1 otherwise.
// `stages`: the plan's stage count, whose last frames drain faster than the steady state.
void summarise_frames(RunReport& report, const std::vector<double>& start, const std::vector<double>& finish,
                      int round = 1, int stages = 1);

nlohmann::json report_to_json(const RunReport& report);
nlohmann::json rank_stats_to_json(const RankStats& stats);
RankStats rank_stats_from_json(const nlohmann::json& j);
void print_report(const RunReport& report, std::ostream& out);
void write_report(const RunReport& report, const std::string& path);

}  // namespace chorus::report
