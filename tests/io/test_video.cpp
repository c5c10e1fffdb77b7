// Video input end to end through `chorus run`: frames decoded by FFmpeg's libraries against the
// PNG frames Debian's `ffmpeg` program extracts from the same file, parts of a file, bad
// inputs, a network stream that stops, and real time: frames dropped as the rates imply.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <regex>
#include <thread>

#include "io/data/clip_stream.h"
#include "io/data/npy.h"
#include "io/data/realtime_feed.h"
#include "io/data/video.h"
#include "reference/test_util.h"

using namespace chorus;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

// A small classifier of 32x32 RGB frames, and one that passes its input through (to compare
// pixels).
constexpr const char* kClassifier = R"({"class_name": "Sequential", "config": {"name": "tiny", "layers": [
 {"class_name": "InputLayer", "config": {"name": "in", "batch_input_shape": [null, 32, 32, 3]}},
 {"class_name": "Conv2D", "config": {"name": "conv", "filters": 8, "kernel_size": [3, 3], "strides": [1, 1],
   "padding": "same", "activation": "relu", "use_bias": true}},
 {"class_name": "GlobalAveragePooling2D", "config": {"name": "gap"}},
 {"class_name": "Dense", "config": {"name": "fc", "units": 10, "activation": "softmax", "use_bias": true}}]}})";
constexpr const char* kIdentity = R"({"class_name": "Sequential", "config": {"name": "pixels", "layers": [
 {"class_name": "InputLayer", "config": {"name": "in", "batch_input_shape": [null, 32, 32, 3]}},
 {"class_name": "Activation", "config": {"name": "same", "activation": "linear"}}]}})";

class Video : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(test::run_command("ffmpeg -version").exit_code, 0)
        << "these tests make their videos with Debian's ffmpeg program (scripts/install_deps.sh installs it)";
    test::write_random_model(kClassifier, dir_.path("tiny.h5"));
    test::write_random_model(kIdentity, dir_.path("pixels.h5"));
  }

  std::string path(const std::string& name) const { return dir_.path(name); }

  // testsrc2 (a moving test pattern) at `size`, `fps`, `frames` long, with ffmpeg's `codec` options.
  std::string make_video(const std::string& name, const std::string& codec, const std::string& size = "32x32",
                         int fps = 30, int frames = 20) {
    const auto r = test::run_command("ffmpeg -v error -y -f lavfi -i testsrc2=size=" + size + ":rate=" +
                                     std::to_string(fps) + " -frames:v " + std::to_string(frames) + " " + codec + " " +
                                     path(name));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return path(name);
  }

  // The frames ffmpeg itself decodes from `video`, as PNG files in a directory.
  std::string extract_frames(const std::string& video, const std::string& directory) {
    test::run_command("mkdir -p " + path(directory));
    const auto r = test::run_command("ffmpeg -v error -y -i " + video + " " + path(directory) + "/f_%04d.png");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return path(directory);
  }

  // chorus run MODEL --input INPUT ARGS --output NAME.npy: the outputs.
  io::NpyArray run(const std::string& model, const std::string& input, const std::string& args, const std::string& name) {
    const auto r = test::run_chorus("run " + path(model) + " --input " + input + " --quiet --output " + path(name) +
                                    " " + args);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return io::read_npy(path(name));
  }

  test::TempDir dir_;
};

double largest_difference(const io::NpyArray& a, const io::NpyArray& b) {
  EXPECT_EQ(a.shape, b.shape);
  double d = 0;
  for (std::size_t i = 0; i < std::min(a.data.size(), b.data.size()); ++i)
    d = std::max(d, static_cast<double>(std::fabs(a.data[i] - b.data[i])));
  return d;
}

double mean_difference(const io::NpyArray& a, const io::NpyArray& b) {
  double d = 0;
  for (std::size_t i = 0; i < std::min(a.data.size(), b.data.size()); ++i) d += std::fabs(a.data[i] - b.data[i]);
  return d / std::max<std::size_t>(1, a.data.size());
}

// A TCP port on the loopback that nobody listens on now.
int free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t n = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &n);
  ::close(s);
  return static_cast<int>(ntohs(a.sin_port));
}

}  // namespace

TEST_F(Video, LosslessVideoGivesTheOutputsOfItsPngFrames) {
  // FFV1 in RGB: every pixel survives, so the model's outputs must be those of the PNG frames.
  const std::string video = make_video("lossless.mkv", "-c:v ffv1 -pix_fmt bgr0");
  const std::string frames = extract_frames(video, "lossless");
  const auto from_video = run("tiny.h5", video, "", "video.npy");
  const auto from_png = run("tiny.h5", frames, "", "png.npy");
  ASSERT_EQ(from_video.shape, (std::vector<std::int64_t>{20, 10}));
  EXPECT_EQ(largest_difference(from_video, from_png), 0.0);
  // The pixels themselves too (scaled by 1/255 as images are).
  EXPECT_EQ(largest_difference(run("pixels.h5", video, "", "v.npy"), run("pixels.h5", frames, "", "p.npy")), 0.0);
}

// FFmpeg's libraries (and the 200 they bring) load only where a video is read, and libavdevice
// only for a camera: the loader's own log (LD_DEBUG=files) says which it opened.
TEST_F(Video, FfmpegLoadsOnlyWhenAVideoIsOpened) {
  const auto loaded = [&](const std::string& args) {
    return test::run_command("LD_DEBUG=files " + std::string(CHORUS_BINARY) + " run " + path("tiny.h5") + " " + args +
                             " --quiet 2>&1")
        .output;
  };
  const std::string synthetic = loaded("--synthetic 2");
  EXPECT_THAT(synthetic, HasSubstr("file=libhdf5"));  // the log is there
  EXPECT_THAT(synthetic, Not(HasSubstr("libavcodec")));
  EXPECT_THAT(synthetic, Not(HasSubstr("libavformat")));
  const std::string video = loaded("--input " + make_video("few.mkv", "-c:v ffv1 -pix_fmt bgr0", "32x32", 30, 2));
  EXPECT_THAT(video, HasSubstr("file=libavcodec.so"));
  EXPECT_THAT(video, HasSubstr("file=libavformat.so"));
  EXPECT_THAT(video, Not(HasSubstr("libavdevice")));
  EXPECT_THAT(loaded("--input /dev/video63"), HasSubstr("file=libavdevice.so"));
}

TEST_F(Video, LossyVideoIsCloseToItsSource) {
  // H.264 in 4:2:0: the frames ffmpeg decodes are what Chorus decodes (the same libraries, to
  // one level of 255), and within a few levels on average of the lossless original.
  const std::string lossy = make_video("lossy.mp4", "-c:v libx264 -pix_fmt yuv420p");
  const std::string lossless = make_video("source.mkv", "-c:v ffv1 -pix_fmt bgr0");
  const auto decoded = run("pixels.h5", lossy, "", "lossy.npy");
  EXPECT_LE(largest_difference(decoded, run("pixels.h5", extract_frames(lossy, "lossy"), "", "png.npy")), 1.0 / 255);
  const double mean = mean_difference(decoded, run("pixels.h5", lossless, "", "source.npy"));
  EXPECT_GT(mean, 0.0);  // it is lossy
  EXPECT_LT(mean, 8.0 / 255) << "mean difference " << mean * 255 << " levels";
}

TEST_F(Video, StartAndFramesSelectAPartOfTheFile) {
  const std::string video = make_video("clip.mkv", "-c:v ffv1 -pix_fmt bgr0", "32x32", 30, 30);
  extract_frames(video, "all");
  test::run_command("mkdir -p " + path("part"));
  for (int k = 16; k <= 20; ++k) test::run_command("cp " + path("all") + "/f_00" + std::to_string(k) + ".png " + path("part"));
  // 0.5 s at 30 fps is frame 15 (the 16th); five frames from there.
  const auto part = run("pixels.h5", video, "--start 0.5 --frames 5", "part.npy");
  EXPECT_EQ(largest_difference(part, run("pixels.h5", path("part"), "", "png.npy")), 0.0);
  // Past the end: no frames, which is an error, and the report says why.
  const auto r = test::run_chorus("run " + path("pixels.h5") + " --input " + video + " --start 100 --quiet --report " +
                                  path("r.json"));
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("no frames were run (" + video + ": no frame at or after --start 100 s)"));
  const json report = json::parse(std::ifstream(path("r.json")));
  EXPECT_EQ(report["frames"], 0);
  EXPECT_THAT(report["input"]["ended_early"].get<std::string>(), HasSubstr("no frame at or after --start 100 s"));
}

TEST_F(Video, FramesAreResizedToTheModelInput) {
  const std::string video = make_video("wide.mkv", "-c:v ffv1 -pix_fmt bgr0", "96x64", 25, 6);
  const auto out = run("pixels.h5", video, "", "out.npy");
  ASSERT_EQ(out.shape, (std::vector<std::int64_t>{6, 32, 32, 3}));
  const auto [lo, hi] = std::minmax_element(out.data.begin(), out.data.end());
  EXPECT_GE(*lo, 0.0f);
  EXPECT_LE(*hi, 1.0f);
  EXPECT_GT(*hi - *lo, 0.5f);  // the test pattern's colours, not a blank frame
}

TEST_F(Video, BadInputsGetOneClearError) {
  std::ofstream(path("notes.mp4")) << "these are not frames\n";
  auto r = test::run_chorus("run " + path("tiny.h5") + " --input " + path("notes.mp4") + " --quiet");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("notes.mp4: cannot open as a video (Invalid data"));
  r = test::run_chorus("run " + path("tiny.h5") + " --input " + path("missing.mkv") + " --quiet");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("missing.mkv: no such file"));
  r = test::run_chorus("run " + path("tiny.h5") + " --input /dev/video63 --quiet");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("/dev/video63: cannot open the camera"));
  // An MP4 cut short loses its index: refused at once.
  const std::string mp4 = make_video("cut.mp4", "-c:v libx264 -pix_fmt yuv420p");
  test::run_command("head -c $(($(stat -c %s " + mp4 + ") / 2)) " + mp4 + " > " + path("cut-short.mp4"));
  r = test::run_chorus("run " + path("tiny.h5") + " --input " + path("cut-short.mp4") + " --quiet");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("cut-short.mp4: cannot open as a video"));
  // A queue whose buffers would not fit in memory is refused before it is allocated.
  r = test::run_chorus("run " + path("tiny.h5") + " --input " + mp4 + " --realtime --queue 2000000000 --quiet");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("--queue 2000000000: 2000000002 frame buffers"));
  EXPECT_THAT(r.output, HasSubstr("over half of this machine's memory"));
  // A second source for a one-input model would be dropped: refused.
  r = test::run_chorus("run " + path("tiny.h5") + " --input " + mp4 + " --input " + mp4 + " --quiet");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("the model has 1 input(s)"));
  EXPECT_THAT(r.output, HasSubstr("--input was given 2 times"));
  r = test::run_chorus("run " + path("tiny.h5") + " --input nosuch=" + mp4 + " --quiet");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("the model has no input named 'nosuch'"));
  // Numbers that are not: refused by the option, not read as 0 or carried through as NaN.
  for (const std::string bad : {"--start nan", "--start -1", "--scale nan", "--input-timeout inf", "--clip-stride 0"}) {
    r = test::run_chorus("run " + path("tiny.h5") + " --input " + mp4 + " " + bad + " --quiet");
    EXPECT_NE(r.exit_code, 0) << bad;
    EXPECT_THAT(r.output, HasSubstr(bad.substr(0, bad.find(' ')) + ":")) << bad;
  }
  // --frames and --start belong to videos.
  r = test::run_chorus("run " + path("tiny.h5") + " --synthetic 3 --frames 2 --quiet");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("--frames and --start select a part of a video"));
}

TEST_F(Video, TruncatedFileEndsWithItsFramesAndSaysWhy) {
  // Matroska cut in the middle: the frames before the cut are processed, the report says why the
  // input ended early.
  const std::string video = make_video("full.mkv", "-c:v ffv1 -pix_fmt bgr0", "32x32", 30, 45);
  test::run_command("head -c 20000 " + video + " > " + path("cut.mkv"));
  const auto r = test::run_chorus("run " + path("tiny.h5") + " --input " + path("cut.mkv") + " --quiet --output " +
                                  path("out.npy") + " --report " + path("r.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json report = json::parse(std::ifstream(path("r.json")));
  const int frames = report["frames"];
  EXPECT_GT(frames, 0);
  EXPECT_LT(frames, 45);
  EXPECT_THAT(report["input"]["ended_early"].get<std::string>(), HasSubstr("truncated?"));
  EXPECT_EQ(io::read_npy(path("out.npy")).shape[0], frames);
}

namespace {

// An HTTP server on 127.0.0.1 that sends the first `bytes` of a file and then falls silent,
// holding the connection open: a camera stream that stops.
class StallingServer {
 public:
  StallingServer(std::string body) : body_(std::move(body)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    EXPECT_EQ(::listen(listener_, 4), 0);
    socklen_t length = sizeof address;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~StallingServer() {
    stop_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    ::close(listener_);
    thread_.join();
  }
  int port() const { return port_; }

 private:
  void serve() {
    std::vector<int> open;
    while (!stop_) {
      const int client = ::accept(listener_, nullptr, nullptr);
      if (client < 0) break;
      char request[2048];
      (void)::recv(client, request, sizeof request, 0);
      const std::string head = "HTTP/1.1 200 OK\r\nContent-Type: video/x-matroska\r\n\r\n";
      (void)::send(client, head.data(), head.size(), MSG_NOSIGNAL);
      (void)::send(client, body_.data(), body_.size(), MSG_NOSIGNAL);
      open.push_back(client);  // and nothing more: the stream stops
    }
    for (int c : open) ::close(c);
  }

  std::string body_;
  int listener_ = -1, port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace

TEST_F(Video, StreamThatStopsEndsCleanlyWithItsFrames) {
  const std::string video = make_video("live.mkv", "-c:v ffv1 -pix_fmt bgr0", "32x32", 30, 60);
  std::ifstream in(video, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  StallingServer server(bytes.substr(0, bytes.size() / 2));
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/live.mkv";
  const auto r = test::run_chorus("run " + path("tiny.h5") + " --input " + url + " --input-timeout 1 --quiet --output " +
                                  path("out.npy") + " --results " + path("out.jsonl") + " --report " + path("r.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json report = json::parse(std::ifstream(path("r.json")));
  const int frames = report["frames"];
  EXPECT_GT(frames, 5);
  EXPECT_LT(frames, 60);
  EXPECT_THAT(report["input"]["ended_early"].get<std::string>(), HasSubstr("no data for 1 s"));
  EXPECT_EQ(io::read_npy(path("out.npy")).shape[0], frames);
  // The same frames as the file gives, as far as the stream went.
  const auto whole = run("tiny.h5", video, "", "whole.npy");
  const auto part = io::read_npy(path("out.npy"));
  EXPECT_TRUE(std::equal(part.data.begin(), part.data.end(), whole.data.begin()));
  std::ifstream lines(path("out.jsonl"));
  int count = 0;
  for (std::string line; std::getline(lines, line); ++count) EXPECT_EQ(json::parse(line)["frame"], count);
  EXPECT_EQ(count, frames);
}

namespace {

// A cluster of one emulated device that takes `seconds` per frame of the classifier.
std::string slow_device(const test::TempDir& dir, const std::string& model, double seconds) {
  const double macs = json::parse(test::run_chorus("info " + model + " --json").output)["totals"]["macs"];
  const json cluster = {
      {"name", "slow"},
      {"network", {{"bandwidth_mbps", 100.0}, {"latency_ms", 1.0}, {"shared", true}}},
      {"device_classes",
       {{"slow", {{"memory_mb", 512}, {"profile", {{"device", "slow"}, {"macs_per_second", {{"default", macs / seconds}}}}}}}}},
      {"hosts", {{{"name", "a"}, {"class", "slow"}}, {{"name", "b"}, {"class", "slow"}}}}};
  std::ofstream(dir.path("slow.json")) << cluster.dump();
  return dir.path("slow.json");
}

}  // namespace

TEST_F(Video, RealTimeResultsLeaveAsSoonAsTheyAreDone) {
  // A fast model on a 30 fps camera (a paced video): each result leaves within a small part of
  // the 33 ms between frames, on one rank and on two (the sink on the source's rank, the last
  // stage on the other), with the default frames in flight. A source read ahead, or a sink
  // that waited for the camera's next frame, held every result one to five frame periods. The
  // report's capture-to-result latency is the one the --results lines show.
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  const std::string video = make_video("thirty.mkv", "-c:v ffv1 -pix_fmt bgr0", "32x32", 30, 20);
  for (const int ranks : {1, 2}) {
    SCOPED_TRACE(std::to_string(ranks) + " rank(s)");
    const std::string args = " run " + path("tiny.h5") + " --input " + video + " --realtime --quiet --results " +
                             path("r.jsonl") + " --report " + path("r.json");
    const auto r = ranks == 1
                       ? test::run_chorus(args.substr(1))
                       : test::run_command("timeout -k 5 120 mpiexec --oversubscribe -np 2 " CHORUS_BINARY + args);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::vector<double> latency;
    std::ifstream lines(path("r.jsonl"));
    for (std::string line; std::getline(lines, line);) latency.push_back(json::parse(line)["latency_ms"]);
    ASSERT_EQ(latency.size(), 20u);
    std::sort(latency.begin(), latency.end());
    const double median = latency[latency.size() / 2];
    EXPECT_LT(median, 15.0);
    const double reported = json::parse(std::ifstream(path("r.json")))["input"]["latency_ms"]["p50"];
    EXPECT_NEAR(reported, median, 2.0);
  }
}

TEST_F(Video, RealTimeDropsWhatTheRatesImply) {
  // 40 frames at 20 fps (1.95 s from the first to the last), a device that takes 100 ms a frame
  // and one frame at a time: while frames arrive, frames start every 100 ms, 1 + floor(1.95 /
  // 0.1) of them; then the 5 that wait in the full queue. The rest are dropped, whichever end
  // of the queue goes; with --drop none the capture waits and nothing is lost. The count uses
  // the frame time the run measured (a loaded host runs a little slower than emulated).
  const int frames = 40, fps = 20, queue = 5;
  const std::string video = make_video("camera.mkv", "-c:v ffv1 -pix_fmt bgr0", "32x32", fps, frames);
  const std::string cluster = slow_device(dir_, path("tiny.h5"), 0.1);
  for (const std::string drop : {"oldest", "newest", "none"}) {
    SCOPED_TRACE("--drop " + drop);
    const auto r = test::run_chorus("run " + path("tiny.h5") + " --input " + video + " --realtime --drop " + drop +
                                    " --queue " + std::to_string(queue) + " --max-in-flight 1 --emulate " + cluster +
                                    " --quiet --results " + path("r.jsonl") + " --report " + path("r.json"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const json report = json::parse(std::ifstream(path("r.json")));
    const json& input = report["input"];
    const double per_frame = report["ranks"][0]["compute_s"].get<double>() / report["frames"].get<double>();
    EXPECT_NEAR(per_frame, 0.1, 0.02);
    const int processed = static_cast<int>(std::floor((frames - 1) / double(fps) / per_frame)) + 1 + queue;
    EXPECT_EQ(input["frames_captured"], frames);
    EXPECT_EQ(input["frames_processed"].get<int>() + input["frames_dropped"].get<int>(), frames);
    if (drop == "none") {
      EXPECT_EQ(input["frames_dropped"], 0);
    } else {
      EXPECT_NEAR(input["frames_processed"].get<int>(), processed, 1) << "at " << per_frame << " s per frame";
    }
    EXPECT_GT(input["latency_ms"]["p50"].get<double>(), 0.0);
    EXPECT_GE(input["latency_ms"]["p99"].get<double>(), input["latency_ms"]["p50"].get<double>());
    // One result line per processed frame, in capture order. Drop oldest ends with the last
    // `queue` frames (they wait when capture ends); drop newest begins with the first
    // 1 + `queue` (the queue fills with them before anything is dropped).
    std::ifstream lines(path("r.jsonl"));
    std::vector<int> seen;
    for (std::string line; std::getline(lines, line);) seen.push_back(json::parse(line)["frame"]);
    ASSERT_EQ(static_cast<int>(seen.size()), input["frames_processed"].get<int>());
    ASSERT_GT(static_cast<int>(seen.size()), queue + 1);
    EXPECT_TRUE(std::adjacent_find(seen.begin(), seen.end(), [](int a, int b) { return b <= a; }) == seen.end());
    EXPECT_EQ(seen.front(), 0);
    if (drop == "oldest") {
      for (int k = 0; k < queue; ++k) EXPECT_EQ(seen[seen.size() - queue + k], frames - queue + k);
    } else if (drop == "newest") {
      for (int k = 0; k <= queue; ++k) EXPECT_EQ(seen[k], k);
    }
  }
}

TEST_F(Video, FrameNumbersTravelWithTheFramesAcrossRanks) {
  // Two stages on two ranks, the sink on rank 1: the frame numbers and capture times the source
  // saw reach the sink's results with the frames.
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  const std::string video = make_video("two.mkv", "-c:v ffv1 -pix_fmt bgr0", "32x32", 50, 40);
  const std::string cluster = slow_device(dir_, path("tiny.h5"), 0.05);
  const json plan = {{"ranks", 2},
                     {"sink", 1},
                     {"stages", {{{"layers", {"conv", "conv"}}, {"ranks", {0}}}, {{"layers", {"gap", "fc"}}, {"ranks", {1}}}}}};
  std::ofstream(path("plan.json")) << plan.dump();
  const auto r = test::run_command("timeout -k 5 120 mpiexec --oversubscribe -np 2 " CHORUS_BINARY " run " +
                                   path("tiny.h5") + " --input " + video + " --realtime --queue 4 --emulate " + cluster +
                                   " --plan " + path("plan.json") + " --quiet --results " + path("r.jsonl") +
                                   " --report " + path("r.json") + " 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json input = json::parse(std::ifstream(path("r.json")))["input"];
  EXPECT_GT(input["frames_dropped"].get<int>(), 0);
  std::ifstream lines(path("r.jsonl"));
  std::vector<int> seen;
  double last_capture = -1;
  for (std::string line; std::getline(lines, line);) {
    const json j = json::parse(line);
    seen.push_back(j["frame"]);
    EXPECT_GE(j["captured_s"].get<double>(), last_capture);
    last_capture = j["captured_s"];
    EXPECT_GT(j["latency_ms"].get<double>(), 40.0);  // at least one emulated frame time
  }
  ASSERT_EQ(static_cast<int>(seen.size()), input["frames_processed"].get<int>());
  EXPECT_TRUE(std::adjacent_find(seen.begin(), seen.end(), [](int a, int b) { return b <= a; }) == seen.end());
  EXPECT_EQ(seen.back(), 39);  // drop oldest keeps the last frame
  EXPECT_LT(static_cast<int>(seen.size()), 40);
}

namespace {

// A small clip model (4 frames of 32x32), in both data formats with the same weights.
std::string clip_config(bool channels_first) {
  const std::string format = channels_first ? "channels_first" : "channels_last";
  const std::string shape = channels_first ? "[null, 3, 4, 32, 32]" : "[null, 4, 32, 32, 3]";
  return R"({"class_name": "Sequential", "config": {"name": "clips", "layers": [
   {"class_name": "InputLayer", "config": {"name": "clip", "batch_input_shape": )" + shape + R"(}},
   {"class_name": "Conv3D", "config": {"name": "c1", "filters": 6, "kernel_size": [3, 3, 3], "padding": "same", "activation": "relu", "data_format": ")" + format + R"("}},
   {"class_name": "MaxPooling3D", "config": {"name": "p1", "pool_size": [1, 2, 2], "data_format": ")" + format + R"("}},
   {"class_name": "Conv3D", "config": {"name": "c2", "filters": 8, "kernel_size": [2, 3, 3], "strides": [1, 2, 2], "activation": "relu", "data_format": ")" + format + R"("}},
   {"class_name": "Flatten", "config": {"name": "flat", "data_format": ")" + format + R"("}},
   {"class_name": "Dense", "config": {"name": "fc", "units": 5, "activation": "softmax"}}]}})";
}

}  // namespace

TEST_F(Video, ClipsOfAVideoAreItsFramesInOrder) {
  // 12 frames cut into clips of 4 every 2 frames (5 clips) give the outputs of the same clips
  // built from the frames one by one and fed as a 5-D array.
  test::write_random_model(clip_config(false), path("clips.h5"));
  const std::string video = make_video("twelve.mkv", "-c:v ffv1 -pix_fmt bgr0", "32x32", 30, 12);
  const auto frames = run("pixels.h5", video, "", "frames.npy");  // (12, 32, 32, 3)
  const std::size_t frame = 32 * 32 * 3;
  std::vector<float> clips;
  for (int start = 0; start + 4 <= 12; start += 2)
    clips.insert(clips.end(), frames.data.begin() + start * frame, frames.data.begin() + (start + 4) * frame);
  io::write_npy(path("clips.npy"), {5, 4, 32, 32, 3}, clips.data());
  const auto from_video = run("clips.h5", video, "--clip-stride 2", "from_video.npy");
  ASSERT_EQ(from_video.shape, (std::vector<std::int64_t>{5, 5}));
  EXPECT_EQ(largest_difference(from_video, run("clips.h5", path("clips.npy"), "", "from_array.npy")), 0.0);
  // One result line per clip, numbered by its first frame, its classes named by --labels (a name
  // with quotes stays one JSON string).
  // Written on Windows: the line ends' \r are not part of the names.
  std::ofstream(path("labels.txt")) << "walk\r\nrun \"fast\"\r\njump\r\nswim\r\nride\r\n";
  const auto r = test::run_chorus("run " + path("clips.h5") + " --input " + video + " --clip-stride 2 --quiet --results " +
                                  path("clips.jsonl") + " --labels " + path("labels.txt"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream lines(path("clips.jsonl"));
  std::vector<int> firsts;
  const std::vector<std::string> names{"walk", "run \"fast\"", "jump", "swim", "ride"};
  for (std::string line; std::getline(lines, line);) {
    const json j = json::parse(line);
    firsts.push_back(j["frame"]);
    ASSERT_EQ(j["top"].size(), 5u);
    for (const auto& t : j["top"]) EXPECT_EQ(t["label"], names.at(t["class"].get<int>()));
  }
  EXPECT_EQ(firsts, (std::vector<int>{0, 2, 4, 6, 8}));
  // Fewer frames than one clip: no clip, which is an error, not an empty success.
  const auto short_of_a_clip =
      test::run_chorus("run " + path("clips.h5") + " --input " + video + " --frames 3 --quiet");
  EXPECT_EQ(short_of_a_clip.exit_code, 1);
  EXPECT_THAT(short_of_a_clip.output, HasSubstr("no frames were run"));
  // --clip-stride belongs to clip models.
  const auto refused = test::run_chorus("run " + path("tiny.h5") + " --input " + video + " --clip-stride 2 --quiet");
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.output, HasSubstr("--clip-stride cuts a video into clips for a clip model"));
}

TEST_F(Video, ChannelsFirstClipModelAgreesWithChannelsLast) {
  // The same weights (same seed, same kernel shapes) in both data formats: NCDHW input gives the
  // outputs of its NDHWC transpose.
  test::write_random_model(clip_config(false), path("last.h5"), 9);
  test::write_random_model(clip_config(true), path("first.h5"), 9);
  const Tensor x = test::random_tensor(3, Shape{32, 32, 3, 4}, 5, 0.0f, 1.0f);
  io::write_npy(path("ndhwc.npy"), {3, 4, 32, 32, 3}, x.data());
  std::vector<float> transposed(x.size());
  for (int n = 0; n < 3; ++n) nhwc_to_nchw(x.frame(n), transposed.data() + n * x.frame_size(), x.shape());
  io::write_npy(path("ncdhw.npy"), {3, 3, 4, 32, 32}, transposed.data());
  const auto last = run("last.h5", path("ndhwc.npy"), "", "last_out.npy");
  const auto first = run("first.h5", path("ncdhw.npy"), "", "first_out.npy");
  ASSERT_EQ(last.shape, (std::vector<std::int64_t>{3, 5}));
  EXPECT_LT(largest_difference(last, first), 1e-6);
  // A 4-D array for a clip model is refused with both shapes named.
  io::write_npy(path("images.npy"), {3, 32, 32, 3}, x.data());
  const auto r = test::run_chorus("run " + path("last.h5") + " --input " + path("images.npy") + " --quiet");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("array is (3, 32, 32, 3), the model takes (N, 4, 32, 32, 3)"));
}

TEST_F(Video, LiveNetworkStreamIsTakenAsItArrives) {
  // A live MPEG-TS stream over TCP, sent at its own 30 frames/s by Debian's ffmpeg (-re): Chorus
  // listens, takes each frame as it arrives (a live source is not paced again), drops nothing
  // for a model this fast, and the frames' capture times span the stream's two seconds.
  make_video("live.ts", "-c:v mpeg4 -f mpegts", "32x32", 30, 60);
  // `chorus run ARGS` listening on a fresh port while ffmpeg sends the stream to it.
  const auto run_on_stream = [&](const std::string& args) {
    const std::string url = "tcp://127.0.0.1:" + std::to_string(free_port());
    test::CommandResult r;
    std::thread listener(
        [&] { r = test::run_chorus("run " + path("tiny.h5") + " --input '" + url + "?listen=1' --quiet " + args); });
    // Send once Chorus listens: ffmpeg gives up at once on a refused connection, so try again.
    bool sent = false;
    for (int attempt = 0; attempt < 50 && !sent; ++attempt) {
      sent =
          test::run_command("ffmpeg -v error -re -i " + path("live.ts") + " -c copy -f mpegts " + url).exit_code == 0;
      if (!sent) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    listener.join();
    EXPECT_TRUE(sent);
    return r;
  };
  test::CommandResult r = run_on_stream("--realtime --report " + path("r.json") + " --results " + path("r.jsonl"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json input = json::parse(std::ifstream(path("r.json")))["input"];
  EXPECT_EQ(input["frames_captured"], 60);
  EXPECT_EQ(input["frames_dropped"], 0);
  std::ifstream lines(path("r.jsonl"));
  double last = 0;
  int count = 0;
  for (std::string line; std::getline(lines, line); ++count) last = json::parse(line)["captured_s"];
  EXPECT_EQ(count, 60);
  EXPECT_GT(last, 1.2);  // 59 frames at 30 frames/s: 1.97 s, less ffmpeg's first burst
  EXPECT_LT(last, 4.0);

  // Without --realtime too, each result leaves when it is done, not when the next frame has
  // come (the source blocked in the decoder until then: 100 ms from capture to result).
  r = run_on_stream("--results " + path("plain.jsonl"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, testing::Not(HasSubstr("real time")));  // not reported as --realtime
  std::vector<double> latency;
  std::ifstream plain_lines(path("plain.jsonl"));
  for (std::string line; std::getline(plain_lines, line);) latency.push_back(json::parse(line)["latency_ms"]);
  ASSERT_EQ(latency.size(), 60u);
  std::sort(latency.begin(), latency.end());
  EXPECT_LT(latency[30], 15.0);
}

TEST_F(Video, RtspStreamFromAnRtspServerGivesTheFramesOfItsFile) {
  // An IP camera's path: H.264 (High profile, B-frames) over RTSP from GStreamer's RTSP server,
  // read as RTP over UDP and interleaved over TCP. The server sends the file's own bitstream, so
  // each run must give exactly the outputs of the file, every frame: the first frames of such a
  // stream are stamped before the start time RTSP announces, and were once skipped. Real time
  // with --drop none: a test machine under load must not drop frames from the queue.
  if (test::run_command("/usr/bin/python3 -c \"import gi; gi.require_version('GstRtspServer', '1.0'); "
                        "from gi.repository import GstRtspServer\"")
          .exit_code != 0)
    GTEST_SKIP() << "GStreamer's RTSP server is not installed (gir1.2-gst-rtsp-server-1.0, python3-gi, "
                    "gstreamer1.0-plugins-good and -bad; scripts/install_deps.sh installs them)";
  const std::string video = make_video("camera.mkv", "-c:v libx264 -pix_fmt yuv420p -g 30", "32x32", 30, 60);
  const auto from_file = run("tiny.h5", video, "", "file.npy");
  ASSERT_EQ(from_file.shape, (std::vector<std::int64_t>{60, 10}));

  const std::vector<std::string> transports = {"", "--rtsp-transport udp", "--rtsp-transport tcp"};
  const int port = free_port();
  const std::string ready = path("ready");
  test::CommandResult server;
  std::thread serving([&] {
    server = test::run_command("/usr/bin/python3 " + test::source_path("tests/io/rtsp_server.py") + " " + video +
                               " " + std::to_string(port) + " " + ready + " --sessions " +
                               std::to_string(transports.size()) + " --lifetime 60");
  });
  for (int i = 0; i < 100 && !std::ifstream(ready); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const std::string url = "rtsp://127.0.0.1:" + std::to_string(port) + "/clip";
  for (std::size_t i = 0; i < transports.size(); ++i) {
    SCOPED_TRACE(transports[i].empty() ? "FFmpeg's default transport" : transports[i]);
    const std::string report = path("rtsp" + std::to_string(i) + ".json");
    const auto streamed = run("tiny.h5", url, transports[i] + " --realtime --drop none --report " + report,
                              "rtsp" + std::to_string(i) + ".npy");
    const json input = json::parse(std::ifstream(report))["input"];
    EXPECT_EQ(input["frames_dropped"], 0);
    if (transports[i] == "--rtsp-transport tcp") {
      EXPECT_EQ(streamed.shape, from_file.shape);
      EXPECT_EQ(largest_difference(streamed, from_file), 0.0);
      EXPECT_EQ(input["frames_captured"], 60);
      continue;
    }
    // RTP on UDP (FFmpeg's default too): the last frame's datagram can lose the race with the
    // server's teardown on a loaded machine (seen once under ctest -j2: 59 frames, the first 59
    // exact). Every frame that came must be the file's, from the first on.
    ASSERT_EQ(streamed.shape.size(), 2u);
    EXPECT_GE(streamed.shape[0], 59);
    EXPECT_EQ(input["frames_captured"], streamed.shape[0]);
    io::NpyArray first = from_file;
    first.shape[0] = streamed.shape[0];
    first.data.resize(streamed.data.size());
    EXPECT_EQ(largest_difference(streamed, first), 0.0);
  }
  serving.join();
  EXPECT_EQ(server.exit_code, 0) << server.output;

  // --rtsp-transport on anything but an RTSP stream is refused, not ignored.
  const auto r = test::run_chorus("run " + path("tiny.h5") + " --input " + video + " --rtsp-transport tcp --quiet");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("--rtsp-transport chooses how an rtsp:// stream is carried"));
}

namespace {

// Every frame (or clip) a stream gives from where it stands: its number and its values.
std::vector<std::pair<std::int64_t, std::vector<float>>> rest_of(io::FrameStream& stream, std::size_t floats) {
  std::vector<std::pair<std::int64_t, std::vector<float>>> frames;
  std::vector<float> values(floats);
  io::FrameInfo info;
  while (stream.next(values.data(), info)) frames.emplace_back(info.index, values);
  return frames;
}

}  // namespace

// A video file decodes to the same frames every time, so a resumed run decodes the frames done
// and passes over them: what follows is the rest of an uninterrupted read, numbered as in it.
TEST_F(Video, AResumedVideoPassesOverTheFramesDone) {
  const std::string video = make_video("twelve.mkv", "-c:v ffv1 -pix_fmt bgr0", "32x32", 30, 12);
  io::InputOptions image;
  image.shape = Shape{32, 32, 3};
  const std::size_t floats = 32 * 32 * 3;
  const auto open = [&](int frames = -1) {
    io::VideoOptions o;
    o.frames = frames;
    return io::open_video(video, image, o);
  };
  const auto whole = rest_of(*open(), floats);
  ASSERT_EQ(whole.size(), 12u);
  const auto from = [](const auto& all, std::size_t first) { return std::vector(all.begin() + first, all.end()); };
  auto resumed = open();
  EXPECT_EQ(resumed->why_not_resumable(), "");
  resumed->skip(5);
  EXPECT_EQ(rest_of(*resumed, floats), from(whole, 5));
  // --frames 8 counts the frames passed over: 3 are left.
  auto part = open(8);
  part->skip(5);
  EXPECT_EQ(rest_of(*part, floats).size(), 3u);
  // More frames done than the file has: said, naming the file.
  EXPECT_THAT(test::error_of([&] { open()->skip(13); }),
              HasSubstr(video + ": has 12 frame(s); the run to resume had done 13"));
  // Clips of 4 frames every 2: clip k starts at frame 2k.
  const auto clips = rest_of(*io::clips_of(open(), Shape{32, 32, 3, 4}, 2), 4 * floats);
  ASSERT_EQ(clips.size(), 5u);
  auto later_clips = io::clips_of(open(), Shape{32, 32, 3, 4}, 2);
  later_clips->skip(2);
  EXPECT_EQ(rest_of(*later_clips, 4 * floats), from(clips, 2));
  // Clips of 4 every 5 (frames 0-3 and 5-8): after the first, the frame between is passed over;
  // after both, the input ends among the frames before a third, which leaves none (not an error).
  const auto sparse = rest_of(*io::clips_of(open(), Shape{32, 32, 3, 4}, 5), 4 * floats);
  ASSERT_EQ(sparse.size(), 2u);
  auto after_one = io::clips_of(open(), Shape{32, 32, 3, 4}, 5);
  after_one->skip(1);
  EXPECT_EQ(rest_of(*after_one, 4 * floats), from(sparse, 1));
  auto after_both = io::clips_of(open(), Shape{32, 32, 3, 4}, 5);
  after_both->skip(2);
  EXPECT_TRUE(rest_of(*after_both, 4 * floats).empty());
  EXPECT_THAT(test::error_of([&] {
                io::clips_of(open(), Shape{32, 32, 3, 4}, 5)->skip(3);
              }),
              HasSubstr("has fewer than the 3 clip(s) of 4 frames every 5 that the run to resume had done"));
  // A real-time feed that loses nothing resumes; one that drops by the clock does not.
  auto paced = io::realtime_feed(open(), floats, {1000, 10, io::DropPolicy::none, true});
  EXPECT_EQ(paced->why_not_resumable(), "");
  paced->skip(5);
  EXPECT_EQ(rest_of(*paced, floats), from(whole, 5));
  auto dropping = io::realtime_feed(open(), floats, {1000, 10, io::DropPolicy::oldest, true});
  EXPECT_THAT(test::error_of([&] { dropping->skip(1); }),
              HasSubstr("cannot skip 1 frames: a real-time feed drops frames by the clock"));
}

// SIGUSR1 stops a run of a video file at a frame boundary; --resume (on another plan, one rank)
// completes the output, byte for byte that of an uninterrupted run.
TEST_F(Video, AVideoRunStoppedOnRequestResumesToTheUninterruptedOutput) {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  constexpr int kFrames = 1500;
  const std::string video = make_video("long.mkv", "-c:v ffv1 -pix_fmt bgr0", "32x32", 30, kFrames);
  run("tiny.h5", video, "", "whole.npy");
  // Devices of 5e7 multiply-adds/s: the classifier's 0.22 M take 4.4 ms a frame, so the stop
  // after 200 frames comes well before the end.
  const std::string cluster = path("slow.json"), out = path("out.npy");
  std::ofstream(cluster) << R"({"name": "slow", "network": {"bandwidth_mbps": 1000, "latency_ms": 0.1, "shared": false},
    "device_classes": {"dev": {"memory_mb": 512, "profile": {"macs_per_second": {"default": 5e7}}}},
    "hosts": [{"name": "localhost", "class": "dev", "slots": 2}]})";
  const auto stopped = test::run_command(
      test::source_path("tests/runtime/fault.sh") + " usr1 - " + out + ".journal 200 -- timeout -k 5 120 " +
      "mpiexec --oversubscribe -np 2 " CHORUS_BINARY " run " + path("tiny.h5") + " --input " + video +
      " --quiet --strategy pipeline --emulate " + cluster + " --output " + out);
  ASSERT_THAT(stopped.output, HasSubstr("fault-exit: 75")) << stopped.output;
  std::smatch m;
  ASSERT_TRUE(
      std::regex_search(stopped.output, m, std::regex("stopped on request \\(SIGUSR1\\) after frame ([0-9]+);")))
      << stopped.output;
  const int done = std::stoi(m[1]);
  EXPECT_GE(done, 200);
  EXPECT_LT(done, kFrames);
  // The video touched between the stop and the resume (as a file re-encoded in place would be):
  // another input, refused. Put back as it was, it resumes.
  const std::string resume = "run " + path("tiny.h5") + " --input " + video + " --quiet --output " + out + " --resume";
  ASSERT_EQ(test::run_command("cp -p " + video + " " + path("saved.mkv") + " && touch " + video).exit_code, 0);
  const auto refused = test::run_chorus(resume);
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.output, HasSubstr("this journal is for another run (input_files was"));
  ASSERT_EQ(test::run_command("cp -p " + path("saved.mkv") + " " + video).exit_code, 0);
  const auto again = test::run_chorus(resume);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_THAT(again.output, HasSubstr("resuming " + out + ": " + std::to_string(done) + " frames were done"));
  std::ifstream a(out, std::ios::binary), b(path("whole.npy"), std::ios::binary);
  const std::string resumed((std::istreambuf_iterator<char>(a)), {}), whole((std::istreambuf_iterator<char>(b)), {});
  EXPECT_TRUE(resumed == whole) << "the resumed output differs from the uninterrupted one";
}
