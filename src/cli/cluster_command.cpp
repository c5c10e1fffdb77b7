// `chorus cluster HOSTFILE --class pi3 -o cluster.json`: a cluster file from an Open MPI
// hostfile plus device classes (profiles/device-classes.json), so the hostfile the user
// launches with and the cluster the planner plans for list the same devices in the same order.
#include <filesystem>
#include <fstream>
#include <iostream>

#include "cli/commands.h"
#include "cluster/cluster.h"
#include "cluster/hostfile.h"
#include "core/error.h"
#include "core/text_file.h"

namespace chorus::cli {

namespace {

// The class library beside the binary's source tree (build/chorus -> profiles/), else in the
// working directory.
std::string default_library() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (auto dir : {exe.parent_path().parent_path(), exe.parent_path()}) {
      auto candidate = dir / "profiles" / "device-classes.json";
      if (std::filesystem::exists(candidate)) return candidate.string();
    }
  }
  return "profiles/device-classes.json";
}

// Replaces each class's profile path with the profile itself: the file then travels alone to
// hosts and containers where the path would not exist. Relative paths are read from the cluster
// file's folder, as cluster::read_cluster reads them.
void embed_profiles(nlohmann::json& cluster_json, const std::string& output) {
  const auto folder = std::filesystem::path(output).parent_path();
  for (auto& [name, device_class] : cluster_json.at("device_classes").items()) {
    if (!device_class.contains("profile") || !device_class["profile"].is_string()) continue;
    const std::filesystem::path p = device_class["profile"].get<std::string>();
    const auto path = (p.is_absolute() ? p : folder / p).string();
    device_class["profile"] = cluster::profile_to_json(cluster::read_profile(path));
  }
}

}  // namespace

void add_cluster_command(CLI::App& app) {
  struct Options {
    std::string hostfile, default_class, library, network = "wifi", output, name;
    std::vector<std::string> host_classes;
    double bandwidth_mbps = 0, latency_ms = -1;
    bool switched = false, embed_profiles = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("cluster", "Write a cluster file from an Open MPI hostfile and device classes");
  cmd->add_option("hostfile", o->hostfile, "Open MPI hostfile (one host per line, slots=N)")->required();
  cmd->add_option("--class", o->default_class, "Device class of every host not named by --host-class (e.g. pi3)");
  cmd->add_option("--host-class", o->host_classes, "HOST=CLASS for one host (repeat for several)");
  cmd->add_option("--classes", o->library, "Device class library (default: profiles/device-classes.json)");
  cmd->add_option("--network", o->network, "Network from the library: wifi (default), ethernet, gigabit, loopback");
  cmd->add_option("--bandwidth-mbps", o->bandwidth_mbps, "Network bandwidth instead of --network")
      ->check(finite_number());
  cmd->add_option("--latency-ms", o->latency_ms, "Per-message latency, with --bandwidth-mbps (default 1)")
      ->check(finite_number(0));
  cmd->add_flag("--switched", o->switched, "With --bandwidth-mbps: transfers overlap (default: one shared medium)");
  cmd->add_option("--name", o->name, "Cluster name (default: the hostfile's name)");
  cmd->add_option("-o,--output", o->output, "Cluster file to write (default: print it)");
  cmd->add_flag("--embed-profiles", o->embed_profiles,
                "Copy each device profile into the cluster file, so that it can be shipped alone (deploy, Kubernetes)");
  cmd->callback([o, cmd] {
    const bool bandwidth_given = cmd->get_option("--bandwidth-mbps")->count() > 0;
    if (cmd->get_option("--latency-ms")->count() > 0 && !bandwidth_given)
      fail("cluster: --latency-ms and --switched go with --bandwidth-mbps");
    if (bandwidth_given && !(o->bandwidth_mbps > 0))
      fail("cluster: --bandwidth-mbps ", o->bandwidth_mbps, " must be above 0");
    if (bandwidth_given && cmd->get_option("--network")->count() > 0)
      fail("cluster: give --network or --bandwidth-mbps, not both");
    cluster::ClusterRecipe r;
    if (cmd->get_option("--name")->count() > 0 && o->name.empty()) fail("cluster: --name is empty");
    r.name = o->name.empty() ? std::filesystem::path(o->hostfile).filename().string() : o->name;
    r.default_class = o->default_class;
    for (const auto& pair : o->host_classes) {
      const auto eq = pair.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == pair.size())
        fail("cluster: --host-class expects HOST=CLASS, found '", pair, "'");
      const auto [it, added] = r.host_class.emplace(pair.substr(0, eq), pair.substr(eq + 1));
      if (!added && it->second != pair.substr(eq + 1))
        fail("cluster: --host-class gives ", it->first, " two classes (", it->second, " and ", pair.substr(eq + 1),
             ")");
    }
    r.library_path = o->library.empty() ? default_library() : o->library;
    std::ifstream in(r.library_path);
    if (!in) fail(r.library_path, ": cannot open the device class library (give --classes FILE)");
    try {
      r.library = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      fail(r.library_path, ": device class library is not valid JSON: ", e.what());
    }
    r.network = o->network;
    if (o->bandwidth_mbps > 0)
      r.network_override = {{"bandwidth_mbps", o->bandwidth_mbps},
                            {"latency_ms", o->latency_ms >= 0 ? o->latency_ms : 1.0},
                            {"shared", !o->switched}};
    else if (o->latency_ms >= 0 || o->switched)
      fail("cluster: --latency-ms and --switched go with --bandwidth-mbps");
    r.output_path = o->output;
    nlohmann::json j = cluster::derive_cluster(cluster::read_hostfile(o->hostfile), r);
    if (o->embed_profiles) embed_profiles(j, o->output);
    // Read as the planner will read it (profile paths from the file's folder), before it is
    // written: a cluster that would not load is not written, nor printed.
    const std::filesystem::path out_path(o->output);
    const cluster::Cluster c =
        cluster::cluster_from_json(j, o->output.empty() ? "the cluster" : o->output,
                                   out_path.has_parent_path() ? out_path.parent_path().string() : std::string("."));
    if (o->output.empty()) {
      std::cout << j.dump(2) << "\n" << std::flush;
      if (!std::cout) fail("standard output: write failed");
      return;
    }
    write_text_file(o->output, j.dump(2) + "\n", "cluster file");
    std::cout << "wrote " << o->output << ": " << c.ranks() << " device slot(s) on " << c.hosts.size() << " host(s), "
              << j["network"]["bandwidth_mbps"].get<double>() << " Mbit/s "
              << (c.network.shared ? "shared" : "switched") << " network\n";
  });
}

}  // namespace chorus::cli
