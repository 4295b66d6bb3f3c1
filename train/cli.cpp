// Command-line helpers of the training tasks (train/cli.h).
#include "train/cli.h"

#include <filesystem>

namespace rg::train {

bool wants_help(const Args& args) {
  for (const auto& a : args) {
    if (a == "-h" || a == "--help") return true;
  }
  return false;
}

std::string command_usage(const CommandSpec& spec, const Options& opts) {
  return spec.synopsis + "\n" + opts.usage({"data", "model", "optimisation", "run", "distributed"}, spec.help_override) +
         (spec.notes.empty() ? "" : "\n" + spec.notes);
}

std::string resume_path(const Options& opts, const std::vector<Options::Assignment>& assignments,
                        const std::string& default_out) {
  std::string resume, out = default_out;
  for (const auto& a : assignments) {
    const std::string name = opts.spec(a).name;
    if (name == "resume") resume = a.value;
    if (name == "out") out = a.value;
  }
  if (resume == opts.spec_at(opts.row_of("resume")).domain.implicit) {
    resume = (std::filesystem::path(out) / "last.safetensors").string();
  }
  return resume;
}

}  // namespace rg::train
