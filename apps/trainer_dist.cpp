// Distributed glue of the classifier trainer (Note [Distributed classifier training] in
// apps/trainer_dist.h): device and backend choice, the default process group, small collectives.
#include "apps/trainer_dist.h"

#include <cstdlib>
#include <unordered_set>

#include "apps/trainer_classify.h"
#include "autograd/grad_mode.h"
#include "core/cuda_api.h"
#include "core/native.h"
#include "distributed/cuda_backends.h"
#include "distributed/ddp.h"

namespace rg::app {

namespace {

// A non-negative integer environment variable, or `fallback` when unset or empty.
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  RG_CHECK(end && *end == '\0' && x >= 0, name, "=", v, " is not a non-negative integer");
  return static_cast<int>(x);
}

std::string env_str(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

// The device of this process: --device as given, except a bare "cuda" in distributed mode, which
// means cuda:LOCAL_RANK (wrapped around the visible GPUs when they are fewer than the ranks).
Device resolve_device(const ClassifyConfig& c, bool distributed, int local_rank) {
  const Device d = Device::parse(c.device);
  if (!d.is_cuda()) return d;
  RG_CHECK(cuda::is_available(), "--device ", c.device, ": ",
           cuda::built_with_cuda() ? "no CUDA device is visible" : "ringgrad was built without CUDA");
  const int n = cuda::device_count();
  if (distributed && c.device == "cuda") return Device::cuda(local_rank % n);
  RG_CHECK(d.index < n, "--device ", c.device, ": only ", n, " CUDA device(s) visible");
  return d;
}

// nccl needs a GPU per rank: --device cuda with no more ranks on this node than GPUs, or an
// explicit cuda:N with a single rank on this node.
std::string resolve_backend(const ClassifyConfig& c, Device dev, bool per_local_rank, int local_world) {
  if (!c.backend.empty()) {
    RG_CHECK(c.backend == "ring" || c.backend == "nccl", "unknown --backend '", c.backend, "' (ring or nccl)");
    return c.backend;
  }
  if (!dev.is_cuda()) return "ring";
  if (env_str("RINGGRAD_BACKEND") == "nccl") return "nccl";  // `ringgrad launch --backend nccl`
  dist::register_cuda_backends();
  const bool nccl_built = dist::has_backend("nccl", DeviceType::CUDA);
  const bool own_gpu = per_local_rank ? local_world <= cuda::device_count() : local_world == 1;
  return nccl_built && own_gpu ? "nccl" : "ring";
}

}  // namespace

bool distributed_requested(const ClassifyConfig& c) { return c.distributed || env_int("WORLD_SIZE", 1) > 1; }

int env_rank() { return env_int("RANK", 0); }

DistContext init_distributed(const ClassifyConfig& c) {
  DistContext d;
  d.enabled = distributed_requested(c);
  if (d.enabled) {
    d.local_rank = dist::get_local_rank();  // LOCAL_RANK, or Slurm's / Open MPI's equivalent
    d.local_world = env_int("LOCAL_WORLD_SIZE", env_int("WORLD_SIZE", 1));
  }
  d.device = resolve_device(c, d.enabled, d.local_rank);
  d.device_per_local_rank = d.enabled && d.device.is_cuda() && c.device == "cuda";
  if (d.device.is_cuda()) cuda::set_device(d.device.index);
  if (!d.enabled) return d;

  if (dist::is_initialized()) {
    d.pg = dist::default_group();
    d.backend = d.pg->backend();
  } else {
    d.backend = resolve_backend(c, d.device, d.device_per_local_rank, d.local_world);
    dist::InitOptions o;
    o.backend = d.backend;
    o.init_method = "env://";
    o.device = d.device;
    if (env_str("RANK").empty() && env_str("SLURM_PROCID").empty() && env_str("OMPI_COMM_WORLD_RANK").empty()) {
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

std::string describe(const DistContext& d, int64_t batch_per_rank) {
  std::string s = "distributed: " + std::to_string(d.world) + " rank(s) (" + std::to_string(d.local_world) +
                  " on this node), backend " + d.backend + ", device ";
  s += d.device_per_local_rank ? "cuda:LOCAL_RANK (rank 0: " + d.device.str() + ")" : d.device.str();
  s += ", batch " + std::to_string(batch_per_rank) + " per rank = " + std::to_string(batch_per_rank * d.world) +
       " global";
  return s;
}

}  // namespace rg::app
