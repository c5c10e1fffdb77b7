#pragma once
// The frames `chorus run` streams: what --input names (arrays, images, HDF5, synthetic frames,
// or a video, stream or camera), optionally as a real-time feed.
#include <memory>
#include <string>
#include <vector>

#include "io/data/frame_stream.h"
#include "io/data/realtime_feed.h"
#include "io/data/video.h"

namespace chorus::io {

struct RunInputOptions {
  InputOptions input;             // synthetic frames, scaling and normalisation
  VideoOptions video;             // --frames, --start, --input-timeout, --rtsp-transport (video only)
  bool video_options = false;     // whether --frames or --start was given
  int clip_stride = 0;            // clip models: frames between clip starts (0: the clip's depth)
  bool realtime = false;          // behave like a camera (--realtime)
  RealtimeOptions realtime_options;
};

// `specs` and `inputs` as for open_model_inputs. A video (is_video_source) feeds a model of one
// image input, or of one clip input (its frames cut into clips, io/data/clip_stream.h). Throws chorus::Error naming the source for anything that does not fit.
std::unique_ptr<FrameStream> open_run_input(const std::vector<std::string>& specs, const std::vector<NamedInput>& inputs,
                                            const RunInputOptions& options);

}  // namespace chorus::io
