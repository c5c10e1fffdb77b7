#include "io/data/video.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "core/error.h"
#include "io/data/ffmpeg_library.h"
#include "io/data/image.h"

namespace chorus::io {

namespace {

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

bool is_camera(const std::string& spec) { return starts_with(spec, "/dev/video"); }

bool is_network(const std::string& spec) {
  const auto colon = spec.find("://");
  return colon != std::string::npos && colon > 1;  // "C:\..." is not a scheme
}

#ifdef CHORUS_HAVE_VIDEO

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}


// FFmpeg's last error message on this thread ("moov atom not found"): our messages name the
// source and add it, instead of FFmpeg printing its own lines beside ours.
thread_local std::string last_library_error;

void keep_library_error(void* avcl, int level, const char* format, va_list args) {
  if (level > AV_LOG_ERROR) return;
  char line[512];
  int prefix = 1;
  ffmpeg().av_log_format_line2(avcl, level, format, args, line, sizeof line, &prefix);
  std::string text = line;
  const auto bracket = text.find("] ");  // "[mov,mp4 @ 0x...] moov atom not found\n"
  if (text.rfind("[", 0) == 0 && bracket != std::string::npos) text = text.substr(bracket + 2);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (!text.empty()) last_library_error = text;
}

void register_libraries() {
  static std::once_flag once;
  std::call_once(once, [] {
    ffmpeg().avformat_network_init();
    ffmpeg().av_log_set_callback(&keep_library_error);
  });
}

// "Invalid data found when processing input: moov atom not found"
std::string av_error(int code) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {0};
  ffmpeg().av_strerror(code, text, sizeof text);
  std::string said = std::move(last_library_error);
  last_library_error.clear();
  return said.empty() || said == text ? std::string(text) : cat(text, ": ", said);
}

// Frames larger than this are refused before decoding (a corrupt header can claim anything).
constexpr long long kMostPixels = 36'000'000;
// Packets in a row the decoder rejects before the input counts as broken.
constexpr int kMostBadPackets = 100;

// Bytes in memory as an AVIOContext (the fuzzer's input).
struct MemoryReader {
  std::vector<unsigned char> bytes;
  std::size_t at = 0;

  static int read(void* opaque, std::uint8_t* buffer, int size) {
    auto* self = static_cast<MemoryReader*>(opaque);
    const std::size_t left = self->bytes.size() - self->at;
    if (left == 0) return AVERROR_EOF;
    const std::size_t n = std::min<std::size_t>(left, static_cast<std::size_t>(size));
    std::memcpy(buffer, self->bytes.data() + self->at, n);
    self->at += n;
    return static_cast<int>(n);
  }
  static std::int64_t seek(void* opaque, std::int64_t offset, int whence) {
    auto* self = static_cast<MemoryReader*>(opaque);
    const auto size = static_cast<std::int64_t>(self->bytes.size());
    if (whence & AVSEEK_SIZE) return size;
    std::int64_t to = offset;
    switch (whence & ~AVSEEK_FORCE) {
      case SEEK_CUR: to += static_cast<std::int64_t>(self->at); break;
      case SEEK_END: to += size; break;
      case SEEK_SET: break;
      default: return -1;
    }
    if (to < 0 || to > size) return -1;
    self->at = static_cast<std::size_t>(to);
    return to;
  }
};

class VideoStream : public FrameStream {
 public:
  VideoStream(std::string spec, std::unique_ptr<MemoryReader> memory, const InputOptions& image,
              const VideoOptions& video)
      : spec_(std::move(spec)), memory_(std::move(memory)), shape_(image.shape), video_(video) {
    if (shape_.c != 1 && shape_.c != 3)
      fail(spec_, ": the model wants ", shape_.c, " channels per pixel; video gives 1 (grey) or 3 (RGB)");
    if (shape_.h < 2 || shape_.w < 1)
      fail(spec_, ": the model's input ", shape_.str(), " is not an image; video frames feed image inputs");
    prep_.scale = image.scale < 0 ? 1.0f / 255.0f : image.scale;
    prep_.mean = image.mean;
    prep_.stddev = image.stddev;
    try {
      register_libraries();
    } catch (const Error& e) {
      fail(spec_, ": ", e.what());
    }
    try {
      open();
    } catch (...) {
      close();
      throw;
    }
  }
  ~VideoStream() override { close(); }

  bool next(float* frame, FrameInfo& info) override { return decode(frame, info); }

  int count() const override { return -1; }
  std::string describe() const override { return description_; }
  std::string early_end() const override { return early_end_; }
  double frame_rate() const override { return rate_; }
  bool live() const override { return live_; }
  std::string why_not_resumable() const override {
    return live_ ? "a camera or a network stream goes on while no one reads it, so a new run cannot start where "
                   "a stopped one ended"
                 : "";
  }
  // A file decodes the same frames every time: a resumed run decodes those done again and
  // passes over them (not converted), which costs a fraction of computing them.
  void skip(int frames) override {
    if (!why_not_resumable().empty()) FrameStream::skip(frames);
    FrameInfo info;
    for (int k = 0; k < frames; ++k)
      if (!decode(nullptr, info))
        fail(spec_, ": has ", taken_, " frame(s)", video_.frames >= 0 ? cat(" in the part --frames selects") : "",
             "; the run to resume had done ", frames);
    // The resumed run's stream time starts at its first frame, as a run's does: a real-time
    // feed paces from there instead of idling for the frames passed over.
    first_time_ = -1;
  }

 private:
  // The next frame, converted into `frame` (unless null: passed over), as next() gives it.
  bool decode(float* frame, FrameInfo& info) {
    if (ended_ || (video_.frames >= 0 && taken_ >= video_.frames)) return false;
    while (true) {
      const int got = ffmpeg().avcodec_receive_frame(codec_, frame_);
      if (got == 0) {
        const double t = frame_time(frame_);
        // Before --start: decoded to reach it, not taken. Without --start every frame counts, even
        // one stamped before the stream's start time (RTSP gives the first frames of H.264 with
        // B-frames times before the start it announces).
        if (video_.start_s > 0 && t < video_.start_s - 0.5 / std::max(1.0, rate_)) {
          ffmpeg().av_frame_unref(frame_);
          continue;
        }
        if (first_time_ < 0) first_time_ = t;
        last_time_ = t;
        if (frame) convert(frame_, frame);
        ffmpeg().av_frame_unref(frame_);
        info = FrameInfo{index_++, 0.0, t - first_time_};
        ++taken_;
        return true;
      }
      if (got == AVERROR_EOF) {
        check_complete();
        return finish();
      }
      if (got != AVERROR(EAGAIN)) {
        if (++bad_in_a_row_ > kMostBadPackets) fail(spec_, ": cannot decode its frames (", av_error(got), ")");
        continue;
      }
      if (draining_) return finish();
      // The decoder wants more: the next packet of our stream.
      deadline_ = seconds_now() + video_.timeout_s;
      const int read = ffmpeg().av_read_frame(format_, packet_);
      if (read == AVERROR_EOF) {
        draining_ = true;
        ffmpeg().avcodec_send_packet(codec_, nullptr);
        continue;
      }
      if (read < 0) {
        // A stream that stops or a file cut short: what was decoded stands; say why it ended.
        const std::string why = read == AVERROR_EXIT ? cat("no data for ", video_.timeout_s, " s")
                                                     : cat("reading failed (", av_error(read), ")");
        draining_ = true;
        ffmpeg().avcodec_send_packet(codec_, nullptr);
        early_end_ = cat(spec_, ": the input ended after ", taken_, " frame(s): ", why);
        continue;
      }
      if (packet_->stream_index == stream_) {
        const int sent = ffmpeg().avcodec_send_packet(codec_, packet_);
        if (sent < 0 && sent != AVERROR(EAGAIN)) {
          if (++bad_in_a_row_ > kMostBadPackets) fail(spec_, ": cannot decode its frames (", av_error(sent), ")");
        } else {
          bad_in_a_row_ = 0;
        }
      }
      ffmpeg().av_packet_unref(packet_);
    }
  }

  void open() {
    live_ = is_camera(spec_) || (is_network(spec_) && !starts_with(spec_, "file:"));
    format_ = ffmpeg().avformat_alloc_context();
    if (!format_) fail(spec_, ": out of memory opening the video");
    format_->interrupt_callback.callback = &VideoStream::interrupted;
    format_->interrupt_callback.opaque = this;
    if (memory_) {
      constexpr int kBuffer = 1 << 15;
      auto* buffer = static_cast<unsigned char*>(ffmpeg().av_malloc(kBuffer));
      io_ = ffmpeg().avio_alloc_context(buffer, kBuffer, 0, memory_.get(), &MemoryReader::read, nullptr,
                                        &MemoryReader::seek);
      if (!io_) {
        ffmpeg().av_free(buffer);
        fail(spec_, ": out of memory opening the video");
      }
      format_->pb = io_;
    }
    const AVInputFormat* input_format = nullptr;
    if (is_camera(spec_)) {
      try {
        register_ffmpeg_devices();
      } catch (const Error& e) {
        fail(spec_, ": ", e.what());
      }
      input_format = ffmpeg().av_find_input_format("video4linux2");
      if (!input_format) fail(spec_, ": this FFmpeg has no V4L2 camera support (libavdevice without video4linux2)");
    } else if (!memory_ && !is_network(spec_) && !std::filesystem::exists(spec_)) {
      fail(spec_, ": no such file");
    }
    AVDictionary* options = nullptr;
    if (is_network(spec_))
      ffmpeg().av_dict_set(&options, "rw_timeout",
                           std::to_string(static_cast<long long>(video_.timeout_s * 1e6)).c_str(), 0);
    // Over WiFi, RTP on UDP loses packets (broken frames); RTSP interleaved on TCP does not.
    if (starts_with(spec_, "rtsp://") && !video_.rtsp_transport.empty())
      ffmpeg().av_dict_set(&options, "rtsp_transport", video_.rtsp_transport.c_str(), 0);
    deadline_ = seconds_now() + video_.timeout_s;
    const int opened =
        ffmpeg().avformat_open_input(&format_, memory_ ? nullptr : spec_.c_str(), input_format, &options);
    ffmpeg().av_dict_free(&options);
    if (opened < 0) {
      format_ = nullptr;  // freed by avformat_open_input
      if (is_camera(spec_)) fail(spec_, ": cannot open the camera (", av_error(opened), ")");
      // A server that takes the connection and never answers: RTSP's demuxer reports the
      // timeout as invalid data.
      const bool ran_out = is_network(spec_) && seconds_now() >= deadline_ - 0.1 * video_.timeout_s;
      if (opened == AVERROR_EXIT || ran_out) fail(spec_, ": no answer within ", video_.timeout_s, " s");
      fail(spec_, ": cannot open as a video (", av_error(opened), ")");
    }
    deadline_ = seconds_now() + video_.timeout_s;
    const int found = ffmpeg().avformat_find_stream_info(format_, nullptr);
    if (found < 0) fail(spec_, ": cannot read its streams (", av_error(found), ")");
    const AVCodec* decoder = nullptr;
    stream_ = ffmpeg().av_find_best_stream(format_, AVMEDIA_TYPE_VIDEO, -1, -1, &decoder, 0);
    if (stream_ == AVERROR_STREAM_NOT_FOUND) fail(spec_, ": holds no video stream");
    if (stream_ < 0 || !decoder) {
      const AVCodecParameters* p = stream_ >= 0 ? format_->streams[stream_]->codecpar : nullptr;
      fail(spec_, ": no decoder in this FFmpeg for its video codec",
           p ? cat(" (", ffmpeg().avcodec_get_name(p->codec_id), ")") : std::string());
    }
    AVStream* stream = format_->streams[stream_];
    const AVCodecParameters* par = stream->codecpar;
    if (par->width <= 0 || par->height <= 0 || static_cast<long long>(par->width) * par->height > kMostPixels)
      fail(spec_, ": its frames claim to be ", par->width, " x ", par->height, " pixels; Chorus reads video of up to ",
           kMostPixels / 1000000, " Mpixel");
    codec_ = ffmpeg().avcodec_alloc_context3(decoder);
    if (!codec_ || ffmpeg().avcodec_parameters_to_context(codec_, par) < 0) fail(spec_, ": cannot set up the decoder");
    codec_->thread_count = 1;  // the source rank computes too
    const int ready = ffmpeg().avcodec_open2(codec_, decoder, nullptr);
    if (ready < 0) fail(spec_, ": cannot open its ", decoder->name, " decoder (", av_error(ready), ")");
    frame_ = ffmpeg().av_frame_alloc();
    packet_ = ffmpeg().av_packet_alloc();
    if (!frame_ || !packet_) fail(spec_, ": out of memory opening the video");
    time_base_ = av_q2d(stream->time_base);
    start_pts_ = stream->start_time != AV_NOPTS_VALUE ? stream->start_time : 0;
    const AVRational guessed = ffmpeg().av_guess_frame_rate(format_, stream, nullptr);
    rate_ = guessed.num > 0 && guessed.den > 0 ? av_q2d(guessed) : 0;
    if (video_.start_s > 0) {
      if (live_) fail(spec_, ": --start needs a file; a camera or a stream starts where it is");
      const auto target = start_pts_ + static_cast<std::int64_t>(video_.start_s / time_base_);
      // Seeking lands on a key frame at or before the time; frames before it are decoded, not taken.
      if (ffmpeg().av_seek_frame(format_, stream_, target, AVSEEK_FLAG_BACKWARD) < 0) {
        ffmpeg().av_seek_frame(format_, stream_, start_pts_, AVSEEK_FLAG_BACKWARD);  // decode from the start instead
      }
    }
    description_ = cat(spec_, " (", live_ ? (is_camera(spec_) ? "camera" : "stream") : "video", " ",
                       ffmpeg().avcodec_get_name(par->codec_id), " ", par->width, "x", par->height,
                       rate_ > 0 ? cat(" at ", std::round(rate_ * 100) / 100, " fps") : std::string(),
                       video_.start_s > 0 ? cat(", from ", video_.start_s, " s") : std::string(),
                       video_.frames >= 0 ? cat(", ", video_.frames, " frames") : std::string(), ")");
    pixels_.resize(static_cast<std::size_t>(shape_.h) * shape_.w * shape_.c);
  }

  void close() {
    if (scaler_) ffmpeg().sws_freeContext(scaler_);
    if (packet_) ffmpeg().av_packet_free(&packet_);
    if (frame_) ffmpeg().av_frame_free(&frame_);
    if (codec_) ffmpeg().avcodec_free_context(&codec_);
    if (format_) ffmpeg().avformat_close_input(&format_);
    if (io_) {
      ffmpeg().av_freep(&io_->buffer);
      ffmpeg().avio_context_free(&io_);
    }
    scaler_ = nullptr;
  }

  static int interrupted(void* opaque) { return seconds_now() > static_cast<VideoStream*>(opaque)->deadline_; }

  double frame_time(const AVFrame* f) const {
    const std::int64_t pts = f->best_effort_timestamp != AV_NOPTS_VALUE ? f->best_effort_timestamp : f->pts;
    if (pts == AV_NOPTS_VALUE) return rate_ > 0 ? index_ / rate_ : 0.0;
    return static_cast<double>(pts - start_pts_) * time_base_;
  }

  // The decoded picture in RGB (or grey) at the model's size, then scaled like an image.
  void convert(const AVFrame* f, float* out) {
    const auto format = static_cast<AVPixelFormat>(f->format);
    scaler_ = ffmpeg().sws_getCachedContext(scaler_, f->width, f->height, format, shape_.w, shape_.h,
                                            shape_.c == 3 ? AV_PIX_FMT_RGB24 : AV_PIX_FMT_GRAY8, SWS_BILINEAR, nullptr,
                                            nullptr, nullptr);
    if (!scaler_)
      fail(spec_, ": cannot convert its ",
           ffmpeg().av_get_pix_fmt_name(format) ? ffmpeg().av_get_pix_fmt_name(format) : "?", " frames of ", f->width,
           "x", f->height, " to the model's ", shape_.w, "x", shape_.h);
    std::uint8_t* planes[4] = {pixels_.data(), nullptr, nullptr, nullptr};
    int strides[4] = {shape_.w * shape_.c, 0, 0, 0};
    ffmpeg().sws_scale(scaler_, f->data, f->linesize, 0, f->height, planes, strides);
    pixels_to_frame(pixels_.data(), pixels_.size(), shape_.c, prep_, out);
  }

  // At the end of a file: one that stops well before the duration its header gives was cut
  // short (a truncated download, a recording that was killed). Its frames stand; the report says.
  void check_complete() {
    if (taken_ == 0 && early_end_.empty()) {
      early_end_ = video_.start_s > 0 ? cat(spec_, ": no frame at or after --start ", video_.start_s, " s")
                                      : cat(spec_, ": the input holds no frame that could be decoded");
      return;
    }
    if (live_ || !early_end_.empty() || last_time_ < 0 || (video_.frames >= 0 && taken_ >= video_.frames)) return;
    const AVStream* stream = format_->streams[stream_];
    double duration = stream->duration != AV_NOPTS_VALUE ? stream->duration * time_base_ : -1;
    if (duration <= 0 && format_->duration != AV_NOPTS_VALUE) duration = format_->duration / double(AV_TIME_BASE);
    const double frame = rate_ > 0 ? 1 / rate_ : 0.1;
    if (duration > 0 && last_time_ + 2 * frame < duration)
      early_end_ = cat(spec_, ": the file ends at ", std::round(last_time_ * 1000) / 1000, " s of the ",
                       std::round(duration * 1000) / 1000, " s its header gives (truncated?); ", taken_,
                       " frame(s) were read");
  }

  bool finish() {
    ended_ = true;
    return false;
  }

  std::string spec_;
  std::unique_ptr<MemoryReader> memory_;
  Shape shape_;
  VideoOptions video_;
  ImagePreprocess prep_;
  AVFormatContext* format_ = nullptr;
  AVIOContext* io_ = nullptr;
  AVCodecContext* codec_ = nullptr;
  AVFrame* frame_ = nullptr;
  AVPacket* packet_ = nullptr;
  SwsContext* scaler_ = nullptr;
  int stream_ = -1;
  double time_base_ = 0, rate_ = 0, first_time_ = -1, last_time_ = -1;
  std::int64_t start_pts_ = 0, index_ = 0;
  int taken_ = 0, bad_in_a_row_ = 0;
  bool live_ = false, draining_ = false, ended_ = false;
  double deadline_ = 0;
  std::vector<std::uint8_t> pixels_;
  std::string description_, early_end_;
};
#endif  // CHORUS_HAVE_VIDEO

}  // namespace

bool is_video_source(const std::string& spec) {
  if (is_camera(spec) || is_network(spec)) return true;
  std::string ext = std::filesystem::path(spec).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* video : {".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".ts", ".flv", ".wmv",
                            ".ogv", ".3gp", ".y4m", ".h264", ".hevc", ".mjpeg"})
    if (ext == video) return true;
  return false;
}

#ifdef CHORUS_HAVE_VIDEO
std::unique_ptr<FrameStream> open_video(const std::string& spec, const InputOptions& image, const VideoOptions& video) {
  return std::make_unique<VideoStream>(spec, nullptr, image, video);
}

std::unique_ptr<FrameStream> open_video_bytes(const std::string& name, std::vector<unsigned char> bytes,
                                              const InputOptions& image, const VideoOptions& video) {
  auto memory = std::make_unique<MemoryReader>();
  memory->bytes = std::move(bytes);
  return std::make_unique<VideoStream>(name, std::move(memory), image, video);
}
#else
std::unique_ptr<FrameStream> open_video(const std::string& spec, const InputOptions&, const VideoOptions&) {
  fail(spec, ": this build of Chorus has no video input (built with CHORUS_VIDEO=OFF; install libavformat-dev, "
       "libavcodec-dev, libavdevice-dev and libswscale-dev, and build again)");
}

std::unique_ptr<FrameStream> open_video_bytes(const std::string& name, std::vector<unsigned char>,
                                              const InputOptions& image, const VideoOptions& video) {
  return open_video(name, image, video);
}
#endif

}  // namespace chorus::io
