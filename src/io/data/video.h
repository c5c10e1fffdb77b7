#pragma once
// Video files, network streams and V4L2 cameras as model input, decoded on the source rank with
// FFmpeg's libraries (libavformat, libavcodec, libavdevice, libswscale): each frame converted to
// RGB (or grey), resized to the model's input and scaled as images are.
#include <memory>
#include <string>
#include <vector>

#include "io/data/frame_stream.h"

namespace chorus::io {

struct VideoOptions {
  int frames = -1;        // at most this many frames (-1: to the end)
  double start_s = 0;     // the first frame taken is the first at or after this time
  double timeout_s = 10;  // longest wait for the source to open or to send data
  std::string rtsp_transport;  // "tcp" or "udp" for rtsp:// streams; empty: FFmpeg's (UDP, then TCP)
};

// Whether --input names a video: a video file by extension, a network stream by its scheme
// (rtsp://, http://, ...), or a V4L2 camera (/dev/video*).
bool is_video_source(const std::string& spec);

// A decoded video's frames for the model's input `image.shape` (channels 1 or 3), scaled by
// `image.scale` (default 1/255), `image.mean` and `image.stddev`. Each frame's time in the
// stream (from the first frame taken) is in FrameInfo::time_s. Throws chorus::Error naming the source when it cannot
// be opened, holds no video, or its codec has no decoder.
std::unique_ptr<FrameStream> open_video(const std::string& spec, const InputOptions& image, const VideoOptions& video);

// The same, from the bytes of a file in memory (`name` for messages): the fuzzer's entry point.
std::unique_ptr<FrameStream> open_video_bytes(const std::string& name, std::vector<unsigned char> bytes,
                                              const InputOptions& image, const VideoOptions& video);

}  // namespace chorus::io
