#include "testbed/testbed_layout.h"

#include <cctype>
#include <cmath>
#include <set>

#include "core/error.h"

namespace chorus::testbed {

namespace {

std::string address_of(std::size_t index) { return cat("10.231.0.", index + 1); }

// A host name as a namespace name: letters, digits, '-' and '_' kept, the rest '_'.
std::string namespace_of(const std::string& host) {
  std::string name = kNamespacePrefix;
  for (char c : host) name += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ? c : '_';
  return name;
}

// Whether `host` can be a namespace's host name (RFC 1123, as the hostname tool checks): labels
// of letters, digits and inner '-', joined by dots, 63 characters at most.
bool rfc1123_host_name(const std::string& host) {
  if (host.empty() || host.size() > 63) return false;
  std::size_t label = 0;
  for (std::size_t i = 0; i <= host.size(); ++i) {
    const char c = i < host.size() ? host[i] : '.';
    if (c == '.') {
      if (label == 0 || host[i - 1] == '-') return false;
      label = 0;
    } else if (std::isalnum(static_cast<unsigned char>(c)) || (c == '-' && label > 0)) {
      ++label;
    } else {
      return false;
    }
  }
  return true;
}

std::string kbit(double bits_per_s) { return cat(static_cast<long long>(std::llround(bits_per_s / 1000)), "kbit"); }

}  // namespace

TestbedLayout make_testbed_layout(const cluster::Cluster& c) {
  if (c.hosts.empty()) fail("testbed: the cluster has no hosts");
  if (c.hosts.size() > 250) fail("testbed: the cluster has ", c.hosts.size(), " hosts; the testbed holds 250");
  TestbedLayout layout;
  layout.hub = std::string(kNamespacePrefix) + "hub";
  layout.bits_per_s = c.network.bandwidth_bytes_per_s * 8;
  layout.latency_s = c.network.latency_s;
  layout.shared = c.network.shared;
  std::set<std::string> names{layout.hub};
  for (std::size_t i = 0; i < c.hosts.size(); ++i) {
    TestbedDevice d;
    d.host = c.hosts[i].name;
    // Checked before anything is made: each namespace takes its host's name as its hostname.
    if (!rfc1123_host_name(d.host))
      fail("testbed: host '", d.host, "' (hosts[", i, "]) is not a host name the testbed can give a device: letters, ",
           "digits and '-' (not first or last), in dot-separated parts, 63 characters at most");
    d.netns = namespace_of(d.host);
    if (!names.insert(d.netns).second)
      fail("testbed: host '", d.host, "' makes namespace ", d.netns, ", which another host (or the hub) has");
    d.address = address_of(i);
    d.hub_link = cat("ctb", i);
    d.slots = c.hosts[i].slots;
    layout.devices.push_back(d);
  }
  return layout;
}

std::vector<Command> network_up_commands(const TestbedLayout& l) {
  std::vector<Command> cmds;
  const auto in = [](const std::string& ns, Command c) {
    Command full{"ip", "netns", "exec", ns};
    full.insert(full.end(), c.begin(), c.end());
    return full;
  };
  cmds.push_back({"ip", "netns", "add", l.hub});
  cmds.push_back(in(l.hub, {"ip", "link", "set", "lo", "up"}));
  cmds.push_back(in(l.hub, {"ip", "link", "add", "br0", "type", "bridge"}));
  cmds.push_back(in(l.hub, {"ip", "link", "set", "br0", "up"}));
  for (const auto& d : l.devices) {
    cmds.push_back({"ip", "netns", "add", d.netns});
    cmds.push_back(in(l.hub, {"ip", "link", "add", d.hub_link, "type", "veth", "peer", "name", "eth0", "netns", d.netns}));
    cmds.push_back(in(l.hub, {"ip", "link", "set", d.hub_link, "master", "br0"}));
    cmds.push_back(in(l.hub, {"ip", "link", "set", d.hub_link, "up"}));
    cmds.push_back(in(d.netns, {"ip", "addr", "add", d.address + "/24", "dev", "eth0"}));
    cmds.push_back(in(d.netns, {"ip", "link", "set", "eth0", "up"}));
    cmds.push_back(in(d.netns, {"ip", "link", "set", "lo", "up"}));
  }
  return cmds;
}

std::vector<Command> shaping_commands(const TestbedLayout& l) {
  std::vector<Command> cmds;
  // tbf: the rate, a burst of 16 KB (ten packets at line rate), and up to 2 s of queue so that
  // TCP, not the queue, decides the pace. A larger bucket, full after each compute phase, let a
  // split stage's halo swaps through at the veths' speed: a radio has no such credit (AlexNet's
  // 9-device latency plan measured 16 % under the prediction with 64 KB, 10 % with 16 KB; the
  // throughput of a network-bound pipeline is the same with either).
  const Command tbf{"tbf", "rate", kbit(l.bits_per_s * kTcpFramingFactor), "burst", "16kb", "latency", "2s"};
  const auto with = [](Command head, const Command& tail) {
    head.insert(head.end(), tail.begin(), tail.end());
    return head;
  };
  if (l.shared) {
    // One medium: every packet that enters the hub from a device is redirected into one queue.
    cmds.push_back({"ip", "netns", "exec", l.hub, "ip", "link", "add", "ifb0", "type", "ifb"});
    cmds.push_back({"ip", "netns", "exec", l.hub, "ip", "link", "set", "ifb0", "up"});
    cmds.push_back(with({"ip", "netns", "exec", l.hub, "tc", "qdisc", "add", "dev", "ifb0", "root"}, tbf));
    for (const auto& d : l.devices) {
      cmds.push_back({"ip", "netns", "exec", l.hub, "tc", "qdisc", "add", "dev", d.hub_link, "ingress"});
      cmds.push_back({"ip", "netns", "exec", l.hub, "tc", "filter", "add", "dev", d.hub_link, "parent", "ffff:",
                      "protocol", "all", "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect",
                      "dev", "ifb0"});
    }
  } else {
    // A link per device: each device's sending is shaped on its own.
    for (const auto& d : l.devices)
      cmds.push_back(with({"ip", "netns", "exec", d.netns, "tc", "qdisc", "add", "dev", "eth0", "root"}, tbf));
  }
  return cmds;
}

std::vector<Command> latency_commands(const TestbedLayout& l) {
  std::vector<Command> cmds;
  if (l.latency_s <= 0) return cmds;
  // On the hub's side of each link, towards the device: every message crosses one of them.
  const std::string delay = cat(static_cast<long long>(std::llround(l.latency_s * 1e6)), "us");
  for (const auto& d : l.devices)
    cmds.push_back({"ip", "netns", "exec", l.hub, "tc", "qdisc", "add", "dev", d.hub_link, "root", "netem", "delay",
                    delay});
  return cmds;
}

std::vector<Command> firewall_commands(const TestbedLayout& l) {
  std::string allowed;
  for (const auto& d : l.devices) allowed += (allowed.empty() ? "" : ", ") + d.address;
  std::vector<Command> cmds;
  for (const auto& d : l.devices) {
    const Command nft{"ip", "netns", "exec", d.netns, "nft"};
    const auto with = [&](Command tail) {
      Command c = nft;
      c.insert(c.end(), tail.begin(), tail.end());
      return c;
    };
    cmds.push_back(with({"add", "table", "inet", "chorus"}));
    cmds.push_back(with({"add", "chain", "inet", "chorus", "input",
                         "{ type filter hook input priority 0; policy accept; }"}));
    cmds.push_back(with({"add", "rule", "inet", "chorus", "input", "iifname", "eth0", "ip", "saddr",
                         "{ " + allowed + " }", "accept"}));
    cmds.push_back(with({"add", "rule", "inet", "chorus", "input", "iifname", "eth0", "drop"}));
  }
  return cmds;
}

std::vector<Command> network_down_commands(const TestbedLayout& l) {
  std::vector<Command> cmds;
  for (const auto& d : l.devices) cmds.push_back({"ip", "netns", "del", d.netns});
  cmds.push_back({"ip", "netns", "del", l.hub});
  return cmds;
}

std::string hostfile_text(const TestbedLayout& l) {
  std::string text;
  for (const auto& d : l.devices) text += cat(d.address, " slots=", d.slots, "\n");
  return text;
}

std::string shell_quote(const std::string& word) {
  std::string q = "'";
  for (char c : word) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string rsh_agent_script(const TestbedLayout& l) {
  std::string s =
      "#!/bin/sh\n"
      "# Written by chorus testbed: Open MPI's rsh agent. Runs the launcher's command in the\n"
      "# namespace of the device at address $1, under the device's host name.\n"
      "address=\"$1\"\n"
      "shift\n"
      "case \"$address\" in\n";
  for (const auto& d : l.devices)
    s += cat("  ", d.address, ") netns=", shell_quote(d.netns), " name=", shell_quote(d.host), " ;;\n");
  s +=
      "  *) echo \"chorus testbed: no device has address $address\" >&2; exit 1 ;;\n"
      "esac\n"
      "exec ip netns exec \"$netns\" unshare --uts /bin/sh -c \"hostname \\\"\\$0\\\" && $*\" \"$name\"\n";
  return s;
}

}  // namespace chorus::testbed
