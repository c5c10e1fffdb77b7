// .npy reading and writing, and the input sources of `chorus run`.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "io/data/decode_arena.h"
#include "io/data/frame_stream.h"
#include "io/data/inputs.h"
#include "io/data/npy.h"
#include "io/hdf5/hdf5_file.h"
#include "reference/test_util.h"

using namespace chorus;

TEST(Npy, RoundTrip) {
  test::TempDir dir;
  auto data = test::random_vector(2 * 3 * 4, 1);
  io::write_npy(dir.path("a.npy"), {2, 3, 4}, data.data());
  io::NpyArray a = io::read_npy(dir.path("a.npy"));
  EXPECT_EQ(a.shape, (std::vector<std::int64_t>{2, 3, 4}));
  EXPECT_EQ(a.data, data);
  io::write_npy(dir.path("v.npy"), {5}, data.data());
  EXPECT_EQ(io::read_npy(dir.path("v.npy")).shape, (std::vector<std::int64_t>{5}));
}

TEST(Inputs, NpyBatchChecksShapeAndConvertsChannelsFirst) {
  test::TempDir dir;
  Shape s{2, 3, 4};
  auto nchw = test::random_vector(2 * s.size(), 2);
  io::write_npy(dir.path("cf.npy"), {2, 4, 2, 3}, nchw.data());
  io::InputOptions o;
  o.input = dir.path("cf.npy");
  o.shape = s;
  o.channels_first = true;
  auto src = io::open_input(o);
  ASSERT_EQ(src->count(), 2);
  std::vector<float> frame(s.size());
  src->read(1, frame.data());
  // NHWC element (y=1, x=2, c=3) of frame 1 is NCHW element (c=3, y=1, x=2).
  EXPECT_EQ(frame[(1 * 3 + 2) * 4 + 3], nchw[s.size() + (3 * 2 + 1) * 3 + 2]);
  o.channels_first = false;
  try {
    io::open_input(o);
    FAIL() << "wrong layout accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("(N, 2, 3, 4)"), std::string::npos) << e.what();
  }
}

TEST(Inputs, SyntheticFramesAreDeterministicPerIndex) {
  io::InputOptions o;
  o.synthetic = 5;
  o.seed = 11;
  o.shape = {4, 4, 3};
  auto a = io::open_input(o), b = io::open_input(o);
  std::vector<float> fa(48), fb(48), fc(48);
  a->read(3, fa.data());
  b->read(3, fb.data());
  b->read(2, fc.data());
  EXPECT_EQ(fa, fb);
  EXPECT_NE(fa, fc);
  o.seed = 12;
  io::open_input(o)->read(3, fc.data());
  EXPECT_NE(fa, fc);
}

// A stop request ends the stream before the next frame, unless every frame was already given.
bool g_stop_now = false;
bool stop_now() { return g_stop_now; }

TEST(Inputs, StoppableStreamEndsAtTheNextFrameWithFramesLeft) {
  io::InputOptions o;
  o.synthetic = 3;
  o.shape = {2, 2, 1};
  std::vector<float> frame(4);
  io::FrameInfo info;
  g_stop_now = false;
  io::StoppableStream s(io::stream_frames(io::open_input(o)), stop_now, "stopped on request");
  s.skip(1);
  ASSERT_TRUE(s.next(frame.data(), info));
  EXPECT_EQ(info.index, 1);
  g_stop_now = true;
  EXPECT_FALSE(s.next(frame.data(), info));
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.early_end(), "stopped on request");
  EXPECT_FALSE(s.next(frame.data(), info));

  g_stop_now = false;
  io::StoppableStream all(io::stream_frames(io::open_input(o)), stop_now, "stopped on request");
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(all.next(frame.data(), info));
  g_stop_now = true;  // after the last frame: the stream ends as it would have
  EXPECT_FALSE(all.next(frame.data(), info));
  EXPECT_FALSE(all.stopped());
  EXPECT_EQ(all.early_end(), "");
}

TEST(Inputs, Hdf5DatasetWithScale) {
  test::TempDir dir;
  {
    io::H5File f(dir.path("d.h5"), io::H5File::Mode::create);
    std::vector<float> v(3 * 2 * 2 * 1, 255.0f);
    f.write_floats("/x", {3, 2, 2, 1}, v.data());
  }
  io::InputOptions o;
  o.input = dir.path("d.h5") + ":/x";
  o.shape = {2, 2, 1};
  o.scale = 1.0f / 255;
  auto src = io::open_input(o);
  EXPECT_EQ(src->count(), 3);
  float frame[4];
  src->read(2, frame);
  EXPECT_FLOAT_EQ(frame[3], 1.0f);
  o.input = dir.path("d.h5") + ":/missing";
  EXPECT_THROW(io::open_input(o), Error);
}

TEST(Inputs, OutputsToNpyAndHdf5) {
  test::TempDir dir;
  Tensor t = test::random_tensor(3, {1, 1, 7}, 1);
  io::write_outputs(dir.path("o.npy"), t, false);
  EXPECT_EQ(io::read_npy(dir.path("o.npy")).shape, (std::vector<std::int64_t>{3, 7}));
  io::write_outputs(dir.path("o.h5") + ":/probs", t, false);
  io::H5File f(dir.path("o.h5"));
  EXPECT_EQ(f.dataset_shape("/probs"), (std::vector<std::int64_t>{3, 7}));
  EXPECT_THROW(io::write_outputs(dir.path("o.txt"), t, false), Error);
}

TEST(Inputs, ImagesAreDecodedResizedAndScaled) {
  CHORUS_REQUIRE_SHARED(dir);
  // No image ships with the shared samples; write a PPM by hand (stb decodes it).
  test::TempDir tmp;
  {
    std::FILE* f = std::fopen(tmp.path("red.ppm").c_str(), "wb");
    std::fprintf(f, "P6\n4 2\n255\n");
    for (int i = 0; i < 8; ++i) std::fputc(255, f), std::fputc(0, f), std::fputc(51, f);
    std::fclose(f);
  }
  io::InputOptions o;
  o.input = tmp.path("red.ppm");
  o.shape = {8, 8, 3};
  auto src = io::open_input(o);
  std::vector<float> frame(8 * 8 * 3);
  src->read(0, frame.data());
  EXPECT_NEAR(frame[0], 1.0f, 1e-6);
  EXPECT_NEAR(frame[1], 0.0f, 1e-6);
  EXPECT_NEAR(frame[2], 0.2f, 1e-6);
  o.input = tmp.path("");  // the directory
  EXPECT_EQ(io::open_input(o)->count(), 1);
  std::ofstream(tmp.path("broken.png")) << "not a png";
  o.input = tmp.path("broken.png");
  auto broken = io::open_input(o);
  EXPECT_THROW(broken->read(0, frame.data()), Error);
}

// The arena that image decoding allocates from: an image of a size seen before allocates
// nothing, a realloc of the latest block grows in place, and chunks beyond what is kept are freed.
TEST(Inputs, DecodeArenaReusesItsChunks) {
  io::DecodeArena arena;
  auto decode_like = [&](std::size_t bytes) {
    void* a = arena.allocate(1000);
    void* b = arena.allocate(bytes / 2);
    std::memset(b, 7, bytes / 2);
    void* c = arena.reallocate(b, bytes / 2, bytes);  // grows in place: b is the latest block
    EXPECT_EQ(c, b);
    EXPECT_EQ(static_cast<unsigned char*>(c)[bytes / 2 - 1], 7);
    void* d = arena.allocate(3 << 20);  // beyond the first chunk: a second one
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(d) % 16, 0u);
    void* e = arena.reallocate(a, 1000, 2000);  // not the latest: moved, contents kept
    EXPECT_NE(e, a);
    arena.release(d);
    arena.release(e);
    arena.reset();
  };
  decode_like(200'000);
  const std::size_t chunks = arena.chunks_allocated();
  EXPECT_GE(chunks, 2u);
  EXPECT_EQ(arena.capacity() >= (3u << 20), true);
  for (int i = 0; i < 5; ++i) decode_like(200'000);
  EXPECT_EQ(arena.chunks_allocated(), chunks) << "an image of a size seen before allocated";
  // A photo larger than what is kept: its chunks go at the end.
  EXPECT_NE(arena.allocate(io::DecodeArena::kMostKeptBytes + 1), nullptr);
  arena.reset();
  EXPECT_EQ(arena.capacity(), 0u);
  EXPECT_EQ(arena.allocate(std::size_t(1) << 62), nullptr) << "as malloc, null when memory runs out";
}

namespace {

// A grey progressive JPEG of `side` x `side` pixels whose every coefficient is 0 (mid-grey), with a
// DC scan and then `ac_scans` AC scans, each a 10-byte segment with no entropy-coded data.
std::string progressive_grey_jpeg(int side, int ac_scans) {
  auto segment = [](int marker, std::string body) {
    const std::size_t length = body.size() + 2;
    return std::string{'\xFF', static_cast<char>(marker), static_cast<char>(length >> 8),
                       static_cast<char>(length & 0xFF)} +
           body;
  };
  const std::string one_code_of_length_one = std::string(1, '\x01') + std::string(15, '\0') + std::string(1, '\0');
  std::string jpeg = "\xFF\xD8";
  jpeg += segment(0xDB, std::string(1, '\0') + std::string(64, '\x01'));  // quantisation table 0: all 1
  jpeg += segment(0xC2, std::string{8, static_cast<char>(side >> 8), static_cast<char>(side & 0xFF),
                                    static_cast<char>(side >> 8), static_cast<char>(side & 0xFF), 1, 1, 0x11, 0});
  jpeg += segment(0xC4, std::string(1, '\x00') + one_code_of_length_one);  // DC table: code 0 is "no change"
  jpeg += segment(0xC4, std::string(1, '\x10') + one_code_of_length_one);  // AC table: code 0 is end-of-block
  jpeg += segment(0xDA, std::string{1, 1, 0, 0, 0, 0});
  for (int i = 0; i < ac_scans; ++i) jpeg += segment(0xDA, std::string{1, 1, 0, 1, 63, 0});
  return jpeg + "\xFF\xD9";
}

}  // namespace

TEST(Inputs, ImagesCostlyToDecodeOrResizeAreRefusedBeforeDecoding) {
  test::TempDir tmp;
  std::ofstream(tmp.path("grey.jpg"), std::ios::binary) << progressive_grey_jpeg(16, 9);
  // 401 scans of 6000 x 6000 in 4 KB: 4.5 s of decoding here, 17 s under AddressSanitizer.
  std::ofstream(tmp.path("scans.jpg"), std::ios::binary) << progressive_grey_jpeg(6000, 400);
  io::InputOptions o;
  o.shape = {8, 8, 1};
  std::vector<float> frame(8 * 8);
  o.input = tmp.path("grey.jpg");
  io::open_input(o)->read(0, frame.data());
  for (float v : frame) EXPECT_NEAR(v, 128.0f / 255.0f, 1.0f / 255.0f);
  o.input = tmp.path("scans.jpg");
  try {
    io::open_input(o)->read(0, frame.data());
    FAIL() << "a JPEG of 401 scans over 36 Mpixel was decoded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("scans.jpg: the JPEG holds 401 scans of 6000 x 6000 pixels"),
              std::string::npos)
        << e.what();
  }
  // 2 x 16,000,000 pixels (32 Mpixel) from a 20-byte header: 10 s and 1.2 GB in stb's resize.
  std::ofstream(tmp.path("tall.ppm"), std::ios::binary) << "P6\n2 16000000\n255\n";
  o.input = tmp.path("tall.ppm");
  try {
    io::open_input(o)->read(0, frame.data());
    FAIL() << "an image of 2 x 16000000 pixels was decoded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tall.ppm: the image claims to be 2 x 16000000 pixels"), std::string::npos)
        << e.what();
  }
}
