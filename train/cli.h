// The command line of a training task (`ringgrad train-classifier`, `ringgrad train --task ...`):
// usage from the options tables, strict parsing, --resume (the checkpoint's saved options as the
// base, the command line's on top), and one rank per device when --device lists several.
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "distributed/launcher.h"
#include "train/devices.h"
#include "train/dist.h"
#include "train/faults.h"
#include "train/options.h"

namespace rg::train {

struct CommandSpec {
  std::string command;   // "train-classifier"
  std::string synopsis;  // the usage's first lines
  std::string notes;     // printed after the options
  std::vector<std::pair<std::string, std::string>> help_override;  // a shared option's help for this task
};

bool wants_help(const Args& args);
// The usage text: synopsis, the options by group, notes.
std::string command_usage(const CommandSpec& spec, const Options& opts);
// The checkpoint --resume names among `assignments` ("" when absent): a bare --resume means
// OUT/last.safetensors, OUT being --out when given, else `default_out`; --resume auto means
// OUT/last.safetensors when that file exists, else "" (a fresh start: elastic restarts).
std::string resume_path(const Options& opts, const std::vector<Options::Assignment>& assignments,
                        const std::string& default_out);
// Whether the command line says --resume auto.
bool resume_is_auto(const Options& opts, const std::vector<Options::Assignment>& assignments);

// Runs a task's command. Config derives from TrainOptions and the task's options struct, and has
// `Options bind()` (both tables bound to it) and `static Config from_checkpoint(path)`.
// `train_fn` trains with the final config; a --device list with --mode ddp starts one rank per
// device instead (run_self_launch), each of which runs this again under the launcher.
template <class Config>
int run_command(const CommandSpec& spec, const Args& args, const std::function<void(const Config&)>& train_fn) {
  Config cfg;
  if (wants_help(args)) {
    std::printf("%s", command_usage(spec, cfg.bind()).c_str());
    return 0;
  }
  const std::vector<Options::Assignment> given = cfg.bind().parse(args, spec.command);
  const std::string resume = resume_path(cfg.bind(), given, cfg.out);
  if (resume.empty() && resume_is_auto(cfg.bind(), given) && launch_env().rank == 0) {
    std::printf("%s: --resume auto: no checkpoint in the output directory, starting fresh\n", spec.command.c_str());
  }
  if (!resume.empty()) {
    cfg = Config::from_checkpoint(resume);
    if (launch_env().rank == 0) {
      std::printf("%s: resuming %s with its saved options%s\n", spec.command.c_str(), resume.c_str(),
                  given.size() > 1 ? " (command-line options override them)" : "");
    }
  }
  Options opts = cfg.bind();
  opts.apply(given);
  cfg.resume = resume;
  opts.check();
  const DevicePlan plan = plan_devices(cfg.device, cfg.mode, cfg.distributed, launch_env(), dist::visible_gpus());
  if (plan.kind == RunKind::SelfLaunch) return run_self_launch(plan, spec.command, args);
  try {
    train_fn(cfg);
  } catch (const RunStopped& e) {  // Note [Stopping a run]: preempted, interrupted, NaN guard
    if (launch_env().rank == 0) std::fprintf(stderr, "%s: %s\n", spec.command.c_str(), e.what());
    return e.exit_code();
  }
  return 0;
}

}  // namespace rg::train
