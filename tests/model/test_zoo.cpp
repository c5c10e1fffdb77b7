// Every zoo architecture builds with the published parameter count, takes generated weights,
// and runs to finite outputs.
#include <gtest/gtest.h>

#include <cmath>

#include "io/keras/keras_model.h"
#include "io/keras/keras_writer.h"
#include "reference/test_util.h"

using namespace chorus;

namespace {
struct ZooModel {
  const char* name;
  std::size_t params;  // Keras' count (trainable + batch-norm statistics)
  Shape output;
  bool softmax = true;  // a classifier's output sums to one
};
const ZooModel kZoo[] = {
    {"lenet5", 61706, {1, 1, 10}},         {"alexnet", 62378344, {1, 1, 1000}},
    {"vgg16", 138357544, {1, 1, 1000}},    {"resnet18", 11699112, {1, 1, 1000}},
    {"resnet50", 25636712, {1, 1, 1000}},  {"mobilenetv2", 3538984, {1, 1, 1000}},
    {"xception", 22910480, {1, 1, 1000}},
    // keras.applications.EfficientNetB0: 5,330,571 (Normalization's mean, variance and count
    // included, as Keras counts them).
    {"efficientnetb0", 5330571, {1, 1, 1000}},
    // Darknet's yolov2-tiny-voc: 15,867,885 (its 63 MB of weights), a detector: no softmax.
    {"tinyyolov2", 15867885, {13, 13, 125}, false},
    // C3D for Sports-1M (Tran et al., ICCV 2015) as its Keras port prints it: 79,991,015.
    {"c3d", 79991015, {1, 1, 487}},
};
}  // namespace

TEST(Zoo, ArchitecturesBuildWithKnownParameterCounts) {
  for (const auto& z : kZoo) {
    std::string path = test::source_path(std::string("models/") + z.name + ".json");
    auto spec = io::parse_keras_config(io::read_architecture_file(path), path);
    auto m = io::build_keras_model(spec, path);
    EXPECT_EQ(m.total_cost().weight_bytes / 4, z.params) << z.name;
    EXPECT_EQ(m.output_shape(), z.output) << z.name;
  }
}

TEST(Zoo, GeneratedWeightsRunToFiniteOutputs) {
  test::TempDir dir;
  for (const auto& z : kZoo) {
    SCOPED_TRACE(z.name);
    std::string h5 = dir.path(std::string(z.name) + ".h5");
    io::init_keras_weights(test::source_path(std::string("models/") + z.name + ".json"), 1, h5);
    model::Model m = io::load_keras_model(h5);
    Tensor in = test::random_tensor(1, m.input_shape(), 3, 0.0f, 1.0f);
    Tensor out = m.forward(in);
    double sum = 0;
    for (std::size_t i = 0; i < out.size(); ++i) {
      ASSERT_TRUE(std::isfinite(out.data()[i])) << "output " << i;
      sum += out.data()[i];
    }
    if (z.softmax) {
      EXPECT_NEAR(sum, 1.0, 1e-3);
    }
    std::remove(h5.c_str());
  }
}

TEST(Zoo, InitWeightsIsDeterministic) {
  test::TempDir dir;
  std::string spec = test::source_path("models/lenet5.json");
  io::init_keras_weights(spec, 7, dir.path("a.h5"));
  io::init_keras_weights(spec, 7, dir.path("b.h5"));
  io::init_keras_weights(spec, 8, dir.path("c.h5"));
  Tensor in = test::random_tensor(2, {28, 28, 1}, 1, 0, 1);
  auto a = io::load_keras_model(dir.path("a.h5")).forward(in);
  auto b = io::load_keras_model(dir.path("b.h5")).forward(in);
  auto c = io::load_keras_model(dir.path("c.h5")).forward(in);
  EXPECT_EQ(max_relative_error(a, b), 0.0);
  EXPECT_GT(max_relative_error(a, c), 1e-4);
}
