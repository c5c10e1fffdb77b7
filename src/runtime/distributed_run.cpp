#include "runtime/distributed_run.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <numeric>

#include "core/error.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "energy/energy.h"
#include "io/journal/output_journal.h"
#include "io/model_file.h"
#include "partition/frame_traffic.h"
#include "partition/live_values.h"
#include "plan/planner.h"
#include "plan/strategies.h"
#include "report/results_writer.h"
#include "runtime/clock_offsets.h"
#include "runtime/emulation.h"
#include "runtime/failure_notice.h"
#include "runtime/pipeline.h"
#include "runtime/run_paths.h"
#include "runtime/stop_request.h"

namespace chorus::runtime {

namespace {

std::string plan_summary(const plan::ResolvedPlan& p, const model::Model& m) {
  std::string s;
  for (std::size_t i = 0; i < p.stages.size(); ++i) {
    const auto& st = p.stages[i];
    std::string ranks;
    for (int r : st.ranks) ranks += (ranks.empty() ? "" : ",") + std::to_string(r);
    s += cat(i ? " | " : "", m.node(st.first).name(), "..", m.node(st.last).name(), " ", plan::mode_name(st.mode),
             st.parity ? "+parity" : "", " [", ranks, "]");
  }
  return s;
}

void print_plan(const plan::ResolvedPlan& p, const model::Model& m, std::ostream& out) {
  out << "plan: " << p.plan.ranks << " rank(s), source " << p.plan.source << ", sink " << p.plan.sink << ", up to "
      << p.max_in_flight << (p.max_in_flight == 1 ? " frame" : " frames") << " in flight\n";
  char line[256];
  std::snprintf(line, sizeof line, "  %-5s %-42s %-13s %-16s %10s %10s\n", "stage", "layers", "mode", "ranks", "GMACs",
                "weights MB");
  out << line;
  for (std::size_t i = 0; i < p.stages.size(); ++i) {
    const auto& st = p.stages[i];
    double macs = 0, bytes = 0;
    for (int n = st.first; n <= st.last; ++n) macs += m.cost(n).macs, bytes += m.cost(n).weight_bytes;
    std::string ranks;
    for (std::size_t k = 0; k < st.ranks.size(); ++k) {
      ranks += (k ? "," : "") + std::to_string(st.ranks[k]);
      if (static_cast<int>(k) >= st.data_members())
        ranks += "(parity)";
      else if (st.fractions.size() > 1 && std::fabs(st.fractions[k] - 1.0 / st.fractions.size()) > 1e-9)
        ranks += cat("(", static_cast<int>(std::lround(st.fractions[k] * 100)), "%)");
    }
    std::string layers = m.node(st.first).name() + " .. " + m.node(st.last).name();
    std::snprintf(line, sizeof line, "  %-5zu %-42s %-13s %-16s %10.3f %10.1f\n", i, layers.c_str(),
                  plan::mode_name(st.mode).c_str(), ranks.c_str(), macs / 1e9, bytes / 1e6);
    out << line;
  }
}

std::vector<std::string> read_labels(const std::string& path) {
  refuse_directory(path, "a labels file");
  std::ifstream in(path);
  if (!in) fail(path, ": cannot open labels file");
  std::vector<std::string> labels;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();  // a file written on Windows
    labels.push_back(line);
  }
  return labels;
}

// The K largest outputs of each frame, taken as frames arrive (into storage sized up front) and
// printed at the end.
class TopClasses {
 public:
  TopClasses(int k, int frames) : k_(k) {
    index_.reserve(static_cast<std::size_t>(k) * frames);
    value_.reserve(static_cast<std::size_t>(k) * frames);
  }
  void add(const Tensor& out) {
    const int kk = report::top_classes(out, k_, order_);
    const float* p = out.data();
    for (int i = 0; i < k_; ++i) {
      index_.push_back(i < kk ? order_[i] : -1);
      value_.push_back(i < kk ? p[order_[i]] : 0.0f);
    }
  }
  // `output`: the output's name where the model has several ("" otherwise).
  void print(std::FILE* to, const std::vector<std::string>& labels, int first_frame, const std::string& output) const {
    for (std::size_t n = 0; n * k_ < index_.size(); ++n) {
      std::fprintf(to, "frame %zu%s%s:", n + first_frame, output.empty() ? "" : " ", output.c_str());
      for (int i = 0; i < k_ && index_[n * k_ + i] >= 0; ++i) {
        const int c = index_[n * k_ + i];
        std::fprintf(to, "  %d", c);
        if (c < static_cast<int>(labels.size())) std::fprintf(to, " %s", labels[c].c_str());
        std::fprintf(to, " (%.4f)", value_[n * k_ + i]);
      }
      std::fprintf(to, "\n");
    }
  }

 private:
  int k_;
  std::vector<int> order_, index_;
  std::vector<float> value_;
};

// Everything a rank needs before streaming; built inside one try so that set-up errors on any
// rank can be agreed on before anyone waits for anyone.
struct Setup {
  cluster::Cluster cluster;  // --emulate / --pace, else --cluster: the devices (pacing, memory, power)
  std::unique_ptr<Transport> emulated;  // wraps the real transport under --emulate
  std::unique_ptr<DevicePacer> pacer;
  io::ModelStructure structure;
  plan::ResolvedPlan plan;
  std::unique_ptr<io::StoppableStream> source;  // the source rank's input
  std::unique_ptr<Pipeline> pipeline;
  std::vector<std::string> labels;
  std::vector<std::string> output_targets;  // --output's files, one per output of the model
};

// The hosts that the first `ranks` device slots belong to, for a message: "pi1, pi2, pi3".
std::string first_hosts(const cluster::Cluster& c, int ranks) {
  std::string names;
  for (const auto& h : cluster::first_devices(c, ranks).hosts) names += (names.empty() ? "" : ", ") + h.name;
  return names;
}

std::vector<io::NamedInput> named_inputs(const model::Model& m) {
  std::vector<io::NamedInput> inputs;
  for (const auto& input : m.inputs()) inputs.push_back({input.name, input.shape});
  return inputs;
}

// The signatures of the files --input names (none for --synthetic or a stream), for the
// journal: an input replaced between a stop and --resume is another run.
std::string input_file_signatures(const std::vector<std::string>& specs, const std::vector<io::NamedInput>& inputs) {
  std::string signatures;
  for (const auto& spec : specs) {
    const std::string file = io::input_source(spec, inputs);
    const std::string signature = io::file_signature(file);
    if (!signature.empty()) signatures += cat(signatures.empty() ? "" : "; ", file, ": ", signature);
  }
  return signatures;
}

}  // namespace

int run_distributed(Transport& real, const RunOptions& o) {
  const int rank = real.rank();
  // With --results -, standard output carries the JSON lines alone (for a pipe into jq): the
  // text for people goes to standard error.
  const bool results_to_stdout = o.results == "-";
  std::ostream& text = results_to_stdout ? std::cerr : std::cout;
  set_compute_threads(o.threads);
  Setup setup;
  std::string error;
  // Every rank takes part in this collective, whatever happens next: it names the shared medium.
  const long job_key = o.emulate.empty() ? 0 : real.max_all(static_cast<int>(getpid()));
  Transport* transport = &real;
  // The cluster whose devices' speed this run imitates: --emulate (network too) or --pace
  // (compute only; messages go as the transport sends them, as on the testbed's kernel network).
  const std::string& paced = !o.emulate.empty() ? o.emulate : o.pace;
  try {
    if (!o.emulate.empty() && !o.pace.empty()) fail("run: give --emulate or --pace, not both");
    if (!paced.empty()) {
      setup.cluster = cluster::read_cluster(paced);
      if (setup.cluster.ranks() < real.size())
        fail(paced, ": the cluster has ", setup.cluster.ranks(), " device slot(s), the job ", real.size(), " ranks");
      // A larger cluster is allowed (one file for jobs of 1 to N devices), but said: the devices
      // beyond the job's ranks are not emulated.
      if (setup.cluster.ranks() > real.size() && rank == 0)
        std::fprintf(stderr, "chorus: note: %s has %d device slots; this job's %d rank(s) run as the first %d (%s)\n",
                     paced.c_str(), setup.cluster.ranks(), real.size(), real.size(),
                     first_hosts(setup.cluster, real.size()).c_str());
    }
    if (!o.emulate.empty()) {
      setup.emulated = make_emulated_transport(real, setup.cluster.network, job_key);
      transport = setup.emulated.get();
    }
  } catch (const Error& e) {
    error = e.what();
  }
  Transport& t = *transport;
  if (error.empty()) try {
    setup.structure = io::load_model_structure(o.model, o.arch, /*optimize=*/true);
    model::Model& m = setup.structure.model;
    if (!o.output.empty()) setup.output_targets = io::output_targets(o.output, m.output_names());
    check_run_paths(o, setup.output_targets, /*writes_report=*/rank == 0);
    plan::Plan p = !o.plan_path.empty()
                       ? plan::read_plan(o.plan_path)
                       : plan::make_strategy_plan(o.strategy.empty() ? "pipeline" : o.strategy, m, t.size());
    if (p.model.empty()) p.model = o.model;
    if (o.plan_path.empty() && rank == 0) {
      const std::string note = plan::strategy_note(o.strategy, m, t.size());
      if (!note.empty()) std::fprintf(stderr, "chorus: note: %s\n", note.c_str());
    }
    if (o.max_in_flight != 0) {
      if (o.max_in_flight < 0) fail("run: --max-in-flight ", o.max_in_flight, " is below 1");
      p.max_in_flight = o.max_in_flight;
    }
    setup.plan = plan::validate_plan(p, m, t.size());
    // Refuse a plan that would not fit the devices' declared memory, before any weight loads.
    if (!paced.empty() || !o.cluster.empty()) {
      if (paced.empty()) setup.cluster = cluster::read_cluster(o.cluster);  // kept for the energy figures
      plan::check_plan_fits(m, setup.cluster, cluster::model_key(o.model), p);
    }
    if (setup.plan.max_in_flight < 1) fail("plan: max_in_flight ", setup.plan.max_in_flight, " is below 1");
    if (rank == setup.plan.plan.source) {
      io::RunInputOptions in = o.source;
      in.input.channels_first = m.channels_first();
      setup.source = std::make_unique<io::StoppableStream>(io::open_run_input(o.inputs, named_inputs(m), in),
                                                           stop_requested, "stopped on request (SIGUSR1)");
      if (setup.source->count() == 0) fail(setup.source->describe(), ": no frames to run");
      if (o.resume && !setup.source->why_not_resumable().empty())
        fail(setup.source->describe(), ": cannot be resumed: ", setup.source->why_not_resumable());
    }
    if (rank == setup.plan.plan.sink && !o.labels.empty()) {
      setup.labels = read_labels(o.labels);
      // Fewer names than classes is most often another model's file: said, not silently half-named.
      const std::size_t classes = m.shape_of(m.outputs()[0]).size();
      if (setup.labels.size() < classes)
        std::fprintf(stderr, "chorus: warning: %s has %zu labels; the model's output has %zu classes\n",
                     o.labels.c_str(), setup.labels.size(), classes);
    }
    // This rank's share: only its stages' layers, only its slices of split layers.
    // (An ONNX reader holds the parsed file until the workers are built; see io/onnx/onnx_model.h.)
    const std::unique_ptr<io::WeightReader> reader = io::open_weight_reader(setup.structure);
    std::vector<std::unique_ptr<partition::StageWorker>> workers;
    for (std::size_t s = 0; s < setup.plan.stages.size(); ++s) {
      const auto& ranks = setup.plan.stages[s].ranks;
      auto it = std::find(ranks.begin(), ranks.end(), rank);
      if (it != ranks.end())
        workers.push_back(std::make_unique<partition::StageWorker>(
            m, setup.plan, static_cast<int>(s), static_cast<int>(it - ranks.begin()), *reader,
            /*fuse=*/paced.empty()));  // emulation paces each layer on its own
    }
    setup.pipeline = std::make_unique<Pipeline>(t, m, setup.plan, std::move(workers), o.stall_timeout_s);
    setup.pipeline->set_parity_wait(o.parity_wait_s);
    if (!paced.empty()) {
      setup.pacer = std::make_unique<DevicePacer>(setup.cluster.device_of(rank).profile, m, cluster::model_key(o.model));
      setup.pipeline->set_pacer(setup.pacer.get());
    }
  } catch (const Error& e) {
    error = e.what();
  }
  // 2: rank 0 failed (it prints); 1: only other ranks failed (they print, with their rank).
  const int failed = t.max_all(error.empty() ? 0 : (rank == 0 ? 2 : 1));
  if (failed) {
    if (!error.empty() && (rank == 0 || failed == 1))
      std::fprintf(stderr, "%schorus: error: %s\n", t.size() > 1 ? cat("[rank ", rank, "] ").c_str() : "",
                   error.c_str());
    return 1;
  }
  // Every rank got here (the agreement above is collective), so the host table is safe to swap.
  setup.pipeline->set_hosts(t.all_gather_strings(t.host()));
  // One clock for frame times across hosts (on the real transport: emulation's delays are not
  // the clocks').
  const ClockOffset clock = estimate_clock_offset(real);
  setup.pipeline->set_clock_offset(clock.offset_s);
  if (t.size() > 1) install_failure_notice(setup.pipeline->describe_rank(rank));
  const model::Model& m = setup.structure.model;
  const int source_rank = setup.plan.plan.source, sink_rank = setup.plan.plan.sink;

  // Durable outputs: the sink writes each frame as it completes, and a journal records it; a
  // resumed run starts where the journal ends. The sink learns the run's identity (the input
  // the source reads) before it opens the journal, and every rank learns where to start.
  const auto source_info = t.all_gather_strings(
      rank == source_rank && setup.source
          ? cat(setup.source->count(), "\n", setup.source->why_not_resumable().empty() ? 1 : 0, "\n",
                input_file_signatures(o.inputs, named_inputs(m)), "\n", setup.source->identity())
          : "");
  const std::string& info = source_info.at(source_rank);
  const int total_frames = std::atoi(info.c_str());  // -1: known at the end (a stream)
  // count, resumable, the input files' signatures (where the source reads them), identity
  const std::size_t info_line2 = info.find('\n') + 1, info_line3 = info.find('\n', info_line2) + 1,
                    info_line4 = info.find('\n', info_line3) + 1;
  const bool resumable = info.compare(info_line2, 1, "1") == 0;
  const std::string input_files = info.substr(info_line3, info_line4 - 1 - info_line3);
  const std::string source_identity = info.substr(info_line4);
  // One journal per output (output_targets), written together frame by frame.
  const std::vector<std::string>& output_names = m.output_names();
  const bool several_outputs = output_names.size() > 1;
  const std::vector<std::string>& targets = setup.output_targets;
  std::vector<std::unique_ptr<io::OutputJournal>> journals;
  error.clear();
  if (rank == sink_rank && !o.output.empty()) try {
      for (std::size_t k = 0; k < targets.size(); ++k) {
        io::OutputRun run{o.model,
                          source_identity,
                          total_frames,
                          io::keras_dims(m.shape_of(m.outputs()[k]), m.channels_first()),
                          io::file_signature(o.model) + (o.arch.empty() ? "" : "; " + io::file_signature(o.arch)),
                          input_files};
        journals.push_back(std::make_unique<io::OutputJournal>(targets[k], run, o.resume));
        if (journals.back()->replaced_unfinished_run())
          std::fprintf(stderr, "chorus: note: starting %s afresh; an unfinished run's journal was there (--resume "
                       "continues one)\n", targets[k].c_str());
      }
    } catch (const Error& e) {
      error = e.what();
    }
  if (t.max_all(error.empty() ? 0 : 1)) {
    if (!error.empty()) std::fprintf(stderr, "chorus: error: %s\n", error.c_str());
    return 1;
  }
  // A run killed between two outputs' writes left one journal a frame ahead: start from the
  // one behind, and write each journal only the frames it lacks.
  int journalled = total_frames < 0 ? std::numeric_limits<int>::max() : total_frames;
  for (const auto& j : journals) journalled = std::min(journalled, j->frames_done());
  const int first_frame = t.max_all(journals.empty() ? 0 : journalled);
  // Passing over the frames done can fail (a video shorter than its journal): every rank learns
  // it, as in the set-up above, rather than wait in the next collective for the source.
  error.clear();
  if (first_frame > 0 && rank == source_rank) try {
      setup.source->skip(first_frame);
    } catch (const Error& e) {
      error = e.what();
    }
  if (t.max_all(error.empty() ? 0 : 1)) {
    if (!error.empty()) std::fprintf(stderr, "chorus: error: %s\n", error.c_str());
    return 1;
  }
  if (rank == 0 && first_frame > 0)
    text << "resuming " << o.output << ": " << first_frame
         << (total_frames >= 0 ? cat(" of ", total_frames) : std::string()) << " frames were done\n";
  if (total_frames >= 0 && first_frame >= total_frames) {  // nothing left: just complete the output
    for (auto& j : journals) j->finish();
    if (rank == 0) text << "nothing to resume: all " << total_frames << " frames are in " << o.output << "\n";
    return 0;
  }

  if (rank == 0 && !o.quiet) {
    std::string inputs;
    for (const auto& in : m.inputs())
      inputs += cat(inputs.empty() ? "" : ", ", m.inputs().size() > 1 ? in.name + " " : "", in.shape.str());
    text << "model: " << o.model << "  (" << m.nodes().size() << " layers, input"
         << (m.inputs().size() > 1 ? "s " : " ") << inputs
         << (several_outputs ? cat(", ", output_names.size(), " outputs") : "") << ")\n";
    if (setup.source) text << "input: " << setup.source->describe() << "\n";
    print_plan(setup.plan, m, text);
    text << std::flush;
  }

  PipelineResult result;
  const int frames_to_run = total_frames < 0 ? -1 : total_frames - first_frame;
  int outputs_seen = 0;
  std::vector<TopClasses> top;
  for (std::size_t k = 0; k < output_names.size(); ++k)
    top.emplace_back(std::max(0, o.top), rank == sink_rank && o.top > 0 ? std::max(0, frames_to_run) : 0);
  // Results as they come, from the sink (its clock is rank 0's for frame times).
  std::unique_ptr<report::ResultsWriter> results;
  error.clear();
  if (rank == sink_rank && !o.results.empty()) try {
      results = std::make_unique<report::ResultsWriter>(o.results, o.top >= 0 ? o.top : 5, setup.labels);
    } catch (const Error& e) {
      error = e.what();
    }
  if (t.max_all(error.empty() ? 0 : 1)) {
    if (!error.empty()) std::fprintf(stderr, "chorus: error: %s\n", error.c_str());
    return 1;
  }
  double first_capture = -1;
  // The sink shows progress on runs longer than a few seconds: a bar when it knows the frame
  // count, the count and rate otherwise.
  ProgressBar progress(frames_to_run, "frames");
  if (setup.source && setup.source->capture_stats())
    progress.set_detail([&] {
      const auto c = setup.source->capture_stats();
      return cat(c->captured, " captured at ", c->fps, " fps, ", c->dropped, " dropped");
    });
  try {
    // Outputs of a channels_first model that are images go out in its order, to the files and
    // as the class indices of --top and --results (indices into the array written); the buffers
    // are made here, so that a frame allocates nothing.
    std::vector<Tensor> nchw(m.outputs().size());  // such an output's frame, flat, in NCHW order
    for (std::size_t k = 0; k < m.outputs().size(); ++k) {
      const Shape shape = m.shape_of(m.outputs()[k]);
      if (m.channels_first() && io::keras_dims(shape, true).size() >= 3)
        nchw[k] = Tensor(1, Shape{1, 1, static_cast<int>(shape.size())});
    }
    std::vector<const Tensor*> as_written(m.outputs().size());
    result = setup.pipeline->run(
        setup.source.get(),
        [&](int i, const FrameOrigin& origin, const std::vector<Tensor>& outputs) {
          CHORUS_ASSERT(i == outputs_seen, "output ", i, " out of order");
          ++outputs_seen;
          for (std::size_t k = 0; k < outputs.size(); ++k) {
            as_written[k] = &outputs[k];
            if (nchw[k].size() > 0) {
              nhwc_to_nchw(outputs[k].data(), nchw[k].data(), outputs[k].shape());
              as_written[k] = &nchw[k];
            }
          }
          for (std::size_t k = 0; k < journals.size(); ++k)
            if (first_frame + i >= journals[k]->frames_done())  // else written before a kill
              journals[k]->write(first_frame + i, as_written[k]->data());
          if (o.top > 0)
            for (std::size_t k = 0; k < outputs.size(); ++k) top[k].add(*as_written[k]);
          if (results) {
            if (first_capture < 0) first_capture = origin.captured_at;
            const double now = t.time() + clock.offset_s;
            results->write({origin.index, origin.captured_at - first_capture, now - origin.captured_at}, as_written,
                           output_names);
          }
          progress.update(i + 1);
        },
        frames_to_run);
    progress.finish();
  } catch (const std::exception& e) {
    silence_failure_notice();
    std::fprintf(stderr, "[rank %d on %s] chorus: error while streaming: %s\n", rank, t.host().c_str(), e.what());
    std::fflush(stderr);
    t.abort(1);
  }

  // Tiny layers (flatten, a pool the profile rates at microseconds) often overrun without
  // mattering: warn when the overruns add up to more than 1 % of the emulated compute.
  if (setup.pacer && setup.pacer->seconds_late() > 0.01 * setup.pacer->seconds_paced())
    std::fprintf(stderr,
                 "[rank %d] warning: this host was slower than the emulated %s on %d of %d layer runs (up to %.1fx "
                 "its time, %.3f s in all, %.1f %% of the emulated compute): those layers ran at the host's speed\n",
                 rank, setup.cluster.device_of(rank).name.c_str(), setup.pacer->layers_late(),
                 setup.pacer->layers_paced(), setup.pacer->worst_late_ratio(), setup.pacer->seconds_late(),
                 100 * setup.pacer->seconds_late() / setup.pacer->seconds_paced());
  // Gather every rank's figures (and the source's start / sink's finish times) on rank 0.
  result.stats.clock_offset_s = clock.offset_s;
  result.stats.clock_uncertainty_s = clock.uncertainty_s;
  nlohmann::json mine = report::rank_stats_to_json(result.stats);
  if (rank == setup.plan.plan.source) {
    mine["start"] = result.start;
    mine["captured"] = result.captured;
    nlohmann::json input{{"source", setup.source->describe()}, {"ended_early", setup.source->early_end()}};
    if (const auto c = setup.source->capture_stats())
      input.update({{"captured", c->captured}, {"processed", c->processed}, {"dropped", c->dropped}, {"fps", c->fps},
                    {"queue", c->queue}, {"drop", c->drop_policy}});
    mine["input"] = input;
  }
  if (rank == setup.plan.plan.sink) {
    mine["finish"] = result.finish;
    mine["delivered"] = result.delivered;
  }
  auto all = t.gather_strings(mine.dump(), 0);
  // Stopped on request with frames left: every rank exits with kStoppedExitCode and the sink
  // keeps the journals, as a killed run would, for --resume. An input that cannot be resumed (a
  // camera, a stream, a feed that drops) just ends there.
  const bool stopped = t.max_all(setup.source && setup.source->stopped() ? 1 : 0) != 0;
  const bool resumable_stop = stopped && resumable;

  int status = resumable_stop ? kStoppedExitCode : 0;
  if (rank == setup.plan.plan.sink) {
    try {
      if (!resumable_stop)
        for (auto& j : journals) j->finish();
      if (o.top > 0)
        for (std::size_t k = 0; k < top.size(); ++k)
          top[k].print(results_to_stdout ? stderr : stdout, setup.labels, first_frame,
                       several_outputs ? output_names[k] : "");
    } catch (const Error& e) {
      std::fprintf(stderr, "chorus: error: %s\n", e.what());
      status = 1;
    }
  }
  if (rank == 0) {
    report::RunReport r;
    r.model = o.model;
    r.plan = plan_summary(setup.plan, m);
    r.ranks = t.size();
    std::vector<double> start, finish, captured, delivered;
    double wall = 0;
    for (const auto& stats : all) {
      auto j = nlohmann::json::parse(stats);
      r.ranks_stats.push_back(report::rank_stats_from_json(j));
      if (j.contains("start")) start = j["start"].get<std::vector<double>>();
      if (j.contains("captured")) captured = j["captured"].get<std::vector<double>>();
      if (j.contains("finish")) finish = j["finish"].get<std::vector<double>>();
      if (j.contains("delivered")) delivered = j["delivered"].get<std::vector<double>>();
      if (j.contains("input")) {
        const nlohmann::json& in = j["input"];
        r.input.source = in.at("source");
        r.input.ended_early = in.at("ended_early");
        r.input.realtime = in.contains("captured");
        if (r.input.realtime) {
          r.input.frames_captured = in.at("captured");
          r.input.frames_processed = in.at("processed");
          r.input.frames_dropped = in.at("dropped");
          r.input.fps = in.at("fps");
          r.input.queue = in.at("queue");
          r.input.drop_policy = in.at("drop");
        }
      }
      wall = std::max(wall, j["wall_s"].get<double>());
    }
    // Capture to result as the --results lines see it: until the sink handed the output on.
    if (r.input.realtime) report::summarise_capture(r.input, captured, delivered);
    start.resize(std::min(start.size(), finish.size()));
    r.wall_s = wall;
    int round = 1;  // replicas finish in bursts of the widest replicated stage's size
    for (const auto& st : setup.plan.stages)
      if (st.mode == plan::StageMode::replicate) round = std::max(round, static_cast<int>(st.ranks.size()));
    report::summarise_frames(r, start, finish, round, static_cast<int>(setup.plan.stages.size()));
    if (!setup.plan.plan.prediction.is_null()) r.extra["prediction"] = setup.plan.plan.prediction;
    // Energy from the devices' power figures (an estimate on real hardware as in emulation: no
    // meter is read), beside what the cost model predicts for the plan on the same cluster.
    const std::string& devices_file = !paced.empty() ? paced : o.cluster;
    if (!devices_file.empty() && r.frames > 0) try {
        const cluster::Cluster& devices = setup.cluster;  // read at set-up
        std::vector<energy::RankActivity> activity;
        for (const auto& s : r.ranks_stats) activity.push_back({s.compute_s, s.bytes_sent, s.bytes_received});
        const energy::FrameEnergy e = energy::measured_energy(devices, activity, r.wall_s, r.frames);
        std::string unknown;  // ranks whose device's power is not known (a laptop beside Pis)
        for (std::size_t k = 0; k < r.ranks_stats.size(); ++k) {
          r.ranks_stats[k].energy_j_per_frame = e.rank_j[k];
          if (e.rank_j[k] < 0)
            unknown += cat(unknown.empty() ? "" : ", ", k, " (", devices.device_of(static_cast<int>(k)).name, ")");
        }
        if (e.total_j >= 0) {
          r.energy_j_per_frame = e.total_j;
          r.energy_basis = cat("estimate: the power figures of ", devices_file,
                               " x each rank's compute time and bytes over the run's wall time; no meter was read");
          // A real run (--cluster, not paced) on hosts the file does not name: its watts are
          // another machine's, applied to this one's times. Said, not silently mixed.
          const auto short_name = [](const std::string& h) { return h.substr(0, h.find('.')); };
          std::string strangers;
          if (paced.empty())
            for (const auto& s : r.ranks_stats) {
              const bool named = std::any_of(devices.hosts.begin(), devices.hosts.end(), [&](const cluster::Host& h) {
                return short_name(h.name) == short_name(s.host);
              });
              if (!named && strangers.find(s.host) == std::string::npos)
                strangers += (strangers.empty() ? "" : ", ") + s.host;
            }
          if (!strangers.empty()) {
            r.energy_basis += cat("; ran on ", strangers, ", not a host of ", devices_file,
                                  ": those devices' watts over this machine's times");
            std::fprintf(stderr,
                         "chorus: warning: the ranks ran on %s, which %s does not name: the energy figure "
                         "applies its devices' power to this machine's times\n",
                         strangers.c_str(), devices_file.c_str());
          }
          r.extra["predicted_energy"] = energy::energy_json(energy::predicted_energy(
              m, devices, cluster::model_key(o.model), setup.plan.plan, message_header_bytes()));
        } else if (std::any_of(e.rank_j.begin(), e.rank_j.end(), [](double j) { return j >= 0; })) {
          // Some devices' figures known: theirs stand, with no total.
          r.energy_basis = cat("no total: no power figures in ", devices_file, " for rank(s) ", unknown);
        }
      } catch (const Error& e) {
        std::fprintf(stderr, "chorus: warning: no energy figure: %s\n", e.what());
      }
    // What the plan sends between ranks per frame over this run's frames, beside what was
    // measured (each rank's bytes_sent_to_per_frame).
    r.extra["predicted_bytes_per_frame"] =
        partition::frame_traffic(m, setup.plan, r.frames, message_header_bytes()).to_json();
    text << "\n";
    report::print_report(r, text);
    // An input that gave nothing (a --start past the end of a video, fewer frames than one clip)
    // is not a successful run.
    if (r.frames == 0 && first_frame > 0 && !resumable_stop && status == 0)
      text << "nothing left to resume: the input ends after the " << first_frame << " frames in " << o.output << "\n";
    else if (r.frames == 0 && !resumable_stop && status == 0) {
      std::string inputs;
      for (const auto& in : o.inputs) inputs += (inputs.empty() ? "" : ", ") + in;
      std::fprintf(stderr, "chorus: error: %s: no frames were run%s\n", inputs.empty() ? "the input" : inputs.c_str(),
                   r.input.ended_early.empty() ? "" : cat(" (", r.input.ended_early, ")").c_str());
      status = 1;
    }
    if (!o.output.empty() && status == 0)
      for (const auto& target : targets) text << "wrote " << target << "\n";
    if (resumable_stop)
      text << "stopped on request (SIGUSR1) after frame " << first_frame + r.frames
           << (total_frames >= 0 ? cat(" of ", total_frames) : std::string())
           << (o.output.empty() ? "\n" : cat("; the frames so far are in ", o.output, ", --resume runs the rest\n"));
    if (!o.report_path.empty()) {
      report::write_report(r, o.report_path);
      text << "report " << o.report_path << "\n";
    }
  }
  return status;
}

}  // namespace chorus::runtime
