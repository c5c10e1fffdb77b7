#include "report/report.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "core/error.h"

namespace chorus::report {

using nlohmann::json;

double RankStats::idle_s() const { return std::max(0.0, wall_s - compute_s - exchange_s - send_s - wait_s); }

namespace {
double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  // Nearest rank: the smallest value with at least q of the data at or below it.
  std::size_t k = static_cast<std::size_t>(std::ceil(q * v.size()));
  return v[std::min(v.size() - 1, k == 0 ? 0 : k - 1)];
}

std::string fmt(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string mb(double bytes) { return fmt(bytes / 1e6, 1); }
}  // namespace

void summarise_frames(RunReport& r, const std::vector<double>& start, const std::vector<double>& finish, int round,
                      int stages) {
  const int n = static_cast<int>(std::min(start.size(), finish.size()));
  r.frames = n;
  if (n == 0) return;
  const double t0 = *std::min_element(start.begin(), start.end());
  r.frame_start_s.clear();
  r.frame_finish_s.clear();
  for (int i = 0; i < n; ++i) r.frame_start_s.push_back(start[i] - t0), r.frame_finish_s.push_back(finish[i] - t0);
  std::vector<double> latency(n);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += latency[i] = (finish[i] - start[i]) * 1e3;
  r.latency_mean_ms = sum / n;
  r.latency_p50_ms = percentile(latency, 0.50);
  r.latency_p90_ms = percentile(latency, 0.90);
  r.latency_p99_ms = percentile(latency, 0.99);
  r.latency_max_ms = *std::max_element(latency.begin(), latency.end());
  // Warm-up: the first frames fill the pipeline and touch cold memory; leave out a fifth
  // (at least one) when there are enough frames to measure a steady state.
  r.warmup_frames = n >= 3 ? std::max(1, n / 5) : 0;
  std::vector<double> done(finish.begin(), finish.begin() + n);
  std::sort(done.begin(), done.end());
  // Cool-down: once the source has stopped, the last frames of a pipeline of S stages drain
  // with less contention (for the network above all) than in the steady state, and finish
  // faster: leave out the last S - 1 while at least 3 frames remain to fit.
  r.cooldown_frames = std::clamp(stages - 1, 0, std::max(0, n - r.warmup_frames - 3));
  // Likewise the first S - 1 frames of a pipeline finish while later stages and links are still
  // idle: they count as warm-up too, when frames are left to fit.
  r.warmup_frames = std::max(r.warmup_frames, std::min(stages - 1, n - r.cooldown_frames - 3));
  const int first = r.warmup_frames, end = n - r.cooldown_frames;
  // Steady state: the slope of completion time against frame count, by least squares over the
  // frames in between. Replicas finish in bursts of `round` frames; fitting every round-th
  // completion (one point per burst, each at the same phase) is not fooled by where the bursts
  // start and end, as a fit through all of them or a first-to-last difference is.
  const int stride = round > 1 && (end - first - 1) / round >= 2 ? round : 1;  // 3 points at least
  int count = 0;
  double mx = 0, my = 0;
  for (int i = first; i < end; i += stride) mx += i, my += done[i], ++count;
  // Too few frames to leave any out (two, one): frames over the run's time, below, as the
  // report says; a line through two finishes is one gap, not a rate.
  if (count >= 2 && r.warmup_frames > 0) {
    mx /= count;
    my /= count;
    double sxy = 0, sxx = 0;
    for (int i = first; i < end; i += stride) sxy += (i - mx) * (done[i] - my), sxx += (i - mx) * (i - mx);
    const double slope = sxx > 0 ? sxy / sxx : 0;
    if (slope > 0) r.throughput_fps = 1.0 / slope;
  }
  r.steady_state = r.warmup_frames > 0 && r.throughput_fps > 0;
  if (r.throughput_fps <= 0)
    r.throughput_fps = n / std::max(1e-9, done.back() - *std::min_element(start.begin(), start.end()));
}

void summarise_capture(InputStats& input, const std::vector<double>& captured, const std::vector<double>& finish) {
  const std::size_t n = std::min(captured.size(), finish.size());
  if (n == 0) return;
  std::vector<double> latency(n);
  for (std::size_t i = 0; i < n; ++i) latency[i] = (finish[i] - captured[i]) * 1e3;
  input.latency_p50_ms = percentile(latency, 0.50);
  input.latency_p90_ms = percentile(latency, 0.90);
  input.latency_p99_ms = percentile(latency, 0.99);
  input.latency_max_ms = *std::max_element(latency.begin(), latency.end());
}

namespace {
// {"2": 14}: stage -> frames rebuilt (JSON keys are strings).
json rebuilt_to_json(const std::map<int, int>& rebuilt) {
  json j = json::object();
  for (const auto& [stage, frames] : rebuilt) j[std::to_string(stage)] = frames;
  return j;
}
}  // namespace

json rank_stats_to_json(const RankStats& s) {
  return {{"rank", s.rank},
          {"host", s.host},
          {"layers", s.layers},
          {"frames", s.frames},
          {"compute_s", s.compute_s},
          {"exchange_s", s.exchange_s},
          {"send_s", s.send_s},
          {"wait_s", s.wait_s},
          {"idle_s", s.idle_s()},
          {"wall_s", s.wall_s},
          {"bytes_sent", s.bytes_sent},
          {"bytes_received", s.bytes_received},
          {"bytes_sent_to", s.bytes_sent_to},
          {"bytes_received_from", s.bytes_received_from},
          {"weight_bytes", s.weight_bytes},
          {"peak_rss_bytes", s.peak_rss_bytes},
          {"first_frame_minor_faults", s.first_frame_minor_faults},
          {"first_frame_major_faults", s.first_frame_major_faults},
          {"steady_frames", s.steady_frames},
          {"minor_faults_per_frame", s.minor_faults_per_frame},
          {"major_faults_per_frame", s.major_faults_per_frame},
          {"first_frame_heap_allocations", s.first_frame_heap_allocations},
          {"heap_allocations_per_frame", s.heap_allocations_per_frame},
          {"mpi_heap_allocations_per_frame", s.mpi_heap_allocations_per_frame},
          {"ffmpeg_heap_allocations_per_frame", s.ffmpeg_heap_allocations_per_frame},
          {"clock_offset_s", s.clock_offset_s},
          {"clock_uncertainty_s", s.clock_uncertainty_s},
          {"energy_j_per_frame", s.energy_j_per_frame},
          {"rebuilt_frames", rebuilt_to_json(s.rebuilt_frames)}};
}

RankStats rank_stats_from_json(const json& j) {
  RankStats s;
  s.rank = j.at("rank");
  s.host = j.at("host");
  s.layers = j.at("layers");
  s.frames = j.at("frames");
  s.compute_s = j.at("compute_s");
  s.exchange_s = j.at("exchange_s");
  s.send_s = j.at("send_s");
  s.wait_s = j.at("wait_s");
  s.wall_s = j.at("wall_s");
  s.bytes_sent = j.at("bytes_sent");
  s.bytes_received = j.at("bytes_received");
  s.bytes_sent_to = j.value("bytes_sent_to", std::vector<double>{});
  s.bytes_received_from = j.value("bytes_received_from", std::vector<double>{});
  s.weight_bytes = j.at("weight_bytes");
  s.peak_rss_bytes = j.at("peak_rss_bytes");
  // Reports written before these figures existed lack them.
  s.first_frame_minor_faults = j.value("first_frame_minor_faults", 0.0);
  s.first_frame_major_faults = j.value("first_frame_major_faults", 0.0);
  s.steady_frames = j.value("steady_frames", 0);
  s.minor_faults_per_frame = j.value("minor_faults_per_frame", -1.0);
  s.major_faults_per_frame = j.value("major_faults_per_frame", -1.0);
  s.first_frame_heap_allocations = j.value("first_frame_heap_allocations", -1.0);
  s.heap_allocations_per_frame = j.value("heap_allocations_per_frame", -1.0);
  s.mpi_heap_allocations_per_frame = j.value("mpi_heap_allocations_per_frame", -1.0);
  s.ffmpeg_heap_allocations_per_frame = j.value("ffmpeg_heap_allocations_per_frame", -1.0);
  s.clock_offset_s = j.value("clock_offset_s", 0.0);
  s.clock_uncertainty_s = j.value("clock_uncertainty_s", 0.0);
  s.energy_j_per_frame = j.value("energy_j_per_frame", -1.0);
  if (j.contains("rebuilt_frames"))
    for (const auto& [stage, frames] : j["rebuilt_frames"].items()) s.rebuilt_frames[std::stoi(stage)] = frames.get<int>();
  return s;
}

json report_to_json(const RunReport& r) {
  json ranks = json::array();
  for (const auto& s : r.ranks_stats) {
    json j = rank_stats_to_json(s);
    const double frames = std::max(1, r.frames);
    j["bytes_sent_per_frame"] = s.bytes_sent / frames;
    j["bytes_received_per_frame"] = s.bytes_received / frames;
    std::vector<double> to, from;
    for (double b : s.bytes_sent_to) to.push_back(b / frames);
    for (double b : s.bytes_received_from) from.push_back(b / frames);
    j["bytes_sent_to_per_frame"] = to;
    j["bytes_received_from_per_frame"] = from;
    ranks.push_back(j);
  }
  json out{{"format", "chorus-report/1"},
           {"model", r.model},
           {"plan", r.plan},
           {"world_size", r.ranks},
           {"frames", r.frames},
           {"warmup_frames", r.warmup_frames},
           {"cooldown_frames", r.cooldown_frames},
           {"wall_s", r.wall_s},
           {"throughput_fps", r.throughput_fps},
           {"throughput_basis", r.steady_state ? "steady state" : "whole run"},
           {"latency_ms",
            {{"p50", r.latency_p50_ms},
             {"p90", r.latency_p90_ms},
             {"p99", r.latency_p99_ms},
             {"max", r.latency_max_ms},
             {"mean", r.latency_mean_ms}}},
           {"frame_start_s", r.frame_start_s},
           {"frame_finish_s", r.frame_finish_s},
           {"ranks", ranks}};
  if (r.energy_j_per_frame >= 0) out["energy_j_per_frame"] = r.energy_j_per_frame;
  if (!r.energy_basis.empty()) out["energy_basis"] = r.energy_basis;
  if (r.input.present()) {
    const InputStats& in = r.input;
    json input{{"source", in.source}, {"realtime", in.realtime}};
    if (in.realtime) {
      input["frames_captured"] = in.frames_captured;
      input["frames_processed"] = in.frames_processed;
      input["frames_dropped"] = in.frames_dropped;
      input["fps"] = in.fps;
      input["queue"] = in.queue;
      input["drop"] = in.drop_policy;
      input["latency_ms"] = {{"p50", in.latency_p50_ms}, {"p90", in.latency_p90_ms}, {"p99", in.latency_p99_ms},
                             {"max", in.latency_max_ms}};
    }
    if (!in.ended_early.empty()) input["ended_early"] = in.ended_early;
    out["input"] = input;
  }
  if (!r.extra.is_null()) out["extra"] = r.extra;
  return out;
}

void print_report(const RunReport& r, std::ostream& out) {
  out << "plan        " << r.plan << "\n"
      << "frames      " << r.frames << " (" << r.warmup_frames << " warm-up, " << r.cooldown_frames << " cool-down) in "
      << fmt(r.wall_s, 3) << " s\n"
      << "throughput  " << fmt(r.throughput_fps, 2)
      << (r.steady_state ? " frames/s (steady state), " : " frames/s (whole run: too few frames for a steady state), ")
      << fmt(r.throughput_fps > 0 ? 1000.0 / r.throughput_fps : 0, 2) << " ms/frame\n"
      << "latency     p50 " << fmt(r.latency_p50_ms, 1) << " ms, p90 " << fmt(r.latency_p90_ms, 1) << " ms, p99 "
      << fmt(r.latency_p99_ms, 1) << " ms, max " << fmt(r.latency_max_ms, 1) << " ms\n";
  if (r.input.realtime) {
    const InputStats& in = r.input;
    out << "input       " << in.frames_captured << " captured at " << fmt(in.fps, 2) << " fps, " << in.frames_processed
        << " processed, " << in.frames_dropped << " dropped (queue " << in.queue << ", drop " << in.drop_policy << ")\n"
        << "capture     to result: p50 " << fmt(in.latency_p50_ms, 1) << " ms, p90 " << fmt(in.latency_p90_ms, 1)
        << " ms, p99 " << fmt(in.latency_p99_ms, 1) << " ms, max " << fmt(in.latency_max_ms, 1) << " ms\n";
  }
  if (!r.input.ended_early.empty()) out << "input end   " << r.input.ended_early << "\n";
  if (r.energy_j_per_frame >= 0)
    out << "energy      " << fmt(r.energy_j_per_frame, 3) << " J/frame over all ranks (" << r.energy_basis << ")\n";
  else if (!r.energy_basis.empty())
    out << "energy      per rank only (" << r.energy_basis << ")\n";
  for (const auto& s : r.ranks_stats)
    for (const auto& [stage, frames] : s.rebuilt_frames)
      out << "parity      rank " << s.rank << " rebuilt " << frames << " frame(s) of stage " << stage
          << " from the parity (a member's slice was late)\n";
  if (r.ranks_stats.size() > 1) {
    double largest = 0, uncertainty = 0;
    for (const auto& s : r.ranks_stats) {
      largest = std::max(largest, std::fabs(s.clock_offset_s));
      uncertainty = std::max(uncertainty, s.clock_uncertainty_s);
    }
    out << "clocks      ranks' clocks within " << fmt(largest * 1e3, 3) << " ms of rank 0's (+- "
        << fmt(uncertainty * 1e3, 3) << " ms); frame times are on rank 0's clock\n";
  }
  out << "\n";
  char line[512];
  std::snprintf(line, sizeof line, "%-4s %-10s %-34s %6s %9s %9s %9s %9s %9s %9s %9s %9s %9s %13s\n", "rank", "host",
                "layers", "frames", "compute", "exchange", "send", "wait", "idle", "sent/fr", "recv/fr", "weights",
                "peak RSS", "faults/fr");
  // A column more when some device's power is known ("-" for a rank whose is not).
  const bool energy = std::any_of(r.ranks_stats.begin(), r.ranks_stats.end(),
                                  [](const RankStats& s) { return s.energy_j_per_frame >= 0; });
  out << (energy ? std::string(line, std::strlen(line) - 1) + "    energy\n" : std::string(line));
  std::snprintf(line, sizeof line, "%-4s %-10s %-34s %6s %9s %9s %9s %9s %9s %9s %9s %9s %9s %13s\n", "", "", "", "",
                "s", "s", "s", "s", "s", "MB", "MB", "MB", "MB", "minor/major");
  out << (energy ? std::string(line, std::strlen(line) - 1) + "      J/fr\n" : std::string(line));
  const double frames = std::max(1, r.frames);
  for (const auto& s : r.ranks_stats) {
    std::string layers = s.layers.size() > 34 ? s.layers.substr(0, 31) + "..." : s.layers;
    std::string host = s.host.size() > 10 ? s.host.substr(0, 10) : s.host;
    // Steady-state faults per frame; "-" when the run had no steady state on this rank.
    const std::string faults =
        s.minor_faults_per_frame < 0 ? "-" : fmt(s.minor_faults_per_frame, 1) + "/" + fmt(s.major_faults_per_frame, 1);
    std::snprintf(line, sizeof line, "%-4d %-10s %-34s %6d %9s %9s %9s %9s %9s %9s %9s %9s %9s %13s\n", s.rank,
                  host.c_str(), layers.c_str(), s.frames, fmt(s.compute_s, 3).c_str(), fmt(s.exchange_s, 3).c_str(),
                  fmt(s.send_s, 3).c_str(), fmt(s.wait_s, 3).c_str(), fmt(s.idle_s(), 3).c_str(),
                  mb(s.bytes_sent / frames).c_str(), mb(s.bytes_received / frames).c_str(), mb(s.weight_bytes).c_str(),
                  mb(s.peak_rss_bytes).c_str(), faults.c_str());
    char cell[32];
    std::snprintf(cell, sizeof cell, " %9s\n", s.energy_j_per_frame < 0 ? "-" : fmt(s.energy_j_per_frame, 3).c_str());
    out << (energy ? std::string(line, std::strlen(line) - 1) + cell : std::string(line));
  }
}

void write_report(const RunReport& r, const std::string& path) {
  std::ofstream out(path);
  if (!out) fail(path, ": cannot write report (", std::strerror(errno), ")");
  out << report_to_json(r).dump(2) << "\n";
}

}  // namespace chorus::report
