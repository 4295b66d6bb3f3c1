// The "nccl" process group: NCCL communicators (one GPU per rank, any number of hosts), the
// unique id passed through the store, collectives on a communication stream ordered by events,
// non-blocking communicators so that every wait honours the group timeout (ncclCommAbort on it).
#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <mutex>
#include <thread>

#include "core/cuda/cuda_check.h"
#include "distributed/cuda_backends.h"
#include "distributed/process_group.h"

namespace rg::dist {
namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void throw_nccl(ncclResult_t r, ncclComm_t comm, const char* expr, const char* file, int line) {
  const char* last = ncclGetLastError(comm);
  detail::throw_error(file, line,
                      detail::concat("NCCL error: ", ncclGetErrorString(r), " (", static_cast<int>(r), ") from ", expr,
                                     last && *last ? std::string(": ") + last : std::string()));
}

}  // namespace

// Every ncclResult_t is checked; ncclInProgress is the normal answer of a non-blocking communicator
// (the caller then waits for the communicator to be ready, see NcclGroup::wait_ready).
#define RG_NCCL_CHECK(expr, comm)                                                    \
  do {                                                                               \
    const ncclResult_t rg_nccl_r_ = (expr);                                          \
    if (rg_nccl_r_ != ncclSuccess && rg_nccl_r_ != ncclInProgress) {                 \
      ::rg::dist::throw_nccl(rg_nccl_r_, (comm), #expr, __FILE__, __LINE__);         \
    }                                                                                \
  } while (0)

namespace {

ncclDataType_t nccl_dtype(DType t) {
  switch (t) {
    case DType::f32: return ncclFloat32;
    case DType::f16: return ncclFloat16;
    case DType::bf16: return ncclBfloat16;
    case DType::f64: return ncclFloat64;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    default: throw_unsupported_dtype("nccl collective", t, "cuda");
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Avg: return ncclAvg;  // NCCL >= 2.10: floats pre-multiply by 1/N, integers divide the sum
    case ReduceOp::Max: return ncclMax;
  }
  return ncclSum;
}

std::string machine_id() {
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::string id;
  if (f && std::getline(f, id) && !id.empty()) return id;
  return "unknown-host";
}

}  // namespace

class NcclGroup;

// Note [Work semantics]: wait() makes the caller's current stream wait for the end event (no host
// block; barrier's wait synchronises); synchronize() polls the event and the communicator's
// asynchronous error under the group timeout, aborting the communicator when it runs out.
class NcclWork final : public Work {
 public:
  NcclWork(std::weak_ptr<NcclGroup> group, int device, CollectiveInfo info, Millis timeout, bool sync_on_wait)
      : group_(std::move(group)), device_(device), info_(std::move(info)), timeout_(timeout),
        sync_on_wait_(sync_on_wait) {}
  bool is_completed() override;
  void wait() override;
  void synchronize() override;
  double duration_ms() const override {
    if (!end_.query()) return -1.0;
    return static_cast<double>(start_.elapsed_ms(end_));
  }

  cuda::Event start_{true}, end_{true};

 private:
  std::weak_ptr<NcclGroup> group_;
  int device_;
  CollectiveInfo info_;
  Millis timeout_;
  bool sync_on_wait_;
};

class NcclGroup final : public ProcessGroup, public std::enable_shared_from_this<NcclGroup> {
 public:
  NcclGroup(std::shared_ptr<Store> store, int rank, int size, Device device);
  ~NcclGroup() override;
  std::string backend() const override { return "nccl"; }
  std::optional<DeviceType> device_type() const override { return DeviceType::CUDA; }

  // Throws the communicator's asynchronous error, if any (and aborts it).
  void check_async(const CollectiveInfo& info);
  [[noreturn]] void abort_on_timeout(const CollectiveInfo& info, const std::string& detail);

 protected:
  std::shared_ptr<Work> do_allreduce(const Tensor& t, ReduceOp op, const CollectiveInfo& info) override;
  std::shared_ptr<Work> do_broadcast(const Tensor& t, int root, const CollectiveInfo& info) override;
  std::shared_ptr<Work> do_allgather(const Tensor& out, const Tensor& in, const CollectiveInfo& info) override;
  std::shared_ptr<Work> do_reduce_scatter(const Tensor& out, const Tensor& in, ReduceOp op,
                                          const CollectiveInfo& info) override;
  std::shared_ptr<Work> do_barrier(const CollectiveInfo& info) override;

 private:
  // Waits until a non-blocking call has finished queueing (state leaves ncclInProgress).
  void wait_ready(const CollectiveInfo& info, Clock::time_point deadline);
  // Runs `launch` (one NCCL call on the communication stream) between the ordering events.
  std::shared_ptr<Work> run(const CollectiveInfo& info, const std::vector<Tensor>& tensors,
                            const std::function<ncclResult_t(cudaStream_t)>& launch, const char* what,
                            bool sync_on_wait = false);
  void check_device(const Tensor& t, const char* op) const {
    RG_CHECK(t.device() == device_, op, ": this nccl group works on ", device_.str(), ", got a tensor on ",
             t.device().str());
  }

  Device device_;
  int dev_;
  cuda::Stream comm_stream_;
  ncclComm_t comm_ = nullptr;
  std::mutex mu_;          // NCCL calls on one communicator are not thread-safe
  bool aborted_ = false;   // under mu_
  std::string abort_reason_;
  void* scratch_ = nullptr;  // one int32 for barrier
};

NcclGroup::NcclGroup(std::shared_ptr<Store> store, int rank, int size, Device device)
    : ProcessGroup(std::move(store), rank, size), device_(device), dev_(device.index) {
  RG_CHECK(device.is_cuda(), "the nccl process group needs a CUDA device, got ", device.str());
  RG_CHECK(dev_ >= 0 && dev_ < cuda::device_count(), "nccl: ", device.str(), " does not exist (",
           cuda::device_count(), " CUDA device(s) visible)");
  cuda::DeviceGuard guard(dev_);

  // NCCL refuses two ranks on one GPU with an obscure message: say it plainly, naming the ranks.
  char bus[32] = {};
  RG_CUDA_CHECK(cudaDeviceGetPCIBusId(bus, sizeof(bus), dev_));
  const std::string where = machine_id() + " " + bus;
  store_->set("nccl/gpu/" + std::to_string(rank_), where);
  for (int q = 0; q < size_; ++q) {
    if (q == rank_) continue;
    const std::string theirs = store_->get_string("nccl/gpu/" + std::to_string(q));
    RG_CHECK(theirs != where, "nccl: ranks ", std::min(q, rank_), " and ", std::max(q, rank_),
             " are on the same GPU (PCI ", bus, "); NCCL needs one GPU per rank. Use the 'ring' backend to run "
             "several ranks on one GPU, or give each rank its own device (LOCAL_RANK / CUDA_VISIBLE_DEVICES)");
  }

  ncclUniqueId id;
  if (rank_ == 0) {
    RG_NCCL_CHECK(ncclGetUniqueId(&id), nullptr);
    Bytes b(sizeof(id));
    std::memcpy(b.data(), &id, sizeof(id));
    store_->set("nccl/unique_id", b);
  } else {
    const Bytes b = store_->get("nccl/unique_id");
    RG_CHECK(b.size() == sizeof(id), "nccl: the unique id in the store has ", b.size(), " bytes, expected ",
             sizeof(id));
    std::memcpy(&id, b.data(), sizeof(id));
  }
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // every call returns at once; we poll the state under our timeout
  RG_NCCL_CHECK(ncclCommInitRankConfig(&comm_, size_, id, rank_, &config), comm_);
  CollectiveInfo init;
  init.op = "nccl communicator init";
  init.device = device_;
  wait_ready(init, Clock::now() + timeout_);

  comm_stream_ = cuda::new_stream(dev_, /*high_priority=*/true);
  RG_CUDA_CHECK(cudaMalloc(&scratch_, 16));
  RG_CUDA_CHECK(cudaMemsetAsync(scratch_, 0, 16, cuda::raw(comm_stream_)));
}

NcclGroup::~NcclGroup() {
  int prev = -1;
  if (cudaGetDevice(&prev) != cudaSuccess) prev = -1;
  (void)cudaSetDevice(dev_);
  std::lock_guard<std::mutex> g(mu_);
  if (comm_ && !aborted_) {
    // Finalize flushes queued work; bounded, then abort whatever is left.
    const ncclResult_t fin = ncclCommFinalize(comm_);
    const bool clean = fin == ncclSuccess || fin == ncclInProgress;
    const auto until = Clock::now() + std::min<Millis>(timeout_, Millis(60000));
    ncclResult_t state = ncclInProgress;
    while (clean) {
      if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess) break;
      if (state != ncclInProgress) break;
      if (Clock::now() >= until) break;
      std::this_thread::sleep_for(Millis(1));
    }
    if (clean && state == ncclSuccess) {
      (void)ncclCommDestroy(comm_);
    } else {
      (void)ncclCommAbort(comm_);
    }
  }
  comm_ = nullptr;
  if (scratch_) (void)cudaFree(scratch_);
  (void)cudaGetLastError();
  if (prev >= 0) (void)cudaSetDevice(prev);
}

void NcclGroup::wait_ready(const CollectiveInfo& info, Clock::time_point deadline) {
  for (int i = 0;; ++i) {
    ncclResult_t state = ncclSuccess;
    RG_NCCL_CHECK(ncclCommGetAsyncError(comm_, &state), comm_);
    if (state == ncclSuccess) return;
    if (state != ncclInProgress) {
      const char* last = ncclGetLastError(comm_);
      const std::string msg = std::string(ncclGetErrorString(state)) + (last && *last ? std::string(": ") + last : "");
      (void)ncclCommAbort(comm_);
      aborted_ = true;
      abort_reason_ = msg;
      RG_THROW("rank ", rank_, ": ", info.describe(), " failed in NCCL: ", msg);
    }
    if (Clock::now() >= deadline) {
      (void)ncclCommAbort(comm_);
      aborted_ = true;
      abort_reason_ = "timed out in " + info.describe();
      raise_timeout(info, "NCCL never finished queueing it; the communicator was aborted");
    }
    if (i < 1000) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
}

void NcclGroup::check_async(const CollectiveInfo& info) {
  std::lock_guard<std::mutex> g(mu_);
  if (aborted_) RG_THROW("rank ", rank_, ": ", info.describe(), ": the NCCL communicator was aborted (", abort_reason_, ")");
  ncclResult_t state = ncclSuccess;
  RG_NCCL_CHECK(ncclCommGetAsyncError(comm_, &state), comm_);
  if (state != ncclSuccess && state != ncclInProgress) {
    const char* last = ncclGetLastError(comm_);
    abort_reason_ = std::string(ncclGetErrorString(state)) + (last && *last ? std::string(": ") + last : "");
    (void)ncclCommAbort(comm_);
    aborted_ = true;
    RG_THROW("rank ", rank_, ": ", info.describe(), " failed in NCCL: ", abort_reason_);
  }
}

void NcclGroup::abort_on_timeout(const CollectiveInfo& info, const std::string& detail) {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (!aborted_) {
      (void)ncclCommAbort(comm_);
      aborted_ = true;
      abort_reason_ = "timed out in " + info.describe();
    }
  }
  raise_timeout(info, detail);
}

std::shared_ptr<Work> NcclGroup::run(const CollectiveInfo& info, const std::vector<Tensor>& tensors,
                                     const std::function<ncclResult_t(cudaStream_t)>& launch, const char* what,
                                     bool sync_on_wait) {
  cuda::DeviceGuard guard(dev_);
  auto work = std::make_shared<NcclWork>(weak_from_this(), dev_, info, timeout_, sync_on_wait);
  cuda::Event ready;
  ready.record(cuda::current_stream(dev_));
  ready.block(comm_stream_);
  for (const Tensor& t : tensors) {
    if (t.numel() > 0) cuda::record_stream(t.storage()->data, comm_stream_);
  }
  std::lock_guard<std::mutex> g(mu_);
  RG_CHECK(!aborted_, "rank ", rank_, ": ", info.describe(), ": the NCCL communicator was aborted earlier (",
           abort_reason_, ")");
  work->start_.record(comm_stream_);
  const ncclResult_t r = launch(cuda::raw(comm_stream_));
  if (r != ncclSuccess && r != ncclInProgress) throw_nccl(r, comm_, what, __FILE__, __LINE__);
  wait_ready(info, Clock::now() + timeout_);
  work->end_.record(comm_stream_);
  return work;
}

bool NcclWork::is_completed() {
  if (auto g = group_.lock()) {
    try {
      g->check_async(info_);
    } catch (const Error&) {
      return true;  // completed, with an error that wait() reports
    }
  }
  return end_.query();
}

void NcclWork::wait() {
  if (sync_on_wait_) {
    synchronize();
    return;
  }
  if (auto g = group_.lock()) g->check_async(info_);
  end_.block(cuda::current_stream(device_));
}

void NcclWork::synchronize() {
  const auto deadline = Clock::now() + timeout_;
  for (int i = 0;; ++i) {
    auto g = group_.lock();
    if (g) g->check_async(info_);
    if (end_.query()) return;
    if (Clock::now() >= deadline) {
      if (g) g->abort_on_timeout(info_, "its GPU work did not finish; the communicator was aborted");
      RG_THROW(info_.describe(), ": did not finish within ", timeout_.count(), " ms");
    }
    if (i < 200) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(i < 2000 ? 20 : 200));
    }
  }
}

std::shared_ptr<Work> NcclGroup::do_allreduce(const Tensor& t, ReduceOp op, const CollectiveInfo& info) {
  check_device(t, "allreduce");
  void* p = t.data_ptr();
  const size_t n = static_cast<size_t>(t.numel());
  const ncclDataType_t dt = nccl_dtype(t.dtype());
  return run(info, {t}, [&](cudaStream_t s) { return ncclAllReduce(p, p, n, dt, nccl_op(op), comm_, s); },
             "ncclAllReduce");
}

std::shared_ptr<Work> NcclGroup::do_broadcast(const Tensor& t, int root, const CollectiveInfo& info) {
  check_device(t, "broadcast");
  void* p = t.data_ptr();
  const size_t n = static_cast<size_t>(t.numel());
  const ncclDataType_t dt = nccl_dtype(t.dtype());
  return run(info, {t}, [&](cudaStream_t s) { return ncclBroadcast(p, p, n, dt, root, comm_, s); }, "ncclBroadcast");
}

std::shared_ptr<Work> NcclGroup::do_allgather(const Tensor& out, const Tensor& in, const CollectiveInfo& info) {
  check_device(out, "allgather");
  check_device(in, "allgather");
  const void* src = in.data_ptr();
  void* dst = out.data_ptr();
  const size_t m = static_cast<size_t>(in.numel());
  const ncclDataType_t dt = nccl_dtype(in.dtype());
  return run(info, {out, in}, [&](cudaStream_t s) { return ncclAllGather(src, dst, m, dt, comm_, s); },
             "ncclAllGather");
}

std::shared_ptr<Work> NcclGroup::do_reduce_scatter(const Tensor& out, const Tensor& in, ReduceOp op,
                                                   const CollectiveInfo& info) {
  check_device(out, "reduce_scatter");
  check_device(in, "reduce_scatter");
  const void* src = in.data_ptr();
  void* dst = out.data_ptr();
  const size_t m = static_cast<size_t>(out.numel());
  const ncclDataType_t dt = nccl_dtype(out.dtype());
  return run(info, {out, in},
             [&](cudaStream_t s) { return ncclReduceScatter(src, dst, m, dt, nccl_op(op), comm_, s); },
             "ncclReduceScatter");
}

std::shared_ptr<Work> NcclGroup::do_barrier(const CollectiveInfo& info) {
  void* p = scratch_;
  return run(info, {}, [&](cudaStream_t s) { return ncclAllReduce(p, p, 1, ncclInt32, ncclSum, comm_, s); },
             "ncclAllReduce (barrier)", /*sync_on_wait=*/true);
}

std::shared_ptr<ProcessGroup> make_nccl_group(std::shared_ptr<Store> store, int rank, int size, Device device) {
  return std::make_shared<NcclGroup>(std::move(store), rank, size, device);
}

void register_nccl_backend() {
  static std::once_flag once;
  std::call_once(once, [] { register_backend("nccl", DeviceType::CUDA, make_nccl_group); });
}

namespace {
const bool g_registered = (register_nccl_backend(), true);
}  // namespace

}  // namespace rg::dist
