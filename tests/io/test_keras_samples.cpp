// Real Keras files from public repositories (../shared/keras-samples) against reference
// outputs computed by an independent implementation, and the published accuracies.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <fstream>

#include "io/data/npy.h"
#include "io/hdf5/hdf5_file.h"
#include "io/keras/keras_model.h"
#include "reference/test_util.h"

using namespace chorus;

namespace {

Tensor load_batch(const std::string& path, Shape shape) {
  io::NpyArray a = io::read_npy(path);
  Tensor t(static_cast<int>(a.shape[0]), shape);
  EXPECT_EQ(a.data.size(), t.size()) << path;
  std::copy(a.data.begin(), a.data.end(), t.data());
  return t;
}

double max_abs_diff(const Tensor& out, const std::vector<float>& expected) {
  double worst = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) worst = std::max(worst, std::fabs(double(out.data()[i]) - expected[i]));
  return worst;
}

class KerasSample : public testing::TestWithParam<const char*> {};

}  // namespace

TEST_P(KerasSample, MatchesReferenceOutputWithin1e4) {
  CHORUS_REQUIRE_SHARED(dir);
  const std::string name = GetParam();
  model::Model m = io::load_keras_model(dir + "/" + name + ".h5");
  Tensor in = load_batch(dir + "/" + name + ".input.npy", m.input_shape());
  Tensor out = m.forward(in);
  io::NpyArray expected = io::read_npy(dir + "/" + name + ".output.npy");
  ASSERT_EQ(out.size(), expected.data.size());
  EXPECT_LT(max_abs_diff(out, expected.data), 1e-4);
  // Also in batches of one: results must not depend on the batch size.
  Tensor one(1, m.input_shape());
  std::copy(in.frame(1), in.frame(1) + in.frame_size(), one.data());
  Tensor single = m.forward(one);
  for (std::size_t i = 0; i < single.size(); ++i) EXPECT_NEAR(single.data()[i], out.frame(1)[i], 1e-6);
}

TEST_P(KerasSample, UnoptimisedGraphAgrees) {
  CHORUS_REQUIRE_SHARED(dir);
  const std::string name = GetParam();
  io::KerasLoadOptions raw;
  raw.optimize = false;
  model::Model m = io::load_keras_model(dir + "/" + name + ".h5", raw);
  Tensor in = load_batch(dir + "/" + name + ".input.npy", m.input_shape());
  io::NpyArray expected = io::read_npy(dir + "/" + name + ".output.npy");
  EXPECT_LT(max_abs_diff(m.forward(in), expected.data), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Shared, KerasSample,
                         testing::Values("cifar10_seq_tf215", "happy_zeropad_bn_k214", "mnist_seq_k222_listcfg"));

TEST(KerasSampleAccuracy, MnistTestSet) {
  CHORUS_REQUIRE_SHARED(dir);
  model::Model m = io::load_keras_model(dir + "/mnist_seq_k222_listcfg.h5");
  gzFile images = gzopen((dir + "/t10k-images-idx3-ubyte.gz").c_str(), "rb");
  gzFile labels = gzopen((dir + "/t10k-labels-idx1-ubyte.gz").c_str(), "rb");
  ASSERT_TRUE(images && labels);
  unsigned char header[16];
  ASSERT_EQ(gzread(images, header, 16), 16);
  ASSERT_EQ(gzread(labels, header, 8), 8);
  const int count = 10000, batch = 500;
  std::vector<unsigned char> pixels(static_cast<std::size_t>(count) * 784), truth(count);
  ASSERT_EQ(gzread(images, pixels.data(), pixels.size()), static_cast<int>(pixels.size()));
  ASSERT_EQ(gzread(labels, truth.data(), count), count);
  gzclose(images);
  gzclose(labels);
  int correct = 0;
  Tensor in(batch, {28, 28, 1});
  for (int first = 0; first < count; first += batch) {
    for (std::size_t i = 0; i < in.size(); ++i) in.data()[i] = pixels[first * 784 + i] / 255.0f;
    Tensor out = m.forward(in);
    for (int n = 0; n < batch; ++n) {
      const float* p = out.frame(n);
      correct += std::max_element(p, p + 10) - p == truth[first + n];
    }
  }
  EXPECT_NEAR(correct / double(count), 0.9942, 0.0005);
}

TEST(KerasSampleAccuracy, HappyFaces) {
  CHORUS_REQUIRE_SHARED(dir);
  model::Model m = io::load_keras_model(dir + "/happy_zeropad_bn_k214.h5");
  io::H5File data(dir + "/test_happy.h5");
  auto x = data.read_floats("/test_set_x", 150 * 64 * 64 * 3);
  auto y = data.read_floats("/test_set_y", 150);
  Tensor in(150, {64, 64, 3});
  for (std::size_t i = 0; i < x.size(); ++i) in.data()[i] = x[i] / 255.0f;
  Tensor out = m.forward(in);
  int correct = 0;
  for (int n = 0; n < 150; ++n) correct += (out.frame(n)[0] > 0.5f) == (y[n] > 0.5f);
  EXPECT_NEAR(correct / 150.0, 0.96, 0.007);
}
