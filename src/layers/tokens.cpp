#include "layers/tokens.h"

#include <algorithm>

namespace chorus::layers {

namespace {
void require_sequence(const Layer& l, const Shape& s, const char* type) {
  if (s.h != 1) fail(type, " '", l.name(), "': expects a sequence (1, L, D), found ", s.str());
}
}  // namespace

ClassToken::ClassToken(std::string name, int count) : Layer(std::move(name)), count_(count) {
  if (count_ < 1) fail_layer("token count must be positive, got ", count_);
}

Shape ClassToken::infer_shape(const std::vector<Shape>& in) {
  require_sequence(*this, in[0], "ClassToken");
  return {1, in[0].w + count_, in[0].c};
}

std::vector<WeightSpec> ClassToken::weight_specs() const { return {{"token", {count_, input_shapes()[0].c}}}; }

void ClassToken::set_weights(WeightMap weights) { tokens_ = take_weight(weights, weight_specs()[0]); }

void ClassToken::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const Tensor& x = *in[0];
  out.resize(x.frames(), output_shape());
  for (int n = 0; n < x.frames(); ++n) {
    float* o = out.frame(n);
    std::copy(tokens_.begin(), tokens_.end(), o);
    std::copy(x.frame(n), x.frame(n) + x.frame_size(), o + tokens_.size());
  }
}

std::vector<WeightSpec> AddConstant::weight_specs() const {
  const Shape& s = input_shapes()[0];
  return {{"constant", {s.h, s.w, s.c}}};
}

void AddConstant::set_weights(WeightMap weights) { constant_ = take_weight(weights, weight_specs()[0]); }

void AddConstant::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const Tensor& x = *in[0];
  if (&out != &x) out.resize(x.frames(), output_shape());
  const std::size_t size = x.frame_size();
  for (int n = 0; n < x.frames(); ++n) {
    const float* v = x.frame(n);
    float* o = out.frame(n);
    for (std::size_t i = 0; i < size; ++i) o[i] = v[i] + constant_[i];
  }
}

Shape TakeToken::infer_shape(const std::vector<Shape>& in) {
  require_sequence(*this, in[0], "TakeToken");
  if (index_ < 0 || index_ >= in[0].w)
    fail_layer("token ", index_, " is outside the sequence ", in[0].str());
  return {1, 1, in[0].c};
}

void TakeToken::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const Tensor& x = *in[0];
  const int d = output_shape().c;
  out.resize(x.frames(), output_shape());
  for (int n = 0; n < x.frames(); ++n)
    std::copy(x.frame(n) + static_cast<std::size_t>(index_) * d, x.frame(n) + static_cast<std::size_t>(index_ + 1) * d,
              out.frame(n));
}

Embedding::Embedding(std::string name, int vocabulary, int dim)
    : Layer(std::move(name)), vocabulary_(vocabulary), dim_(dim) {
  if (vocabulary_ < 1 || dim_ < 1) fail_layer("input_dim and output_dim must be positive, got ", vocabulary_, ", ", dim_);
}

Shape Embedding::infer_shape(const std::vector<Shape>& in) {
  if (in[0].h != 1 || in[0].w != 1) fail_layer("expects a vector of token ids (L), found ", in[0].str());
  return {1, in[0].c, dim_};
}

void Embedding::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const Tensor& ids = *in[0];
  out.resize(ids.frames(), output_shape());
  const int length = input_shapes()[0].c;
  for (int n = 0; n < ids.frames(); ++n)
    for (int t = 0; t < length; ++t) {
      const float id = ids.frame(n)[t];
      if (!(id >= 0.0f && id < static_cast<float>(vocabulary_)) || id != static_cast<float>(static_cast<int>(id)))
        fail_layer("frame ", n, " token ", t, " has id ", id, ", not one of the ", vocabulary_, " in the vocabulary");
      const float* row = table_.data() + static_cast<std::size_t>(id) * dim_;
      std::copy(row, row + dim_, out.frame(n) + static_cast<std::size_t>(t) * dim_);
    }
}

}  // namespace chorus::layers
