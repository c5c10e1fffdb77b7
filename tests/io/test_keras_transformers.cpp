// A Vision Transformer written as Keras layers (a Conv2D patch embedding and Reshape, two
// encoder blocks of LayerNormalization, MultiHeadAttention, residual Add, Dense with gelu and
// Dropout, GlobalAveragePooling1D, a head), written by the tests as a tf.keras .h5 and a Keras 3
// .keras archive, against plain loops on the same weights. The weights' layout in those files
// (query/kernel (D, heads, key_dim)...) follows Keras' documentation and the paths other code
// reads from Keras 3 archives (layers/<mha>/query_dense/vars/0); no Keras runs here.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "io/hdf5/hdf5_file.h"
#include "io/keras/keras_writer.h"
#include "io/keras/zip_archive.h"
#include "io/model_file.h"
#include "reference/keras_vit.h"
#include "reference/reference_ops.h"
#include "reference/test_util.h"

using namespace chorus;
using testing::HasSubstr;

namespace {

// Keras 2 inbound nodes: MultiHeadAttention reads its value as a keyword argument.
constexpr const char* kVit = test::kKerasVitConfig;

// The same attention call as Keras 3 writes it: value as a keyword tensor.
std::string keras3_style(std::string config) {
  const std::string k2 = R"([[["ln1", 0, 0, {"value": ["ln1", 0, 0]}]]])";
  const std::string k3 =
      R"([{"args": [{"class_name": "__keras_tensor__", "config": {"keras_history": ["ln1", 0, 0]}}], "kwargs": {"value": {"class_name": "__keras_tensor__", "config": {"keras_history": ["ln1", 0, 0]}}}}])";
  config.replace(config.find(k2), k2.size(), k3);
  return config;
}

const std::vector<float>& weight(const test::KerasTestModel& m, const std::string& layer, const std::string& name) {
  for (std::size_t i = 0; i < m.spec.layers.size(); ++i)
    if (m.spec.layers[i].name == layer) return m.weights[i].at(name);
  throw std::runtime_error("no layer " + layer);
}

// The model by plain loops.
Tensor reference(const test::KerasTestModel& m, const Tensor& img) {
  auto w = [&](const char* layer, const char* name) { return weight(m, layer, name); };
  ref::ConvParams p;
  p.kh = p.kw = p.sh = p.sw = 4;
  Tensor x = ref::conv2d(img, w("patches", "kernel"), w("patches", "bias"), 24, p);
  x.reshape({1, 16, 24});
  auto add = [](const Tensor& a, const Tensor& b) {
    Tensor out = a;
    for (std::size_t i = 0; i < out.size(); ++i) out.data()[i] += b.data()[i];
    return out;
  };
  const Tensor n1 = ref::layer_norm(x, w("ln1", "gamma"), w("ln1", "beta"), 1e-6);
  ref::AttentionWeights aw{w("mha", "query/kernel"), w("mha", "query/bias"), w("mha", "key/kernel"),
                           w("mha", "key/bias"),     w("mha", "value/kernel"), w("mha", "value/bias"),
                           w("mha", "attention_output/kernel"), w("mha", "attention_output/bias")};
  const Tensor a1 = add(x, ref::attention(n1, n1, n1, aw, 3, 8, 8, 24));
  const Tensor n2 = ref::layer_norm(a1, w("ln2", "gamma"), w("ln2", "beta"), 1e-6);
  const Tensor h = ref::activation(ref::dense(n2, w("mlp1", "kernel"), w("mlp1", "bias"), 48), "gelu");
  const Tensor a2 = add(a1, ref::dense(h, w("mlp2", "kernel"), w("mlp2", "bias"), 24));
  const Tensor n3 = ref::layer_norm(a2, w("ln3", "gamma"), w("ln3", "beta"), 1e-6);
  return ref::activation(ref::dense(ref::global_pool(n3, false), w("head", "kernel"), w("head", "bias"), 5), "softmax");
}

}  // namespace

TEST(KerasTransformer, ViTInH5AndKerasArchiveMatchesPlainLoops) {
  test::TempDir dir;
  const test::KerasTestModel m = test::random_keras_model(kVit, 11);
  io::write_keras_h5(dir.path("vit.h5"), m.config, m.spec, m.model, m.weights);
  const test::KerasTestModel m3 = test::random_keras_model(keras3_style(kVit), 11);
  io::write_keras_archive(dir.path("vit.keras"), m3.config, m3.spec, m3.model, m3.weights);
  const Tensor img = test::random_tensor(3, {16, 16, 3}, 5);
  const Tensor expected = reference(m, img);
  for (const char* file : {"vit.h5", "vit.keras"}) {
    SCOPED_TRACE(file);
    model::Model model = io::load_model_file(dir.path(file));
    int attention = 0, pool_1d = 0;
    for (const auto& node : model.nodes()) {
      attention += node.layer->type() == "MultiHeadAttention";
      pool_1d += node.layer->type() == "GlobalAveragePooling1D";  // as `chorus info` names it
    }
    EXPECT_EQ(attention, 1);
    EXPECT_EQ(pool_1d, 1);
    EXPECT_LT(test::error_vs_largest(model.forward(img), expected), 1e-4);
  }
  // In the archive, as Keras 3 saves MultiHeadAttention: each projection under its own name.
  const std::vector<char> weights = io::ZipArchive(dir.path("vit.keras")).read("model.weights.h5");
  const io::H5File h5 = io::H5File::from_image(weights.data(), weights.size(), "model.weights.h5");
  for (const char* path :
       {"/layers/multi_head_attention/query_dense/vars/0", "/layers/multi_head_attention/query_dense/vars/1",
        "/layers/multi_head_attention/output_dense/vars/0", "/layers/layer_normalization/vars/1"})
    EXPECT_TRUE(h5.is_dataset(path)) << path;
}

// Keras 3 versions before MultiHeadAttention's public query_dense property saved its
// projections under the private attributes (_query_dense/vars/0): those read the same.
TEST(KerasTransformer, AttentionProjectionsUnderPrivateNamesReadTheSame) {
  if (test::run_command("/usr/bin/python3 -c 'import h5py'").exit_code != 0)
    GTEST_SKIP() << "python3-h5py is not installed";
  test::TempDir dir;
  const test::KerasTestModel m = test::random_keras_model(keras3_style(kVit), 11);
  io::write_keras_archive(dir.path("vit.keras"), m.config, m.spec, m.model, m.weights);
  const std::string rename = R"(
import io, sys, zipfile, h5py
src, dst = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(src) as z:
    members = {n: z.read(n) for n in z.namelist()}
buffer = io.BytesIO(members["model.weights.h5"])
with h5py.File(buffer, "r+") as f:
    for p in ("query", "key", "value", "output"):
        f.move(f"layers/multi_head_attention/{p}_dense", f"layers/multi_head_attention/_{p}_dense")
members["model.weights.h5"] = buffer.getvalue()
with zipfile.ZipFile(dst, "w") as z:
    for n, data in members.items():
        z.writestr(n, data)
)";
  std::ofstream(dir.path("rename.py")) << rename;
  auto r = test::run_command("/usr/bin/python3 " + dir.path("rename.py") + " " + dir.path("vit.keras") + " " +
                             dir.path("private.keras"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Tensor img = test::random_tensor(3, {16, 16, 3}, 5);
  const Tensor expected = io::load_model_file(dir.path("vit.keras")).forward(img);
  EXPECT_EQ(test::error_vs_largest(io::load_model_file(dir.path("private.keras")).forward(img), expected), 0.0);
}

TEST(KerasTransformer, CrossAttentionReadsValueAsItsSecondInput) {
  std::string config = kVit;
  const std::string self = R"({"value": ["ln1", 0, 0]})";
  config.replace(config.find(self), self.size(), R"({"value": ["tokens", 0, 0]})");
  const test::KerasTestModel m = test::random_keras_model(config, 3);
  const int mha = m.model.find("mha");
  ASSERT_GE(mha, 0);
  EXPECT_EQ(m.model.node(mha).inputs.size(), 2u);
}

TEST(KerasTransformer, AttentionMaskIsRefusedNamingTheLayer) {
  std::string config = kVit;
  const std::string self = R"({"value": ["ln1", 0, 0]})";
  config.replace(config.find(self), self.size(), R"({"value": ["ln1", 0, 0], "attention_mask": ["tokens", 0, 0]})");
  EXPECT_THAT(test::error_of([&] { test::random_keras_model(config, 3); }),
              HasSubstr("layer 'mha': keyword input 'attention_mask' is a tensor, which Chorus does not support"));
}

TEST(KerasTransformer, LayerNormOverAnotherAxisIsRefused) {
  std::string config = kVit;
  const std::string axis = R"("axis": [2])";
  config.replace(config.find(axis), axis.size(), R"("axis": [1])");
  EXPECT_THAT(test::error_of([&] { test::random_keras_model(config, 3); }),
              HasSubstr("layer 'ln1' (LayerNormalization): 'axis' is [1]; Chorus supports the last axis only"));
}

// A text classifier: token ids through an Embedding, self-attention, pooling and a head.
TEST(KerasTransformer, EmbeddingOfTokenIdsMatchesPlainLoops) {
  constexpr const char* kText = R"({"class_name": "Functional", "config": {"name": "text", "layers": [
   {"class_name": "InputLayer", "name": "ids", "config": {"name": "ids", "batch_input_shape": [null, 8]}, "inbound_nodes": []},
   {"class_name": "Embedding", "name": "embed", "config": {"name": "embed", "input_dim": 50, "output_dim": 16}, "inbound_nodes": [[["ids", 0, 0, {}]]]},
   {"class_name": "MultiHeadAttention", "name": "mha", "config": {"name": "mha", "num_heads": 2, "key_dim": 8},
    "inbound_nodes": [[["embed", 0, 0, {"value": ["embed", 0, 0], "key": ["embed", 0, 0]}]]]},
   {"class_name": "GlobalAveragePooling1D", "name": "pool", "config": {"name": "pool"}, "inbound_nodes": [[["mha", 0, 0, {}]]]},
   {"class_name": "Dense", "name": "head", "config": {"name": "head", "units": 3}, "inbound_nodes": [[["pool", 0, 0, {}]]]}],
   "input_layers": [["ids", 0, 0]], "output_layers": [["head", 0, 0]]}})";
  test::TempDir dir;
  const test::KerasTestModel m = test::random_keras_model(kText, 2);
  io::write_keras_h5(dir.path("text.h5"), m.config, m.spec, m.model, m.weights);
  model::Model model = io::load_model_file(dir.path("text.h5"));
  Tensor ids(2, {1, 1, 8});
  for (std::size_t i = 0; i < ids.size(); ++i) ids.data()[i] = static_cast<float>((i * 7 + 3) % 50);
  const auto& table = weight(m, "embed", "embeddings");
  Tensor x(2, {1, 8, 16});
  for (int n = 0; n < 2; ++n)
    for (int t = 0; t < 8; ++t)
      for (int c = 0; c < 16; ++c) x.at(n, 0, t, c) = table[static_cast<std::size_t>(ids.frame(n)[t]) * 16 + c];
  auto w = [&](const char* name) { return weight(m, "mha", name); };
  ref::AttentionWeights aw{w("query/kernel"), w("query/bias"), w("key/kernel"), w("key/bias"), w("value/kernel"),
                           w("value/bias"), w("attention_output/kernel"), w("attention_output/bias")};
  const Tensor expected = ref::dense(ref::global_pool(ref::attention(x, x, x, aw, 2, 8, 8, 16), false),
                                     weight(m, "head", "kernel"), weight(m, "head", "bias"), 3);
  EXPECT_LT(test::error_vs_largest(model.forward(ids), expected), 1e-4);
  ids.data()[5] = 50.0f;
  EXPECT_THAT(test::error_of([&] { model.forward(ids); }),
              HasSubstr("Embedding 'embed': frame 0 token 5 has id 50, not one of the 50 in the vocabulary"));
}
