#pragma once
// The streaming executor every rank runs. Frames flow from the source rank through the
// stages to the sink rank as non-blocking messages; each rank runs its tasks (stage s of
// frame i) in one global order, by i + s then later stages first (the source a few frames
// ahead), which every rank derives from the plan. That
// order needs no coordination, overlaps stages (a rank runs frame i+1's early stage while a
// later stage of frame i is elsewhere), and cannot deadlock: the earliest unfinished task
// always has its inputs. Frames carry sequence numbers; an end-of-stream message follows the
// last; credits bound the frames in flight when the source is not the sink. Every buffer of the
// steady state (messages, hand-offs between roles of one rank, the stages' activations) is
// kept from frame to frame, so that frames after the first few allocate nothing.
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "io/data/frame_stream.h"
#include "partition/stage_worker.h"
#include "plan/validate.h"
#include "report/report.h"
#include "runtime/transport.h"

namespace chorus::runtime {

// Where a frame came from, passed with it from the source to the sink: its number in the
// input and when it was captured, on rank 0's clock (a real-time feed's frames waited).
struct FrameOrigin {
  std::int64_t index = 0;
  double captured_at = 0;
};

struct PipelineResult {
  report::RankStats stats;
  std::vector<double> start, finish;  // per frame (source; sink), on rank 0's clock
  std::vector<double> delivered;      // per frame (sink): when the sink handed its output on
  std::vector<double> captured;       // per frame (source): when it was captured, on rank 0's clock
};

// Bytes of the header every message carries before its values (for the traffic model).
std::size_t message_header_bytes();

class Pipeline {
 public:
  // `workers`: this rank's share of each stage it belongs to (any order). A rank that waits
  // longer than `stall_timeout_s` (0: forever) for a peer throws, naming the peer.
  Pipeline(Transport& transport, const model::Model& model, const plan::ResolvedPlan& plan,
           std::vector<std::unique_ptr<partition::StageWorker>> workers, double stall_timeout_s = 0);
  ~Pipeline();

  // Rank 0's clock minus this rank's (runtime/clock_offsets.h); frame times are on rank 0's.
  void set_clock_offset(double seconds);

  // Emulation: paces every layer this rank runs (null: run at the host's speed).
  void set_pacer(partition::LayerPacer* pacer);

  // Parity stages: how long a consumer that has every slice but one waits for the last before
  // it rebuilds that slice from the parity (default 0.1 s).
  void set_parity_wait(double seconds);

  // Every rank's host, so that messages about a stalled or dead peer name where it ran.
  void set_hosts(std::vector<std::string> hosts);
  // "rank 2 on pi3, stage 2 (fc2..predictions)": who this rank is, for messages.
  std::string describe_rank(int rank) const;

  // Streams every frame of `source` (read on the plan's source rank; null elsewhere: its frame
  // is every model input's, back to back) and hands outputs, in frame order, to `on_output` on
  // the sink rank with the frame's origin (one tensor per model output, valid during the call).
  // `frame_count`: the frames the source has, known on every rank, to size per-frame records up
  // front (-1: not known, a stream).
  PipelineResult run(io::FrameStream* source,
                     const std::function<void(int, const FrameOrigin&, const std::vector<Tensor>&)>& on_output,
                     int frame_count);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chorus::runtime
