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
  const std::string last = (std::filesystem::path(out) / "last.safetensors").string();
  if (resume == opts.spec_at(opts.row_of("resume")).domain.implicit) return last;
  if (resume == "auto") {
    // Every rank decides alike: nobody writes OUT before the run starts (a restarted job's ranks
    // of the previous round are gone; the launcher stops them before starting the next).
    std::error_code ec;
    return std::filesystem::exists(last, ec) ? last : std::string();
  }
  return resume;
}

bool resume_is_auto(const Options& opts, const std::vector<Options::Assignment>& assignments) {
  bool is_auto = false;
  for (const auto& a : assignments) {
    if (std::string(opts.spec(a).name) == "resume") is_auto = a.value == "auto";
  }
  return is_auto;
}

}  // namespace rg::train
