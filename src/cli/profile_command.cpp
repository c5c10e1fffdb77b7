// `chorus profile MODEL -o profile.json`: measures each layer's time on this device and writes
// a device profile (seconds per layer for this model, and multiply-add rates per layer type
// for other models), which cluster files and the planner use.
#include <algorithm>
#include <iostream>

#include "cli/commands.h"
#include "cli/load_model.h"
#include "cluster/cluster.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/random.h"
#include "core/threads.h"

namespace chorus::cli {

void add_profile_command(CLI::App& app) {
  struct Options {
    std::string model, arch, output, device = "host", merge;
    int frames = 5, threads = 1;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("profile", "Measure each layer's time on this device and write a device profile");
  cmd->add_option("model", o->model, "Keras .h5 or .keras, or ONNX .onnx model")->required();
  cmd->add_option("--arch", o->arch, "Architecture file for a weights-only .h5");
  cmd->add_option("-o,--output", o->output, "Profile file to write")->required();
  cmd->add_option("--device", o->device, "Device name recorded in the profile");
  cmd->add_option("--merge", o->merge,
                  "Add to this existing profile (other models' times are kept, and so are its rates per layer kind: "
                  "this model's rates are added for kinds it lacks)");
  cmd->add_option("--frames", o->frames, "Timed runs (the median is kept)")->check(CLI::Range(1, 1000000));
  cmd->add_option("--threads", o->threads,
                  "compute threads (default 1; 0: one per CPU of the host; more than its CPUs are capped)");
  cmd->callback([o] {
    if (o->device.empty()) fail("profile: --device is empty (give the device's name)");
    o->threads = checked_thread_count(o->threads);
    set_compute_threads(o->threads);
    model::Model m = load_model_with_weights(o->model, o->arch);
    const std::vector<Tensor> inputs = random_inputs(m, 1, 3);
    const std::vector<const Tensor*> input = tensor_pointers(inputs);
    m.forward(input);  // warm-up
    std::vector<std::vector<double>> runs(m.nodes().size());
    for (int f = 0; f < std::max(1, o->frames); ++f) {
      std::vector<double> seconds(m.nodes().size(), 0.0);
      m.forward(input, &seconds);
      for (std::size_t n = 0; n < seconds.size(); ++n) runs[n].push_back(seconds[n]);
    }
    cluster::DeviceProfile p = o->merge.empty() ? cluster::DeviceProfile{} : cluster::read_profile(o->merge);
    // One profile is one device: this machine's times merged into another's would mix them.
    if (!o->merge.empty() && !p.name.empty() && p.name != o->device)
      fail("profile: ", o->merge, " is the profile of '", p.name, "'; this machine is measured as '", o->device,
           "' (give --device ", p.name, " if it is that device)");
    p.name = o->device;
    const std::string measured =
        cat("measured by chorus profile, ", o->threads, " thread(s), median of ", o->frames, " runs");
    p.calibration =
        p.calibration.empty() ? measured : cat(p.calibration, "; ", cluster::model_key(o->model), ": ", measured);
    const std::string key = cluster::model_key(o->model);
    std::map<std::string, std::pair<double, double>> by_type;  // type -> (macs, seconds)
    for (std::size_t n = 0; n < runs.size(); ++n) {
      auto& r = runs[n];
      std::sort(r.begin(), r.end());
      const double median = r[r.size() / 2];
      p.layer_seconds[key][m.node(static_cast<int>(n)).name()] = median;
      auto& t = by_type[m.node(static_cast<int>(n)).layer->type()];
      t.first += m.cost(static_cast<int>(n)).macs;
      t.second += median;
    }
    // Rates are the fallback for models profiled nowhere; a merge keeps those the profile has, so
    // that adding one model's times does not move every other model's estimate.
    const auto kept = p.macs_per_second;
    double all_macs = 0, all_seconds = 0;
    for (const auto& [type, t] : by_type)
      if (t.first > 0 && t.second > 0) {
        if (!kept.count(type)) p.macs_per_second[type] = t.first / t.second;
        all_macs += t.first;
        all_seconds += t.second;
      }
    if (all_seconds > 0 && !kept.count("default")) p.macs_per_second["default"] = all_macs / all_seconds;
    cluster::write_profile(p, o->output);
    std::cout << "wrote " << o->output << ": " << m.nodes().size() << " layers of " << key << ", "
              << all_seconds * 1e3 << " ms per frame in all\n";
  });
}

}  // namespace chorus::cli
