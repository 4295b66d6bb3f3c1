// Device planning for the trainer (Note [Training devices] in train/devices.h).
#include "train/devices.h"

#include <algorithm>
#include <cstdlib>
#include <set>

#include "core/error.h"

namespace rg::train {

namespace {

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A non-negative integer from an environment variable; `fallback` when unset or empty.
int env_number(const GetEnv& getenv_fn, const char* name, int fallback, bool leading_only = false) {
  const char* v = getenv_fn(name);
  if (!v || !*v) return fallback;
  const std::string s = v;
  size_t n = 0;
  while (n < s.size() && s[n] >= '0' && s[n] <= '9') ++n;
  RG_CHECK(n > 0 && n <= 9 && (leading_only || n == s.size()), name, "=", s, " is not a non-negative integer");
  return std::atoi(s.substr(0, n).c_str());
}

std::string physical_name(const dist::VisibleGpus& gpus, int ordinal) {
  if (ordinal < gpus.count()) return " (physical GPU " + gpus.physical[static_cast<size_t>(ordinal)] + ")";
  return "";
}

void check_visible(const std::string& text, const std::vector<Device>& devs, const dist::VisibleGpus& gpus) {
  for (const Device& d : devs) {
    if (!d.is_cuda()) continue;
    std::string visible;
    for (const auto& p : gpus.physical) visible += (visible.empty() ? "" : ",") + p;
    RG_CHECK(d.index < gpus.count(), "--device ", text, " names ", d.str(), " but ", gpus.count(),
             " GPU(s) are visible", gpus.count() ? " (physical " + visible + ", renumbered from 0)" : std::string(),
             "; CUDA_VISIBLE_DEVICES decides which");
  }
}

bool all_distinct_gpus(const std::vector<Device>& devs) {
  std::set<int> seen;
  for (const Device& d : devs) {
    if (!d.is_cuda() || !seen.insert(d.index).second) return false;
  }
  return true;
}

}  // namespace

DeviceList parse_device_list(const std::string& text) {
  const std::string t = trim(text);
  RG_CHECK(!t.empty(), "--device is empty (cpu, cuda, cuda:N or a list such as 0,1)");
  DeviceList out;
  if (t == "cuda") {
    out.devices = {Device::cuda(0)};
    out.bare_cuda = true;
    return out;
  }
  size_t start = 0;
  while (start <= t.size()) {
    const size_t comma = t.find(',', start);
    const std::string tok = trim(t.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (tok == "cpu") {
      out.devices.push_back(kCPU);
    } else if (all_digits(tok) && tok.size() <= 6) {
      out.devices.push_back(Device::cuda(std::atoi(tok.c_str())));
    } else if (tok.rfind("cuda:", 0) == 0 && all_digits(tok.substr(5)) && tok.size() <= 11) {
      out.devices.push_back(Device::cuda(std::atoi(tok.c_str() + 5)));
    } else {
      RG_THROW("--device ", text, ": '", tok, "' is not cpu, cuda:N or a GPU number");
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  const bool any_cpu = std::any_of(out.devices.begin(), out.devices.end(), [](Device d) { return d.is_cpu(); });
  const bool any_cuda = std::any_of(out.devices.begin(), out.devices.end(), [](Device d) { return d.is_cuda(); });
  RG_CHECK(!(any_cpu && any_cuda), "--device ", text, " mixes CPU and CUDA devices");
  return out;
}

LaunchEnv launch_env(const GetEnv& getenv_fn) {
  struct Source {
    const char *launcher, *rank, *world, *local, *local_world, *local_world_alt;
  };
  static const Source kSources[] = {
      {"torchrun / ringgrad launch", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", nullptr},
      {"Slurm (srun)", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE",
       "SLURM_STEP_TASKS_PER_NODE"},
      {"Open MPI (mpirun)", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
       "OMPI_COMM_WORLD_LOCAL_SIZE", nullptr},
  };
  LaunchEnv e;
  for (const Source& s : kSources) {
    const char* r = getenv_fn(s.rank);
    if (!r || !*r) continue;
    e.launcher = s.launcher;
    e.rank = env_number(getenv_fn, s.rank, 0);
    e.world = env_number(getenv_fn, s.world, 1);
    e.local_rank = env_number(getenv_fn, s.local, 0);
    int lw = env_number(getenv_fn, s.local_world, -1);
    if (lw < 0 && s.local_world_alt) lw = env_number(getenv_fn, s.local_world_alt, -1, /*leading_only=*/true);  // "2(x3)"
    e.local_world = std::min(lw > 0 ? lw : e.world, std::max(e.world, 1));
    break;
  }
  return e;
}

LaunchEnv launch_env() {
  return launch_env([](const char* name) -> const char* { return std::getenv(name); });
}

DevicePlan plan_devices(const std::string& device, const std::string& mode, bool distributed, const LaunchEnv& env,
                        const dist::VisibleGpus& gpus) {
  const DeviceList dl = parse_device_list(device);
  DevicePlan p;
  if (env.launched()) {
    RG_CHECK(mode != "dp", "--mode dp runs DataParallel in one process, but this is rank ", env.rank, " of ",
             env.world, " started by ", env.launcher, ": use --mode ddp (or start one process)");
    p.kind = RunKind::Rank;
    if (dl.devices.size() > 1) {
      RG_CHECK(static_cast<int>(dl.devices.size()) == env.local_world, "--device ", device, " names ",
               dl.devices.size(), " devices for the ", env.local_world,
               " rank(s) on this node: give one per local rank, or a single device they share");
      check_visible(device, dl.devices, gpus);
      p.devices = {dl.devices[static_cast<size_t>(env.local_rank)]};
      p.distinct_gpus = all_distinct_gpus(dl.devices);
    } else if (dl.bare_cuda) {
      const int n = gpus.count();
      p.devices = {Device::cuda(n > 0 ? env.local_rank % n : env.local_rank)};
      p.distinct_gpus = env.local_world <= n;
    } else {
      p.devices = dl.devices;
      p.distinct_gpus = dl.devices[0].is_cuda() && env.local_world == 1;
    }
    return p;
  }
  if (dl.devices.size() == 1) {
    p.kind = distributed ? RunKind::Rank : RunKind::Single;
    p.devices = dl.devices;
    p.distinct_gpus = dl.devices[0].is_cuda();
    return p;
  }
  check_visible(device, dl.devices, gpus);
  p.devices = dl.devices;
  const bool dp = mode == "dp";
  p.kind = dp ? RunKind::DataParallel : RunKind::SelfLaunch;
  p.table = dp ? "DataParallel over " + std::to_string(dl.devices.size()) + " devices in one process:\n"
               : "DDP: starting " + std::to_string(dl.devices.size()) + " ranks, one per device:\n";
  for (size_t i = 0; i < dl.devices.size(); ++i) {
    const Device d = dl.devices[i];
    p.table += std::string(dp ? "  replica " : "  rank ") + std::to_string(i) + " -> " + d.str() +
               (d.is_cuda() ? physical_name(gpus, d.index) : "") + (dp && i == 0 ? ", holds the model" : "") + "\n";
  }
  return p;
}

std::string choose_backend(const std::string& choice, Device device, bool distinct_gpus, bool nccl_built,
                           const std::string& env_backend) {
  if (choice == "ring" || choice == "nccl") {
    RG_CHECK(choice == "ring" || device.is_cuda(), "--backend nccl needs CUDA devices (this rank has ", device.str(),
             ")");
    return choice;
  }
  RG_CHECK(choice == "auto" || choice.empty(), "unknown backend '", choice, "' (auto, ring or nccl)");
  if (!device.is_cuda()) return "ring";
  if (env_backend == "nccl") return "nccl";  // `ringgrad launch --backend nccl`
  return nccl_built && distinct_gpus ? "nccl" : "ring";
}

}  // namespace rg::train
