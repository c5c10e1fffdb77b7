#include "io/data/realtime_feed.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/memory.h"

namespace chorus::io {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

class RealtimeFeed : public FrameStream {
 public:
  RealtimeFeed(std::unique_ptr<FrameStream> source, std::size_t frame_floats, const RealtimeOptions& o)
      : source_(std::move(source)), options_(o) {
    if (o.queue < 1) fail("--queue ", o.queue, ": the queue must hold at least one frame");
    if (o.fps < 0) fail("--fps ", o.fps, " is below 0");
    paced_ = o.fps > 0 || !source_->live();
    rate_ = o.fps > 0 ? o.fps : source_->frame_rate();
    if (paced_ && rate_ <= 0)
      fail(source_->describe(), ": --realtime needs --fps F for an input without a frame rate of its own");
    // Every buffer now: the queue's frames, the one being captured, the one being handed out. A
    // queue longer than a file cannot fill; one whose buffers would not fit in memory is refused
    // rather than left to the kernel's out-of-memory killer.
    const int source_frames = source_->count();
    const std::size_t held = static_cast<std::size_t>(source_frames > 0 ? std::min(o.queue, source_frames) : o.queue);
    const double bytes = (held + 2.0) * frame_floats * sizeof(float);
    const double memory = static_cast<double>(physical_memory_bytes());
    if (memory > 0 && bytes > memory / 2)
      fail("--queue ", o.queue, ": ", held + 2, " frame buffers of ", frame_floats * sizeof(float) / 1e6,
           " MB would take ", bytes / 1e9, " GB, over half of this machine's memory (", memory / 1e9, " GB)");
    slots_.resize(held + 2, std::vector<float>(frame_floats));
    for (std::size_t k = 0; k < slots_.size(); ++k) free_.push_back(static_cast<int>(k));
    ring_.resize(held);
    stats_.fps = rate_;
    stats_.queue = o.queue;
    stats_.drop_policy = drop_policy_name(o.drop);
  }

  ~RealtimeFeed() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    changed_.notify_all();
    if (capture_.joinable()) capture_.join();
  }

  bool next(float* frame, FrameInfo& info) override {
    if (!capture_.joinable() && !finished_) {
      start_ = Clock::now();
      capture_ = std::thread([this] { capture(); });
    }
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return waiting_ > 0 || finished_; });
    if (waiting_ == 0) {
      lock.unlock();
      if (capture_.joinable()) capture_.join();
      if (error_) std::rethrow_exception(error_);
      return false;
    }
    const Waiting item = pop_oldest();
    ++stats_.processed;
    lock.unlock();
    changed_.notify_all();  // room in the queue (--drop none)
    const std::vector<float>& values = slots_[item.slot];
    std::copy(values.begin(), values.end(), frame);
    info = item.info;
    info.age_s = seconds_since(start_) - item.captured_s;
    lock.lock();
    free_.push_back(item.slot);
    return true;
  }

  int count() const override { return options_.drop == DropPolicy::none ? source_->count() : -1; }
  std::string describe() const override {
    if (!options_.report) return source_->describe();
    return cat(source_->describe(), ", real time at ", rate_ > 0 ? cat(rate_, " fps") : std::string("its own pace"),
               ", queue ", options_.queue, ", drop ", drop_policy_name(options_.drop));
  }
  std::string identity() const override { return source_->identity(); }
  std::string early_end() const override { return source_->early_end(); }
  double frame_rate() const override { return rate_; }
  bool live() const override { return true; }
  std::string why_not_resumable() const override {
    if (options_.drop != DropPolicy::none)
      return "a real-time feed drops frames by the clock, so the frames written are not the input's first ones "
             "(--drop none or a run without --realtime can be resumed)";
    return source_->why_not_resumable();
  }
  // Before the capture starts (a resumed run skips first): the source passes over them.
  void skip(int frames) override {
    CHORUS_ASSERT(!capture_.joinable(), "frames skipped while capturing");
    if (!why_not_resumable().empty()) FrameStream::skip(frames);
    source_->skip(frames);
  }
  bool frame_ready(double wait_s) override {
    if (!capture_.joinable()) return true;  // the first next() starts the capture; the end is ready
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, std::chrono::duration<double>(wait_s), [&] { return waiting_ > 0 || finished_; });
  }
  std::optional<CaptureStats> capture_stats() const override {
    if (!options_.report) return std::nullopt;
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

 private:
  struct Waiting {
    int slot = -1;
    FrameInfo info;
    double captured_s = 0;  // since start_
  };

  // The camera: each frame becomes available at its time (paced) or when the source has it
  // (live), and goes into the queue or is dropped.
  void capture() {
    try {
      for (long k = 0;; ++k) {
        int slot;
        {
          std::lock_guard<std::mutex> lock(mutex_);
          if (stop_) break;
          slot = free_.back();
          free_.pop_back();
        }
        FrameInfo info;
        if (!source_->next(slots_[slot].data(), info)) {
          std::lock_guard<std::mutex> lock(mutex_);
          free_.push_back(slot);
          break;
        }
        if (paced_) {
          const double due = options_.fps > 0 || info.time_s < 0 ? k / rate_ : info.time_s;
          std::unique_lock<std::mutex> lock(mutex_);
          changed_.wait_until(lock, start_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(due)),
                              [&] { return stop_; });
          if (stop_) break;
        }
        std::unique_lock<std::mutex> lock(mutex_);
        ++stats_.captured;
        if (waiting_ >= static_cast<int>(ring_.size())) {
          if (options_.drop == DropPolicy::oldest) {
            free_.push_back(pop_oldest().slot);
            ++stats_.dropped;
          } else if (options_.drop == DropPolicy::newest) {
            free_.push_back(slot);
            ++stats_.dropped;
            continue;
          } else {
            changed_.wait(lock, [&] { return waiting_ < static_cast<int>(ring_.size()) || stop_; });
            if (stop_) break;
          }
        }
        ring_[(oldest_ + waiting_++) % ring_.size()] = Waiting{slot, info, seconds_since(start_)};
        lock.unlock();
        changed_.notify_all();
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      error_ = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      finished_ = true;
    }
    changed_.notify_all();
  }

  // Under the lock. A ring rather than a deque, which would allocate as frames go through.
  Waiting pop_oldest() {
    const Waiting item = ring_[oldest_];
    oldest_ = (oldest_ + 1) % ring_.size();
    --waiting_;
    return item;
  }

  std::unique_ptr<FrameStream> source_;
  RealtimeOptions options_;
  bool paced_ = true;
  double rate_ = 0;
  std::vector<std::vector<float>> slots_;
  std::vector<int> free_;
  std::vector<Waiting> ring_;  // the queue: waiting_ frames from ring_[oldest_] on
  std::size_t oldest_ = 0;
  int waiting_ = 0;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::thread capture_;
  Clock::time_point start_;
  bool stop_ = false, finished_ = false;
  std::exception_ptr error_;
  CaptureStats stats_;
};

}  // namespace

DropPolicy parse_drop_policy(const std::string& text) {
  if (text == "oldest") return DropPolicy::oldest;
  if (text == "newest") return DropPolicy::newest;
  if (text == "none") return DropPolicy::none;
  fail("--drop ", text, ": use oldest, newest or none");
}

const char* drop_policy_name(DropPolicy policy) {
  switch (policy) {
    case DropPolicy::oldest: return "oldest";
    case DropPolicy::newest: return "newest";
    case DropPolicy::none: return "none";
  }
  return "?";
}

std::unique_ptr<FrameStream> realtime_feed(std::unique_ptr<FrameStream> source, std::size_t frame_floats,
                                           const RealtimeOptions& options) {
  return std::make_unique<RealtimeFeed>(std::move(source), frame_floats, options);
}

}  // namespace chorus::io
