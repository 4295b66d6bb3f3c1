// Distributed glue of the training engine (Note [Distributed training] in train/dist.h): device
// and backend choice, the default process group, small collectives, and the self-launch.
#include "train/dist.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unordered_set>

#include "autograd/grad_mode.h"
#include "core/cuda_api.h"
#include "core/native.h"
#include "distributed/cuda_backends.h"
#include "distributed/ddp.h"
#include "distributed/launcher.h"

namespace rg::train {

namespace {

std::string env_str(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

// Checks that a CUDA device of the plan exists in this process (CUDA is initialised here).
void check_cuda_device(Device d, const std::string& text) {
  if (!d.is_cuda()) return;
  RG_CHECK(cuda::is_available(), "--device ", text, ": ",
           cuda::built_with_cuda() ? "no CUDA device is visible" : "ringgrad was built without CUDA");
  const int n = cuda::device_count();
  RG_CHECK(d.index < n, "--device ", text, ": ", d.str(), " does not exist (", n, " CUDA device(s) visible)");
}

}  // namespace

DistContext init_distributed(const DevicePlan& plan, const std::string& device_text, const std::string& backend) {
  DistContext d;
  d.enabled = plan.kind == RunKind::Rank;
  for (const Device& dev : plan.devices) check_cuda_device(dev, device_text);
  d.device = plan.devices.at(0);
  d.device_text = d.device.str();
  if (d.device.is_cuda()) cuda::set_device(d.device.index);
  if (!d.enabled) return d;

  const LaunchEnv env = launch_env();
  d.local_rank = env.local_rank;
  d.local_world = env.local_world;
  if (device_text == "cuda" && env.launched()) d.device_text = "cuda:LOCAL_RANK (rank 0: " + d.device.str() + ")";
  if (dist::is_initialized()) {
    d.pg = dist::default_group();
    d.backend = d.pg->backend();
  } else {
    bool nccl_built = false;
    if (d.device.is_cuda()) {
      dist::register_cuda_backends();
      nccl_built = dist::has_backend("nccl", DeviceType::CUDA);
    }
    d.backend = choose_backend(backend, d.device, plan.distinct_gpus, nccl_built, env_str("RINGGRAD_BACKEND"));
    dist::InitOptions o;
    o.backend = d.backend;
    o.init_method = "env://";
    o.device = d.device;
    if (!env.launched()) {
      o.rank = 0;  // --distributed without a launcher: a world of one (a private store, no rendezvous)
      o.world_size = 1;
    }
    d.pg = dist::init_process_group(o);
    d.owns_group = true;
  }
  d.rank = d.pg->rank();
  d.world = d.pg->size();
  d.local_world = std::min(d.local_world, d.world);
  return d;
}

void shutdown_distributed(DistContext& d) {
  d.pg.reset();
  if (d.owns_group) dist::destroy_process_group();
  d.owns_group = false;
}

std::vector<double> DistContext::sum(const std::vector<double>& values) const {
  if (!enabled || world == 1 || values.empty()) return values;
  const Tensor t = native::to(from_vector<double>(values), device, DType::f64, /*force_copy=*/true);
  pg->allreduce(t, dist::ReduceOp::Sum)->wait();
  return native::to(t, kCPU, DType::f64).to_vector<double>();
}

std::vector<std::string> DistContext::allgather_bytes(const std::string& bytes) const {
  if (!enabled || world == 1) return {bytes};
  // 1. every rank's length.
  const Tensor len = native::to(from_vector<int64_t>({static_cast<int64_t>(bytes.size())}), device, DType::i64,
                                /*force_copy=*/true);
  const Tensor lens = zeros({world}, TensorOptions(DType::i64).device(device));
  pg->allgather(lens, len)->wait();
  const std::vector<int64_t> n = native::to(lens, kCPU, DType::i64).to_vector<int64_t>();
  int64_t longest = 0;
  for (int64_t x : n) longest = std::max(longest, x);
  // 2. the bytes, padded to the longest and carried as i32 words (collectives take no u8).
  const int64_t words = (longest + 3) / 4;
  if (words == 0) return std::vector<std::string>(static_cast<size_t>(world));
  std::vector<int32_t> mine(static_cast<size_t>(words), 0);
  std::memcpy(mine.data(), bytes.data(), bytes.size());
  const Tensor in = native::to(from_vector<int32_t>(mine), device, DType::i32, /*force_copy=*/true);
  const Tensor out = zeros({world * words}, TensorOptions(DType::i32).device(device));
  pg->allgather(out, in)->wait();
  const std::vector<int32_t> all = native::to(out, kCPU, DType::i32).to_vector<int32_t>();
  std::vector<std::string> res(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) {
    const char* p = reinterpret_cast<const char*>(all.data() + static_cast<size_t>(r) * static_cast<size_t>(words));
    res[static_cast<size_t>(r)].assign(p, static_cast<size_t>(n[static_cast<size_t>(r)]));
  }
  return res;
}

void DistContext::barrier() const {
  if (enabled && world > 1) pg->barrier()->synchronize();
}

void DistContext::broadcast_buffers(const nn::Module& m) const {
  if (!enabled || world == 1) return;
  std::vector<Tensor> bufs;
  std::unordered_set<const TensorImpl*> seen;
  for (const auto& [name, t] : m.named_buffers()) {
    if (t.defined() && seen.insert(t.impl()).second) bufs.push_back(t);
  }
  if (bufs.empty()) return;
  NoGradGuard ng;
  dist::broadcast_coalesced(*pg, bufs, 0);
}

std::string describe(const DistContext& d, int64_t batch, bool global_batch) {
  std::string s = "distributed: " + std::to_string(d.world) + " rank(s) (" + std::to_string(d.local_world) +
                  " on this node), backend " + d.backend + ", device " + d.device_text;
  if (global_batch) {
    s += ", batch " + std::to_string(batch * d.world) + " global = " + std::to_string(batch) + " per rank";
  } else {
    s += ", batch " + std::to_string(batch) + " per rank = " + std::to_string(batch * d.world) + " global";
  }
  return s;
}

int run_self_launch(const DevicePlan& plan, const std::string& command, const std::vector<std::string>& args) {
  dist::LaunchOptions o;
  o.nproc_per_node = static_cast<int>(plan.devices.size());
  // This very image, even if a rebuild has replaced the file meanwhile (the child execs it after fork).
  o.program = "/proc/self/exe";
  o.args = {command};
  o.args.insert(o.args.end(), args.begin(), args.end());
  o.verbose = false;  // our own table: the launcher's would map rank r to cuda:r whatever --device says
  std::fprintf(stderr, "%s", plan.table.c_str());
  std::fflush(stderr);
  const dist::LaunchResult r = dist::launch(o);
  if (r.exit_code != 0) std::fprintf(stderr, "%s: %s\n", command.c_str(), r.message.c_str());
  return r.exit_code;
}

}  // namespace rg::train
