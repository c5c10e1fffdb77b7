// `chorus bench MODEL`: ms/frame, GFLOP/s and peak RSS on synthetic frames, optionally with
// a per-layer breakdown.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/load_model.h"
#include "cli/table.h"
#include "core/error.h"
#include "core/memory.h"
#include "core/parallel.h"
#include "core/random.h"
#include "core/threads.h"

namespace chorus::cli {

namespace {

struct BenchOptions {
  std::string model, arch;
  int frames = 10, warmup = 2, threads = 1, batch = 1;
  bool layers = false, json = false;
};

void run_bench(BenchOptions o) {
  o.threads = checked_thread_count(o.threads);
  set_compute_threads(o.threads);
  if (o.frames < 1 || o.batch < 1) fail("bench: --frames and --batch must be at least 1");
  model::Model m = load_model_with_weights(o.model, o.arch);
  const std::vector<Tensor> inputs = random_inputs(m, o.batch, 7);
  const std::vector<const Tensor*> input = tensor_pointers(inputs);
  for (int i = 0; i < o.warmup; ++i) m.forward(input);
  // --layers times the model as it runs: a fused step (a 1x1 convolution and its residual Add,
  // an expansion, depthwise layer and projection) is one row.
  std::vector<double> node_seconds(m.nodes().size(), 0.0);
  std::vector<int> step_first(m.nodes().size(), -1);
  std::vector<double> per_frame;
  for (int i = 0; i < o.frames; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    if (o.layers)
      m.forward(input, &node_seconds, &step_first);
    else
      m.forward(input);
    per_frame.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / o.batch);
  }
  std::vector<double> sorted = per_frame;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[sorted.size() / 2];
  double mean = 0;
  for (double s : per_frame) mean += s / per_frame.size();
  const double macs = m.total_cost().macs;
  const double gflops = 2.0 * macs / median / 1e9;
  const std::size_t rss = peak_rss_bytes();
  if (o.json) {
    nlohmann::json out{{"model", o.model},
                       {"threads", o.threads},
                       {"batch", o.batch},
                       {"frames", o.frames},
                       {"ms_per_frame_median", median * 1e3},
                       {"ms_per_frame_mean", mean * 1e3},
                       {"ms_per_frame_min", sorted.front() * 1e3},
                       {"gflops", gflops},
                       {"macs", macs},
                       {"peak_rss_bytes", rss},
                       {"weight_bytes", m.total_cost().weight_bytes},
                       {"blas", blas_kernels()}};
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::cout << "model    " << o.model << "  (" << human_count(macs) << " MACs, "
            << human_bytes(static_cast<double>(m.total_cost().weight_bytes)) << " weights)\n"
            << "setup    " << o.threads << " thread(s), batch " << o.batch << ", " << o.frames << " timed runs after "
            << o.warmup << " warm-up; BLAS: " << blas_kernels() << "\n"
            << "time     " << fixed(median * 1e3, 2) << " ms/frame median (mean " << fixed(mean * 1e3, 2) << ", min "
            << fixed(sorted.front() * 1e3, 2) << "), " << fixed(1.0 / median, 2) << " frames/s\n"
            << "rate     " << fixed(gflops, 1) << " GFLOP/s (2 x MACs / median time)\n"
            << "memory   peak RSS " << human_bytes(static_cast<double>(rss)) << "\n";
  if (o.layers) {
    std::cout << "\n";
    Table t({"layer", "type", "ms/frame", "share", "GFLOP/s"});
    double total = 0;
    for (double s : node_seconds) total += s;
    for (std::size_t i = 0; i < m.nodes().size(); ++i) {
      if (step_first[i] != static_cast<int>(i)) continue;  // in the row of the step that ran it
      std::string name = m.nodes()[i].name(), type = m.nodes()[i].layer->type();
      double step_macs = m.cost(static_cast<int>(i)).macs;
      std::size_t j = i + 1;
      for (; j < m.nodes().size() && step_first[j] == static_cast<int>(i); ++j) {
        type += "+" + m.nodes()[j].layer->type();
        step_macs += m.cost(static_cast<int>(j)).macs;
      }
      if (j > i + 1) name += " +" + std::to_string(j - i - 1);
      const double s = node_seconds[i] / (o.frames * o.batch);
      t.add({name, type, fixed(s * 1e3, 3), fixed(100.0 * node_seconds[i] / total, 1) + "%",
             s > 0 ? fixed(2.0 * step_macs / s / 1e9, 1) : "-"});
    }
    t.print(std::cout);
    std::cout << "(NAME +k: the layer and the k after it, run as one step as in every run; `chorus profile` "
                 "times each layer alone)\n";
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  auto* cmd = app.add_subcommand("bench", "Time a model on synthetic frames (ms/frame, GFLOP/s, peak RSS)");
  cmd->add_option("model", o->model, "Keras .h5 or .keras, or ONNX .onnx model")->required();
  cmd->add_option("--arch", o->arch, "Architecture file for a weights-only .h5");
  cmd->add_option("--frames", o->frames, "Timed runs");
  cmd->add_option("--warmup", o->warmup, "Untimed runs first")->check(CLI::Range(0, 1000000));
  cmd->add_option("--threads", o->threads,
                  "compute threads (default 1; 0: one per CPU of the host; more than its CPUs are capped)");
  cmd->add_option("--batch", o->batch, "Frames per forward pass");
  cmd->add_flag("--layers", o->layers, "Per-layer time table");
  cmd->add_flag("--json", o->json, "Print the result as JSON");
  cmd->callback([o] { run_bench(*o); });
}

}  // namespace chorus::cli
