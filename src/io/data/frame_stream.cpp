#include "io/data/frame_stream.h"

#include "core/error.h"

namespace chorus::io {

void FrameStream::skip(int frames) {
  if (frames > 0) fail(describe(), ": cannot skip ", frames, " frames: ", why_not_resumable());
}

namespace {

class IndexedStream : public FrameStream {
 public:
  explicit IndexedStream(std::unique_ptr<InputSource> source) : source_(std::move(source)) {}
  bool next(float* frame, FrameInfo& info) override {
    if (next_ >= source_->count()) return false;
    source_->read(next_, frame);
    info = FrameInfo{next_++, 0.0};  // its number in the whole input, also when resumed
    return true;
  }
  int count() const override { return source_->count() - first_; }
  std::string why_not_resumable() const override { return {}; }
  std::string describe() const override {
    return first_ ? cat(source_->describe(), ", from frame ", first_, " (", count(), " left)") : source_->describe();
  }
  void skip(int frames) override {
    if (frames < 0 || next_ + frames > source_->count())
      fail(source_->describe(), ": cannot start at frame ", next_ + frames, " of ", source_->count());
    next_ += frames;
    first_ = next_;
  }

 private:
  std::unique_ptr<InputSource> source_;
  int next_ = 0, first_ = 0;
};

}  // namespace

bool StoppableStream::next(float* frame, FrameInfo& info) {
  if (stopped_) return false;
  // A stop that comes after the last frame was taken changes nothing.
  const bool all_given = stream_->count() >= 0 && given_ >= stream_->count();
  if (!all_given && stop_()) {
    stopped_ = true;
    return false;
  }
  if (!stream_->next(frame, info)) return false;
  ++given_;
  return true;
}

std::unique_ptr<FrameStream> stream_frames(std::unique_ptr<InputSource> source) {
  return std::make_unique<IndexedStream>(std::move(source));
}

}  // namespace chorus::io
