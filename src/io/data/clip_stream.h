#pragma once
// Video for clip models (C3D and other 3-D networks): consecutive frames gathered into clips of
// the model's depth, a new clip every `stride` frames (stride < depth: clips overlap, as
// feature extractors take 16-frame clips every 8 frames; stride > depth: frames between clips
// are skipped).
#include <memory>

#include "io/data/frame_stream.h"
#include "tensor/tensor.h"

namespace chorus::io {

// Clips of shape `clip` (clip.d frames of (h, w, c)) from a stream of single frames of
// (clip.h, clip.w, clip.c). A clip's FrameInfo gives its first frame's number and its last
// frame's time (the clip exists once that frame does). Throws chorus::Error when the stride is
// below 1.
std::unique_ptr<FrameStream> clips_of(std::unique_ptr<FrameStream> frames, Shape clip, int stride);

}  // namespace chorus::io
