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
  cmd->add_option("model", o->model, "Keras .h5 or .keras, or ONNX .onnx model")->required();
  cmd->add_option("--arch", o->arch, "Architecture file (.json/.yaml) for a weights-only .h5");
  auto* input = cmd->add_option("--input", o->inputs,
                                "Input: .npy batch (NHWC; NCHW for channels_first), image file or directory, "
                                "file.h5:/dataset, a video file (.mp4, .mkv, .avi...), a stream (rtsp://, "
                                "http://) or a camera (/dev/video0); for a model of several inputs, once per "
                                "input as NAME=SOURCE (or plain, in the model's order)")
                   ->allow_extra_args(false);
  io::InputOptions& in = o->source.input;
  auto* synthetic = cmd->add_option("--synthetic", in.synthetic, "Use N deterministic synthetic frames instead");
  input->excludes(synthetic);
  cmd->add_option("--seed", in.seed, "Seed for --synthetic frames")->check(seed_number());
  cmd->add_option("--scale", in.scale,
                  "Multiply input values (default 1/255 for images and video, 1 for arrays; every input)")
      ->check(finite_number());
  cmd->add_option("--mean", in.mean, "Subtract per channel after scaling (every input)")->delimiter(',');
  cmd->add_option("--std", in.stddev, "Divide per channel after subtracting the mean (every input)")->delimiter(',');
  // Video and real time (docs/video.md).
  auto* frames = cmd->add_option("--frames", o->source.video.frames, "Video: take at most N frames");
  auto* start = cmd->add_option("--start", o->source.video.start_s, "Video file: start at this time (seconds)")
                    ->check(finite_number(0));
  cmd->add_option("--clip-stride", o->source.clip_stride,
                  "Video for a clip model (3-D input, e.g. C3D): frames between clip starts (default: the clip's "
                  "length, so clips do not overlap)")
      ->check(finite_number(1));
  cmd->add_option("--input-timeout", o->source.video.timeout_s,
                  "Video, stream or camera: seconds to wait for it to open or send data (default 10)")
      ->check(finite_number());
  cmd->add_option("--rtsp-transport", o->source.video.rtsp_transport,
                  "RTSP stream: carry the video over tcp or udp (default: udp, then tcp if the server refuses)")
      ->check(CLI::IsMember({"tcp", "udp"}));
  auto* realtime = cmd->add_flag("--realtime", o->source.realtime,
                                 "Behave like a camera: frames come at the input's rate (or --fps) into a bounded "
                                 "queue, and are dropped when it is full");
  cmd->add_option("--fps", o->source.realtime_options.fps, "Real time: frames per second (default: the video's rate)")
      ->check(finite_number() & CLI::Range(1e-3, 1e4))
      ->needs(realtime);
  cmd->add_option("--queue", o->source.realtime_options.queue, "Real time: frames that may wait (default 10)")
      ->needs(realtime);
  auto drop = std::make_shared<std::string>("oldest");
  cmd->add_option("--drop", *drop,
                  "Real time: which frame goes when the queue is full: oldest (default), newest, or none (the "
                  "capture waits; nothing is lost)")
      ->needs(realtime);
  cmd->add_option("--results", o->results,
                  "Write one JSON line per frame as it is done (frame, capture time, latency, --top classes with "
                  "--labels, 5 by default) to FILE.jsonl, or - for standard output");
  auto* plan = cmd->add_option("--plan", o->plan_path, "Plan file (JSON, see docs/plan-format.md)");
  auto* strategy = cmd->add_option("--strategy", o->strategy,
                                   "Built-in plan: pipeline (default), replicate, split-output, split-input, "
                                   "split-spatial, split-tensor");
  plan->excludes(strategy);
  auto* output = cmd->add_option("--output", o->output,
                                 "Write outputs to .npy or .h5[:/dataset], frame by frame with a journal; a model "
                                 "of several outputs writes one file per output, named T.NAME.npy (or .h5)");
  cmd->add_option("--report", o->report_path, "Write the run report as JSON (docs/report-format.md)");
  auto* top = cmd->add_option("--top", o->top,
                              "Print the K largest outputs of each frame (with --results: K per line, 0 for none)");
  cmd->add_option("--labels", o->labels, "Class names, one per line, for --top");
  auto* max_in_flight =
      cmd->add_option("--max-in-flight", o->max_in_flight,
                      "Frames in the system at once (default: the plan's, enough to keep every stage busy); 1: each "
                      "frame starts when the one before has left, so the latency is one frame's");
  cmd->add_option("--threads", o->threads,
                  "compute threads per rank (default 1; 0: one per CPU of the host; more than its CPUs are capped)");
  cmd->add_option("--stall-timeout", o->stall_timeout_s,
                  "Seconds a rank waits for a peer before ending the job with a message (default 300, 0: forever)")
      ->check(finite_number());
  cmd->add_option("--parity-wait", o->parity_wait_s,
                  "Parity stages: seconds a consumer waits for a member's late slice before rebuilding it from "
                  "the parity (default 0.1)")
      ->check(finite_number() & CLI::Range(0.0, 3600.0));
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
  cmd->callback([o, drop, frames, start, synthetic, top, max_in_flight, &transport, &exit_code] {
    if (synthetic->count() > 0 && o->source.input.synthetic < 1)
      fail("run: --synthetic ", o->source.input.synthetic, ": give at least 1 frame");
    if (o->inputs.empty() && o->source.input.synthetic <= 0) fail("run: give --input FILE or --synthetic N");
    if (top->count() > 0 && o->top < 0) fail("run: --top ", o->top, " is below 0");
    // 0 would read as "the plan's" (the option's unset value) without a word.
    if (max_in_flight->count() > 0 && o->max_in_flight < 1)
      fail("run: --max-in-flight ", o->max_in_flight, " is below 1");
    if (o->max_in_flight > plan::kMostInFlight)  // each frame in flight holds buffers
      fail("run: --max-in-flight ", o->max_in_flight, " is above ", plan::kMostInFlight);
    if (!o->labels.empty() && o->top <= 0 && o->results.empty())
      fail("run: --labels names the classes that --top or --results print; give one of them");
    if (o->stall_timeout_s < 0) fail("run: --stall-timeout ", o->stall_timeout_s, " is below 0 (0: wait forever)");
    o->source.realtime_options.drop = io::parse_drop_policy(*drop);
    o->source.video_options = frames->count() > 0 || start->count() > 0;
    if (frames->count() > 0 && o->source.video.frames < 1)
      fail("run: --frames ", o->source.video.frames, " is below 1");
    if (o->source.video.start_s < 0) fail("run: --start ", o->source.video.start_s, " is below 0");
    if (o->source.video.timeout_s <= 0) fail("run: --input-timeout ", o->source.video.timeout_s, " must be above 0");
    o->threads = checked_thread_count(o->threads, /*warn=*/transport.rank() == 0);
    exit_code = runtime::run_distributed(transport, *o);
  });
}

}  // namespace chorus::cli
