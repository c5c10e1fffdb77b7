// Video files (any container and codec FFmpeg knows), demuxed, decoded, converted and resized
// to a model's input from memory, as `chorus run --input clip.mp4` reads them from disk.
#include <vector>

#include "core/error.h"
#include "fuzz_targets.h"
#include "io/data/video.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  chorus::io::InputOptions image;
  image.shape = chorus::Shape{32, 32, 3};
  chorus::io::VideoOptions video;
  video.frames = 8;  // a few frames exercise the decoder; more only cost time
  std::vector<float> frame(image.shape.size());
  try {
    auto stream = chorus::io::open_video_bytes("fuzz.video", std::vector<unsigned char>(data, data + size), image, video);
    chorus::io::FrameInfo info;
    while (stream->next(frame.data(), info)) {
    }
  } catch (const chorus::Error&) {
  }
  return 0;
}
