// `chorus run MODEL`: streams frames through the model on every rank of the job (one rank
// without mpirun) following a plan file or a built-in strategy, and reports latency and
// throughput; outputs go to .npy or HDF5, top-K lines to the terminal.
#include "cli/commands.h"
#include "core/error.h"
#include "core/threads.h"
#include "plan/strategies.h"
#include "runtime/distributed_run.h"

namespace chorus::cli {

void add_run_command(CLI::App& app, runtime::Transport& transport, int& exit_code) {
  auto o = std::make_shared<runtime::RunOptions>();
  auto* cmd = app.add_subcommand("run", "Run a model on input frames, on one rank or across an mpirun job");
  cmd->add_option("model", o->model, "Keras .h5 or ONNX .onnx model")->required();
  cmd->add_option("--arch", o->arch, "Architecture file (.json/.yaml) for a weights-only .h5");
  auto* input = cmd->add_option("--input", o->inputs,
                                "Input: .npy batch (NHWC; NCHW for channels_first), image file or directory, "
                                "or file.h5:/dataset; for a model of several inputs, once per input as "
                                "NAME=SOURCE (or plain, in the model's order)")
                   ->allow_extra_args(false);
  auto* synthetic = cmd->add_option("--synthetic", o->input.synthetic, "Use N deterministic synthetic frames instead");
  input->excludes(synthetic);
  cmd->add_option("--seed", o->input.seed, "Seed for --synthetic frames");
  cmd->add_option("--scale", o->input.scale,
                  "Multiply input values (default 1/255 for images, 1 for arrays; every input)");
  cmd->add_option("--mean", o->input.mean, "Subtract per channel after scaling (every input)")->delimiter(',');
  cmd->add_option("--std", o->input.stddev, "Divide per channel after subtracting the mean (every input)")
      ->delimiter(',');
  auto* plan = cmd->add_option("--plan", o->plan_path, "Plan file (JSON, see docs/plan-format.md)");
  auto* strategy = cmd->add_option("--strategy", o->strategy,
                                   "Built-in plan: pipeline (default), replicate, split-output, split-input, "
                                   "split-spatial");
  plan->excludes(strategy);
  auto* output = cmd->add_option("--output", o->output,
                                 "Write outputs to .npy or .h5[:/dataset], frame by frame with a journal; a model "
                                 "of several outputs writes one file per output, named T.NAME.npy (or .h5)");
  cmd->add_option("--report", o->report_path, "Write the run report as JSON (docs/report-format.md)");
  cmd->add_option("--top", o->top, "Print the K largest outputs of each frame");
  cmd->add_option("--labels", o->labels, "Class names, one per line, for --top");
  cmd->add_option("--max-in-flight", o->max_in_flight,
                  "Frames in the system at once (default: the plan's, enough to keep every stage busy); 1: each "
                  "frame starts when the one before has left, so the latency is one frame's");
  cmd->add_option("--threads", o->threads,
                  "compute threads per rank (default 1; 0: one per CPU of the host; more than its CPUs are capped)");
  cmd->add_option("--stall-timeout", o->stall_timeout_s,
                  "Seconds a rank waits for a peer before ending the job with a message (default 300, 0: forever)");
  cmd->add_option("--cluster", o->cluster,
                  "Cluster file of the devices: a plan that needs more memory than one declares is refused");
  auto* emulate = cmd->add_option("--emulate", o->emulate,
                                  "Cluster file: each rank computes like its device and messages follow the network "
                                  "model");
  cmd->add_option("--pace", o->pace,
                  "Cluster file: each rank computes like its device; messages go over the real network "
                  "(chorus testbed uses it)")
      ->excludes(emulate);
  cmd->add_flag("--quiet", o->quiet, "Do not print the plan table");
  cmd->add_flag("--resume", o->resume,
                "Continue the --output of a run that was killed: only the frames its journal lacks are run")
      ->needs(output);
  cmd->callback([o, &transport, &exit_code] {
    if (o->inputs.empty() && o->input.synthetic <= 0) fail("run: give --input FILE or --synthetic N");
    o->threads = checked_thread_count(o->threads, /*warn=*/transport.rank() == 0);
    exit_code = runtime::run_distributed(transport, *o);
  });
}

}  // namespace chorus::cli
