// The default process group, as torch.distributed: rendezvous from env:// (torchrun, Slurm or
// Open MPI variables) or tcp://host:port, make_process_group's backend choice, and teardown.
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "distributed/cuda_backends.h"
#include "core/cuda_api.h"
#include "distributed/process_group.h"
#include "distributed/ring_cpu.h"
#include "distributed/store.h"

namespace rg::dist {

namespace detail {
BackendFactory find_backend(const std::string& name, DeviceType device_type);  // process_group.cpp
}

namespace {

struct Defaults {
  std::mutex mu;
  std::shared_ptr<ProcessGroup> pg;
  std::shared_ptr<Store> store;
  int local_rank = 0;
  bool launcher_store = false;  // the launcher serves the store (else rank 0 does, and lingers at the end)
};
Defaults& defaults() {
  static Defaults* d = new Defaults();  // never destroyed: usable from other statics' destructors
  return *d;
}

std::atomic<int> g_groups_made{0};

// Where a launcher puts rank, world size and local rank, in the order we look.
struct EnvSource {
  const char* launcher;
  const char* rank;
  const char* world;
  const char* local;
};
constexpr EnvSource kSources[] = {
    {"torchrun / ringgrad launch", "RANK", "WORLD_SIZE", "LOCAL_RANK"},
    {"Slurm (srun)", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
    {"Open MPI (mpirun)", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
};

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

int env_int(const char* name, const char* value) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(value, &end, 10);
  RG_CHECK(errno == 0 && end && *end == '\0' && end != value && v >= 0 && v <= (1L << 30), name, "=", value,
           " is not a non-negative integer");
  return static_cast<int>(v);
}

const EnvSource* find_source() {
  for (const auto& s : kSources) {
    if (env(s.rank)) return &s;
  }
  return nullptr;
}

struct Rendezvous {
  int rank = -1, world = -1, local_rank = 0;
  std::string host;
  int port = 0;
  std::string key_prefix;  // the agent store's key space of this round ("" when rank 0 serves it)
};

// Note [Elastic rounds] (launcher.h): under `ringgrad launch` the launcher serves the store and
// each restart's ranks keep their keys under "ranks/<TORCHELASTIC_RESTART_COUNT>/".
bool agent_store() {
  const char* v = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
  return v && (std::strcmp(v, "True") == 0 || std::strcmp(v, "true") == 0 || std::strcmp(v, "1") == 0);
}

Rendezvous from_env(const InitOptions& o) {
  Rendezvous r;
  const EnvSource* src = find_source();
  if (o.rank >= 0) {
    r.rank = o.rank;
  } else {
    RG_CHECK(src != nullptr,
             "RANK is not set: launch with `ringgrad launch` or set RANK/WORLD_SIZE (also understood: Slurm's "
             "SLURM_PROCID/SLURM_NTASKS and Open MPI's OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE)");
    r.rank = env_int(src->rank, env(src->rank));
  }
  if (o.world_size >= 0) {
    r.world = o.world_size;
  } else {
    const char* wname = src ? src->world : "WORLD_SIZE";
    RG_CHECK(env(wname) != nullptr, wname, " is not set", src ? std::string(" (") + src->rank + " is, from " + src->launcher + ")" : "",
             ": launch with `ringgrad launch` or set RANK/WORLD_SIZE");
    r.world = env_int(wname, env(wname));
  }
  if (src && env(src->local)) r.local_rank = env_int(src->local, env(src->local));
  const char* addr = env("MASTER_ADDR");
  const char* port = env("MASTER_PORT");
  if (r.world == 1 && !addr && !port) {  // a single process needs no rendezvous: a private store
    r.host = "127.0.0.1";
    r.port = 0;
    return r;
  }
  RG_CHECK(addr != nullptr,
           "MASTER_ADDR is not set: launch with `ringgrad launch`, or export MASTER_ADDR (the host of rank 0) and "
           "MASTER_PORT (a free port there)");
  RG_CHECK(port != nullptr, "MASTER_PORT is not set: launch with `ringgrad launch`, or export MASTER_PORT (a free "
                            "port on MASTER_ADDR=", addr, ")");
  r.host = addr;
  r.port = env_int("MASTER_PORT", port);
  RG_CHECK(r.port > 0 && r.port < 65536, "MASTER_PORT=", port, " is not a valid port");
  if (agent_store()) {
    const char* round = env("TORCHELASTIC_RESTART_COUNT");
    r.key_prefix = "ranks/" + std::to_string(round ? env_int("TORCHELASTIC_RESTART_COUNT", round) : 0) + "/";
  }
  return r;
}

Rendezvous from_tcp(const InitOptions& o) {
  const std::string rest = o.init_method.substr(6);  // after "tcp://"
  const size_t colon = rest.rfind(':');
  RG_CHECK(colon != std::string::npos && colon > 0 && colon + 1 < rest.size(), "init_method ", o.init_method,
           " must look like tcp://host:port");
  RG_CHECK(o.rank >= 0 && o.world_size >= 1, "init_method ", o.init_method,
           " needs InitOptions::rank and InitOptions::world_size (got rank ", o.rank, ", world_size ", o.world_size,
           ")");
  Rendezvous r;
  r.rank = o.rank;
  r.world = o.world_size;
  r.host = rest.substr(0, colon);
  r.port = env_int("the port of init_method", rest.substr(colon + 1).c_str());
  const EnvSource* src = find_source();
  if (src && env(src->local)) r.local_rank = env_int(src->local, env(src->local));
  return r;
}

std::string resolve_backend(const InitOptions& o) {
  if (o.backend != "auto") return o.backend;
  if (const char* b = env("RINGGRAD_BACKEND")) return b;
  register_cuda_backends();
  // NCCL needs a GPU of its own per rank; several ranks sharing one GPU use our CUDA ring.
  const char* local_world = env("LOCAL_WORLD_SIZE");
  const bool gpu_per_rank = !local_world || std::atoi(local_world) <= cuda::device_count();
  if (o.device.is_cuda() && gpu_per_rank && has_backend("nccl", DeviceType::CUDA)) return "nccl";
  return "ring";
}

[[noreturn]] void backend_unavailable(const std::string& backend, Device device) {
  const std::string what = "process group backend '" + backend + "' on " + device.str();
  if (backend == "nccl" && device.is_cpu()) {
    RG_THROW(what, " is not available: NCCL works on CUDA tensors only; use 'ring' for CPU tensors");
  }
  if (backend == "nccl") {
#if !defined(RINGGRAD_WITH_CUDA)
    RG_THROW(what, " is not available: ringgrad was built without CUDA");
#elif !defined(RINGGRAD_WITH_NCCL)
    RG_THROW(what, " is not available: ringgrad was built without NCCL (install NCCL and reconfigure with "
                   "-DRINGGRAD_NCCL=ON)");
#else
    RG_THROW(what, " is not available: built with NCCL, but its factory was never registered (see Note "
                   "[Backend registry] in distributed/process_group.h)");
#endif
  }
  if (backend == "ring") {
#if !defined(RINGGRAD_WITH_CUDA)
    RG_THROW(what, " is not available: ringgrad was built without CUDA");
#else
    RG_THROW(what, " is not available: the CUDA ring's factory was never registered (see Note [Backend registry] "
                   "in distributed/process_group.h)");
#endif
  }
  RG_THROW("unknown process group backend '", backend, "' (known: ring, nccl)");
}

}  // namespace

std::shared_ptr<ProcessGroup> make_process_group(const std::string& backend, std::shared_ptr<Store> store, int rank,
                                                 int size, Device device) {
  RG_CHECK(store != nullptr, "make_process_group: a store is required");
  const int k = g_groups_made.fetch_add(1);
  auto scoped = std::make_shared<PrefixStore>("pg" + std::to_string(k) + "/", std::move(store));
  if (backend == "ring" && device.is_cpu()) return std::make_shared<RingCpuProcessGroup>(scoped, rank, size);
  register_cuda_backends();  // distributed/cuda_backends.h: links the CUDA backends' registrations in
  if (BackendFactory f = detail::find_backend(backend, device.type)) return f(scoped, rank, size, device);
  backend_unavailable(backend, device);
}

std::shared_ptr<ProcessGroup> init_process_group(const InitOptions& opts) {
  Defaults& d = defaults();
  std::lock_guard<std::mutex> g(d.mu);
  RG_CHECK(d.pg == nullptr, "init_process_group: the default group already exists (call destroy_process_group "
                            "first)");
  Rendezvous r;
  if (opts.init_method == "env://" || opts.init_method.empty()) {
    r = from_env(opts);
  } else if (opts.init_method.rfind("tcp://", 0) == 0) {
    r = from_tcp(opts);
  } else {
    RG_THROW("init_method '", opts.init_method, "' is not supported (env:// or tcp://host:port)");
  }
  RG_CHECK(r.world >= 1, "world size must be >= 1, got ", r.world);
  RG_CHECK(r.rank < r.world, "rank ", r.rank, " is out of range for world size ", r.world);
  const Millis store_timeout = opts.timeout.count() > 0 ? opts.timeout : kDefaultTimeout;
  const bool serve = r.rank == 0 && r.key_prefix.empty();
  std::shared_ptr<Store> store = std::make_shared<TCPStore>(r.host, r.port, serve, store_timeout);
  if (!r.key_prefix.empty()) store = std::make_shared<PrefixStore>(r.key_prefix, store);
  auto pg = make_process_group(resolve_backend(opts), store, r.rank, r.world, opts.device);
  // An explicit timeout wins; otherwise the group keeps RINGGRAD_COLLECTIVE_TIMEOUT_S or 5 minutes.
  if (opts.timeout.count() > 0) pg->set_timeout(opts.timeout);
  d.launcher_store = !r.key_prefix.empty();
  d.pg = pg;
  d.store = store;
  d.local_rank = r.local_rank;
  return pg;
}

bool is_initialized() {
  Defaults& d = defaults();
  std::lock_guard<std::mutex> g(d.mu);
  return d.pg != nullptr;
}

std::shared_ptr<ProcessGroup> default_group() {
  Defaults& d = defaults();
  std::lock_guard<std::mutex> g(d.mu);
  RG_CHECK(d.pg != nullptr, "the default process group is not initialised: call rg::dist::init_process_group first");
  return d.pg;
}

int get_rank() {
  Defaults& d = defaults();
  std::lock_guard<std::mutex> g(d.mu);
  return d.pg ? d.pg->rank() : 0;
}

int get_world_size() {
  Defaults& d = defaults();
  std::lock_guard<std::mutex> g(d.mu);
  return d.pg ? d.pg->size() : 1;
}

int get_local_rank() {
  Defaults& d = defaults();
  {
    std::lock_guard<std::mutex> g(d.mu);
    if (d.pg) return d.local_rank;
  }
  const EnvSource* src = find_source();
  if (src && env(src->local)) return env_int(src->local, env(src->local));
  return 0;
}

// When rank 0 serves the store (no launcher does), it waits (briefly) until every rank has said
// goodbye, so nobody's last store request meets a closed server.
void destroy_process_group() {
  Defaults& d = defaults();
  std::shared_ptr<ProcessGroup> pg;
  std::shared_ptr<Store> store;
  bool launcher_store = false;
  {
    std::lock_guard<std::mutex> g(d.mu);
    pg = std::move(d.pg);
    store = std::move(d.store);
    launcher_store = d.launcher_store;
    d.pg.reset();
    d.store.reset();
  }
  if (!pg) return;
  const int rank = pg->rank(), world = pg->size();
  const Millis linger = std::min(pg->timeout(), Millis(30000));
  pg.reset();  // joins the worker (aborting a collective nobody waited for)
  if (store && world > 1 && !launcher_store) {
    try {
      store->set("finalize/" + std::to_string(rank), "1");
      if (rank == 0) {
        std::vector<std::string> keys;
        for (int q = 0; q < world; ++q) keys.push_back("finalize/" + std::to_string(q));
        store->wait(keys, linger);
      }
    } catch (const std::exception&) {
      // a rank that died cannot say goodbye; the store goes anyway
    }
  }
}

}  // namespace rg::dist
