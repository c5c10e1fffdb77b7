// `chorus run MODEL --input IN --output OUT`: single-process inference over a stream of
// frames, with timing, top-K lines and outputs written to .npy or HDF5.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <numeric>

#include "cli/commands.h"
#include "cli/load_model.h"
#include "cli/progress.h"
#include "cli/table.h"
#include "core/error.h"
#include "core/memory.h"
#include "core/threads.h"
#include "io/inputs.h"

namespace chorus::cli {

namespace {

struct RunOptions {
  std::string model, arch, input, output, labels;
  int synthetic = 0;
  std::uint64_t seed = 1;
  int top = 0;
  int batch = 1;
  int threads = 1;
  float scale = -1;
  std::vector<float> mean, stddev;
};

std::vector<std::string> read_labels(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(path, ": cannot open labels file");
  std::vector<std::string> labels;
  std::string line;
  while (std::getline(in, line)) labels.push_back(line);
  return labels;
}

void print_top(const Tensor& out, int k, const std::vector<std::string>& labels) {
  const int classes = static_cast<int>(out.frame_size());
  k = std::min(k, classes);
  for (int n = 0; n < out.frames(); ++n) {
    const float* p = out.frame(n);
    std::vector<int> order(classes);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int a, int b) { return p[a] > p[b]; });
    std::cout << "frame " << n << ":";
    for (int i = 0; i < k; ++i) {
      std::cout << "  " << order[i];
      if (order[i] < static_cast<int>(labels.size())) std::cout << " " << labels[order[i]];
      std::cout << " (" << fixed(p[order[i]], 4) << ")";
    }
    std::cout << "\n";
  }
}

void run_inference(const RunOptions& o) {
  set_blas_threads(o.threads);
  if (o.batch < 1) fail("--batch must be at least 1");
  model::Model m = load_model_with_weights(o.model, o.arch);
  io::InputOptions in_opts;
  in_opts.input = o.input;
  in_opts.synthetic = o.synthetic;
  in_opts.seed = o.seed;
  in_opts.shape = m.input_shape();
  in_opts.channels_first = m.channels_first();
  in_opts.scale = o.scale;
  in_opts.mean = o.mean;
  in_opts.stddev = o.stddev;
  auto source = io::open_input(in_opts);
  std::vector<std::string> labels = o.labels.empty() ? std::vector<std::string>{} : read_labels(o.labels);

  const int frames = source->count();
  Tensor outputs(frames, m.output_shape());
  Tensor batch;
  std::vector<double> batch_seconds;
  ProgressBar progress(frames, "frames");
  auto start = std::chrono::steady_clock::now();
  for (int first = 0; first < frames; first += o.batch) {
    const int count = std::min(o.batch, frames - first);
    batch.resize(count, m.input_shape());
    for (int i = 0; i < count; ++i) source->read(first + i, batch.frame(i));
    auto t0 = std::chrono::steady_clock::now();
    Tensor out = m.forward(batch);
    batch_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    std::copy(out.data(), out.data() + out.size(), outputs.frame(first));
    progress.update(first + count);
  }
  progress.finish();
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double compute = std::accumulate(batch_seconds.begin(), batch_seconds.end(), 0.0);

  std::cout << "model   " << o.model << "\n"
            << "input   " << source->describe() << ", batch " << o.batch << ", " << o.threads << " thread(s)\n"
            << "output  " << m.output_shape().str() << " per frame\n"
            << "time    " << frames << " frames in " << fixed(total, 3) << " s: " << fixed(1000.0 * compute / frames, 2)
            << " ms/frame compute, " << fixed(frames / total, 2) << " frames/s overall\n";
  if (batch_seconds.size() > 1) {
    double steady = (compute - batch_seconds[0]) / (frames - std::min(o.batch, frames));
    std::cout << "steady  " << fixed(1000.0 * steady, 2) << " ms/frame after the first batch\n";
  }
  std::cout << "memory  peak RSS " << human_bytes(static_cast<double>(peak_rss_bytes())) << "\n";
  if (!o.output.empty()) {
    io::write_outputs(o.output, outputs, m.channels_first());
    std::cout << "wrote   " << o.output << "\n";
  }
  if (o.top > 0) print_top(outputs, o.top, labels);
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  auto* cmd = app.add_subcommand("run", "Run a model on input frames");
  cmd->add_option("model", o->model, "Keras .h5 model")->required();
  cmd->add_option("--arch", o->arch, "Architecture file (.json/.yaml) for a weights-only .h5");
  auto* input = cmd->add_option("--input", o->input,
                                "Input: .npy batch (NHWC; NCHW for channels_first), image file or directory, "
                                "or file.h5:/dataset");
  auto* synthetic = cmd->add_option("--synthetic", o->synthetic, "Use N deterministic synthetic frames instead");
  input->excludes(synthetic);
  cmd->add_option("--seed", o->seed, "Seed for --synthetic frames");
  cmd->add_option("--output", o->output, "Write outputs to .npy or .h5[:/dataset]");
  cmd->add_option("--top", o->top, "Print the K largest outputs of each frame");
  cmd->add_option("--labels", o->labels, "Class names, one per line, for --top");
  cmd->add_option("--batch", o->batch, "Frames per forward pass");
  cmd->add_option("--threads", o->threads, "BLAS/OpenMP threads (default 1)");
  cmd->add_option("--scale", o->scale, "Multiply input values (default 1/255 for images, 1 for arrays)");
  cmd->add_option("--mean", o->mean, "Subtract per channel after scaling")->delimiter(',');
  cmd->add_option("--std", o->stddev, "Divide per channel after subtracting the mean")->delimiter(',');
  cmd->callback([o] {
    if (o->input.empty() && o->synthetic <= 0) fail("run: give --input FILE or --synthetic N");
    run_inference(*o);
  });
}

}  // namespace chorus::cli
