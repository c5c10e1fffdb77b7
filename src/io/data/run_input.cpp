#include "io/data/run_input.h"

#include "core/error.h"

namespace chorus::io {

std::unique_ptr<FrameStream> open_run_input(const std::vector<std::string>& specs, const std::vector<NamedInput>& inputs,
                                            const RunInputOptions& o) {
  std::string video;
  for (const auto& spec : specs) {
    std::string source = spec;  // NAME=SOURCE where NAME is one of the model's inputs
    const auto eq = spec.find('=');
    for (const auto& in : inputs)
      if (eq != std::string::npos && spec.substr(0, eq) == in.name) source = spec.substr(eq + 1);
    if (is_video_source(source)) video = source;
  }
  std::unique_ptr<FrameStream> stream;
  if (!video.empty()) {
    if (inputs.size() != 1)
      fail(video, ": a video feeds a model of one image input; this model has ", inputs.size(), " inputs");
    InputOptions image = o.input;
    image.shape = inputs[0].shape;
    stream = open_video(video, image, o.video);
  } else {
    if (o.video_options) fail("--frames and --start select a part of a video; the input is not one");
    stream = stream_frames(open_model_inputs(specs, inputs, o.input));
  }
  if (!o.realtime) return stream;
  std::size_t floats = 0;
  for (const auto& in : inputs) floats += in.shape.size();
  return realtime_feed(std::move(stream), floats, o.realtime_options);
}

}  // namespace chorus::io
