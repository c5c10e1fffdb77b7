// Open MPI hostfiles and the cluster files derived from them (`chorus cluster`).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "cluster/cluster.h"
#include "cluster/hostfile.h"
#include "core/error.h"
#include "reference/test_util.h"

namespace chorus {
namespace {

using nlohmann::json;
using testing::HasSubstr;

std::vector<cluster::HostfileEntry> parse(const std::string& text) {
  std::istringstream in(text);
  return cluster::parse_hostfile(in, "hosts.txt");
}

std::string parse_error(const std::string& text) {
  return test::error_of([&] { parse(text); });
}

TEST(Hostfile, ReadsHostsSlotsAndComments) {
  auto hosts = parse("# the lab\npi1 slots=2\n\n  pi2   # one slot by default\npi3 slots=1 max_slots=4\n");
  ASSERT_EQ(hosts.size(), 3u);
  EXPECT_EQ(hosts[0].name, "pi1");
  EXPECT_EQ(hosts[0].slots, 2);
  EXPECT_EQ(hosts[1].name, "pi2");
  EXPECT_EQ(hosts[1].slots, 1);
  EXPECT_EQ(hosts[1].line, 4);
  EXPECT_EQ(hosts[2].slots, 1);
}

TEST(Hostfile, AHostNamedTwiceAddsItsSlotsAndKeepsItsPlace) {
  auto hosts = parse("a slots=1\nb\na slots=2\n");
  ASSERT_EQ(hosts.size(), 2u);
  EXPECT_EQ(hosts[0].name, "a");
  EXPECT_EQ(hosts[0].slots, 3);
  EXPECT_EQ(hosts[1].name, "b");
}

TEST(Hostfile, AcceptsAddressesAndUserAtHost) {
  auto hosts = parse("192.168.1.10 slots=1\npi@pi2.local\n");
  EXPECT_EQ(hosts[0].name, "192.168.1.10");
  EXPECT_EQ(hosts[1].name, "pi@pi2.local");
}

TEST(Hostfile, BadLinesNameTheFileLineAndWhatWasFound) {
  EXPECT_THAT(parse_error("pi1\npi2 slots=x\n"), HasSubstr("hosts.txt:2: slots: expected a whole number, found 'x'"));
  EXPECT_THAT(parse_error("pi1 slots=0\n"), HasSubstr("expected 1 to 4096, found 0"));
  EXPECT_THAT(parse_error("pi1 slots=99999999999\n"), HasSubstr("expected 1 to 4096, found 99999999999"));
  EXPECT_THAT(parse_error("pi1:4\n"), HasSubstr("'pi1:4': a hostfile gives slots as 'pi1 slots=4'"));
  EXPECT_EQ(parse("fe80::1 slots=2\n").at(0).slots, 2);  // an IPv6 address keeps its colons
  EXPECT_THAT(parse_error("pi1 cores=2\n"), HasSubstr("hosts.txt:1: unknown hostfile keyword 'cores'"));
  EXPECT_THAT(parse_error("pi1 4\n"), HasSubstr("expected slots=N or max_slots=N"));
  EXPECT_THAT(parse_error("pi1 slots=4 max_slots=2\n"), HasSubstr("slots=4 is more than max_slots=2"));
  EXPECT_THAT(parse_error("pi;rm\n"), HasSubstr("'pi;rm' is not a host name"));
  EXPECT_THAT(parse_error("# nothing\n\n"), HasSubstr("hosts.txt: hostfile names no hosts"));
  EXPECT_THAT(parse_error("a slots=4000\na slots=4000\n"), HasSubstr("more than 4096 slots"));
}

TEST(Hostfile, MissingFileIsNamed) {
  try {
    cluster::read_hostfile("/nonexistent/hosts");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("/nonexistent/hosts: cannot open hostfile"));
  }
}

json library() {
  return json::parse(R"({
    "device_classes": {
      "pi3": {"profile": "pi3-paper.json", "memory_mb": 1024, "cores": 4},
      "laptop": {"profile": {"device": "laptop", "macs_per_second": {"default": 2e10}}, "memory_mb": 8192}
    },
    "networks": {"wifi": {"bandwidth_mbps": 62.24, "latency_ms": 2.0, "shared": true}}
  })");
}

cluster::ClusterRecipe recipe(const std::string& out) {
  cluster::ClusterRecipe r;
  r.name = "lab";
  r.default_class = "pi3";
  r.library = library();
  r.library_path = test::source_path("profiles/device-classes.json");
  r.network = "wifi";
  r.output_path = out;
  return r;
}

std::string derive_error(const std::vector<cluster::HostfileEntry>& hosts, const cluster::ClusterRecipe& r) {
  return test::error_of([&] { cluster::derive_cluster(hosts, r); });
}

TEST(DeriveCluster, WritesAClusterThePlannerReadsWithHostsInHostfileOrder) {
  test::TempDir dir;
  const std::string out = dir.path("lab.json");
  auto r = recipe(out);
  r.host_class["laptop1"] = "laptop";
  json j = cluster::derive_cluster(parse("pi1 slots=1\nlaptop1 slots=2\npi2\n"), r);
  std::ofstream(out) << j.dump(2);
  cluster::Cluster c = cluster::read_cluster(out);
  EXPECT_EQ(c.name, "lab");
  EXPECT_EQ(c.ranks(), 4);
  EXPECT_EQ(c.device_of(0).name, "pi3");
  EXPECT_EQ(c.device_of(1).name, "laptop");
  EXPECT_EQ(c.device_of(2).name, "laptop");
  EXPECT_EQ(c.device_of(3).name, "pi3");
  EXPECT_DOUBLE_EQ(c.device_of(0).memory_bytes, 1024e6);
  EXPECT_TRUE(c.network.shared);
  EXPECT_DOUBLE_EQ(c.network.bandwidth_bytes_per_s, 62.24e6 / 8);
  // The pi3 profile was found through the path written relative to... wherever the output is.
  EXPECT_FALSE(c.device_of(0).profile.layer_seconds.at("vgg16").empty());
  EXPECT_EQ(c.device_of(1).profile.name, "laptop");  // an inline profile stays inline
}

// A misspelt key would leave its default in place without a word ("bandwith_mbps" took the
// default bandwidth; "unreliabel" left a device without parity): each is refused, named.
TEST(ClusterFile, UnknownKeysAreRefusedNamingThem) {
  const json good = json::parse(R"({"name": "lab", "network": {"bandwidth_mbps": 10, "latency_ms": 1, "shared": true},
    "device_classes": {"pi": {"memory_mb": 512, "cores": 4, "profile": {"macs_per_second": {"default": 1e9}},
                              "power": {"idle_w": 1.9, "busy_w": 6.4}}},
    "hosts": [{"name": "pi1", "class": "pi", "slots": 1, "unreliable": true}]})");
  EXPECT_EQ(cluster::cluster_from_json(good, "lab.json", ".").hosts.at(0).unreliable, true);
  const std::pair<json::json_pointer, const char*> typos[] = {
      {json::json_pointer("/netwrok"), "lab.json: unknown key 'netwrok' (a cluster file has name, about, network,"},
      {json::json_pointer("/network/bandwith_mbps"), "lab.json: network: unknown key 'bandwith_mbps'"},
      {json::json_pointer("/device_classes/pi/memory"), "lab.json: device class 'pi': unknown key 'memory'"},
      {json::json_pointer("/device_classes/pi/power/idle"), "device class 'pi': power: unknown key 'idle'"},
      {json::json_pointer("/hosts/0/unreliabel"),
       "lab.json: hosts[0]: unknown key 'unreliabel' (a host has name, "
       "class, slots, unreliable, about)"}};
  for (const auto& [where, message] : typos) {
    json bad = good;
    bad[where] = 1;
    EXPECT_THAT(test::error_of([&] { cluster::cluster_from_json(bad, "lab.json", "."); }), HasSubstr(message))
        << where.to_string();
  }
}

TEST(DeriveCluster, NetworkCanBeGivenInsteadOfNamed) {
  auto r = recipe("");
  r.network_override = {{"bandwidth_mbps", 940}, {"latency_ms", 0.1}, {"shared", false}};
  json j = cluster::derive_cluster(parse("a\n"), r);
  EXPECT_EQ(j["network"]["bandwidth_mbps"], 940);
  EXPECT_EQ(j["network"]["shared"], false);
}

TEST(DeriveCluster, MistakesAreNamed) {
  auto hosts = parse("pi1\npi2\n");
  auto no_default = recipe("");
  no_default.default_class = "";
  EXPECT_THAT(
      derive_error(hosts, no_default),
      HasSubstr("host 'pi1' (line 1) has no device class: give --class for every host or --host-class pi1=CLASS "
                "(known: laptop, pi3)"));
  auto unknown = recipe("");
  unknown.default_class = "pi5";
  EXPECT_THAT(derive_error(hosts, unknown), HasSubstr("no device class 'pi5' for host 'pi1' (known: laptop, pi3)"));
  auto stray = recipe("");
  stray.host_class["pi7"] = "laptop";
  EXPECT_THAT(derive_error(hosts, stray), HasSubstr("names host 'pi7', which the hostfile does not list"));
  auto net = recipe("");
  net.network = "5g";
  EXPECT_THAT(derive_error(hosts, net), HasSubstr("no network named '5g' (known: wifi)"));
  auto bad = recipe("");
  bad.library = json::array();
  EXPECT_THAT(derive_error(hosts, bad), HasSubstr("expected an object with \"device_classes\""));
}

// The shipped library: every class and network in it makes a cluster the planner can read.
TEST(DeriveCluster, ShippedLibraryIsComplete) {
  const std::string path = test::source_path("profiles/device-classes.json");
  std::ifstream in(path);
  json lib = json::parse(in);
  test::TempDir dir;
  for (const auto& [cls, _] : lib["device_classes"].items())
    for (const auto& [net, __] : lib["networks"].items()) {
      cluster::ClusterRecipe r;
      r.name = cls + "-" + net;
      r.default_class = cls;
      r.library = lib;
      r.library_path = path;
      r.network = net;
      r.output_path = dir.path(r.name + ".json");
      std::ofstream(r.output_path) << cluster::derive_cluster(parse("h1 slots=2\nh2\n"), r).dump();
      cluster::Cluster c = cluster::read_cluster(r.output_path);
      EXPECT_EQ(c.ranks(), 3) << r.name;
      EXPECT_FALSE(c.device_of(0).profile.macs_per_second.empty()) << r.name;
    }
}

}  // namespace
}  // namespace chorus
