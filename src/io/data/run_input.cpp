#include "io/data/run_input.h"

#include <filesystem>

#include "core/error.h"
#include "io/data/clip_stream.h"

namespace chorus::io {

std::unique_ptr<FrameStream> open_run_input(const std::vector<std::string>& specs, const std::vector<NamedInput>& inputs,
                                            const RunInputOptions& o) {
  check_normalisation(o.input, inputs, specs.empty());
  if (specs.size() > inputs.size())  // a second video would be dropped without a word
    fail("the model has ", inputs.size(), " input(s) (", input_names(inputs), "), --input was given ", specs.size(),
         " times");
  // NAME=SOURCE with a name the model lacks, and no file of that whole name either (a model of
  // several inputs has its own message for this, in open_model_inputs).
  for (const auto& spec : specs) {
    const auto eq = spec.find('=');
    if (inputs.size() > 1 || eq == std::string::npos || spec.find("://") != std::string::npos ||
        std::filesystem::exists(spec) || spec.substr(0, eq) == inputs[0].name)
      continue;
    fail("--input ", spec, ": the model has no input named '", spec.substr(0, eq),
         "' (its input: ", input_names(inputs), "), and no file has that name");
  }
  std::string video;
  for (const auto& spec : specs) {
    std::string source = input_source(spec, inputs);
    if (is_video_source(source)) video = std::move(source);
  }
  std::unique_ptr<FrameStream> stream;
  if (!video.empty()) {
    if (inputs.size() != 1)
      fail(video, ": a video feeds a model of one image input; this model has ", inputs.size(), " inputs");
    const Shape input = inputs[0].shape;
    InputOptions image = o.input;
    image.shape = Shape{input.h, input.w, input.c};  // a clip model's frames are images too
    stream = open_video(video, image, o.video);
    if (input.is_clip()) stream = clips_of(std::move(stream), input, o.clip_stride > 0 ? o.clip_stride : input.d);
  } else {
    if (o.video_options) fail("--frames and --start select a part of a video; the input is not one");
    stream = stream_frames(open_model_inputs(specs, inputs, o.input));
  }
  if (!o.video.rtsp_transport.empty() && video.rfind("rtsp://", 0) != 0)
    fail("--rtsp-transport chooses how an rtsp:// stream is carried; the input is not one");
  if (o.clip_stride > 0 && (video.empty() || !inputs[0].shape.is_clip()))
    fail("--clip-stride cuts a video into clips for a clip model (3-D input); ",
         video.empty() ? "the input is not a video" : "this model takes single frames");
  std::size_t floats = 0;
  for (const auto& in : inputs) floats += in.shape.size();
  if (!o.realtime) {
    // A camera or network stream delivers at its own pace: read it on a capture thread that
    // loses nothing, so that the pipeline can hand on the results it holds instead of blocking
    // in the decoder until the next frame comes.
    if (stream->live()) return realtime_feed(std::move(stream), floats, {0, 10, DropPolicy::none, false});
    return stream;
  }
  RealtimeOptions realtime = o.realtime_options;
  if (realtime.fps > 0 && !video.empty() && inputs[0].shape.is_clip())  // --fps is the video's; clips come slower
    realtime.fps /= o.clip_stride > 0 ? o.clip_stride : inputs[0].shape.d;
  return realtime_feed(std::move(stream), floats, realtime);
}

}  // namespace chorus::io
