// `chorus testbed`: the layout as data (names, addresses, the commands that build, shape and
// remove it, the launcher's agent), and, where this machine lets us make network namespaces
// (root), jobs on the kernel's network: a LeNet-5 pipeline over TCP between three namespaces
// equals one process, a rank killed inside its namespace ends the job naming it, and no
// namespace, link or queue is left afterwards.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>

#include "cluster/cluster.h"
#include "io/data/inputs.h"
#include "io/data/npy.h"
#include "io/model_file.h"
#include "reference/test_util.h"
#include "testbed/testbed.h"
#include "testbed/testbed_layout.h"

namespace chorus {
namespace {

using testing::HasSubstr;

cluster::Cluster three_pis(bool shared) {
  cluster::Cluster c;
  c.name = "three";
  c.network.bandwidth_bytes_per_s = 62.24e6 / 8;
  c.network.latency_s = 0.002;
  c.network.shared = shared;
  c.classes["pi3"] = cluster::DeviceClass{"pi3", {}, 1e9, 4, {}};
  for (const char* h : {"pi1", "pi2", "pi.3"}) c.hosts.push_back({h, "pi3", 1});
  return c;
}

bool contains(const std::vector<testbed::Command>& cmds, const std::string& text) {
  for (const auto& c : cmds) {
    std::string s;
    for (const auto& w : c) s += w + " ";
    if (s.find(text) != std::string::npos) return true;
  }
  return false;
}

TEST(TestbedLayout, OneNamespaceAndAddressPerHost) {
  const auto l = testbed::make_testbed_layout(three_pis(true));
  ASSERT_EQ(l.devices.size(), 3u);
  EXPECT_EQ(l.hub, "chorus-tb-hub");
  EXPECT_EQ(l.devices[0].netns, "chorus-tb-pi1");
  EXPECT_EQ(l.devices[2].netns, "chorus-tb-pi_3");  // dots are kept out of namespace names
  EXPECT_EQ(l.devices[1].address, "10.231.0.2");
  EXPECT_EQ(testbed::hostfile_text(l), "10.231.0.1 slots=1\n10.231.0.2 slots=1\n10.231.0.3 slots=1\n");
  EXPECT_NEAR(l.bits_per_s, 62.24e6, 1);
  const auto up = testbed::network_up_commands(l);
  EXPECT_TRUE(contains(up, "ip netns add chorus-tb-pi2"));
  EXPECT_TRUE(contains(up, "ip netns exec chorus-tb-pi2 ip addr add 10.231.0.2/24 dev eth0"));
  EXPECT_TRUE(contains(up, "ip link set ctb1 master br0"));
  const auto down = testbed::network_down_commands(l);
  EXPECT_EQ(down.size(), 4u);
  EXPECT_TRUE(contains(down, "ip netns del chorus-tb-hub"));
}

TEST(TestbedLayout, SharedMediumIsOneQueueEveryPacketCrosses) {
  const auto shared = testbed::shaping_commands(testbed::make_testbed_layout(three_pis(true)));
  EXPECT_TRUE(contains(shared, "tc qdisc add dev ifb0 root tbf rate 66495kbit"));
  for (const char* link : {"ctb0", "ctb1", "ctb2"})
    EXPECT_TRUE(contains(shared, std::string("filter add dev ") + link + " parent ffff: protocol all u32 match u32 0 0 "
                                 "action mirred egress redirect dev ifb0"))
        << link;
  const auto separate = testbed::shaping_commands(testbed::make_testbed_layout(three_pis(false)));
  EXPECT_FALSE(contains(separate, "ifb0"));
  EXPECT_TRUE(contains(separate, "ip netns exec chorus-tb-pi2 tc qdisc add dev eth0 root tbf rate 66495kbit"));
  EXPECT_TRUE(contains(testbed::latency_commands(testbed::make_testbed_layout(three_pis(true))),
                       "tc qdisc add dev ctb1 root netem delay 2000us"));
  const auto firewall = testbed::firewall_commands(testbed::make_testbed_layout(three_pis(true)));
  EXPECT_TRUE(contains(firewall, "ip netns exec chorus-tb-pi2 nft add rule inet chorus input iifname eth0 ip saddr "
                                 "{ 10.231.0.1, 10.231.0.2, 10.231.0.3 } accept"));
  EXPECT_TRUE(contains(firewall, "ip netns exec chorus-tb-pi_3 nft add rule inet chorus input iifname eth0 drop"));
}

TEST(TestbedLayout, AgentScriptIsValidShellAndKnowsEveryAddress) {
  test::TempDir dir;
  const std::string script = testbed::rsh_agent_script(testbed::make_testbed_layout(three_pis(true)));
  std::ofstream(dir.path("agent.sh")) << script;
  auto syntax = test::run_command("sh -n " + dir.path("agent.sh"));
  EXPECT_EQ(syntax.exit_code, 0) << syntax.output;
  EXPECT_THAT(script, HasSubstr("10.231.0.3) netns='chorus-tb-pi_3' name='pi.3'"));
  auto unknown = test::run_command("sh " + dir.path("agent.sh") + " 192.0.2.1 true");
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_THAT(unknown.output, HasSubstr("no device has address 192.0.2.1"));
  EXPECT_EQ(testbed::shell_quote("it's"), "'it'\\''s'");
}

TEST(TestbedLayout, TooManyHostsOrCollidingNamesAreRefused) {
  cluster::Cluster c = three_pis(true);
  c.hosts.push_back({"hub", "pi3", 1});
  EXPECT_THAT(test::error_of([&] { testbed::make_testbed_layout(c); }),
              HasSubstr("host 'hub' makes namespace chorus-tb-hub, which another host (or the hub) has"));
  // Each namespace takes its host's name as its hostname: a name the hostname tool refuses is
  // refused before anything is made.
  for (const std::string& bad :
       std::vector<std::string>{"pi 3", "pi_3", "-rf", "pi3-", "", "a..b", ".a", "a;touch x", std::string(64, 'a')}) {
    SCOPED_TRACE(bad);
    c = three_pis(true);
    c.hosts[1].name = bad;
    EXPECT_THAT(test::error_of([&] { testbed::make_testbed_layout(c); }),
                HasSubstr("host '" + bad + "' (hosts[1]) is not a host name"));
  }
  c = three_pis(true);
  c.hosts[1].name = std::string(63, 'a');
  EXPECT_NO_THROW(testbed::make_testbed_layout(c));
  c.hosts.assign(251, {"x", "pi3", 1});
  EXPECT_THAT(test::error_of([&] { testbed::make_testbed_layout(c); }), HasSubstr("the testbed holds 250"));
}

// ---- On the kernel's network (root) ------------------------------------------------------------

class OnTheKernelsNetwork : public testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!testbed::can_make_testbed(&why)) GTEST_SKIP() << "no testbed here: " << why;
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    std::ifstream in(test::source_path("models/lenet5.json"));
    std::stringstream config;
    config << in.rdbuf();
    test::write_random_model(config.str(), dir_.path("lenet5.h5"));
    // Three Pi 3 on 62.24 Mbit/s shared WiFi, with the repository's profile of the paper's Pi 3.
    std::ofstream(dir_.path("three.json")) << R"({"name": "three", "network": {"bandwidth_mbps": 62.24,
      "latency_ms": 2.0, "shared": true}, "device_classes": {"pi3": {"profile": ")"
                                           << test::source_path("profiles/pi3-paper.json") << R"(", "memory_mb": 1024}},
      "hosts": [{"name": "pi1", "class": "pi3"}, {"name": "pi2", "class": "pi3"}, {"name": "pi3", "class": "pi3"}]})";
  }
  void TearDown() override {
    if (IsSkipped()) return;
    const auto left = test::run_command("ip netns list");
    EXPECT_THAT(left.output, testing::Not(HasSubstr("chorus-tb-"))) << "the testbed was left up";
    test::run_command(CHORUS_BINARY " testbed --down");
  }
  // Runs `command`; once `journal` has `lines` lines, changes the testbed's network with the
  // shell command `action` (tests/runtime/fault.sh run).
  static test::CommandResult with_network_change(const std::string& journal, int lines, const std::string& action,
                                                 const std::string& command) {
    return test::run_command(test::source_path("tests/runtime/fault.sh") + " run '" + action + "' " + journal + " " +
                             std::to_string(lines) + " -- " + command);
  }
  // out.npy holds, frame for frame, what one process gives for `frames` synthetic frames of `seed`.
  void expect_one_process_output(int frames, int seed, double tolerance) const {
    model::Model m = io::load_model_file(dir_.path("lenet5.h5"));
    io::InputOptions o;
    o.synthetic = frames;
    o.seed = seed;
    o.shape = m.input_shape();
    auto source = io::open_input(o);
    const io::NpyArray got = io::read_npy(dir_.path("out.npy"));
    ASSERT_EQ(got.shape.at(0), frames);
    for (int i = 0; i < frames; ++i) {
      Tensor frame(1, m.input_shape());
      source->read(i, frame.data());
      const Tensor y = m.forward(frame);
      for (std::size_t k = 0; k < y.size(); ++k) ASSERT_NEAR(got.data[i * y.size() + k], y.data()[k], tolerance) << i;
    }
  }
  std::string testbed(const std::string& job) const {
    return std::string(CHORUS_BINARY) + " testbed --cluster " + dir_.path("three.json") + " -- run " +
           dir_.path("lenet5.h5") + " " + job;
  }
  test::TempDir dir_;
};

TEST_F(OnTheKernelsNetwork, PipelineOverTcpEqualsOneProcess) {
  auto r = test::run_command("timeout -k 5 120 " + testbed("--synthetic 12 --seed 3 --strategy pipeline --output " +
                                                             dir_.path("out.npy") + " --report " + dir_.path("r.json")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("testbed: 3 device namespaces on 10.231.0.0/24, one shared medium at 62.24 Mbit/s"));
  // Ranks ran in their devices' namespaces, under the devices' names.
  std::ifstream report_file(dir_.path("r.json"));
  const auto report = nlohmann::json::parse(report_file);
  ASSERT_EQ(report["ranks"].size(), 3u);
  for (int k = 0; k < 3; ++k) EXPECT_EQ(report["ranks"][k]["host"], "pi" + std::to_string(k + 1)) << k;
  // One machine, one clock: the offsets estimated over TCP are zero within their uncertainty.
  for (int k = 1; k < 3; ++k)
    EXPECT_LE(std::fabs(report["ranks"][k]["clock_offset_s"].get<double>()),
              report["ranks"][k]["clock_uncertainty_s"].get<double>() + 1e-3)
        << k;

  expect_one_process_output(12, 3, 1e-6);
}

TEST_F(OnTheKernelsNetwork, RankKilledInItsNamespaceEndsTheJobNamingIt) {
  const std::string journal = dir_.path("out.npy.journal");
  auto r = test::run_command(test::source_path("tests/runtime/fault.sh") + " kill 1 " + journal + " 40 -- timeout -k 5 120 " +
                             testbed("--synthetic 100000 --strategy pipeline --quiet --output " + dir_.path("out.npy")));
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, std::regex("fault-seconds: ([0-9.]+)"))) << r.output;
  EXPECT_LT(std::stod(m[1]), 10.0) << r.output;
  EXPECT_THAT(r.output, testing::Not(HasSubstr("fault-exit: 0")));
  EXPECT_THAT(r.output, HasSubstr("rank 1"));
  EXPECT_THAT(r.output, HasSubstr("pi2"));
}

// A device's link taken down mid-run: the ranks waiting for it give up after --stall-timeout and
// end the job, naming the rank they waited for.
TEST_F(OnTheKernelsNetwork, LinkDownEndsTheJobWithinTheStallTimeout) {
  auto r = with_network_change(dir_.path("out.npy.journal"), 40, "ip netns exec chorus-tb-hub ip link set ctb1 down",
                               "timeout -k 5 120 " + testbed("--synthetic 100000 --strategy pipeline --quiet "
                                                             "--stall-timeout 5 --output " + dir_.path("out.npy")));
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, std::regex("fault-seconds: ([0-9.]+)"))) << r.output;
  EXPECT_LT(std::stod(m[1]), 5.0 + 5.0 + 5.0) << r.output;  // stall timeout, mpirun's grace, slack
  EXPECT_THAT(r.output, testing::Not(HasSubstr("fault-exit: 0")));
  EXPECT_THAT(r.output, testing::Not(HasSubstr("fault-error")));
  EXPECT_THAT(r.output, HasSubstr("rank 1 on pi2"));
}

// A link whose rate falls to 1 % mid-run slows the job, and loses and duplicates no frame: the
// output is one process's, frame for frame.
TEST_F(OnTheKernelsNetwork, RateCollapseSlowsButLosesNoFrame) {
  // Enough frames that the change lands well before the end even when starting `tc` takes a
  // loaded machine a few tenths of a second (150 frames were once all done within 0.4 s of it).
  const int frames = 300;
  auto r = with_network_change(
      dir_.path("out.npy.journal"), 30,
      "ip netns exec chorus-tb-hub tc qdisc change dev ifb0 root tbf rate 622kbit burst 64kb latency 2s",
      "timeout -k 5 300 " + testbed("--synthetic " + std::to_string(frames) +
                                    " --seed 4 --strategy pipeline --quiet --output " + dir_.path("out.npy")));
  ASSERT_THAT(r.output, HasSubstr("fault-exit: 0")) << r.output;
  EXPECT_THAT(r.output, testing::Not(HasSubstr("fault-error")));
  // About 1,000 frames/s before, about 30 after (measured): the frames left take seconds.
  std::smatch seconds;
  ASSERT_TRUE(std::regex_search(r.output, seconds, std::regex("fault-seconds: ([0-9.]+)"))) << r.output;
  EXPECT_GT(std::stod(seconds[1]), 1.0) << "the collapsed link did not slow the job";
  expect_one_process_output(frames, 4, 1e-6);
}

// Coded redundancy on the testbed (#20): five devices, a parity stage of two slices and their
// parity; one member is stopped (SIGSTOP) for 2 s inside its namespace and then continued. No
// frame is lost, the consumer says how many it rebuilt, and the outputs equal one process's
// within float tolerance.
TEST_F(OnTheKernelsNetwork, ParityStageRebuildsAStoppedMembersSlices) {
  std::ofstream(dir_.path("five.json")) << R"({"name": "five", "network": {"bandwidth_mbps": 62.24,
    "latency_ms": 2.0, "shared": true}, "device_classes": {"pi3": {"profile": ")"
                                        << test::source_path("profiles/pi3-paper.json") << R"(", "memory_mb": 1024}},
    "hosts": [{"name": "pi1", "class": "pi3"}, {"name": "pi2", "class": "pi3"}, {"name": "pi3", "class": "pi3"},
              {"name": "pi4", "class": "pi3"}, {"name": "pi5", "class": "pi3"}]})";
  std::ofstream(dir_.path("parity.json")) << R"({"ranks": 5, "stages": [
    {"layers": ["conv1", "pool2"], "mode": "single", "ranks": [0]},
    {"layers": ["flatten", "fc1"], "mode": "split-output", "ranks": [1, 2, 3], "parity": 1},
    {"layers": ["fc2", "predictions"], "mode": "single", "ranks": [4]}]})";
  const int frames = 3000;
  const std::string job = std::string(CHORUS_BINARY) + " testbed --cluster " + dir_.path("five.json") + " -- run " +
                          dir_.path("lenet5.h5") + " --synthetic " + std::to_string(frames) + " --seed 5 --plan " +
                          dir_.path("parity.json") + " --quiet --stall-timeout 30 --output " + dir_.path("out.npy") +
                          " --report " + dir_.path("r.json");
  auto r = test::run_command("PAUSE_S=2 " + test::source_path("tests/runtime/fault.sh") + " pause 2 " +
                             dir_.path("out.npy.journal") + " 300 -- timeout -k 5 300 " + job);
  ASSERT_THAT(r.output, HasSubstr("fault-exit: 0")) << r.output;
  EXPECT_THAT(r.output, testing::Not(HasSubstr("fault-error"))) << r.output;
  const auto report = nlohmann::json::parse(std::ifstream(dir_.path("r.json")));
  const int rebuilt = report["ranks"][4]["rebuilt_frames"].value("1", 0);
  std::cout << "pi5 rebuilt " << rebuilt << " frames of stage 1 while pi3 was stopped\n";
  EXPECT_GT(rebuilt, 0) << r.output;
  expect_one_process_output(frames, 5, 1e-5);
}

// chorus supervise on the testbed: a device's link goes down mid-run; the supervisor ends the
// stuck job, re-plans on the two devices left (a new testbed of them) and resumes. The device
// then answers the probe (on its second try): the job is stopped at a frame boundary (SIGUSR1
// through chorus testbed, mpirun and the rsh agent) and resumed on all three. The output is
// byte for byte that of one uninterrupted process.
TEST_F(OnTheKernelsNetwork, SuperviseReplansWithoutTheDeviceWhoseLinkWentDownThenReadmitsIt) {
  const std::string tried = dir_.path("tried-{host}");
  const std::string probe = "test -e " + tried + " || { touch " + tried + "; false; }";
  const std::string job = " -- run " + dir_.path("lenet5.h5") + " --synthetic 6000 --seed 2 --quiet --stall-timeout 3";
  auto r = with_network_change(dir_.path("sup.npy.journal"), 300, "ip netns exec chorus-tb-hub ip link set ctb1 down",
                               "timeout -k 5 240 " CHORUS_BINARY " supervise --testbed --cluster " +
                                   dir_.path("three.json") + " --work-dir " + dir_.path("work") +
                                   " --probe-every 1 --probe \"" + probe + "\"" + job + " --output " +
                                   dir_.path("sup.npy"));
  ASSERT_THAT(r.output, HasSubstr("fault-exit: 0")) << r.output;
  EXPECT_THAT(r.output, HasSubstr("on pi2 failed; 2 device(s) left, re-planning"));
  EXPECT_THAT(r.output, HasSubstr("pi2 answers again; stopping the job at the next frame"));
  EXPECT_THAT(r.output, HasSubstr("attempt 3 on 3 device(s)"));
  EXPECT_THAT(r.output, HasSubstr("chorus supervise: done after 1 failure(s)"));
  EXPECT_THAT(r.output, HasSubstr("1 re-admission(s)"));
  auto plain = test::run_command(std::string(CHORUS_BINARY) + " run " + dir_.path("lenet5.h5") +
                                 " --synthetic 6000 --seed 2 --quiet --output " + dir_.path("ref.npy"));
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  std::ifstream a(dir_.path("sup.npy"), std::ios::binary), b(dir_.path("ref.npy"), std::ios::binary);
  const std::string got((std::istreambuf_iterator<char>(a)), {}), want((std::istreambuf_iterator<char>(b)), {});
  EXPECT_EQ(got.size(), want.size());
  EXPECT_TRUE(got == want) << "the supervised output differs from one process's";
}

// --firewall: the job runs with nftables in every namespace, and a connection from an address
// outside the hostfile is refused (without the firewall the same connection goes through).
TEST_F(OnTheKernelsNetwork, FirewallAdmitsOnlyTheHostfilesAddresses) {
  if (test::run_command("nft --version").exit_code != 0) GTEST_SKIP() << "no nft here (Debian's nftables)";
  for (const bool firewall : {true, false}) {
    SCOPED_TRACE(firewall ? "with --firewall" : "without");
    auto r = test::run_command("timeout -k 5 120 " + std::string(CHORUS_BINARY) + " testbed --keep" +
                               (firewall ? " --firewall" : "") + " --cluster " + dir_.path("three.json") + " -- run " +
                               dir_.path("lenet5.h5") + " --synthetic 8 --strategy pipeline --quiet");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto probe = test::run_command(test::source_path("tests/testbed/outsider_probe.sh"));
    EXPECT_THAT(probe.output, HasSubstr("device: connected"));
    EXPECT_THAT(probe.output, HasSubstr(firewall ? "outsider: refused" : "outsider: connected"));
    test::run_command(CHORUS_BINARY " testbed --down");
  }
}

TEST_F(OnTheKernelsNetwork, KeepLeavesTheTestbedAndDownRemovesIt) {
  auto r = test::run_command("timeout -k 5 120 " + std::string(CHORUS_BINARY) + " testbed --keep --cluster " +
                             dir_.path("three.json") + " -- run " + dir_.path("lenet5.h5") +
                             " --synthetic 4 --strategy pipeline --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(test::run_command("ip netns list").output, HasSubstr("chorus-tb-pi2"));
  auto again = test::run_command(testbed("--synthetic 4 --quiet"));
  EXPECT_NE(again.exit_code, 0);
  EXPECT_THAT(again.output, HasSubstr("a testbed is up already"));
  auto down = test::run_command(CHORUS_BINARY " testbed --down");
  EXPECT_EQ(down.exit_code, 0) << down.output;
  EXPECT_THAT(down.output, HasSubstr("removed 4 namespace(s)"));
}

}  // namespace
}  // namespace chorus
