// ProcessGroup: collectives among the ranks of a job (allreduce, broadcast, allgather,
// reduce_scatter, barrier), each returning a Work to wait on. Backends: "ring" (ours: TCP or
// shared memory between CPU processes, CUDA IPC between GPU processes) and "nccl".
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "core/tensor.h"
#include "distributed/store.h"

namespace rg::dist {

class CollectiveMonitor;  // distributed/watchdog.h

enum class ReduceOp : uint8_t { Sum, Avg, Max };
const char* reduce_op_name(ReduceOp op);

// Note [Work semantics]
// A collective is queued when the call returns. wait() returns when its result may be used by
// the caller: on CPU the result is in place; on CUDA the caller's current stream has been made to
// wait for the communication stream (no host block), as NCCL's Work::wait does. synchronize()
// also blocks the host. Both rethrow the collective's error (timeouts name the missing ranks).
class Work {
 public:
  virtual ~Work() = default;
  virtual bool is_completed() = 0;
  virtual void wait() = 0;
  virtual void synchronize() { wait(); }
  // Milliseconds between queueing and completion when known (for the DDP benchmark's overlap figures).
  virtual double duration_ms() const { return -1.0; }
};

// A Work completed from another thread (a backend's worker): finish() once, with or without an
// error; wait() blocks the host until then and rethrows. Backends may use or subclass it.
class CompletionWork : public Work {
 public:
  CompletionWork() : queued_(std::chrono::steady_clock::now()) {}
  bool is_completed() override;
  void wait() override;
  double duration_ms() const override;
  void finish(std::exception_ptr error = nullptr);

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::exception_ptr error_;
  std::chrono::steady_clock::time_point queued_, finished_;
};

// What a collective is, for sequence checks, debug mode and error messages.
struct CollectiveInfo {
  uint64_t seq = 0;
  const char* op = "";
  Shape shape;
  DType dtype = DType::f32;
  Device device;
  std::string describe() const;  // "allreduce #17 float32[1024] cuda:0"
};

// Note [Collective sequence numbers]
// Every collective on a group gets the next sequence number, identical on all ranks when they
// call the same collectives in the same order. The timeout (set_timeout; by default
// RINGGRAD_COLLECTIVE_TIMEOUT_S seconds when set, else 5 minutes) bounds how long a collective
// may make no progress. With the hang watchdog on (the default, Note [Hang watchdog] in
// distributed/watchdog.h) a collective that stalls that long gets a hang report naming it, the
// ranks that did and did not reach it and each rank's last completed collective, and the process
// ends with kExitCollectiveHang. With RINGGRAD_WATCHDOG=0 (or set_watchdog(false)) it raises an
// error instead, naming this rank, the collective with its number and shape, and the ranks that
// never reached it (found through the store: each rank that times out publishes how far it got).
// With RINGGRAD_DIST_DEBUG=1 every collective first checks through the store that all ranks
// called the same op with the same shape and dtype, and names the first rank that differs.
class ProcessGroup {
 public:
  ProcessGroup(std::shared_ptr<Store> store, int rank, int size);
  virtual ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  virtual std::string backend() const = 0;

  // Tensors are contiguous, on the group's device kind, of f32, f16, bf16, f64, i32 or i64.
  std::shared_ptr<Work> allreduce(const Tensor& t, ReduceOp op = ReduceOp::Sum);        // in place
  std::shared_ptr<Work> broadcast(const Tensor& t, int root = 0);                        // in place
  // out has size() * in.numel() elements: rank r's `in` lands in out's r-th slice (all_gather_into_tensor).
  std::shared_ptr<Work> allgather(const Tensor& out, const Tensor& in);
  // in has size() * out.numel() elements; out gets the reduction of everyone's r-th slice.
  std::shared_ptr<Work> reduce_scatter(const Tensor& out, const Tensor& in, ReduceOp op = ReduceOp::Sum);
  std::shared_ptr<Work> barrier();

  void set_timeout(Millis t);
  Millis timeout() const { return timeout_; }
  // The hang watchdog watches this group's collectives (default: on unless RINGGRAD_WATCHDOG=0).
  void set_watchdog(bool on);
  bool watchdog() const { return watchdog_; }
  // Backends call this whenever a collective moves data, so that the watchdog tells a slow but
  // progressing collective from a stalled one (a relaxed atomic increment).
  void note_progress() { progress_->fetch_add(1, std::memory_order_relaxed); }
  uint64_t sequence_number() const { return seq_.load(); }
  const std::shared_ptr<Store>& store() const { return store_; }
  // The device kind the group's tensors must be on, checked by the public wrappers; nullopt
  // (the default) leaves the check to the backend. ring (CPU) says CPU.
  virtual std::optional<DeviceType> device_type() const { return std::nullopt; }

 protected:
  // Backends implement these; the public wrappers number, check and describe the calls.
  virtual std::shared_ptr<Work> do_allreduce(const Tensor& t, ReduceOp op, const CollectiveInfo& info) = 0;
  virtual std::shared_ptr<Work> do_broadcast(const Tensor& t, int root, const CollectiveInfo& info) = 0;
  virtual std::shared_ptr<Work> do_allgather(const Tensor& out, const Tensor& in, const CollectiveInfo& info) = 0;
  virtual std::shared_ptr<Work> do_reduce_scatter(const Tensor& out, const Tensor& in, ReduceOp op,
                                                  const CollectiveInfo& info) = 0;
  virtual std::shared_ptr<Work> do_barrier(const CollectiveInfo& info) = 0;

  // Called by a backend whose wait ran out of time: publishes this rank's progress, waits a short
  // grace period for the others to publish theirs, and throws the error described above.
  [[noreturn]] void raise_timeout(const CollectiveInfo& info, const std::string& detail);
  // How long raise_timeout waits for the other ranks' progress reports: timeout / 4, clamped to
  // [200 ms, 10 s] (ranks that reached the collective time out within a few ms of each other).
  Millis timeout_grace() const;

  std::shared_ptr<Store> store_;
  int rank_, size_;
  Millis timeout_ = kDefaultTimeout;

 private:
  CollectiveInfo begin(const char* op, const Tensor& t);
  // Hands the backend's Work to the watchdog's bookkeeping and returns it.
  std::shared_ptr<Work> track(CollectiveInfo&& info, std::shared_ptr<Work> work);
  // RINGGRAD_DIST_DEBUG=1: every rank publishes `signature` for this sequence number and compares.
  void debug_check(const CollectiveInfo& info, const std::string& signature);
  void check_tensor(const Tensor& t, const char* op, const char* what) const;
  std::atomic<uint64_t> seq_{0};
  bool debug_ = false;
  bool watchdog_ = true;
  std::shared_ptr<CollectiveMonitor> monitor_;
  std::atomic<uint64_t>* progress_ = nullptr;  // the monitor's progress counter
};

// ---- the default group, as torch.distributed (distributed/init.cpp)
struct InitOptions {
  std::string backend = "ring";        // "ring", "nccl", or "auto" (nccl when CUDA and one GPU per rank)
  std::string init_method = "env://";  // or "tcp://host:port"
  int rank = -1;                       // required with tcp://
  int world_size = -1;                 // required with tcp://
  // Rendezvous and collective timeout. 0: the store waits kDefaultTimeout (5 minutes) and the
  // collectives RINGGRAD_COLLECTIVE_TIMEOUT_S seconds when set (`ringgrad launch
  // --collective-timeout`), else kDefaultTimeout.
  Millis timeout{0};
  Device device = kCPU;                // the device collectives of the default group run on
};
// RINGGRAD_COLLECTIVE_TIMEOUT_S (seconds, fractions allowed) when set, else kDefaultTimeout; a
// value that is not a positive number raises an error naming it.
Millis collective_timeout_from_env();
// env:// reads MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK (torchrun), else Slurm's
// SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID, else Open MPI's OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK}.
// Under `ringgrad launch` (or torchrun) TORCHELASTIC_USE_AGENT_STORE=True: the launcher serves
// the store and each restart's ranks get their own key space (Note [Elastic rounds], launcher.h).
std::shared_ptr<ProcessGroup> init_process_group(const InitOptions& opts);
bool is_initialized();
std::shared_ptr<ProcessGroup> default_group();  // throws when not initialised
int get_rank();        // 0 when not initialised
int get_world_size();  // 1 when not initialised
int get_local_rank();  // LOCAL_RANK (or the Slurm/MPI equivalent), 0 when unset
void destroy_process_group();

// Makes a group of the given backend over an existing store (tests build several in one process).
// Each call takes the next "pg<k>/" key prefix in the store (k counts the groups this process made),
// so groups made in the same order on every rank meet in their own key space.
// "ring" on a CPU device is built in (distributed/ring_cpu.cpp); everything else comes from the
// registry below. An unknown or unavailable backend raises an error naming it and why.
std::shared_ptr<ProcessGroup> make_process_group(const std::string& backend, std::shared_ptr<Store> store, int rank,
                                                 int size, Device device);

// Note [Backend registry]
// Backends living in other files ("ring" on CUDA devices: distributed/cuda_ring*.cpp; "nccl":
// distributed/nccl_*.cpp) register a factory per (name, device type). make_process_group and
// init_process_group look them up. Registering from a static initialiser only works when the
// object file is linked: in a static library nothing pulls in a file whose symbols nobody
// references, so either register from a function the program calls, or link rg_distributed
// whole-archive.
using BackendFactory =
    std::function<std::shared_ptr<ProcessGroup>(std::shared_ptr<Store> store, int rank, int size, Device device)>;
void register_backend(const std::string& name, DeviceType device_type, BackendFactory factory);
bool has_backend(const std::string& name, DeviceType device_type);
struct BackendRegistrar {  // static BackendRegistrar reg("nccl", DeviceType::CUDA, make_nccl_group);
  BackendRegistrar(const std::string& name, DeviceType device_type, BackendFactory factory) {
    register_backend(name, device_type, std::move(factory));
  }
};

}  // namespace rg::dist
