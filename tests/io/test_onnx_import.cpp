// ONNX import against PyTorch: small models that cover every operator the importer maps
// (tests/data/onnx, written by tests/data/make_onnx_models.py and committed) and torchvision
// models exported by Debian's PyTorch at test time; then files the importer must refuse.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "io/data/npy.h"
#include "io/model_file.h"
#include "reference/test_util.h"

using namespace chorus;
using testing::HasSubstr;

namespace {

const std::string kGenerator = test::source_path("tests/data/make_onnx_models.py");

std::string data_path(const std::string& name) { return test::source_path("tests/data/onnx/" + name); }

// The batch of an .npy file (NCHW images or (N, D) vectors) as NHWC frames of the model's input.
Tensor load_input(const std::string& path, const model::Model& m) {
  io::NpyArray a = io::read_npy(path);
  Tensor t(static_cast<int>(a.shape.at(0)), m.input_shape());
  EXPECT_EQ(a.data.size(), t.size()) << path;
  if (a.data.size() != t.size()) return t;
  for (int n = 0; n < t.frames(); ++n) {
    const float* src = a.data.data() + n * t.frame_size();
    if (a.shape.size() >= 4)  // NCHW or NCDHW
      nchw_to_nhwc(src, t.frame(n), m.input_shape());
    else
      std::copy(src, src + t.frame_size(), t.frame(n));
  }
  return t;
}

// PyTorch's output as NHWC frames of `shape`, to compare with Chorus' output.
Tensor load_expected(const std::string& path, Shape shape) {
  io::NpyArray a = io::read_npy(path);
  Tensor t(static_cast<int>(a.shape.at(0)), shape);
  EXPECT_EQ(a.data.size(), t.size()) << path << ": Chorus' output is " << shape.str();
  if (a.data.size() != t.size()) return t;
  for (int n = 0; n < t.frames(); ++n) {
    const float* src = a.data.data() + n * t.frame_size();
    if (a.shape.size() == 4)
      nchw_to_nhwc(src, t.frame(n), shape);
    else
      std::copy(src, src + t.frame_size(), t.frame(n));
  }
  return t;
}

// Largest |a - b| over the largest |b|: relative to the output's scale, so that models whose
// outputs are all small (random classifier heads) are held to the same standard.
double scaled_error(const Tensor& got, const Tensor& expected) {
  EXPECT_EQ(got.size(), expected.size());
  if (got.size() != expected.size()) return 1.0;
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    worst = std::max(worst, std::fabs(double(got.data()[i]) - expected.data()[i]));
    scale = std::max(scale, std::fabs(double(expected.data()[i])));
  }
  return scale > 0 ? worst / scale : worst;
}

// Loads dir/NAME.onnx, runs NAME.input.npy through it and returns scaled_error against
// NAME.output.npy.
double error_against_pytorch(const std::string& dir, const std::string& name, bool optimize = true) {
  io::ModelLoadOptions options;
  options.optimize = optimize;
  model::Model m = io::load_model_file(dir + "/" + name + ".onnx", options);
  Tensor in = load_input(dir + "/" + name + ".input.npy", m);
  Tensor out = m.forward(in);
  Tensor expected = load_expected(dir + "/" + name + ".output.npy", m.output_shape());
  const double e = scaled_error(out, expected);
  return e;
}

std::vector<std::string> manifest(const std::string& dir) {
  std::ifstream in(dir + "/manifest.txt");
  std::vector<std::string> names;
  for (std::string name; in >> name;) names.push_back(name);
  return names;
}

bool have_pytorch() {
  return test::run_command("/usr/bin/python3 -c 'import torch, torchvision, onnx'").exit_code == 0;
}

const char* const kSmallModels[] = {"conv_variants",
                                    "pool_norm",
                                    "activations_op11",
                                    "activations_op13",
                                    "activations_op17",
                                    "mlp",
                                    "view_flatten",
                                    "gemm_attributes",
                                    "auto_pad",
                                    "clip_attributes",
                                    "clip_inputs",
                                    "lrn",
                                    "vit_tiny_op14",
                                    "vit_tiny_op17",
                                    "text_encoder",
                                    "vit_tiny_dynamic_batch",
                                    "text_encoder_dynamic_batch",
                                    "clip_net"};

class OnnxSmallModel : public testing::TestWithParam<const char*> {};

}  // namespace

TEST_P(OnnxSmallModel, MatchesPyTorchWithin1e4) { EXPECT_LT(error_against_pytorch(data_path(""), GetParam()), 1e-4); }

TEST_P(OnnxSmallModel, UnoptimisedGraphAgrees) {
  EXPECT_LT(error_against_pytorch(data_path(""), GetParam(), /*optimize=*/false), 1e-4);
}

TEST_P(OnnxSmallModel, FramesOneByOneGiveTheBatchResult) {
  const std::string name = GetParam();
  model::Model m = io::load_model_file(data_path(name + ".onnx"));
  Tensor in = load_input(data_path(name + ".input.npy"), m);
  Tensor batch = m.forward(in);
  Tensor one(1, m.input_shape());
  std::copy(in.frame(1), in.frame(1) + in.frame_size(), one.data());
  Tensor single = m.forward(one);
  for (std::size_t i = 0; i < single.size(); ++i) EXPECT_NEAR(single.data()[i], batch.frame(1)[i], 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Generated, OnnxSmallModel, testing::ValuesIn(kSmallModels));

TEST(OnnxImport, TheGeneratorListsExactlyTheTestedSmallModels) {
  std::vector<std::string> expected(std::begin(kSmallModels), std::end(kSmallModels));
  EXPECT_EQ(manifest(data_path("")), expected);
}

namespace {

// Runs the generator's `mode` into a temporary folder and checks that it wrote `names`, each
// matching PyTorch's output.
void expect_generated_models_match_pytorch(const std::string& mode, const std::vector<std::string>& names) {
  test::TempDir dir;
  auto r = test::run_command("/usr/bin/python3 " + kGenerator + " " + mode + " " + dir.path(""));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(manifest(dir.path("")), names);
  for (const auto& name : manifest(dir.path(""))) {
    SCOPED_TRACE(name);
    EXPECT_LT(error_against_pytorch(dir.path(""), name), 1e-4);
  }
}

}  // namespace

// The torchvision models, exported at test time (about 25 s on 2 cores, most of it AlexNet).
TEST(OnnxImport, TorchvisionModelsMatchPyTorchWithin1e4) {
  if (!have_pytorch()) GTEST_SKIP() << "python3-torch, python3-torchvision or python3-onnx is not installed";
  expect_generated_models_match_pytorch("zoo", {"resnet18", "mobilenet_v2", "squeezenet1_0", "googlenet", "alexnet",
                                                "efficientnet_b0", "mobilenet_v3_small"});
}

// torchvision's ViT-B/32 (opset 14) and ViT-B/16 (opset 17), exported at test time (about 15 s
// on 2 cores and 700 MB in a temporary folder).
TEST(OnnxImport, TorchvisionVisionTransformersMatchPyTorchWithin1e4) {
  if (!have_pytorch()) GTEST_SKIP() << "python3-torch, python3-torchvision or python3-onnx is not installed";
  expect_generated_models_match_pytorch("vit", {"vit_b_32", "vit_b_16"});
}

// The committed small models are what the generator writes today (same operators, same outputs).
TEST(OnnxImport, RegeneratedSmallModelsAgreeWithTheCommittedOnes) {
  if (!have_pytorch()) GTEST_SKIP() << "python3-torch, python3-torchvision or python3-onnx is not installed";
  test::TempDir dir;
  auto r = test::run_command("/usr/bin/python3 " + kGenerator + " small " + dir.path(""));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const auto& name : manifest(dir.path(""))) {
    SCOPED_TRACE(name);
    EXPECT_LT(error_against_pytorch(dir.path(""), name), 1e-4);
    io::NpyArray fresh = io::read_npy(dir.path(name + ".output.npy"));
    io::NpyArray committed = io::read_npy(data_path(name + ".output.npy"));
    ASSERT_EQ(fresh.data.size(), committed.data.size());
    for (std::size_t i = 0; i < fresh.data.size(); ++i) EXPECT_NEAR(fresh.data[i], committed.data[i], 1e-5);
  }
}

// ---- Through the command line: NCHW in, NCHW out ----------------------------------------------

TEST(OnnxImport, RunCommandReadsAndWritesNchw) {
  test::TempDir dir;
  const std::string out = dir.path("out.npy");
  auto r = test::run_chorus("run " + data_path("pool_norm.onnx") + " --input " + data_path("pool_norm.input.npy") +
                            " --output " + out + " --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  io::NpyArray got = io::read_npy(out), expected = io::read_npy(data_path("pool_norm.output.npy"));
  ASSERT_EQ(got.shape, expected.shape);
  for (std::size_t i = 0; i < got.data.size(); ++i) ASSERT_NEAR(got.data[i], expected.data[i], 1e-4) << i;
}

TEST(OnnxImport, InfoAndPlanAcceptOnnx) {
  auto info = test::run_chorus("info " + data_path("conv_variants.onnx"));
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_THAT(info.output, HasSubstr("DepthwiseConv2D"));
  test::TempDir dir;
  auto plan = test::run_chorus("plan " + data_path("conv_variants.onnx") + " --strategy pipeline --ranks 2 -o " +
                               dir.path("plan.json"));
  ASSERT_EQ(plan.exit_code, 0) << plan.output;
  EXPECT_TRUE(std::filesystem::exists(dir.path("plan.json")));
}

// ---- Several inputs and outputs --------------------------------------------------------------

// multi_io.onnx: an image and a vector in, class scores and a map out, by name; PyTorch's
// outputs for a batch of 3.
TEST(OnnxImport, SeveralInputsAndOutputsMatchPyTorch) {
  model::Model m = io::load_model_file(data_path("multi_io.onnx"));
  ASSERT_EQ(m.inputs().size(), 2u);
  EXPECT_EQ(m.inputs()[0].name, "image");
  EXPECT_EQ(m.inputs()[1].name, "vector");
  EXPECT_EQ(m.output_names(), (std::vector<std::string>{"scores", "mask"}));
  io::NpyArray image = io::read_npy(data_path("multi_io.image.npy")), vector = io::read_npy(data_path("multi_io.vector.npy"));
  const int frames = static_cast<int>(image.shape[0]);
  Tensor x(frames, m.inputs()[0].shape), v(frames, m.inputs()[1].shape);
  for (int n = 0; n < frames; ++n) nchw_to_nhwc(image.data.data() + n * x.frame_size(), x.frame(n), x.shape());
  std::copy(vector.data.begin(), vector.data.end(), v.data());
  const auto out = m.forward({&x, &v});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_LT(scaled_error(out[0], load_expected(data_path("multi_io.scores.npy"), m.shape_of(m.outputs()[0]))), 1e-5);
  EXPECT_LT(scaled_error(out[1], load_expected(data_path("multi_io.mask.npy"), m.shape_of(m.outputs()[1]))), 1e-5);
}

// `chorus run` takes one --input per input by name (in any order) and writes one file per
// output, NCHW as PyTorch gives it; on one rank and through a pipeline of three.
TEST(OnnxImport, RunCommandTakesAnInputPerNameAndWritesAFilePerOutput) {
  for (const std::string& launcher :
       {std::string(""), std::string("timeout -k 5 120 mpiexec --oversubscribe -np 3 ")}) {
    SCOPED_TRACE(launcher);
    test::TempDir dir;
    const std::string command = launcher + CHORUS_BINARY " run " + data_path("multi_io.onnx") + " --input vector=" +
                                data_path("multi_io.vector.npy") + " --input image=" + data_path("multi_io.image.npy") +
                                " --output " + dir.path("out.npy") + " --quiet --top 1";
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    auto r = test::run_command(command);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr("frame 2 scores:"));
    EXPECT_THAT(r.output, HasSubstr("wrote " + dir.path("out.mask.npy")));
    for (const std::string name : {"scores", "mask"}) {
      io::NpyArray got = io::read_npy(dir.path("out." + name + ".npy"));
      io::NpyArray expected = io::read_npy(data_path("multi_io." + name + ".npy"));
      ASSERT_EQ(got.shape, expected.shape) << name;
      for (std::size_t i = 0; i < got.data.size(); ++i) ASSERT_NEAR(got.data[i], expected.data[i], 1e-5) << name << " " << i;
      // --top counts its class indices in the array written: NCHW for the map.
      const std::size_t per_frame = expected.data.size() / expected.shape[0];
      const auto largest = std::max_element(expected.data.begin(), expected.data.begin() + per_frame);
      EXPECT_THAT(r.output, HasSubstr(cat("frame 0 ", name, ":  ", largest - expected.data.begin(), " (")));
    }
  }
  const auto info = test::run_command(CHORUS_BINARY " info " + data_path("multi_io.onnx"));
  EXPECT_THAT(info.output, HasSubstr("output mask (5, 5, 2) (layer /mask/Conv)  channels_first: written (N, 2, 5, 5)"));
}

// LRN normalises each pixel across its channels only, so it runs inside row bands: the
// convolution and both LRNs form one split-spatial stage on three ranks, equal to PyTorch.
TEST(OnnxImport, LrnRunsInsideRowBands) {
  test::TempDir dir;
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  auto r = test::run_command("timeout -k 5 120 mpiexec --oversubscribe -np 3 " CHORUS_BINARY " run " +
                             data_path("lrn.onnx") + " --input " + data_path("lrn.input.npy") +
                             " --strategy split-spatial --output " + dir.path("out.npy") + " --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("conv..lrn5 split-spatial [0,1,2]"));
  io::NpyArray got = io::read_npy(dir.path("out.npy")), expected = io::read_npy(data_path("lrn.output.npy"));
  ASSERT_EQ(got.shape, expected.shape);
  for (std::size_t i = 0; i < got.data.size(); ++i) ASSERT_NEAR(got.data[i], expected.data[i], 1e-5) << i;
}

TEST(OnnxImport, InputsOfAModelOfSeveralAreCheckedBeforeRunning) {
  const std::string model = data_path("multi_io.onnx"), image = data_path("multi_io.image.npy"),
                    vector = data_path("multi_io.vector.npy");
  struct Case {
    std::string args, message;
  };
  for (const Case& c : {Case{"--input image=" + image, "the model has 2 inputs ('image', 'vector'), --input was given 1 time(s)"},
                        Case{"--input image=" + image + " --input image=" + vector, "input 'image' is given twice"},
                        Case{"--input image=" + image + " --input depth=" + vector,
                             "--input depth=" + vector + ": not NAME=SOURCE for an input of the model"},
                        Case{"--input " + vector + " --input " + image, "input 'image': " + vector + ": array is (3, 6)"}}) {
    SCOPED_TRACE(c.args);
    auto r = test::run_chorus("run " + model + " " + c.args + " --quiet");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_THAT(r.output, HasSubstr(c.message));
  }
}

// ---- Files the importer refuses ---------------------------------------------------------------

TEST(OnnxErrors, UnsupportedOperatorIsNamedWithItsNode) {
  const std::string path = data_path("unsupported_operator.onnx");
  EXPECT_EQ(test::error_of([&] { io::load_model_file(path); }),
            path + ": node 'Foo_3' uses operator 'Erf', which Chorus does not support");
}

TEST(OnnxErrors, InputOfRankSix) {
  const std::string message = test::error_of([&] { io::load_model_file(data_path("input_rank6.onnx")); });
  EXPECT_THAT(message, HasSubstr("input_rank6.onnx: input 'x' is (1, 3, 2, 2, 4, 4), of rank 6"));
  EXPECT_THAT(message, HasSubstr("5-D (N, C, D, H, W) clips, 4-D (N, C, H, W) images"));
}

TEST(OnnxErrors, AttentionMaskIsRefusedNamingTheScoresNode) {
  const std::string path = data_path("attention_mask.onnx");
  EXPECT_EQ(test::error_of([&] { io::load_model_file(path); }),
            path +
                ": node '/encoder/layers.0/self_attn/MatMul_1' (MatMul): in an attention block "
                "(nn.MultiheadAttention as PyTorch exports it) that Chorus does not recognise: expected its output "
                "to be read by one Softmax only, found Mul '/encoder/layers.0/self_attn/Mul_3' (attention masks "
                "and other changes to the scores are not supported)");
}

TEST(OnnxErrors, DynamicSequenceLengthIsRefusedNamingTheInput) {
  const std::string path = data_path("dynamic_length.onnx");
  EXPECT_EQ(test::error_of([&] { io::load_model_file(path); }),
            path + ": input 'x' has dimension 1 'length' (symbolic); Chorus needs fixed sizes besides the batch axis");
}

// A ViT's parts become one layer each: the attention blocks, the layer norms written out in
// operators (opset 14) or as LayerNormalization (17), GELU folded into the first MLP layer.
TEST(OnnxImport, VisionTransformerBecomesTransformerLayers) {
  for (const char* name : {"vit_tiny_op14", "vit_tiny_op17"}) {
    SCOPED_TRACE(name);
    model::Model m = io::load_model_file(data_path(std::string(name) + ".onnx"));
    std::map<std::string, int> count;
    for (const auto& node : m.nodes()) ++count[node.layer->type()];
    EXPECT_EQ(count["MultiHeadAttention"], 2);
    EXPECT_EQ(count["LayerNormalization"], 5);
    EXPECT_EQ(count["ClassToken"], 1);
    EXPECT_EQ(count["AddConstant"], 1);
    EXPECT_EQ(count["TakeToken"], 1);
    EXPECT_EQ(count["Dense"], 5);  // two MLP layers per block and the head
    EXPECT_EQ(count["Activation"], 0) << "GELU was not folded into its Dense layer";
    EXPECT_EQ(m.nodes().size(), 21u);  // and the patch convolution, its reshape and two residual adds a block
  }
}

TEST(OnnxErrors, TransposeThatMovesDataIsRefused) {
  EXPECT_THAT(test::error_of([&] { io::load_model_file(data_path("moving_transpose.onnx")); }),
              HasSubstr("node 'to_nhwc' (Transpose): perm (0, 2, 3, 1) on (1, 3, 4, 4) moves data"));
}

TEST(OnnxErrors, ConvWeightThatDoesNotFitTheInput) {
  EXPECT_THAT(test::error_of([&] { io::load_model_file(data_path("bad_conv_weight.onnx")); }),
              HasSubstr("node 'conv' (Conv): weight 'w' is (2, 5, 3, 3), expected 3 input channels per group"));
}

TEST(OnnxErrors, GarbageAndEmptyFiles) {
  test::TempDir dir;
  const std::string garbage = dir.path("garbage.onnx"), empty = dir.path("empty.onnx");
  {
    std::ofstream out(garbage, std::ios::binary);
    auto bytes = test::random_vector(300, 7);
    out.write(reinterpret_cast<const char*>(bytes.data()), bytes.size() * sizeof(float));
    std::ofstream{empty};
  }
  EXPECT_THAT(test::error_of([&] { io::load_model_file(garbage); }), HasSubstr(garbage + ": not a"));
  EXPECT_THAT(test::error_of([&] { io::load_model_file(empty); }),
              HasSubstr(empty + ": not an ONNX model, or an empty one"));
  EXPECT_THAT(test::error_of([&] { io::load_model_file(dir.path("missing.onnx")); }),
              HasSubstr("missing.onnx: cannot open"));
}

// Every prefix cut of a real model gives a chorus::Error naming the file, never a crash.
TEST(OnnxErrors, TruncatedFilesAreRefusedAtEveryLength) {
  std::ifstream in(data_path("conv_variants.onnx"), std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  ASSERT_GT(bytes.size(), 1000u);
  test::TempDir dir;
  const std::string cut = dir.path("cut.onnx");
  std::vector<std::size_t> lengths;
  for (std::size_t n = 0; n < 64; ++n) lengths.push_back(n);
  for (std::size_t n = 64; n < bytes.size(); n += 97) lengths.push_back(n);
  lengths.push_back(bytes.size() - 1);
  for (std::size_t n : lengths) {
    std::ofstream(cut, std::ios::binary | std::ios::trunc).write(bytes.data(), n);
    EXPECT_THAT(test::error_of([&] { io::load_model_file(cut); }), HasSubstr(cut + ": ")) << n << " bytes";
  }
}

TEST(OnnxErrors, ArchitectureFileIsRefusedForOnnx) {
  EXPECT_THAT(test::error_of([&] {
                io::ModelLoadOptions o;
                o.arch_path = "model.json";
                io::load_model_file(data_path("mlp.onnx"), o);
              }),
              HasSubstr("--arch is for Keras weights-only files"));
}

TEST(OnnxErrors, FormatIsRecognisedByContentToo) {
  test::TempDir dir;
  const std::string renamed = dir.path("model.bin");
  std::filesystem::copy_file(data_path("mlp.onnx"), renamed);
  EXPECT_EQ(io::model_format(renamed), io::ModelFormat::onnx);
  model::Model m = io::load_model_file(renamed);
  EXPECT_EQ(m.input_shape(), (Shape{1, 1, 20}));
}
