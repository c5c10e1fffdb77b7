#include "io/data/inputs.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "core/random.h"
#include "io/data/npy.h"
#include "io/hdf5/hdf5_file.h"

namespace chorus::io {

namespace {

constexpr std::size_t kMaxInputValues = std::size_t(1) << 31;  // 8 GB of floats

std::string dims_str(const std::vector<std::int64_t>& dims) {
  std::string s = "(";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + ")";
}

// A whole array held in memory: (frames, frame dims...) in Keras order.
class ArraySource : public InputSource {
 public:
  ArraySource(std::string name, std::vector<std::int64_t> dims, std::vector<float> data, const InputOptions& o)
      : name_(std::move(name)), shape_(o.shape), channels_first_(o.channels_first), data_(std::move(data)) {
    auto want = keras_dims(o.shape, o.channels_first);
    // A sequence (L, D) is in Chorus' order in every framework; only images are permuted.
    channels_first_ = channels_first_ && want.size() >= 3;
    std::size_t frame = o.shape.size();
    // Accept (N, dims...) or a single frame (dims...), and any dims with the right size per frame
    // only when they match exactly; say what was expected otherwise. A sequence may also come
    // as (N, 1, L, D), an image of one row.
    const std::vector<std::int64_t> one_row{1, o.shape.w, o.shape.c};
    if (dims.size() == want.size() + 1 && std::equal(want.begin(), want.end(), dims.begin() + 1)) {
      frames_ = static_cast<int>(dims[0]);
    } else if (want.size() == 2 && dims.size() == 4 && std::equal(one_row.begin(), one_row.end(), dims.begin() + 1)) {
      frames_ = static_cast<int>(dims[0]);
    } else if (dims == want) {
      frames_ = 1;
    } else {
      std::vector<std::int64_t> batch{-1};
      batch.insert(batch.end(), want.begin(), want.end());
      fail(name_, ": array is ", dims_str(dims), ", the model takes (N, ", dims_str(want).substr(1),
           o.channels_first ? " (channels_first)" : "");
    }
    CHORUS_ASSERT(data_.size() == frame * frames_);
    float scale = o.scale < 0 ? 1.0f : o.scale;
    for (std::size_t i = 0; i < data_.size(); ++i) {
      float v = data_[i] * scale;
      const std::size_t ch =
          channels_first_ ? (i % frame) / (static_cast<std::size_t>(shape_.rows()) * shape_.w) : i % shape_.c;
      if (!o.mean.empty()) v -= o.mean[std::min(ch, o.mean.size() - 1)];
      if (!o.stddev.empty()) v /= o.stddev[std::min(ch, o.stddev.size() - 1)];
      data_[i] = v;
    }
  }
  int count() const override { return frames_; }
  void read(int index, float* frame) const override {
    const float* src = data_.data() + static_cast<std::size_t>(index) * shape_.size();
    if (channels_first_)
      nchw_to_nhwc(src, frame, shape_);
    else
      std::copy(src, src + shape_.size(), frame);
  }
  std::string describe() const override { return cat(name_, " (", frames_, " frames)"); }

 private:
  std::string name_;
  Shape shape_;
  bool channels_first_;
  std::vector<float> data_;
  int frames_ = 0;
};

class ImageSource : public InputSource {
 public:
  ImageSource(std::vector<std::string> files, const InputOptions& o) : files_(std::move(files)), shape_(o.shape) {
    prep_.scale = o.scale < 0 ? 1.0f / 255.0f : o.scale;
    prep_.mean = o.mean;
    prep_.stddev = o.stddev;
  }
  int count() const override { return static_cast<int>(files_.size()); }
  void read(int index, float* frame) const override { load_image(files_[index], shape_, prep_, frame); }
  std::string describe() const override { return cat(files_.size(), " image file(s)"); }

 private:
  std::vector<std::string> files_;
  Shape shape_;
  ImagePreprocess prep_;
};

// Deterministic noise in [0, 1): frame i depends only on (seed, i), so runs and resumes agree.
class SyntheticSource : public InputSource {
 public:
  SyntheticSource(int frames, std::uint64_t seed, Shape shape) : frames_(frames), seed_(seed), shape_(shape) {}
  int count() const override { return frames_; }
  void read(int index, float* frame) const override {
    Rng rng(seed_ * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(index));
    for (std::size_t i = 0; i < shape_.size(); ++i) frame[i] = rng.uniform();
  }
  std::string describe() const override { return cat(frames_, " synthetic frames (seed ", seed_, ")"); }

 private:
  int frames_;
  std::uint64_t seed_;
  Shape shape_;
};

bool is_image_file(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".gif" || ext == ".tga" ||
         ext == ".ppm" || ext == ".pgm";
}

}  // namespace

std::vector<std::int64_t> keras_dims(Shape s, bool channels_first) {
  if (s.is_clip()) return channels_first ? std::vector<std::int64_t>{s.c, s.d, s.h, s.w} : std::vector<std::int64_t>{s.d, s.h, s.w, s.c};
  if (s.h == 1 && s.w == 1) return {s.c};
  if (s.h == 1) return {s.w, s.c};  // a sequence of w tokens
  if (channels_first) return {s.c, s.h, s.w};
  return {s.h, s.w, s.c};
}

std::unique_ptr<InputSource> open_input(const InputOptions& o) {
  if (o.input.empty()) {
    if (o.synthetic <= 0) fail("no input: give --input FILE or --synthetic N");
    return std::make_unique<SyntheticSource>(o.synthetic, o.seed, o.shape);
  }
  auto [file, dataset] = split_h5_target(o.input);
  if (!dataset.empty()) {
    H5File h5(file);
    if (!h5.is_dataset(dataset)) fail(file, ": no dataset '", dataset, "'");
    auto dims = h5.dataset_shape(dataset);
    auto data = h5.read_floats(dataset, kMaxInputValues);
    return std::make_unique<ArraySource>(o.input, dims, std::move(data), o);
  }
  if (std::filesystem::is_directory(o.input)) {
    auto files = list_images(o.input);
    if (files.empty()) fail(o.input, ": no image files (.png, .jpg, ...) in this directory");
    return std::make_unique<ImageSource>(files, o);
  }
  if (!std::filesystem::exists(o.input)) fail(o.input, ": no such file or directory");
  if (is_image_file(o.input)) return std::make_unique<ImageSource>(std::vector<std::string>{o.input}, o);
  std::string ext = std::filesystem::path(o.input).extension().string();
  if (ext == ".npy") {
    NpyArray a = read_npy(o.input, kMaxInputValues);
    return std::make_unique<ArraySource>(o.input, a.shape, std::move(a.data), o);
  }
  if (ext == ".h5" || ext == ".hdf5") fail(o.input, ": name the dataset to read, as ", o.input, ":/dataset");
  fail(o.input, ": unknown input kind (use .npy, an image file or directory, or file.h5:/dataset)");
}

namespace {

// Several sources read as one: frame i is each source's frame i, back to back.
class CombinedSource : public InputSource {
 public:
  CombinedSource(std::vector<std::unique_ptr<InputSource>> sources, std::vector<NamedInput> inputs)
      : sources_(std::move(sources)), inputs_(std::move(inputs)) {
    for (std::size_t k = 1; k < sources_.size(); ++k)
      if (sources_[k]->count() != sources_[0]->count())
        fail("input '", inputs_[k].name, "' has ", sources_[k]->count(), " frames (", sources_[k]->describe(),
             "), input '", inputs_[0].name, "' ", sources_[0]->count(), " (", sources_[0]->describe(),
             "): every input needs one frame per run frame");
  }
  int count() const override { return sources_[0]->count(); }
  void read(int index, float* frame) const override {
    for (std::size_t k = 0; k < sources_.size(); ++k) {
      sources_[k]->read(index, frame);
      frame += inputs_[k].shape.size();
    }
  }
  std::string describe() const override {
    std::string s;
    for (std::size_t k = 0; k < sources_.size(); ++k)
      s += cat(k ? "; " : "", inputs_[k].name, ": ", sources_[k]->describe());
    return s;
  }

 private:
  std::vector<std::unique_ptr<InputSource>> sources_;
  std::vector<NamedInput> inputs_;
};

}  // namespace

std::string input_names(const std::vector<NamedInput>& inputs) {
  std::string s;
  for (const auto& in : inputs) s += (s.empty() ? "'" : ", '") + in.name + "'";
  return s;
}

std::size_t named_input(const std::string& spec, const std::vector<NamedInput>& inputs) {
  const auto eq = spec.find('=');
  for (std::size_t i = 0; eq != std::string::npos && i < inputs.size(); ++i)
    if (spec.compare(0, eq, inputs[i].name) == 0) return i;
  return inputs.size();
}

std::string input_source(const std::string& spec, const std::vector<NamedInput>& inputs) {
  return named_input(spec, inputs) < inputs.size() ? spec.substr(spec.find('=') + 1) : spec;
}

std::unique_ptr<InputSource> open_model_inputs(const std::vector<std::string>& specs,
                                               const std::vector<NamedInput>& inputs, const InputOptions& options) {
  CHORUS_ASSERT(!inputs.empty(), "a model without inputs");
  std::vector<std::string> chosen(inputs.size());
  if (specs.empty()) {
    if (options.synthetic <= 0) fail("no input: give --input FILE or --synthetic N");
  } else if (inputs.size() == 1 && specs.size() == 1) {
    chosen[0] = input_source(specs[0], inputs);
  } else {
    if (specs.size() != inputs.size())
      fail("the model has ", inputs.size(), " inputs (", input_names(inputs), "), --input was given ", specs.size(),
           " time(s): give one --input NAME=SOURCE per input");
    std::size_t named = 0;
    for (const auto& spec : specs) named += named_input(spec, inputs) < inputs.size();
    for (std::size_t k = 0; k < specs.size(); ++k) {
      const std::size_t which = named_input(specs[k], inputs);
      if (named == 0) {
        chosen[k] = specs[k];  // all plain: the model's order
      } else if (which == inputs.size()) {
        fail("--input ", specs[k], ": not NAME=SOURCE for an input of the model (its inputs are ",
             input_names(inputs), "); name every input or none");
      } else {
        if (!chosen[which].empty()) fail("--input: input '", inputs[which].name, "' is given twice");
        chosen[which] = input_source(specs[k], inputs);
      }
    }
  }
  std::vector<std::unique_ptr<InputSource>> sources;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    InputOptions o = options;
    o.input = chosen[k];
    o.shape = inputs[k].shape;
    o.seed = options.seed + k;  // input 0 keeps the seed, so one-input runs are as before
    try {
      sources.push_back(open_input(o));
    } catch (const Error& e) {
      if (inputs.size() == 1) throw;
      fail("input '", inputs[k].name, "': ", e.what());
    }
  }
  if (sources.size() == 1) return std::move(sources[0]);
  return std::make_unique<CombinedSource>(std::move(sources), inputs);
}

void check_normalisation(const InputOptions& o, const std::vector<NamedInput>& inputs, bool synthetic) {
  if (synthetic) {
    if (o.scale >= 0 || !o.mean.empty() || !o.stddev.empty())
      fail(
          "--scale, --mean and --std apply to --input frames; --synthetic frames are noise in [0, 1), taken as "
          "they are");
    return;
  }
  for (float s : o.stddev)
    if (s == 0 || !std::isfinite(s)) fail("--std ", s, ": every standard deviation must be a finite non-zero number");
  for (float m : o.mean)
    if (!std::isfinite(m)) fail("--mean ", m, ": every mean must be a finite number");
  const auto check_count = [&](const char* option, std::size_t values) {
    if (values <= 1) return;
    for (const auto& in : inputs)
      if (values != static_cast<std::size_t>(in.shape.c))
        fail(option, " has ", values, " values, but input '", in.name, "' has ", in.shape.c,
             " channel(s): give one value for all channels, or one per channel");
  };
  check_count("--mean", o.mean.size());
  check_count("--std", o.stddev.size());
  // One normalisation serves every input: said where it reaches a vector beside an image,
  // whose values (already scaled in its file, most often) it changes too.
  if (inputs.size() > 1 && (o.scale >= 0 || !o.mean.empty() || !o.stddev.empty())) {
    const auto is_image = [](const NamedInput& in) { return in.shape.h > 1 || in.shape.w > 1; };
    std::string vectors;
    for (const auto& in : inputs)
      if (!is_image(in)) vectors += (vectors.empty() ? "'" : ", '") + in.name + "'";
    if (!vectors.empty() && std::any_of(inputs.begin(), inputs.end(), is_image))
      std::fprintf(stderr,
                   "chorus: warning: --scale, --mean and --std apply to every input of the model, %s (not an image) "
                   "too\n",
                   vectors.c_str());
  }
}

std::pair<std::string, std::string> split_h5_target(const std::string& spec) {
  for (const char* ext : {".h5:", ".hdf5:", ".hdf:"}) {
    auto pos = spec.find(ext);
    if (pos != std::string::npos) {
      auto colon = pos + std::string(ext).size() - 1;
      return {spec.substr(0, colon), spec.substr(colon + 1)};
    }
  }
  return {spec, ""};
}

namespace {

// Frames [first, first + count) of another source, renumbered from 0.
class SkippedSource : public InputSource {
 public:
  SkippedSource(std::unique_ptr<InputSource> inner, int first) : inner_(std::move(inner)), first_(first) {}
  int count() const override { return inner_->count() - first_; }
  void read(int index, float* frame) const override { inner_->read(first_ + index, frame); }
  std::string describe() const override {
    return cat(inner_->describe(), ", from frame ", first_, " (", count(), " left)");
  }

 private:
  std::unique_ptr<InputSource> inner_;
  int first_;
};

}  // namespace

std::unique_ptr<InputSource> skip_frames(std::unique_ptr<InputSource> source, int first) {
  if (first < 0 || first > source->count())
    fail(source->describe(), ": cannot start at frame ", first, " of ", source->count());
  if (first == 0) return source;
  return std::make_unique<SkippedSource>(std::move(source), first);
}

void write_outputs(const std::string& target, const Tensor& outputs, bool channels_first) {
  std::vector<std::int64_t> dims{outputs.frames()};
  auto frame_dims = keras_dims(outputs.shape(), channels_first);
  dims.insert(dims.end(), frame_dims.begin(), frame_dims.end());
  std::vector<float> data(outputs.data(), outputs.data() + outputs.size());
  if (channels_first && frame_dims.size() >= 3)
    for (int n = 0; n < outputs.frames(); ++n)
      nhwc_to_nchw(outputs.frame(n), data.data() + n * outputs.frame_size(), outputs.shape());
  auto [file, dataset] = split_h5_target(target);
  std::string ext = std::filesystem::path(file).extension().string();
  if (ext == ".h5" || ext == ".hdf5") {
    H5File h5(file, H5File::Mode::create);
    h5.write_floats(dataset.empty() ? "/output" : dataset, dims, data.data());
    return;
  }
  if (ext != ".npy") fail(target, ": unknown output kind (use .npy or .h5)");
  write_npy(file, dims, data.data());
}

}  // namespace chorus::io
