#pragma once
// A source that behaves like a camera (`chorus run --realtime`): frames become available at the
// stream's rate whether or not the cluster keeps up, wait in a bounded queue, and are dropped
// when the queue is full, as the reference system does for its robots' cameras. A capture
// thread reads (decodes) and paces the frames; the pipeline's source takes them from the queue.
#include <memory>
#include <string>

#include "io/data/frame_stream.h"

namespace chorus::io {

// Which frame goes when a frame arrives at a full queue: the oldest waiting (the freshest
// frames are served), the one arriving, or none (capture waits: a file that must lose nothing).
enum class DropPolicy { oldest, newest, none };

// "oldest" / "newest" / "none"; throws chorus::Error for anything else.
DropPolicy parse_drop_policy(const std::string& text);
const char* drop_policy_name(DropPolicy policy);

struct RealtimeOptions {
  double fps = 0;  // frames per second; 0: the stream's own (a video's rate, a camera's pace)
  int queue = 10;  // frames that may wait
  DropPolicy drop = DropPolicy::oldest;
  // False for a live stream read without --realtime: the capture thread only lets the pipeline
  // see whether a frame has come (frame_ready); the feed then names itself as its source does
  // and reports no real-time figures.
  bool report = true;
};

// Wraps `source` (frames of `frame_floats` values). A live source (a camera, a network stream)
// is taken as it delivers unless `fps` is given; a file is paced at its frames' times, or at
// `fps`. Capture starts with the first next() call. Throws chorus::Error when no rate is known
// (an array or image source without --fps) or the queue is below 1.
std::unique_ptr<FrameStream> realtime_feed(std::unique_ptr<FrameStream> source, std::size_t frame_floats,
                                           const RealtimeOptions& options);

}  // namespace chorus::io
