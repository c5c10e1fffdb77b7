#pragma once
// What `chorus testbed` builds, as plain data: one network namespace per host of a cluster file,
// joined by a bridge in a hub namespace, each with an address of the testbed's own subnet; the
// links shaped from the cluster's network (one queue that every packet crosses for a shared
// medium such as WiFi, one per device otherwise); and the commands that build and remove it,
// the Open MPI hostfile and the launcher's agent script. Nothing here runs a command.
#include <string>
#include <vector>

#include "cluster/cluster.h"

namespace chorus::testbed {

// Every namespace of a testbed starts with this, so `chorus testbed --down` finds them all.
inline constexpr const char* kNamespacePrefix = "chorus-tb-";
// The testbed's addresses: hosts are .1, .2 ... in cluster order. Nothing else is ever a target.
inline constexpr const char* kSubnet = "10.231.0.0/24";

struct TestbedDevice {
  std::string host;       // as the cluster file names it
  std::string netns;      // its namespace
  std::string address;    // on the testbed's subnet
  std::string hub_link;   // its veth's end in the hub namespace
  int slots = 1;
};

// A cluster file's bandwidth is what its devices' messages get (goodput: what iperf reports, what
// the papers measured, what the planner charges per byte). A queue shapes whole frames, headers
// included: a full TCP segment of 1,448 bytes is 1,514 on the link (IPv4, TCP with timestamps,
// Ethernet), and every second one is acknowledged by a 66-byte frame that crosses the shared
// queue too. So the queue's rate is the goodput times (2 x 1514 + 66) / (2 x 1448).
constexpr double kTcpFramingFactor = (2 * 1514.0 + 66.0) / (2 * 1448.0);

struct TestbedLayout {
  std::string hub;  // namespace holding the bridge and the shaping
  std::vector<TestbedDevice> devices;
  double bits_per_s = 0;  // the cluster's bandwidth (goodput); queues shape at kTcpFramingFactor times it
  double latency_s = 0;
  bool shared = true;
};

// Throws chorus::Error when the cluster has more hosts than the subnet holds, or two hosts whose
// names make the same namespace.
TestbedLayout make_testbed_layout(const cluster::Cluster& cluster);

using Command = std::vector<std::string>;
// Builds the namespaces, bridge and links, in order.
std::vector<Command> network_up_commands(const TestbedLayout& layout);
// Shapes the links: tbf at the network's rate, through an ifb queue that every device's traffic
// is redirected into for a shared medium, or on each device's link otherwise.
std::vector<Command> shaping_commands(const TestbedLayout& layout);
// Adds the network's latency with netem on each device's link (where the kernel has netem).
std::vector<Command> latency_commands(const TestbedLayout& layout);
// A firewall in each device's namespace (nftables): on eth0, packets from the hostfile's
// addresses are accepted and every other is dropped, as docs/deploy.md recommends for a cluster.
std::vector<Command> firewall_commands(const TestbedLayout& layout);
// Removes every namespace of the layout (their links and queues go with them).
std::vector<Command> network_down_commands(const TestbedLayout& layout);

// "10.231.0.1 slots=1" per device.
std::string hostfile_text(const TestbedLayout& layout);
// Open MPI's rsh agent (plm_rsh_agent): called as `agent ADDRESS COMMAND...`, runs the command
// in that address's namespace under the device's host name, as ssh would on a real cluster.
std::string rsh_agent_script(const TestbedLayout& layout);

// `word` quoted for /bin/sh.
std::string shell_quote(const std::string& word);

}  // namespace chorus::testbed
