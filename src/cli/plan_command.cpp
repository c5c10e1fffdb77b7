// `chorus plan MODEL --cluster C.json -o plan.json` plans for a cluster and writes the plan with
// its prediction; `--strategy NAME --ranks N` writes a built-in plan for editing (with
// `--cluster`, predicted for that cluster too). Either is validated against the model.
#include <chrono>
#include <iostream>
#include <optional>

#include "cli/commands.h"
#include "cli/load_model.h"
#include "cluster/cluster.h"
#include "core/error.h"
#include "energy/energy.h"
#include "partition/frame_traffic.h"
#include "plan/planner.h"
#include "plan/stage_exchanges.h"
#include "plan/strategies.h"
#include "plan/validate.h"
#include "runtime/pipeline.h"

namespace chorus::cli {

namespace {

// Per split stage, what each member is sent and what its layers exchange (the prediction's
// "input" and "exchanges"): the partition at a glance.
void print_stage_exchanges(const model::Model& m, const plan::ResolvedPlan& plan) {
  constexpr std::size_t kShown = 4;  // a built-in split strategy may exchange after every layer
  for (std::size_t i = 0; i < plan.stages.size(); ++i) {
    const plan::ResolvedStage& s = plan.stages[i];
    if (s.ranks.size() < 2) continue;
    const std::vector<plan::LayerExchange> exchanges = plan::stage_exchanges(m, s);
    std::cout << "  stage " << i << " (" << m.node(s.first).name() << " .. " << m.node(s.last).name() << ", "
              << plan::mode_name(s.mode) << " x" << s.ranks.size()
              << (s.columns > 1 ? cat(", a grid of ", s.ranks.size() / s.columns, "x", s.columns, " tiles")
                                : std::string())
              << "): each member is sent " << plan::stage_input_kind(m, s);
    std::size_t first = 0;
    if (s.mode == plan::StageMode::split_spatial && exchanges.size() > 1) {
      // Band groups: one halo swap after each but the last, then the bands' end.
      std::cout << "; halo " << (s.columns > 1 ? "rows and columns" : "rows") << " swapped between its "
                << exchanges.size() << " fused groups of layers";
      first = exchanges.size() - 1;
    }
    for (std::size_t k = first; k < exchanges.size() && k < first + kShown; ++k)
      std::cout << "; " << m.node(exchanges[k].node).name() << ": " << exchanges[k].how
                << (exchanges[k].parts > 1 ? cat(" in ", exchanges[k].parts, " parts") : std::string());
    if (exchanges.size() > first + kShown) std::cout << "; and " << exchanges.size() - first - kShown << " more";
    std::cout << "\n";
  }
}

}  // namespace

void add_plan_command(CLI::App& app) {
  struct Options {
    std::string model, arch, strategy, from, output, cluster, objective = "throughput";
    int ranks = 0, max_group = 0;
    double min_fps = 0;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("plan", "Write a plan (which ranks run which layers, and how) as JSON");
  cmd->add_option("model", o->model, "Keras .h5 or .keras, or ONNX .onnx model, or a Keras .json/.yaml")->required();
  cmd->add_option("--arch", o->arch, "Architecture file for a weights-only .h5");
  cmd->add_option("--strategy", o->strategy,
                  "pipeline, replicate, split-output, split-input, split-spatial, split-tensor");
  cmd->add_option("--from", o->from, "An existing plan: validate it (and with --cluster, predict it)")
      ->excludes(cmd->get_option("--strategy"));
  cmd->add_option("--cluster", o->cluster, "Cluster file: plan for its devices and network");
  cmd->add_option("--objective", o->objective,
                  "throughput (default), latency, or energy (least joules per frame, with --min-fps), with --cluster");
  cmd->add_option("--min-fps", o->min_fps, "With --objective energy: the least predicted throughput to accept")
      ->check(finite_number(0));
  cmd->add_option("--max-group", o->max_group, "Most devices in one stage, with --cluster (0: any)");
  cmd->add_option("--ranks", o->ranks, "Number of ranks (MPI processes); with --cluster, its device count");
  cmd->add_option("-o,--output", o->output, "Plan file to write (default: print it)");
  cmd->callback([o, cmd] {
    // Options that only the planner reads are refused without a cluster, not ignored.
    if (o->cluster.empty())
      for (const char* name : {"--objective", "--min-fps", "--max-group"})
        if (cmd->get_option(name)->count() > 0) fail("plan: ", name, " goes with --cluster FILE");
    // They choose a plan; --strategy and --from give one.
    if (!o->strategy.empty() || !o->from.empty())
      for (const char* name : {"--objective", "--min-fps", "--max-group"})
        if (cmd->get_option(name)->count() > 0)
          fail("plan: ", name, " is for the planner; ", o->from.empty() ? "--strategy" : "--from", " gives the plan");
    if (cmd->get_option("--ranks")->count() > 0 && o->ranks < 1) fail("plan: --ranks ", o->ranks, ": give at least 1");
    LoadedModel loaded = load_model(o->model, o->arch, /*optimize=*/true, /*load_weights=*/false);
    plan::Plan p;
    std::optional<cluster::Cluster> c;
    if (!o->cluster.empty()) {
      c = cluster::read_cluster(o->cluster);
      const bool given = !o->from.empty() || !o->strategy.empty();  // a plan to predict, not to search
      const int wanted = !o->from.empty() ? plan::read_plan(o->from).ranks : o->ranks;
      if (wanted > c->ranks())
        fail("plan: ", !o->from.empty() ? o->from + " has " : cat("--ranks ", wanted, " asks for "), wanted,
             " rank(s); the cluster has ", c->ranks(), " device slot(s)");
      if (wanted > 0 && wanted < c->ranks()) {
        // As chorus run --emulate does: a job of fewer ranks runs on the first devices.
        if (!given)
          fail("plan: --ranks ", wanted, " differs from the cluster's ", c->ranks(),
               " device slot(s); the planner uses the devices of the cluster file (it may leave some idle)");
        std::cerr << "chorus: note: " << o->cluster << " has " << c->ranks() << " device slots; the plan's " << wanted
                  << " rank(s) are predicted on the first " << wanted << "\n";
        c = cluster::first_devices(*c, wanted);
      }
      o->ranks = c->ranks();
    }
    if (!o->from.empty()) {
      p = plan::read_plan(o->from);
      if (c) {
        p.prediction = plan::prediction_json(loaded.model, *c, cluster::model_key(o->model), p);
        std::cout << o->from << " on " << c->name << ": ";
      }
    } else if (c && o->strategy.empty()) {
      plan::PlannerOptions po;
      po.model_key = cluster::model_key(o->model);
      po.max_group = o->max_group;
      if (o->objective == "latency")
        po.objective = plan::Objective::latency;
      else if (o->objective != "throughput" && o->objective != "energy")
        fail("plan: --objective is throughput, latency or energy, not '", o->objective, "'");
      if (o->min_fps > 0 && o->objective != "energy") fail("plan: --min-fps goes with --objective energy");
      auto start = std::chrono::steady_clock::now();
      p = o->objective == "energy"
              ? energy::plan_for_energy(loaded.model, *c, po, o->min_fps, runtime::message_header_bytes())
              : plan::make_planned_plan(loaded.model, *c, po);
      const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::cout << "planned for " << c->name << " (" << c->ranks() << " devices) in " << took << " s: ";
    } else {
      if (o->ranks < 1) fail("plan: give --ranks N (or --cluster FILE)");
      p = plan::make_strategy_plan(o->strategy.empty() ? "pipeline" : o->strategy, loaded.model, o->ranks);
      const std::string note = plan::strategy_note(o->strategy, loaded.model, o->ranks);
      if (!note.empty()) std::cerr << "chorus: note: " << note << "\n";
      if (c) {
        p.prediction = plan::prediction_json(loaded.model, *c, cluster::model_key(o->model), p);
        std::cout << (o->strategy.empty() ? "pipeline" : o->strategy) << " on " << c->name << ": ";
      }
    }
    if (c)
      for (const auto& st : p.prediction["stages"])
        if (!st.value("fits", true))
          std::cout << "warning: stage " << st["stage"].get<int>() << " needs about " << st["memory_mb"].get<double>()
                    << " MB per device, more than its devices have: chorus run will refuse this plan\n";
    if (c && c->power_known() && !p.prediction.contains("energy_j_per_frame"))
      p.prediction.update(energy::energy_json(energy::predicted_energy(
          loaded.model, cluster::first_devices(*c, p.ranks), cluster::model_key(o->model), p,
          runtime::message_header_bytes())));
    if (c)
      std::cout << "predicted " << p.prediction["throughput_fps"].get<double>() << " frames/s, latency "
                << p.prediction["latency_ms"].get<double>() << " ms, bottleneck "
                << p.prediction["bottleneck"].get<std::string>()
                << (p.prediction.contains("energy_j_per_frame")
                        ? cat(", ", p.prediction["energy_j_per_frame"].get<double>(), " J/frame")
                        : std::string())
                << (p.ranks < c->ranks() ? cat(" on its first ", p.ranks, " device(s)") : std::string()) << "\n";
    // What the figures leave out, said where a user would otherwise measure something else.
    if (c && o->objective == "latency" && p.max_in_flight == 0)
      std::cout << "note: the latency is one frame's alone: run with --max-in-flight 1 to see it (by default more "
                   "frames are in flight for throughput, and they queue)\n";
    if (c && p.prediction.contains("energy_j_per_frame") && p.ranks < c->ranks()) {
      double idle_w = 0;
      for (int r = p.ranks; r < c->ranks(); ++r) idle_w += c->device_of(r).power.idle_w;
      std::cout << "note: the energy counts the plan's " << p.ranks << " device(s); the other " << c->ranks() - p.ranks
                << ", left on and idle, add " << idle_w / p.prediction["throughput_fps"].get<double>() << " J/frame\n";
    }
    if (p.prediction.contains("parity")) {
      const auto& parity = p.prediction["parity"];
      if (parity["stages"].get<int>() > 0)
        std::cout << "parity: the cluster marks devices unreliable; " << parity["stages"].get<int>()
                  << " split-output stage(s) carry a parity on rank " << parity["rank"].get<int>()
                  << " (without: " << parity["without_parity"]["throughput_fps"].get<double>() << " frames/s, latency "
                  << parity["without_parity"]["latency_ms"].get<double>() << " ms)\n";
      else
        std::cout << "parity: the cluster marks devices unreliable, but no stage carries a parity\n";
      for (const auto& why : parity["not_coded"]) std::cout << "  not coded: " << why.get<std::string>() << "\n";
    }
    p.model = o->model;
    const plan::ResolvedPlan resolved = plan::validate_plan(p, loaded.model, 0);
    if (c) print_stage_exchanges(loaded.model, resolved);
    if (c) {
      // Bytes per frame between ranks as the runtime will send them (averaged over 1,000 frames
      // where replicas take turns); a run's report gives them measured per peer.
      p.prediction["bytes_per_frame"] =
          partition::frame_traffic(loaded.model, resolved, 1000, runtime::message_header_bytes()).to_json();
    }
    if (o->output.empty()) {
      std::cout << plan::plan_to_json(p).dump(2) << "\n";
      return;
    }
    plan::write_plan(p, o->output);
    std::cout << "wrote " << o->output << " (" << p.stages.size() << " stage(s), " << p.ranks << " rank(s))\n";
  });
}

}  // namespace chorus::cli
