// Transformer layers against the plain loops of reference_ops on random shapes: layer
// normalization, multi-head attention (self and cross, whole and split by heads), and the token
// layers of a Vision Transformer.
#include <gtest/gtest.h>

#include "core/parallel.h"
#include "core/random.h"
#include "layers/attention.h"
#include "layers/layer_norm.h"
#include "layers/tokens.h"
#include "reference/reference_ops.h"
#include "reference/test_util.h"

using namespace chorus;
using namespace chorus::layers;

namespace {

int pick(Rng& rng, int lo, int hi) { return lo + static_cast<int>(rng.next_u64() % (hi - lo + 1)); }

struct AttentionCase {
  int frames, l, s, d, heads, dk, dv, dout;
  bool self, bias;
};

// Keras-layout weights for a case, seeded.
ref::AttentionWeights attention_weights(const AttentionCase& c, std::uint64_t seed) {
  ref::AttentionWeights w;
  const auto n = [](int a, int b, int e = 1) { return static_cast<std::size_t>(a) * b * e; };
  w.wq = test::random_vector(n(c.d, c.heads, c.dk), seed + 1, -0.5f, 0.5f);
  w.wk = test::random_vector(n(c.d, c.heads, c.dk), seed + 2, -0.5f, 0.5f);
  w.wv = test::random_vector(n(c.d, c.heads, c.dv), seed + 3, -0.5f, 0.5f);
  w.wo = test::random_vector(n(c.heads, c.dv, c.dout), seed + 4, -0.5f, 0.5f);
  if (c.bias) {
    w.bq = test::random_vector(n(c.heads, c.dk), seed + 5);
    w.bk = test::random_vector(n(c.heads, c.dk), seed + 6);
    w.bv = test::random_vector(n(c.heads, c.dv), seed + 7);
    w.bo = test::random_vector(c.dout, seed + 8);
  }
  return w;
}

// Heads [h0, h1) of a full weight laid out (outer, heads, inner).
std::vector<float> head_slice(const std::vector<float>& w, int outer, int heads, int inner, int h0, int h1) {
  std::vector<float> out;
  for (int o = 0; o < outer; ++o)
    out.insert(out.end(), w.begin() + (static_cast<std::size_t>(o) * heads + h0) * inner,
               w.begin() + (static_cast<std::size_t>(o) * heads + h1) * inner);
  return out;
}

WeightMap weight_map(const ref::AttentionWeights& w, const AttentionCase& c, int h0, int h1, bool output_bias) {
  WeightMap m{{"query/kernel", head_slice(w.wq, c.d, c.heads, c.dk, h0, h1)},
              {"key/kernel", head_slice(w.wk, c.d, c.heads, c.dk, h0, h1)},
              {"value/kernel", head_slice(w.wv, c.d, c.heads, c.dv, h0, h1)},
              {"attention_output/kernel", head_slice(w.wo, 1, c.heads, c.dv * c.dout, h0, h1)}};
  if (c.bias) {
    m["query/bias"] = head_slice(w.bq, 1, c.heads, c.dk, h0, h1);
    m["key/bias"] = head_slice(w.bk, 1, c.heads, c.dk, h0, h1);
    m["value/bias"] = head_slice(w.bv, 1, c.heads, c.dv, h0, h1);
    if (output_bias) m["attention_output/bias"] = w.bo;
  }
  return m;
}

AttentionCase random_case(Rng& rng) {
  AttentionCase c{pick(rng, 1, 3), pick(rng, 1, 40), 0, pick(rng, 1, 48), pick(rng, 1, 6), pick(rng, 1, 16),
                  pick(rng, 1, 16), 0, pick(rng, 0, 1) == 1, pick(rng, 0, 3) != 0};
  c.s = c.self ? c.l : pick(rng, 1, 40);
  c.dout = pick(rng, 0, 1) ? c.d : pick(rng, 1, 40);
  return c;
}

void check_attention_cases(int cases, std::uint64_t seed) {
  Rng rng(seed);
  for (int i = 0; i < cases; ++i) {
    const AttentionCase c = random_case(rng);
    SCOPED_TRACE(cat("frames ", c.frames, " L ", c.l, " S ", c.s, " D ", c.d, " heads ", c.heads, " dk ", c.dk,
                     " dv ", c.dv, " out ", c.dout, c.self ? " self" : " cross", c.bias ? " bias" : ""));
    const auto w = attention_weights(c, seed * 100 + i);
    Tensor q = test::random_tensor(c.frames, {1, c.l, c.d}, seed + 10 * i + 1);
    Tensor v = test::random_tensor(c.frames, {1, c.s, c.d}, seed + 10 * i + 2);
    Tensor k = test::random_tensor(c.frames, {1, c.s, c.d}, seed + 10 * i + 3);
    std::vector<const Tensor*> inputs{&q};
    std::vector<Shape> shapes{q.shape()};
    if (!c.self) {
      inputs = {&q, &v, &k};
      shapes = {q.shape(), v.shape(), k.shape()};
    }
    const Tensor expected = c.self ? ref::attention(q, q, q, w, c.heads, c.dk, c.dv, c.dout)
                                   : ref::attention(q, v, k, w, c.heads, c.dk, c.dv, c.dout);
    AttentionSettings s{c.heads, c.dk, c.dv, c.dout, c.bias};
    MultiHeadAttention whole("mha", s);
    test::build_layer(whole, shapes, weight_map(w, c, 0, c.heads, true));
    Tensor out;
    whole.forward(inputs, out);
    EXPECT_LT(max_relative_error(out, expected), 1e-4);

    // In parts of positions (what a head split reduces while the rest projects): the same
    // output, each part reported once, in order, with the work done growing to all of it.
    std::vector<std::int64_t> parts{0};
    const std::int64_t positions = static_cast<std::int64_t>(c.frames) * c.l;
    while (parts.back() < positions) parts.push_back(std::min<std::int64_t>(positions, parts.back() + pick(rng, 1, 12)));
    Tensor in_parts;
    std::vector<int> reported;
    double last_fraction = 0;
    whole.forward_in_parts(inputs, in_parts, parts, [&](int j, double fraction) {
      reported.push_back(j);
      EXPECT_GE(fraction, last_fraction);
      last_fraction = fraction;
    });
    EXPECT_LT(max_relative_error(in_parts, out), 1e-5);  // fewer rows may take another kernel
    EXPECT_EQ(reported.size() + 1, parts.size());
    for (std::size_t j = 0; j < reported.size(); ++j) EXPECT_EQ(reported[j], static_cast<int>(j));
    EXPECT_DOUBLE_EQ(last_fraction, 1.0);

    // Self-attention takes its input part by part (a split stage's run behind a reduction):
    // the projections of each run of positions as it comes, then the rest; the same output.
    if (c.self) {
      ASSERT_GT(whole.consumable_fraction(), 0.0);
      ASSERT_LT(whole.consumable_fraction() + whole.partwise_fraction(), 1.0);
      for (std::int64_t p0 = 0; p0 < positions;) {
        const std::int64_t p1 = std::min(positions, p0 + pick(rng, 1, 9));
        whole.consume_positions(inputs, p0, p1);
        p0 = p1;
      }
      Tensor consumed;
      reported.clear();
      whole.forward_consumed_in_parts(inputs, consumed, parts, [&](int j, double) { reported.push_back(j); });
      EXPECT_LT(max_relative_error(consumed, out), 1e-5);
      EXPECT_EQ(reported.size() + 1, parts.size());
    } else {
      EXPECT_EQ(whole.consumable_fraction(), 0.0);  // three inputs to project
    }

    // Split by heads: the members' partial outputs add up to the whole.
    const int cut = pick(rng, 1, c.heads);
    Tensor sum(c.frames, expected.shape(), 0.0f);
    for (auto [h0, h1] : {std::pair{0, cut}, std::pair{cut, c.heads}}) {
      if (h0 == h1) continue;
      AttentionSettings part = s;
      part.head_begin = h0, part.head_end = h1, part.output_bias = h0 == 0;
      MultiHeadAttention member("mha", part);
      test::build_layer(member, shapes, weight_map(w, c, h0, h1, h0 == 0));
      Tensor partial;
      member.forward(inputs, partial);
      for (std::size_t j = 0; j < sum.size(); ++j) sum.data()[j] += partial.data()[j];
    }
    EXPECT_LT(max_relative_error(sum, expected), 1e-4);
  }
}

}  // namespace

TEST(LayerNormalization, RandomShapes) {
  Rng rng(41);
  for (int i = 0; i < 40; ++i) {
    const int frames = pick(rng, 1, 3), h = pick(rng, 1, 3), w = pick(rng, 1, 20), c = pick(rng, 1, 300);
    const float eps = pick(rng, 0, 1) ? 1e-6f : 1e-3f;
    SCOPED_TRACE(cat(frames, " x (", h, ",", w, ",", c, ") eps ", eps));
    LayerNormalization ln("ln", {eps, true, true});
    auto gamma = test::random_vector(c, i + 1), beta = test::random_vector(c, i + 2);
    test::build_layer(ln, {{h, w, c}}, {{"gamma", gamma}, {"beta", beta}});
    // Offset inputs: the statistics must not cancel.
    Tensor x = test::random_tensor(frames, {h, w, c}, i + 3, 99.0f, 101.0f);
    Tensor out;
    ln.forward({&x}, out);
    EXPECT_LT(max_relative_error(out, ref::layer_norm(x, gamma, beta, eps)), 1e-3);
    Tensor runs;  // run by run of positions (a split stage behind a reduction)
    test::forward_in_position_runs(ln, {&x}, runs, i);
    EXPECT_EQ(max_relative_error(runs, out), 0.0);
    ln.forward({&x}, x);  // in place
    EXPECT_LT(max_relative_error(x, out), 1e-6);
  }
}

TEST(LayerNormalization, WithoutCenterOrScale) {
  LayerNormalization ln("ln", {1e-5f, false, false});
  test::build_layer(ln, {{1, 4, 8}});
  EXPECT_TRUE(ln.weight_specs().empty());
  Tensor x = test::random_tensor(2, {1, 4, 8}, 7);
  Tensor out;
  ln.forward({&x}, out);
  EXPECT_LT(max_relative_error(out, ref::layer_norm(x, std::vector<float>(8, 1.0f), std::vector<float>(8, 0.0f), 1e-5)),
            1e-4);
}

TEST(MultiHeadAttention, RandomShapesOneThread) { check_attention_cases(40, 3); }

TEST(MultiHeadAttention, RandomShapesThreeThreads) {
  set_compute_threads(3);
  check_attention_cases(25, 4);
  set_compute_threads(1);
}

TEST(MultiHeadAttention, BadSettingsAndInputsAreErrors) {
  EXPECT_THROW(MultiHeadAttention("a", AttentionSettings{0, 4}), Error);
  AttentionSettings part{4, 8};
  part.head_begin = 3, part.head_end = 5;
  EXPECT_THROW(MultiHeadAttention("a", part), Error);
  MultiHeadAttention mha("a", AttentionSettings{2, 4});
  try {
    mha.build({{1, 5, 16}, {1, 5, 8}});
    FAIL() << "inputs of different widths were accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("MultiHeadAttention 'a'"), std::string::npos) << e.what();
  }
}

TEST(TokenLayers, ClassTokenAddConstantTakeToken) {
  const int l = 5, d = 3;
  ClassToken cls("cls", 1);
  auto token = test::random_vector(d, 1);
  test::build_layer(cls, {{1, l, d}}, {{"token", token}});
  EXPECT_EQ(cls.output_shape(), (Shape{1, l + 1, d}));
  AddConstant pos("pos");
  auto table = test::random_vector((l + 1) * d, 2);
  test::build_layer(pos, {{1, l + 1, d}}, {{"constant", table}});
  TakeToken take("take", 0);
  test::build_layer(take, {{1, l + 1, d}});
  EXPECT_EQ(take.output_shape(), (Shape{1, 1, d}));

  Tensor x = test::random_tensor(2, {1, l, d}, 3), a, b, c;
  cls.forward({&x}, a);
  pos.forward({&a}, b);
  take.forward({&b}, c);
  for (int n = 0; n < 2; ++n) {
    for (int j = 0; j < d; ++j) {
      EXPECT_FLOAT_EQ(a.at(n, 0, 0, j), token[j]);
      EXPECT_FLOAT_EQ(c.at(n, 0, 0, j), token[j] + table[j]);
    }
    for (int i = 0; i < l; ++i)
      for (int j = 0; j < d; ++j) {
        EXPECT_FLOAT_EQ(a.at(n, 0, i + 1, j), x.at(n, 0, i, j));
        EXPECT_FLOAT_EQ(b.at(n, 0, i + 1, j), x.at(n, 0, i, j) + table[(i + 1) * d + j]);
      }
  }
  TakeToken outside("t", l + 1);
  EXPECT_THROW(outside.build({{1, l + 1, d}}), Error);
  ClassToken image("c", 1);
  EXPECT_THROW(image.build({{2, 2, d}}), Error);
}
