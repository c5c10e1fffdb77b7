// `chorus plan MODEL --strategy NAME --ranks N -o plan.json`: writes a built-in plan for
// editing, after validating it against the model.
#include <iostream>

#include "cli/commands.h"
#include "cli/load_model.h"
#include "core/error.h"
#include "plan/strategies.h"
#include "plan/validate.h"

namespace chorus::cli {

void add_plan_command(CLI::App& app) {
  struct Options {
    std::string model, arch, strategy = "pipeline", output;
    int ranks = 0;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("plan", "Write a plan (which ranks run which layers, and how) as JSON");
  cmd->add_option("model", o->model, "Keras .h5 model or architecture .json/.yaml")->required();
  cmd->add_option("--arch", o->arch, "Architecture file for a weights-only .h5");
  cmd->add_option("--strategy", o->strategy, "pipeline, replicate, split-output, split-input, split-spatial");
  cmd->add_option("--ranks", o->ranks, "Number of ranks (MPI processes)")->required();
  cmd->add_option("-o,--output", o->output, "Plan file to write (default: print it)");
  cmd->callback([o] {
    LoadedModel loaded = load_model(o->model, o->arch, /*optimize=*/true, /*load_weights=*/false);
    plan::Plan p = plan::make_strategy_plan(o->strategy, loaded.model, o->ranks);
    p.model = o->model;
    plan::validate_plan(p, loaded.model, 0);
    if (o->output.empty()) {
      std::cout << plan::plan_to_json(p).dump(2) << "\n";
      return;
    }
    plan::write_plan(p, o->output);
    std::cout << "wrote " << o->output << " (" << o->strategy << ", " << p.stages.size() << " stage(s), " << o->ranks
              << " rank(s))\n";
  });
}

}  // namespace chorus::cli
