#include "layers/attention.h"

#include <algorithm>
#include <cmath>

#include "core/parallel.h"
#include "layers/gemm.h"
#include "layers/scratch.h"
#include "layers/vec_math.h"

namespace chorus::layers {

namespace {

// Softmax over each of `columns` runs of `n` contiguous values.
void softmax_columns(float* s, int n, int columns) {
  for (int j = 0; j < columns; ++j) softmax(s + static_cast<std::size_t>(j) * n, n);
}

}  // namespace

MultiHeadAttention::MultiHeadAttention(std::string name, AttentionSettings settings)
    : Layer(std::move(name)), settings_(settings) {
  AttentionSettings& s = settings_;
  if (s.value_dim == 0) s.value_dim = s.key_dim;
  if (s.head_end < 0) s.head_end = s.heads;
  if (s.heads < 1 || s.key_dim < 1 || s.value_dim < 1)
    fail_layer("heads, key_dim and value_dim must be positive, got ", s.heads, ", ", s.key_dim, ", ", s.value_dim);
  if (s.head_begin < 0 || s.head_end > s.heads || s.head_begin >= s.head_end)
    fail_layer("heads [", s.head_begin, ", ", s.head_end, ") are not a part of ", s.heads, " heads");
  if (s.output_dim < 0) fail_layer("output_dim must be positive, got ", s.output_dim);
  if (s.scale == 0.0f) s.scale = 1.0f / std::sqrt(static_cast<float>(s.key_dim));
}

int MultiHeadAttention::projected() const { return local_heads() * (2 * settings_.key_dim + settings_.value_dim); }

Shape MultiHeadAttention::infer_shape(const std::vector<Shape>& in) {
  if (in.empty() || in.size() > 3) fail_layer("takes 1 to 3 inputs (query, value, key), got ", in.size());
  const int d = in[0].c;
  for (const Shape& s : in)
    if (s.c != d)
      fail_layer("every input must have the query's ", d, " features, found ", s.str(),
                 " (Chorus supports attention with one feature size)");
  if (in.size() == 3 && in[1].h * in[1].w != in[2].h * in[2].w)
    fail_layer("value ", in[1].str(), " and key ", in[2].str(), " have different lengths");
  if (settings_.output_dim == 0) settings_.output_dim = d;
  return {in[0].h, in[0].w, settings_.output_dim};
}

std::vector<WeightSpec> MultiHeadAttention::weight_specs() const {
  const AttentionSettings& s = settings_;
  const int d = input_shapes()[0].c, h = local_heads();
  std::vector<WeightSpec> specs;
  for (const char* p : {"query", "key", "value"}) {
    const int dim = p[0] == 'v' ? s.value_dim : s.key_dim;
    specs.push_back({cat(p, "/kernel"), {d, h, dim}});
    if (s.use_bias) specs.push_back({cat(p, "/bias"), {h, dim}});
  }
  specs.push_back({"attention_output/kernel", {h, s.value_dim, s.output_dim}});
  if (s.use_bias && s.output_bias) specs.push_back({"attention_output/bias", {s.output_dim}});
  return specs;
}

void MultiHeadAttention::set_weights(WeightMap weights) {
  const AttentionSettings& s = settings_;
  const int d = input_shapes()[0].c, h = local_heads(), u = projected();
  const auto specs = weight_specs();
  const auto take = [&](const std::string& name) {
    return take_weight(weights, *std::find_if(specs.begin(), specs.end(), [&](const WeightSpec& w) { return w.name == name; }));
  };
  // [Wq * scale; Wk; Wv]: Keras' (D, heads, dim) row-major is (heads * dim) x D column-major,
  // column i the weights of input i.
  const int widths[3] = {h * s.key_dim, h * s.key_dim, h * s.value_dim};
  const char* parts[3] = {"query", "key", "value"};
  in_kernel_.assign(static_cast<std::size_t>(u) * d, 0.0f);
  in_bias_.assign(u, 0.0f);
  for (int p = 0, row = 0; p < 3; row += widths[p], ++p) {
    const float f = p == 0 ? s.scale : 1.0f;  // the scale folded into the queries
    const std::vector<float> k = take(cat(parts[p], "/kernel"));
    for (int i = 0; i < d; ++i)
      for (int j = 0; j < widths[p]; ++j)
        in_kernel_[static_cast<std::size_t>(i) * u + row + j] = f * k[static_cast<std::size_t>(i) * widths[p] + j];
    if (s.use_bias) {
      const std::vector<float> b = take(cat(parts[p], "/bias"));
      for (int j = 0; j < widths[p]; ++j) in_bias_[row + j] = f * b[j];
    }
  }
  out_bias_.assign(s.output_dim, 0.0f);
  if (s.use_bias && s.output_bias) out_bias_ = take("attention_output/bias");
  // sgemm would pack these on every call: packed here once, and for self-attention the plain
  // copy of the projections dropped (cross-attention multiplies their parts one by one).
  packed_out_ = std::make_unique<PackedWeights>(take("attention_output/kernel"), h * s.value_dim, s.output_dim);
  packed_in_.reset();
  if (input_shapes().size() == 1) {
    packed_in_ = std::make_unique<PackedWeights>(in_kernel_, d, u);
    in_kernel_ = std::vector<float>{};
  }
}

namespace {
// out = x W + bias over `rows` positions, threads taking positions.
void project(const float* x, int ldx, int rows, const PackedWeights& w, const float* bias, float* out) {
  parallel_range(rows, 12, [&](std::int64_t p0, std::int64_t p1) {
    packed_gemm(x + p0 * ldx, ldx, static_cast<int>(p1 - p0), w, bias, Activation{}, out + p0 * w.filters());
  });
}
}  // namespace

double MultiHeadAttention::macs() const {
  const AttentionSettings& s = settings_;
  const auto& in = input_shapes();
  const double l = static_cast<double>(in[0].h) * in[0].w;
  const double src = in.size() > 1 ? static_cast<double>(in[1].h) * in[1].w : l;
  const double d = in[0].c, h = local_heads();
  return l * d * h * s.key_dim + src * d * h * (s.key_dim + s.value_dim)  // projections
         + h * l * src * (s.key_dim + s.value_dim)                        // scores and context
         + l * h * s.value_dim * s.output_dim;                            // output projection
}

std::string MultiHeadAttention::describe() const {
  const AttentionSettings& s = settings_;
  std::string text = cat(s.heads, " heads x ", s.key_dim);
  if (local_heads() != s.heads) text += cat(", heads ", s.head_begin, "-", s.head_end - 1);
  return text;
}

const float* MultiHeadAttention::context_of(const std::vector<const Tensor*>& in, int n, const float* made) const {
  const AttentionSettings& s = settings_;
  const Tensor& query = *in[0];
  const Tensor& value = in.size() > 1 ? *in[1] : query;
  const Tensor& key = in.size() > 2 ? *in[2] : value;
  const Shape& qs = input_shapes()[0];
  const Shape& vs = input_shapes()[in.size() > 1 ? 1 : 0];
  const int d = qs.c, l = qs.h * qs.w, src = vs.h * vs.w, h = local_heads(), u = projected();
  const int dk = s.key_dim, dv = s.value_dim, hk = h * dk, hv = h * dv;
  const bool self = in.size() == 1;

  // One scratch block for the frame: projections (token-major), context, and a score matrix per
  // thread, which holds one head's (L x S) only while that head is computed.
  const int slots = std::min(h, parallel_threads());
  const std::size_t rows = self ? l : static_cast<std::size_t>(l) + src;
  const std::size_t proj_floats = made ? 0 : rows * u, context_floats = static_cast<std::size_t>(l) * hv;
  const std::size_t score_floats = static_cast<std::size_t>(l) * src;
  float* const block = conv_scratch(proj_floats + context_floats + slots * score_floats);
  float* const proj = made ? const_cast<float*>(made) : block;  // only read when made elsewhere
  float* const context = block + proj_floats;
  float* const scores = context + context_floats;
  // Q of position i at proj + i * u; K and V of source position j at kv + j * u (+ hk for V).
  float* const q = proj;
  float* const kv = self ? proj : proj + static_cast<std::size_t>(l) * u;

  if (made) {
    CHORUS_ASSERT(self, "projections made ahead for cross-attention in ", name());
  } else if (self) {
    project(query.frame(n), d, l, *packed_in_, in_bias_.data(), proj);
  } else {
    gemm(hk, l, d, in_kernel_.data(), u, query.frame(n), d, q, u);
    gemm(hk, src, d, in_kernel_.data() + hk, u, key.frame(n), d, kv + hk, u);
    gemm(hv, src, d, in_kernel_.data() + 2 * hk, u, value.frame(n), d, kv + 2 * hk, u);
    parallel_range(static_cast<std::int64_t>(rows), 64, [&](std::int64_t r0, std::int64_t r1) {
      for (std::int64_t r = r0; r < r1; ++r) {
        float* p = proj + r * u;
        for (int j = 0; j < u; ++j) p[j] += in_bias_[j];
      }
    });
  }
  parallel_for(slots, [&](int slot) {
    float* sc = scores + slot * score_floats;
    for (int head = slot; head < h; head += slots) {
      // Scores column-major (S x L): column i holds query i's scores over the sources.
      gemm_at(src, l, dk, kv + hk + head * dk, u, q + head * dk, u, sc, src);
      softmax_columns(sc, src, l);
      // Context (dv x L) = V_head^T (dv x S) * P (S x L), written into its heads' columns.
      gemm(dv, l, src, kv + 2 * hk + head * dv, u, sc, src, context + head * dv, hv);
    }
  });
  return context;
}

void MultiHeadAttention::forward(const std::vector<const Tensor*>& in, Tensor& out) const {
  const Tensor& query = *in[0];
  const int l = input_shapes()[0].h * input_shapes()[0].w, hv = local_heads() * settings_.value_dim;
  out.resize(query.frames(), output_shape());
  for (int n = 0; n < query.frames(); ++n)
    project(context_of(in, n), hv, l, *packed_out_, out_bias_.data(), out.frame(n));
}

double MultiHeadAttention::partwise_fraction() const {
  const double l = static_cast<double>(input_shapes()[0].h) * input_shapes()[0].w;
  return l * local_heads() * settings_.value_dim * settings_.output_dim / macs();
}

void MultiHeadAttention::forward_in_parts(const std::vector<const Tensor*>& in, Tensor& out,
                                          const std::vector<std::int64_t>& parts,
                                          FunctionRef<void(int, double)> part_done) const {
  output_in_parts(in, out, parts, part_done, nullptr);
}

double MultiHeadAttention::consumable_fraction() const {
  if (input_shapes().size() != 1) return 0.0;  // cross-attention projects three inputs
  const double l = static_cast<double>(input_shapes()[0].h) * input_shapes()[0].w;
  return l * input_shapes()[0].c * projected() / macs();
}

void MultiHeadAttention::consume_positions(const std::vector<const Tensor*>& in, std::int64_t p0,
                                           std::int64_t p1) const {
  CHORUS_ASSERT(consumable_fraction() > 0, "only self-attention takes its input part by part, not ", name());
  const Tensor& query = *in[0];
  const int d = input_shapes()[0].c, u = projected();
  const std::size_t need = query.size() / d * u;
  if (consumed_.size() < need) consumed_.resize(need);  // once, for the largest batch
  project(query.data() + p0 * d, d, static_cast<int>(p1 - p0), *packed_in_, in_bias_.data(), consumed_.data() + p0 * u);
}

void MultiHeadAttention::forward_consumed_in_parts(const std::vector<const Tensor*>& in, Tensor& out,
                                                   const std::vector<std::int64_t>& parts,
                                                   FunctionRef<void(int, double)> part_done) const {
  output_in_parts(in, out, parts, part_done, consumed_.data());
}

void MultiHeadAttention::output_in_parts(const std::vector<const Tensor*>& in, Tensor& out,
                                         const std::vector<std::int64_t>& parts,
                                         FunctionRef<void(int, double)> part_done, const float* made) const {
  const Tensor& query = *in[0];
  const int frames = query.frames();
  const int l = input_shapes()[0].h * input_shapes()[0].w, hv = local_heads() * settings_.value_dim;
  const std::size_t frame_projected = static_cast<std::size_t>(l) * projected();
  CHORUS_ASSERT(parts.size() >= 2 && parts.front() == 0 && parts.back() == static_cast<std::int64_t>(frames) * l,
                "parts of ", name(), " do not cover its ", frames * l, " positions");
  out.resize(frames, output_shape());
  const int width = settings_.output_dim;
  if (frames != 1) {  // every frame whole, then the parts at once
    for (int n = 0; n < frames; ++n)
      project(context_of(in, n, made ? made + n * frame_projected : nullptr), hv, l, *packed_out_, out_bias_.data(),
              out.frame(n));
    for (std::size_t j = 0; j + 1 < parts.size(); ++j) part_done(static_cast<int>(j), 1.0);
    return;
  }
  const float* context = context_of(in, 0, made);
  const double before = 1.0 - partwise_fraction();
  for (std::size_t j = 0; j + 1 < parts.size(); ++j) {
    project(context + parts[j] * hv, hv, static_cast<int>(parts[j + 1] - parts[j]), *packed_out_, out_bias_.data(),
            out.data() + parts[j] * width);
    part_done(static_cast<int>(j), before + (1.0 - before) * double(parts[j + 1]) / l);
  }
}

}  // namespace chorus::layers
