#pragma once
// Where input frames come from (a .npy batch, image files, an HDF5 dataset, or synthetic
// frames) and where outputs go (.npy or HDF5). Frames are handed out one at a time in NHWC.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "io/data/image.h"
#include "tensor/tensor.h"

namespace chorus::io {

class InputSource {
 public:
  virtual ~InputSource() = default;
  virtual int count() const = 0;
  // Writes frame `index` (0 <= index < count()) into `frame` (shape.size() floats, NHWC).
  virtual void read(int index, float* frame) const = 0;
  // Describes the source for messages ("images.npy (16 frames)").
  virtual std::string describe() const = 0;
};

struct InputOptions {
  std::string input;                // .npy, image file or directory, or "file.h5:/dataset"; "" for synthetic
  int synthetic = 0;                // frames of deterministic noise when input is empty
  std::uint64_t seed = 1;           // for synthetic frames
  Shape shape;                      // the model's frame shape (NHWC)
  bool channels_first = false;      // arrays are NCHW per frame
  float scale = -1;                 // multiply values; -1 means 1/255 for images and 1 for arrays
  std::vector<float> mean, stddev;  // per-channel normalisation after scaling
};

// Opens the source; throws chorus::Error naming the file and the mismatch when its frames do
// not fit the model.
std::unique_ptr<InputSource> open_input(const InputOptions& options);

// One input of a model, for open_model_inputs.
struct NamedInput {
  std::string name;
  Shape shape;
};

// "'image', 'vector'": the inputs' names, for messages.
std::string input_names(const std::vector<NamedInput>& inputs);

// The input that an --input NAME=SOURCE names (its index in `inputs`), or inputs.size() when
// the text before '=' is no input's name (a plain SOURCE, which may hold an '=').
std::size_t named_input(const std::string& spec, const std::vector<NamedInput>& inputs);
// What an --input value reads: SOURCE of NAME=SOURCE for one of `inputs`, else the value whole.
std::string input_source(const std::string& spec, const std::vector<NamedInput>& inputs);

// The sources of a model's inputs as one source: its frame is each input's frame in the
// model's order, back to back (for one input, exactly open_input's). `specs` are the user's
// --input values: one per input, either all "NAME=SOURCE" or all plain in the model's order (a
// plain SOURCE alone serves a model of one input); none with `options.synthetic` frames, each
// input then seeded apart. `options` gives the rest (scaling, normalisation: every input).
// Throws chorus::Error naming the input when a source is missing, unknown, given twice or has
// another frame count than the others.
std::unique_ptr<InputSource> open_model_inputs(const std::vector<std::string>& specs,
                                               const std::vector<NamedInput>& inputs, const InputOptions& options);

// Refuses normalisation the frames cannot take as given: --mean and --std need one value or one
// per channel of every input (a list of another length would be cut or its last value
// repeated), no standard deviation may be zero (every value would come out infinite or NaN),
// and synthetic frames, noise in [0, 1), take no scaling or normalisation at all.
void check_normalisation(const InputOptions& options, const std::vector<NamedInput>& inputs, bool synthetic);

// The frames of `source` from `first` on, numbered from 0 (a resumed run skips what is done).
std::unique_ptr<InputSource> skip_frames(std::unique_ptr<InputSource> source, int first);

// "file.h5:/path" -> {"file.h5", "/path"}; no colon after the extension -> {path, ""}.
std::pair<std::string, std::string> split_h5_target(const std::string& spec);

// Writes a batch of outputs to .npy (by extension) or HDF5 ("file.h5" or "file.h5:/dataset",
// default dataset /output). Shape is (frames, ...) with the model's output dims, NHWC, or
// NCHW for channels_first models.
void write_outputs(const std::string& target, const Tensor& outputs, bool channels_first);

// The frame dims as Keras prints them for a channels_last/first model (no batch axis).
std::vector<std::int64_t> keras_dims(Shape shape, bool channels_first);

}  // namespace chorus::io
