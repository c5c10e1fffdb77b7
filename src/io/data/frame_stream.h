#pragma once
// Frames in the order the source rank hands them to the pipeline. An indexed source (a .npy
// batch, images, an HDF5 dataset, synthetic frames) is read frame by frame; a video, a network
// stream or a camera can only be read in order and may not know its length; a real-time feed
// drops frames. Each frame carries where it came from: its number in the input and how long
// ago it was captured, so that the sink can report capture-to-result latency.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "io/data/inputs.h"

namespace chorus::io {

struct FrameInfo {
  std::int64_t index = 0;  // the frame's number in the input (with drops, numbers are skipped)
  double age_s = 0;        // seconds since the frame was captured (0: read on demand)
  double time_s = -1;      // its time in the stream from the first frame taken (video), or -1
};

// What a real-time feed saw (report.input): frames captured at the stream's rate, taken by the
// pipeline, dropped because the queue was full.
struct CaptureStats {
  long captured = 0, processed = 0, dropped = 0;
  double fps = 0;           // the rate frames became available at
  int queue = 0;            // the queue's capacity
  std::string drop_policy;  // "oldest", "newest" or "none"
};

class FrameStream {
 public:
  virtual ~FrameStream() = default;
  // Writes the next frame (every model input's, back to back) into `frame`; false at the end.
  // Throws chorus::Error naming the source when the input is broken before its end.
  virtual bool next(float* frame, FrameInfo& info) = 0;
  // The frames it will give, or -1 when that is known only at the end (a stream, a camera, a
  // video file, a real-time feed that drops).
  virtual int count() const = 0;
  // "clip.mp4 (video, 320x240 at 30 fps)": for the run's banner, the report and the journal.
  virtual std::string describe() const = 0;
  // The frames it gives, for a journal: describe() less how they are paced, so that a run
  // stopped in real time resumes at another rate or without --realtime.
  virtual std::string identity() const { return describe(); }
  // Why the input ended before its natural end ("the stream stopped: no data for 5 s"), or "".
  virtual std::string early_end() const { return {}; }
  // Frames per second the source is meant to be shown at (a video's rate), or 0 if it has none.
  virtual double frame_rate() const { return 0; }
  // Whether frames arrive at their own pace (a camera, a network stream): a real-time feed then
  // takes them as they come instead of pacing them.
  virtual bool live() const { return false; }
  // Why a run of it cannot be resumed after a stop (the frames written would not be its first
  // N: a camera goes on while no one reads it, a real-time feed drops by the clock), or "" when
  // it can: skip() then passes over the frames a journal has.
  virtual std::string why_not_resumable() const { return "it is read in order and cannot skip frames"; }
  // Passes over the next `frames` frames (a resumed run starts after those it has); throws
  // chorus::Error when the input has fewer, or cannot be resumed.
  virtual void skip(int frames);
  // Whether next() would return at once (a frame waits, or the input has ended), after waiting
  // up to `wait_s` for it. Only a real-time feed ever says no: the pipeline then serves its
  // other roles instead of blocking on the camera. Others read on demand and say yes.
  virtual bool frame_ready(double wait_s) {
    (void)wait_s;
    return true;
  }
  // A real-time feed's figures so far (none for others); safe while it captures.
  virtual std::optional<CaptureStats> capture_stats() const { return std::nullopt; }
};

// An indexed source read from its first frame to its last.
std::unique_ptr<FrameStream> stream_frames(std::unique_ptr<InputSource> source);

// `stream`, ended early once `stop()` says so (asked before each frame): a run stopped on
// request finishes the frames it already took. `why` becomes early_end().
class StoppableStream : public FrameStream {
 public:
  StoppableStream(std::unique_ptr<FrameStream> stream, bool (*stop)(), std::string why)
      : stream_(std::move(stream)), stop_(stop), why_(std::move(why)) {}
  bool next(float* frame, FrameInfo& info) override;
  int count() const override { return stream_->count(); }
  std::string describe() const override { return stream_->describe(); }
  std::string identity() const override { return stream_->identity(); }
  std::string early_end() const override { return stopped_ ? why_ : stream_->early_end(); }
  double frame_rate() const override { return stream_->frame_rate(); }
  bool live() const override { return stream_->live(); }
  std::string why_not_resumable() const override { return stream_->why_not_resumable(); }
  void skip(int frames) override { stream_->skip(frames); }
  bool frame_ready(double wait_s) override { return stream_->frame_ready(wait_s); }
  std::optional<CaptureStats> capture_stats() const override { return stream_->capture_stats(); }
  // True when it ended the stream with frames left (or a stream of unknown length).
  bool stopped() const { return stopped_; }

 private:
  std::unique_ptr<FrameStream> stream_;
  bool (*stop_)();
  std::string why_;
  int given_ = 0;
  bool stopped_ = false;
};

}  // namespace chorus::io
