#include "io/data/clip_stream.h"

#include <algorithm>
#include <vector>

#include "core/error.h"

namespace chorus::io {

namespace {

class ClipStream : public FrameStream {
 public:
  ClipStream(std::unique_ptr<FrameStream> frames, Shape clip, int stride)
      : frames_(std::move(frames)), depth_(clip.d), stride_(stride), frame_floats_(Shape{clip.h, clip.w, clip.c}.size()) {
    if (stride < 1) fail("--clip-stride ", stride, ": clips start at least one frame apart");
    ring_.resize(static_cast<std::size_t>(depth_) * frame_floats_);
    infos_.resize(depth_);
  }

  bool next(float* clip, FrameInfo& info) override {
    // Frames between the clips passed over by skip() and the next clip (stride > depth).
    for (; gap_ > 0; --gap_)
      if (!frames_->next(ring_.data(), infos_[0])) return false;
    // Frames to read before this clip is complete: all of the first, then `stride` more (the
    // ring keeps the last `depth` frames; with stride > depth the ones in between pass by).
    const int wanted = held_ == 0 ? depth_ : stride_;
    for (int k = 0; k < wanted; ++k) {
      const int slot = static_cast<int>(read_ % depth_);
      if (!frames_->next(ring_.data() + slot * frame_floats_, infos_[slot])) return false;  // a partial clip is dropped
      ++read_;
    }
    held_ = std::min<long>(read_, depth_);
    // The clip is the last `depth` frames in order, oldest first.
    for (int k = 0; k < depth_; ++k) {
      const int slot = static_cast<int>((read_ - depth_ + k) % depth_);
      std::copy(ring_.begin() + slot * frame_floats_, ring_.begin() + (slot + 1) * frame_floats_,
                clip + static_cast<std::size_t>(k) * frame_floats_);
    }
    const FrameInfo& first = infos_[(read_ - depth_) % depth_];
    const FrameInfo& last = infos_[(read_ - 1) % depth_];
    info = FrameInfo{first.index, last.age_s, last.time_s};
    return true;
  }

  int count() const override {
    const int frames = frames_->count();
    if (frames < 0) return -1;
    return frames < depth_ ? 0 : (frames - depth_) / stride_ + 1;
  }
  std::string describe() const override {
    return cat(frames_->describe(), ", clips of ", depth_, " frames every ", stride_);
  }
  std::string early_end() const override { return frames_->early_end(); }
  double frame_rate() const override { return frames_->frame_rate() / stride_; }
  bool live() const override { return frames_->live(); }
  std::string why_not_resumable() const override { return frames_->why_not_resumable(); }
  // Clip k starts at frame k * stride: pass over those frames and read the next clip whole.
  // The clips done end at frame (k - 1) * stride + depth, which the input must reach; with
  // stride > depth the frames from there to the next clip are passed over when it is read (an
  // input that ends among them has no clip left).
  void skip(int clips) override {
    if (clips <= 0) return;
    if (!why_not_resumable().empty()) FrameStream::skip(clips);
    CHORUS_ASSERT(read_ == 0, "clips skipped after reading");
    const long done = static_cast<long>(clips - 1) * stride_ + depth_, next = static_cast<long>(clips) * stride_;
    try {
      frames_->skip(static_cast<int>(std::min(done, next)));
    } catch (const Error&) {
      fail(frames_->describe(), ": has fewer than the ", clips, " clip(s) of ", depth_, " frames every ", stride_,
           " that the run to resume had done");
    }
    gap_ = next > done ? next - done : 0;
    held_ = 0;
  }

 private:
  std::unique_ptr<FrameStream> frames_;
  int depth_, stride_;
  std::size_t frame_floats_;
  std::vector<float> ring_;       // the last `depth` frames, frame k in slot k % depth
  std::vector<FrameInfo> infos_;  // theirs
  long read_ = 0, held_ = 0;
  long gap_ = 0;  // frames to pass over before the next clip (skip)
};

}  // namespace

std::unique_ptr<FrameStream> clips_of(std::unique_ptr<FrameStream> frames, Shape clip, int stride) {
  return std::make_unique<ClipStream>(std::move(frames), clip, stride);
}

}  // namespace chorus::io
