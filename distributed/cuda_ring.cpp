// The "ring" process group on CUDA tensors: reduce-scatter then allgather over a ring of ranks on
// one host, chunks moving through CUDA IPC buffers with per-slot flow control; Note [CUDA ring
// protocol]. Collectives are queued to a proxy thread and run on a communication stream.
#include "distributed/cuda_ring.h"

#include <cuda_runtime.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <thread>
#include <type_traits>

#include "core/cuda/cuda_check.h"
#include "core/native.h"
#include "cuda_kernels/comm.h"

namespace rg::dist {

using ring_detail::kMaxSlots;
using ring_detail::ring_mod;
using ring_detail::validate;

// Note [CUDA ring protocol]
// Each rank r owns a receive buffer of S slots (cudaMalloc, exported with cudaIpcGetMemHandle) that
// only its left neighbour r-1 writes, and 2S interprocess events: filled[k] (r records it after
// writing slot k of its RIGHT neighbour's buffer) and consumed[k] (r records it after its last read
// of slot k of its own buffer). Messages on the link r -> r+1 are numbered m = 0, 1, 2, ... for the
// life of the group and message m uses slot m % S. Each rank also owns a small shared-memory page
// (shm_open) with two counters its neighbours read:
//   posted   = number of messages r has queued toward r+1 (its filled[m % S] record is issued),
//   consumed = number of messages from r-1 whose slot r has finished with (consumed[m % S] issued).
// Sending message m (writer r):  host-wait until right.consumed >= m - S + 1 (skipped for m < S),
//   cudaStreamWaitEvent(right.consumed[m % S]), queue the kernel writing the slot,
//   cudaEventRecord(filled[m % S]), then publish posted = m + 1.
// Receiving message m (reader r): host-wait until left.posted >= m + 1,
//   cudaStreamWaitEvent(left.filled[m % S]), queue the kernel reading the slot,
//   cudaEventRecord(consumed[m % S]), then publish consumed = m + 1.
// Why the event a waiter names is the right record: the peer publishes a counter only after the
// record call returned, so the waited record exists; and it cannot be re-recorded before the wait
// is queued, because re-recording filled[k] for m + S needs consumed >= m + 1 (published by the
// reader after its wait), and re-recording consumed[k] for m + S needs message m + S, sent only
// after the writer's wait. So the GPU never reads a slot before it is written, nor overwrites one
// before it is read, and the host only ever waits for the peers' HOST progress: the proxy thread
// queues a whole collective without waiting for any GPU work.
// Deadlock freedom: every rank runs the same sequence of ops (a round is `steps` x nchunks ops in
// step-major order; an op receives at most one message and sends at most one). A message sent at
// position P is received at position P + nchunks, and nchunks <= S - 1, so the waits of the op at
// position P (left's send at P - nchunks, right's receipt of message m - S at <= P - S + nchunks)
// all point to strictly earlier positions. The GPU side follows the same order, so it cannot
// deadlock either (tests/distributed/test_cuda_ring_schedule.cpp runs the schedules on the host
// with this flow control; with nchunks = S they do deadlock). With several ranks on one GPU every
// kernel runs on that GPU; a kernel writes its output straight into the right neighbour's slot
// (IPC-mapped), so one op is one kernel.
// Timeouts: every host wait honours the group timeout (raise_timeout names the missing ranks); a
// rank whose collective fails sets `aborted` in its page, a rank that destroyed its group has set
// `closed`, and its neighbours stop waiting for it.

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint32_t kMagic = 0x52474352u;  // "RGCR"

// One shared-memory page per rank: its counters, read by its two neighbours.
struct RingPage {
  alignas(64) std::atomic<uint64_t> posted{0};
  alignas(64) std::atomic<uint64_t> consumed{0};
  alignas(64) std::atomic<uint32_t> aborted{0};
  std::atomic<uint32_t> closed{0};  // set once this rank closed what it opened from its neighbours
  int32_t pid = 0;
  uint32_t magic = 0;
};
static_assert(std::atomic<uint64_t>::is_always_lock_free && std::atomic<uint32_t>::is_always_lock_free,
              "the ring's shared counters must be lock-free (address-free) atomics");

class ShmPage {
 public:
  ShmPage() = default;
  ShmPage(const ShmPage&) = delete;
  ShmPage& operator=(const ShmPage&) = delete;
  ~ShmPage() { reset(); }

  void create(const std::string& name) {
    reset();
    const int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    RG_CHECK(fd >= 0, "cuda ring: shm_open(", name, ") failed: ", std::strerror(errno));
    name_ = name;
    owner_ = true;
    if (ftruncate(fd, sizeof(RingPage)) != 0) {
      const int e = errno;
      close(fd);
      RG_THROW("cuda ring: ftruncate of ", name, " failed: ", std::strerror(e));
    }
    map(fd);
    page_ = ::new (addr_) RingPage();  // placement: the page lives in the mapping
    page_->pid = static_cast<int32_t>(getpid());
    page_->magic = kMagic;
  }
  void open(const std::string& name) {
    reset();
    const int fd = shm_open(name.c_str(), O_RDWR, 0600);
    RG_CHECK(fd >= 0, "cuda ring: cannot open the shared-memory page ", name, " of a neighbour: ",
             std::strerror(errno), " (ranks must share /dev/shm: same host, same IPC namespace)");
    name_ = name;
    map(fd);
    page_ = static_cast<RingPage*>(addr_);
    RG_CHECK(page_->magic == kMagic, "cuda ring: shared-memory page ", name, " is not a ring page");
  }
  void unlink() {
    if (owner_ && !name_.empty()) shm_unlink(name_.c_str());
    owner_ = false;
  }
  RingPage* get() const { return page_; }

 private:
  void map(int fd) {
    void* p = mmap(nullptr, sizeof(RingPage), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    const int e = errno;
    close(fd);
    RG_CHECK(p != MAP_FAILED, "cuda ring: mmap of ", name_, " failed: ", std::strerror(e));
    addr_ = p;
  }
  void reset() {
    if (addr_) munmap(addr_, sizeof(RingPage));
    unlink();
    addr_ = nullptr;
    page_ = nullptr;
  }
  void* addr_ = nullptr;
  RingPage* page_ = nullptr;
  std::string name_;
  bool owner_ = false;
};

// What a rank publishes about itself in the store (one trivially copyable record).
struct PeerRecord {
  uint32_t magic;
  int32_t rank;
  int32_t pid;
  int32_t slots;
  int64_t slot_bytes;
  int64_t min_chunk_bytes;
  uint64_t process_nonce;  // equal iff the same process (ranks may be threads of one test)
  uint64_t pid_namespace;  // inode of /proc/self/ns/pid: pids are comparable iff equal (0: unknown)
  int32_t ipc_ok;          // the device supports IPC events
  int32_t pad;
  char host[64];           // the kernel's boot_id: equal iff the same machine
  char hostname[64];
  char bus_id[32];
  char shm_name[64];
  cudaIpcMemHandle_t buffer;
  cudaIpcEventHandle_t filled[kMaxSlots];
  cudaIpcEventHandle_t consumed[kMaxSlots];
  uint64_t raw_buffer;  // for peers in the same process, which cannot open IPC handles
  uint64_t raw_filled[kMaxSlots];
  uint64_t raw_consumed[kMaxSlots];
};
static_assert(std::is_trivially_copyable_v<PeerRecord>);

uint64_t process_nonce() {
  static const uint64_t n = [] {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ static_cast<uint64_t>(getpid());
  }();
  return n;
}

std::string machine_id() {
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::string id;
  if (f && std::getline(f, id) && !id.empty()) return id;
  char h[64] = {};
  gethostname(h, sizeof(h) - 1);
  return h;
}

void copy_str(char* dst, size_t cap, const std::string& s) {
  std::memset(dst, 0, cap);
  std::memcpy(dst, s.data(), std::min(cap - 1, s.size()));
}

uint64_t pid_namespace() {
  struct stat st {};
  return stat("/proc/self/ns/pid", &st) == 0 ? static_cast<uint64_t>(st.st_ino) : 0;
}

// False only when the process is known to be gone (pid <= 0: unknown, assumed alive).
bool pid_alive(int pid) { return pid <= 0 || kill(pid, 0) == 0 || errno != ESRCH; }

// Makes dev current for the scope without throwing (destructors).
class QuietDeviceGuard {
 public:
  explicit QuietDeviceGuard(int dev) {
    if (cudaGetDevice(&prev_) != cudaSuccess || cudaSetDevice(dev) != cudaSuccess) prev_ = -1;
    (void)cudaGetLastError();
  }
  ~QuietDeviceGuard() {
    if (prev_ >= 0) (void)cudaSetDevice(prev_);
  }
  QuietDeviceGuard(const QuietDeviceGuard&) = delete;
  QuietDeviceGuard& operator=(const QuietDeviceGuard&) = delete;

 private:
  int prev_ = -1;
};

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

cuda::CommOp comm_op(ReduceOp op) { return op == ReduceOp::Max ? cuda::CommOp::Max : cuda::CommOp::Sum; }

char* byte_ptr(const Tensor& t) { return static_cast<char*>(t.data_ptr()); }

}  // namespace

class CudaRingGroup;

// Note [Work semantics] for the CUDA ring: wait() blocks the host only until the proxy thread has
// queued the collective (that is, until the neighbours' hosts reached it too), then makes the
// caller's current stream wait for the end event. synchronize() also waits for the GPU, with the
// group's timeout. barrier's wait() synchronises, as a barrier should.
class CudaRingWork final : public Work {
 public:
  CudaRingWork(int device, Millis timeout, CollectiveInfo info, bool sync_on_wait, std::weak_ptr<CudaRingGroup> group)
      : device_(device), timeout_(timeout), info_(std::move(info)), sync_on_wait_(sync_on_wait),
        group_(std::move(group)) {}

  bool is_completed() override {
    {
      std::lock_guard<std::mutex> g(mu_);
      if (!queued_) return false;
      if (error_) return true;
    }
    return end_.query();
  }
  void wait() override {
    wait_queued();
    if (sync_on_wait_) {
      wait_gpu();
    } else {
      end_.block(cuda::current_stream(device_));
    }
  }
  void synchronize() override {
    wait_queued();
    wait_gpu();
  }
  double duration_ms() const override {
    {
      std::lock_guard<std::mutex> g(mu_);
      if (!queued_ || error_) return -1.0;
    }
    if (!end_.query()) return -1.0;
    return static_cast<double>(start_.elapsed_ms(end_));
  }

  // ---- the proxy thread's side
  void finish_queueing(std::exception_ptr error) {
    {
      std::lock_guard<std::mutex> g(mu_);
      queued_ = true;
      error_ = std::move(error);
    }
    cv_.notify_all();
  }
  cuda::Event ready_;             // recorded on the caller's stream at the call
  cuda::Event start_{true}, end_{true};  // on the communication stream
  std::vector<Tensor> keep_;      // the tensors, alive until the collective is queued

 private:
  void wait_queued() {
    std::unique_lock<std::mutex> g(mu_);
    cv_.wait(g, [&] { return queued_; });
    if (error_) std::rethrow_exception(error_);
  }
  void wait_gpu();

  int device_;
  Millis timeout_;
  CollectiveInfo info_;
  bool sync_on_wait_;
  std::weak_ptr<CudaRingGroup> group_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool queued_ = false;
  std::exception_ptr error_;
};

class CudaRingGroup final : public ProcessGroup {
 public:
  CudaRingGroup(std::shared_ptr<Store> store, int rank, int size, Device device, const CudaRingConfig& cfg);
  ~CudaRingGroup() override;

  std::string backend() const override { return "ring"; }
  std::optional<DeviceType> device_type() const override { return DeviceType::CUDA; }
  void start(std::weak_ptr<CudaRingGroup> self);

  [[noreturn]] void gpu_timeout(const CollectiveInfo& info) {
    raise_timeout(info, "the collective was queued on every rank but its GPU work did not finish; a peer's GPU "
                        "work is stuck or its process died");
  }

 protected:
  std::shared_ptr<Work> do_allreduce(const Tensor& t, ReduceOp op, const CollectiveInfo& info) override;
  std::shared_ptr<Work> do_broadcast(const Tensor& t, int root, const CollectiveInfo& info) override;
  std::shared_ptr<Work> do_allgather(const Tensor& out, const Tensor& in, const CollectiveInfo& info) override;
  std::shared_ptr<Work> do_reduce_scatter(const Tensor& out, const Tensor& in, ReduceOp op,
                                          const CollectiveInfo& info) override;
  std::shared_ptr<Work> do_barrier(const CollectiveInfo& info) override;

 private:
  struct Ctx {
    const CollectiveInfo* info;
    Clock::time_point deadline;
    cudaStream_t stream;
    Millis timeout;
  };
  using Body = std::function<void(const Ctx&)>;
  struct Task {
    std::shared_ptr<CudaRingWork> work;
    CollectiveInfo info;
    Millis timeout;
    Body body;
  };

  int left() const { return ring_mod(rank_ - 1, size_); }
  int right() const { return ring_mod(rank_ + 1, size_); }
  void check_device(const Tensor& t, const char* op) const;
  std::shared_ptr<Work> submit(const CollectiveInfo& info, std::vector<Tensor> tensors, Body body,
                               bool sync_on_wait = false);
  void proxy_main();

  // ---- the ring (proxy thread only)
  void setup_ring();
  void wait_counter(const std::atomic<uint64_t>& counter, uint64_t target, const RingPage* peer, int peer_rank,
                    const char* what, const Ctx& ctx);
  char* recv_begin(const Ctx& ctx);
  void recv_end(const Ctx& ctx);
  char* send_begin(const Ctx& ctx);
  void send_end(const Ctx& ctx);

  struct LinkOps;
  void ring_allreduce(const Ctx& ctx, char* data, int64_t n, DType t, ReduceOp op);
  void ring_reduce_scatter(const Ctx& ctx, char* out, const char* in, int64_t m, DType t, ReduceOp op);
  void ring_allgather(const Ctx& ctx, char* out, const char* in, int64_t m, DType t);
  void ring_broadcast(const Ctx& ctx, char* data, int64_t n, DType t, int root);
  void staged(const Ctx& ctx, const std::function<void()>& cpu_part);

  Device device_;
  int dev_;
  CudaRingConfig cfg_;
  cuda::Stream comm_;
  bool ring_ = false;                          // size > 1 and every rank on this host
  std::shared_ptr<ProcessGroup> cpu_group_;    // the fallback across hosts

  // Ring resources (Note [CUDA ring protocol]).
  void* recv_buf_ = nullptr;                   // this rank's S slots (cudaMalloc), written by left
  cudaEvent_t filled_[kMaxSlots] = {};         // this rank's events, exported
  cudaEvent_t consumed_[kMaxSlots] = {};
  void* right_buf_ = nullptr;                  // right's slots, opened
  bool right_buf_ipc_ = false;                 // opened with cudaIpcOpenMemHandle (else same process)
  cudaEvent_t left_filled_[kMaxSlots] = {};    // left's filled events, opened
  cudaEvent_t right_consumed_[kMaxSlots] = {};  // right's consumed events, opened
  bool peer_events_ipc_[2] = {false, false};   // [left, right] opened through IPC (destroy them)
  ShmPage my_page_, left_page_, right_page_;
  int left_pid_ = 0, right_pid_ = 0;
  uint64_t sent_ = 0, received_ = 0;
  void* scratch_ = nullptr;                    // 16 bytes for barrier

  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> queue_;
  bool stop_ = false;
  std::string broken_;  // the first error; the ring's counters are unusable after it (proxy thread)
  std::weak_ptr<CudaRingGroup> self_;
};

void CudaRingWork::wait_gpu() {
  const auto deadline = Clock::now() + timeout_;
  for (int i = 0; !end_.query(); ++i) {
    if (Clock::now() >= deadline) {
      if (auto g = group_.lock()) g->gpu_timeout(info_);
      RG_THROW(info_.describe(), ": the GPU work did not finish within ", timeout_.count(), " ms");
    }
    if (i < 100) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(i < 1000 ? 20 : 200));
    }
  }
}

// ---- construction and teardown

CudaRingGroup::CudaRingGroup(std::shared_ptr<Store> store, int rank, int size, Device device, const CudaRingConfig& cfg)
    : ProcessGroup(std::move(store), rank, size), device_(device), dev_(device.index), cfg_(cfg) {
  RG_CHECK(device.is_cuda(), "the CUDA ring group needs a CUDA device, got ", device.str());
  RG_CHECK(dev_ >= 0 && dev_ < cuda::device_count(), "cuda ring: ", device.str(), " does not exist (",
           cuda::device_count(), " CUDA device(s) visible)");
  validate(cfg_);
  cuda::DeviceGuard guard(dev_);
  comm_ = cuda::new_stream(dev_, /*high_priority=*/true);
  if (size_ > 1) setup_ring();
}

void CudaRingGroup::setup_ring() {
  const int S = cfg_.slots;
  int ipc_events = 0;
  RG_CUDA_CHECK(cudaDeviceGetAttribute(&ipc_events, cudaDevAttrIpcEventSupport, dev_));

  // Publish who we are; every rank reads every record so that all of them agree on the mode.
  static std::atomic<int> group_counter{0};
  const std::string shm_name = "/rg_cudaring_" + std::to_string(getpid()) + "_" + std::to_string(group_counter++) +
                               "_" + std::to_string(rank_);
  PeerRecord me{};
  me.magic = kMagic;
  me.rank = rank_;
  me.pid = static_cast<int32_t>(getpid());
  me.slots = S;
  me.slot_bytes = cfg_.slot_bytes;
  me.min_chunk_bytes = cfg_.min_chunk_bytes;
  me.process_nonce = process_nonce();
  me.pid_namespace = pid_namespace();
  me.ipc_ok = ipc_events ? 1 : 0;
  copy_str(me.host, sizeof(me.host), machine_id());
  {
    char h[64] = {};
    gethostname(h, sizeof(h) - 1);
    copy_str(me.hostname, sizeof(me.hostname), h);
  }
  RG_CUDA_CHECK(cudaDeviceGetPCIBusId(me.bus_id, sizeof(me.bus_id), dev_));
  copy_str(me.shm_name, sizeof(me.shm_name), shm_name);

  // Allocate and export before publishing (a failed allocation must not leave peers waiting: they
  // time out in the store naming this rank).
  RG_CUDA_CHECK(cudaMalloc(&recv_buf_, static_cast<size_t>(S) * static_cast<size_t>(cfg_.slot_bytes)));
  RG_CUDA_CHECK(cudaMalloc(&scratch_, 16));
  RG_CUDA_CHECK(cudaMemsetAsync(scratch_, 0, 16, cuda::raw(comm_)));
  RG_CUDA_CHECK(cudaIpcGetMemHandle(&me.buffer, recv_buf_));
  me.raw_buffer = reinterpret_cast<uint64_t>(recv_buf_);
  for (int k = 0; k < S; ++k) {
    RG_CUDA_CHECK(cudaEventCreateWithFlags(&filled_[k], cudaEventInterprocess | cudaEventDisableTiming));
    RG_CUDA_CHECK(cudaEventCreateWithFlags(&consumed_[k], cudaEventInterprocess | cudaEventDisableTiming));
    RG_CUDA_CHECK(cudaIpcGetEventHandle(&me.filled[k], filled_[k]));
    RG_CUDA_CHECK(cudaIpcGetEventHandle(&me.consumed[k], consumed_[k]));
    me.raw_filled[k] = reinterpret_cast<uint64_t>(filled_[k]);
    me.raw_consumed[k] = reinterpret_cast<uint64_t>(consumed_[k]);
  }
  my_page_.create(shm_name);
  Bytes blob(sizeof(PeerRecord));
  std::memcpy(blob.data(), &me, sizeof(PeerRecord));
  store_->set("cuda_ring/peer/" + std::to_string(rank_), blob);

  std::vector<PeerRecord> peers(static_cast<size_t>(size_));
  bool ipc_mode = true;  // every rank on this machine, every device with IPC events
  for (int q = 0; q < size_; ++q) {
    const Bytes b = store_->get("cuda_ring/peer/" + std::to_string(q));
    RG_CHECK(b.size() == sizeof(PeerRecord), "cuda ring: rank ", q, " published a record of ", b.size(),
             " bytes, expected ", sizeof(PeerRecord), " (mixed ringgrad builds?)");
    std::memcpy(&peers[static_cast<size_t>(q)], b.data(), sizeof(PeerRecord));
    const PeerRecord& p = peers[static_cast<size_t>(q)];
    RG_CHECK(p.magic == kMagic && p.rank == q, "cuda ring: bad record from rank ", q);
    RG_CHECK(p.slots == S && p.slot_bytes == cfg_.slot_bytes && p.min_chunk_bytes == cfg_.min_chunk_bytes,
             "cuda ring: rank ", q, " uses ", p.slots, " slots of ", p.slot_bytes, " bytes (min chunk ",
             p.min_chunk_bytes, "), rank ", rank_, " uses ", S, " of ", cfg_.slot_bytes, " (min chunk ",
             cfg_.min_chunk_bytes, "): set RINGGRAD_CUDA_RING_* the same way on every rank");
    if (std::strncmp(p.host, me.host, sizeof(me.host)) != 0 || !p.ipc_ok) ipc_mode = false;
  }

  if (!ipc_mode) {
    // CUDA IPC cannot cross machines: stage through host memory and run the CPU ring. Every rank
    // took this branch (they all read the same records), so nobody opened our handles.
    my_page_.unlink();
    for (int k = 0; k < S; ++k) {
      (void)cudaEventDestroy(filled_[k]);
      (void)cudaEventDestroy(consumed_[k]);
      filled_[k] = consumed_[k] = nullptr;
    }
    (void)cudaFree(recv_buf_);
    recv_buf_ = nullptr;
    cpu_group_ = make_process_group("ring", store_, rank_, size_, kCPU);
    cpu_group_->set_timeout(timeout_);
    return;
  }

  // Open the neighbours' resources: right's buffer and consumed events (we write its slots),
  // left's filled events (we read what it wrote), and both pages.
  const PeerRecord& L = peers[static_cast<size_t>(left())];
  const PeerRecord& R = peers[static_cast<size_t>(right())];
  // Pids are only meaningful for liveness checks inside one pid namespace, and not for ourselves.
  left_pid_ = L.pid_namespace != 0 && L.pid_namespace == me.pid_namespace && L.process_nonce != me.process_nonce ? L.pid : 0;
  right_pid_ = R.pid_namespace != 0 && R.pid_namespace == me.pid_namespace && R.process_nonce != me.process_nonce ? R.pid : 0;
  const bool right_local = R.process_nonce == me.process_nonce;
  const bool left_local = L.process_nonce == me.process_nonce;
  int right_dev = -1;
  {
    const cudaError_t e = cudaDeviceGetByPCIBusId(&right_dev, R.bus_id);
    if (e != cudaSuccess) (void)cudaGetLastError();
    RG_CHECK(e == cudaSuccess, "cuda ring: rank ", rank_, " cannot see the GPU of rank ", right(), " (PCI ", R.bus_id,
             "): give every rank the same CUDA_VISIBLE_DEVICES (the launcher's device table shows the mapping)");
  }
  if (right_dev != dev_) {
    int can = 0;
    RG_CUDA_CHECK(cudaDeviceCanAccessPeer(&can, dev_, right_dev));
    RG_CHECK(can, "cuda ring: cuda:", dev_, " (rank ", rank_, ") cannot access cuda:", right_dev, " (rank ", right(),
             ") peer to peer; use the nccl backend on this machine");
  }
  if (right_local) {
    right_buf_ = reinterpret_cast<void*>(R.raw_buffer);
    if (right_dev != dev_) {
      const cudaError_t e = cudaDeviceEnablePeerAccess(right_dev, 0);
      if (e != cudaSuccess && e != cudaErrorPeerAccessAlreadyEnabled) RG_CUDA_CHECK(e);
      (void)cudaGetLastError();
    }
  } else {
    RG_CUDA_CHECK(cudaIpcOpenMemHandle(&right_buf_, R.buffer, cudaIpcMemLazyEnablePeerAccess));
    right_buf_ipc_ = true;
  }
  for (int k = 0; k < S; ++k) {
    if (right_local) {
      right_consumed_[k] = reinterpret_cast<cudaEvent_t>(R.raw_consumed[k]);
    } else {
      RG_CUDA_CHECK(cudaIpcOpenEventHandle(&right_consumed_[k], R.consumed[k]));
    }
    if (left_local) {
      left_filled_[k] = reinterpret_cast<cudaEvent_t>(L.raw_filled[k]);
    } else {
      RG_CUDA_CHECK(cudaIpcOpenEventHandle(&left_filled_[k], L.filled[k]));
    }
  }
  peer_events_ipc_[0] = !left_local;
  peer_events_ipc_[1] = !right_local;
  left_page_.open(L.shm_name);
  right_page_.open(R.shm_name);
  ring_ = true;

  // Everyone has opened what it needs: the shared-memory names can go (the mappings stay).
  store_->set("cuda_ring/ready/" + std::to_string(rank_), std::string("1"));
  std::vector<std::string> keys;
  for (int q = 0; q < size_; ++q) keys.push_back("cuda_ring/ready/" + std::to_string(q));
  store_->wait(keys);
  my_page_.unlink();
}

void CudaRingGroup::start(std::weak_ptr<CudaRingGroup> self) {
  self_ = std::move(self);
  thread_ = std::thread([this] { proxy_main(); });
}

CudaRingGroup::~CudaRingGroup() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();  // queued collectives are still run (or fail) first
  QuietDeviceGuard guard(dev_);

  // Wait (bounded) for this rank's GPU work; peers may still be reading what we wrote.
  bool idle = false;
  {
    const auto until = Clock::now() + std::min<Millis>(timeout_, Millis(60000));
    for (;;) {
      const cudaError_t e = cudaStreamQuery(cuda::raw(comm_));
      if (e != cudaErrorNotReady) {
        (void)cudaGetLastError();
        idle = e == cudaSuccess;
        break;
      }
      if (Clock::now() >= until) break;
      std::this_thread::sleep_for(Millis(1));
    }
  }
  if (idle && scratch_) (void)cudaFree(scratch_);  // never exported
  scratch_ = nullptr;
  if (!ring_) {
    // Setup never finished (or no ring): nothing of ours was opened by a neighbour we know of;
    // resources that may have been published are leaked rather than freed under a peer.
    return;
  }
  // Close what we opened from the neighbours, then say so.
  if (right_buf_ipc_ && right_buf_) (void)cudaIpcCloseMemHandle(right_buf_);
  for (int k = 0; k < cfg_.slots; ++k) {
    if (peer_events_ipc_[0] && left_filled_[k]) (void)cudaEventDestroy(left_filled_[k]);
    if (peer_events_ipc_[1] && right_consumed_[k]) (void)cudaEventDestroy(right_consumed_[k]);
  }
  my_page_.get()->closed.store(1, std::memory_order_release);
  // Our buffer and events are open in the neighbours until they close them: free only then (or
  // when their process is gone); otherwise leak them, which the process exit cleans up.
  const auto until = Clock::now() + std::min<Millis>(timeout_, Millis(10000));
  bool neighbours_closed = false;
  while (idle) {
    const bool l = left_page_.get()->closed.load(std::memory_order_acquire) != 0 || !pid_alive(left_pid_);
    const bool r = right_page_.get()->closed.load(std::memory_order_acquire) != 0 || !pid_alive(right_pid_);
    if (l && r) {
      neighbours_closed = true;
      break;
    }
    if (Clock::now() >= until) break;
    std::this_thread::sleep_for(Millis(1));
  }
  if (neighbours_closed) {
    for (int k = 0; k < cfg_.slots; ++k) {
      (void)cudaEventDestroy(filled_[k]);
      (void)cudaEventDestroy(consumed_[k]);
    }
    (void)cudaFree(recv_buf_);
  }
  (void)cudaGetLastError();
}

// ---- the proxy thread

void CudaRingGroup::proxy_main() {
  const cudaError_t set = cudaSetDevice(dev_);
  if (set != cudaSuccess) {
    (void)cudaGetLastError();
    broken_ = std::string("cudaSetDevice failed in the ring's proxy thread: ") + cudaGetErrorString(set);
  }
  for (;;) {
    Task task;
    {
      std::unique_lock<std::mutex> g(mu_);
      cv_.wait(g, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    std::exception_ptr error;
    try {
      if (!broken_.empty()) {
        RG_THROW("rank ", rank_, ": ", task.info.describe(), " not run: the CUDA ring group failed earlier (",
                 broken_, ")");
      }
      const Ctx ctx{&task.info, Clock::now() + task.timeout, cuda::raw(comm_), task.timeout};
      task.work->ready_.block(comm_);
      task.work->start_.record(comm_);
      task.body(ctx);
      task.work->end_.record(comm_);
    } catch (const std::exception& e) {
      error = std::current_exception();
      if (broken_.empty()) {
        broken_ = e.what();
        if (ring_) my_page_.get()->aborted.store(1, std::memory_order_release);
      }
    } catch (...) {
      error = std::current_exception();
      if (broken_.empty()) broken_ = "unknown error";
      if (ring_) my_page_.get()->aborted.store(1, std::memory_order_release);
    }
    task.work->keep_.clear();
    task.work->finish_queueing(error);
  }
}

void CudaRingGroup::check_device(const Tensor& t, const char* op) const {
  RG_CHECK(t.device() == device_, op, ": this CUDA ring group works on ", device_.str(), ", got a tensor on ",
           t.device().str());
}

std::shared_ptr<Work> CudaRingGroup::submit(const CollectiveInfo& info, std::vector<Tensor> tensors, Body body,
                                            bool sync_on_wait) {
  auto work = std::make_shared<CudaRingWork>(dev_, timeout_, info, sync_on_wait, self_);
  {
    cuda::DeviceGuard guard(dev_);
    work->ready_.record(cuda::current_stream(dev_));
    for (const Tensor& t : tensors) {
      if (t.numel() > 0) cuda::record_stream(t.storage()->data, comm_);  // the allocator's block start
    }
  }
  work->keep_ = std::move(tensors);
  {
    std::lock_guard<std::mutex> g(mu_);
    queue_.push_back(Task{work, info, timeout_, std::move(body)});
  }
  cv_.notify_one();
  return work;
}

// ---- host waits and slot hand-over (Note [CUDA ring protocol])

void CudaRingGroup::wait_counter(const std::atomic<uint64_t>& counter, uint64_t target, const RingPage* peer,
                                 int peer_rank, const char* what, const Ctx& ctx) {
  const int peer_pid = peer_rank == left() ? left_pid_ : right_pid_;
  for (uint64_t i = 0;; ++i) {
    if (counter.load(std::memory_order_acquire) >= target) return;
    // A flag is set after the peer's last counter store: look at the counter once more before failing.
    const bool aborted = peer->aborted.load(std::memory_order_acquire) != 0;
    const bool closed = peer->closed.load(std::memory_order_acquire) != 0;
    if ((aborted || closed) && counter.load(std::memory_order_acquire) < target) {
      RG_THROW("rank ", rank_, ": ", ctx.info->describe(), ": rank ", peer_rank,
               aborted ? " gave up on its collectives after an error (see its log)"
                       : " destroyed its process group without running this collective",
               ", so this rank cannot finish");
    }
    if (i < 512) {
      cpu_relax();
      continue;
    }
    if (i < 2048) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(i < 8192 ? 10 : 100));
    }
    if ((i & 15) == 0) {
      if (Clock::now() >= ctx.deadline) {
        raise_timeout(*ctx.info, "rank " + std::to_string(rank_) + " waited for rank " + std::to_string(peer_rank) +
                                     " to " + what + " message " + std::to_string(target - 1) +
                                     " of their link; it got to " + std::to_string(counter.load()));
      }
      if ((i & 1023) == 0 && !pid_alive(peer_pid)) {
        RG_THROW("rank ", rank_, ": ", ctx.info->describe(), ": rank ", peer_rank, " (pid ", peer_pid,
                 ") exited in the middle of the collective");
      }
    }
  }
}

char* CudaRingGroup::recv_begin(const Ctx& ctx) {
  const uint64_t m = received_;
  const int k = static_cast<int>(m % static_cast<uint64_t>(cfg_.slots));
  wait_counter(left_page_.get()->posted, m + 1, left_page_.get(), left(), "send", ctx);
  RG_CUDA_CHECK(cudaStreamWaitEvent(ctx.stream, left_filled_[k], 0));
  return static_cast<char*>(recv_buf_) + static_cast<int64_t>(k) * cfg_.slot_bytes;
}

void CudaRingGroup::recv_end(const Ctx& ctx) {
  const int k = static_cast<int>(received_ % static_cast<uint64_t>(cfg_.slots));
  RG_CUDA_CHECK(cudaEventRecord(consumed_[k], ctx.stream));
  ++received_;
  my_page_.get()->consumed.store(received_, std::memory_order_release);
}

char* CudaRingGroup::send_begin(const Ctx& ctx) {
  const uint64_t m = sent_;
  const uint64_t S = static_cast<uint64_t>(cfg_.slots);
  const int k = static_cast<int>(m % S);
  if (m >= S) {  // slot k last carried message m - S: the right neighbour must be done with it
    wait_counter(right_page_.get()->consumed, m - S + 1, right_page_.get(), right(), "consume", ctx);
    RG_CUDA_CHECK(cudaStreamWaitEvent(ctx.stream, right_consumed_[k], 0));
  }
  return static_cast<char*>(right_buf_) + static_cast<int64_t>(k) * cfg_.slot_bytes;
}

void CudaRingGroup::send_end(const Ctx& ctx) {
  const int k = static_cast<int>(sent_ % static_cast<uint64_t>(cfg_.slots));
  RG_CUDA_CHECK(cudaEventRecord(filled_[k], ctx.stream));
  ++sent_;
  my_page_.get()->posted.store(sent_, std::memory_order_release);
}

// ---- the algorithms (proxy thread). Block numbers are taken mod size.

// The schedules of distributed/cuda_ring_schedule.h over the IPC links and the comm kernels.
struct CudaRingGroup::LinkOps {
  CudaRingGroup* g;
  const Ctx* ctx;
  char* recv_begin() { return g->recv_begin(*ctx); }
  void recv_end() { g->recv_end(*ctx); }
  char* send_begin() { return g->send_begin(*ctx); }
  void send_end() { g->send_end(*ctx); }
  void reduce(void* y1, void* y2, const void* a, const void* b, int64_t n, DType t, ReduceOp op, int divisor) {
    cuda::ring_reduce_out_cuda(y1, y2, a, b, n, t, comm_op(op), divisor, ctx->stream);
  }
  void copy(void* y1, void* y2, const void* src, int64_t nbytes) {
    cuda::ring_copy_cuda(y1, y2, src, nbytes, ctx->stream);
  }
};

void CudaRingGroup::ring_allreduce(const Ctx& ctx, char* data, int64_t n, DType t, ReduceOp op) {
  LinkOps ops{this, &ctx};
  ring_schedule::allreduce(ops, rank_, size_, cfg_, data, n, t, op);
}

void CudaRingGroup::ring_reduce_scatter(const Ctx& ctx, char* out, const char* in, int64_t m, DType t, ReduceOp op) {
  LinkOps ops{this, &ctx};
  ring_schedule::reduce_scatter(ops, rank_, size_, cfg_, out, in, m, t, op);
}

void CudaRingGroup::ring_allgather(const Ctx& ctx, char* out, const char* in, int64_t m, DType t) {
  LinkOps ops{this, &ctx};
  ring_schedule::allgather(ops, rank_, size_, cfg_, out, in, m, t);
}

void CudaRingGroup::ring_broadcast(const Ctx& ctx, char* data, int64_t n, DType t, int root) {
  LinkOps ops{this, &ctx};
  ring_schedule::broadcast(ops, rank_, size_, cfg_, data, n, t, root);
}

// Ranks on several machines: device -> host, the CPU ring group, host -> device, all on the proxy
// thread (the caller's thread is not blocked; the proxy thread is).
void CudaRingGroup::staged(const Ctx& ctx, const std::function<void()>& cpu_part) {
  RG_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  cpu_group_->set_timeout(ctx.timeout);
  cpu_part();
}

// ---- the collectives

std::shared_ptr<Work> CudaRingGroup::do_allreduce(const Tensor& t, ReduceOp op, const CollectiveInfo& info) {
  check_device(t, "allreduce");
  const int64_t n = t.numel();
  const DType dt = t.dtype();
  if (size_ == 1 || n == 0) return submit(info, {t}, [](const Ctx&) {});  // avg over one rank is the identity
  if (cpu_group_) {
    return submit(info, {t}, [this, t, n, dt, op](const Ctx& ctx) {
      Tensor host = rg::empty(Shape{n}, TensorOptions(dt));
      RG_CUDA_CHECK(cudaMemcpyAsync(host.data_ptr(), t.data_ptr(), t.nbytes(), cudaMemcpyDeviceToHost, ctx.stream));
      staged(ctx, [&] { cpu_group_->allreduce(host, op)->wait(); });
      RG_CUDA_CHECK(cudaMemcpyAsync(t.data_ptr(), host.data_ptr(), t.nbytes(), cudaMemcpyHostToDevice, ctx.stream));
      RG_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
    });
  }
  return submit(info, {t}, [this, t, n, dt, op](const Ctx& ctx) { ring_allreduce(ctx, byte_ptr(t), n, dt, op); });
}

std::shared_ptr<Work> CudaRingGroup::do_broadcast(const Tensor& t, int root, const CollectiveInfo& info) {
  check_device(t, "broadcast");
  const int64_t n = t.numel();
  const DType dt = t.dtype();
  if (size_ == 1 || n == 0) return submit(info, {t}, [](const Ctx&) {});
  if (cpu_group_) {
    return submit(info, {t}, [this, t, n, dt, root](const Ctx& ctx) {
      Tensor host = rg::empty(Shape{n}, TensorOptions(dt));
      RG_CUDA_CHECK(cudaMemcpyAsync(host.data_ptr(), t.data_ptr(), t.nbytes(), cudaMemcpyDeviceToHost, ctx.stream));
      staged(ctx, [&] { cpu_group_->broadcast(host, root)->wait(); });
      RG_CUDA_CHECK(cudaMemcpyAsync(t.data_ptr(), host.data_ptr(), t.nbytes(), cudaMemcpyHostToDevice, ctx.stream));
      RG_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
    });
  }
  return submit(info, {t}, [this, t, n, dt, root](const Ctx& ctx) { ring_broadcast(ctx, byte_ptr(t), n, dt, root); });
}

std::shared_ptr<Work> CudaRingGroup::do_allgather(const Tensor& out, const Tensor& in, const CollectiveInfo& info) {
  check_device(out, "allgather");
  check_device(in, "allgather");
  const int64_t m = in.numel();
  const DType dt = in.dtype();
  const int64_t es = static_cast<int64_t>(dtype_size(dt));
  if (m == 0) return submit(info, {out, in}, [](const Ctx&) {});
  if (size_ == 1) {
    return submit(info, {out, in}, [out, in, m, es](const Ctx& ctx) {
      cuda::ring_copy_cuda(out.data_ptr(), nullptr, in.data_ptr(), m * es, ctx.stream);
    });
  }
  if (cpu_group_) {
    return submit(info, {out, in}, [this, out, in, m, dt](const Ctx& ctx) {
      Tensor hin = rg::empty(Shape{m}, TensorOptions(dt));
      Tensor hout = rg::empty(Shape{m * size_}, TensorOptions(dt));
      RG_CUDA_CHECK(cudaMemcpyAsync(hin.data_ptr(), in.data_ptr(), in.nbytes(), cudaMemcpyDeviceToHost, ctx.stream));
      staged(ctx, [&] { cpu_group_->allgather(hout, hin)->wait(); });
      RG_CUDA_CHECK(cudaMemcpyAsync(out.data_ptr(), hout.data_ptr(), out.nbytes(), cudaMemcpyHostToDevice, ctx.stream));
      RG_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
    });
  }
  return submit(info, {out, in},
                [this, out, in, m, dt](const Ctx& ctx) { ring_allgather(ctx, byte_ptr(out), byte_ptr(in), m, dt); });
}

std::shared_ptr<Work> CudaRingGroup::do_reduce_scatter(const Tensor& out, const Tensor& in, ReduceOp op,
                                                       const CollectiveInfo& info) {
  check_device(out, "reduce_scatter");
  check_device(in, "reduce_scatter");
  const int64_t m = out.numel();
  const DType dt = out.dtype();
  const int64_t es = static_cast<int64_t>(dtype_size(dt));
  if (m == 0) return submit(info, {out, in}, [](const Ctx&) {});
  if (size_ == 1) {  // the reduction of one slice is the slice (avg divides by 1)
    return submit(info, {out, in}, [out, in, m, es](const Ctx& ctx) {
      cuda::ring_copy_cuda(out.data_ptr(), nullptr, in.data_ptr(), m * es, ctx.stream);
    });
  }
  if (cpu_group_) {
    return submit(info, {out, in}, [this, out, in, m, dt, op](const Ctx& ctx) {
      Tensor hin = rg::empty(Shape{m * size_}, TensorOptions(dt));
      Tensor hout = rg::empty(Shape{m}, TensorOptions(dt));
      RG_CUDA_CHECK(cudaMemcpyAsync(hin.data_ptr(), in.data_ptr(), in.nbytes(), cudaMemcpyDeviceToHost, ctx.stream));
      staged(ctx, [&] { cpu_group_->reduce_scatter(hout, hin, op)->wait(); });
      RG_CUDA_CHECK(cudaMemcpyAsync(out.data_ptr(), hout.data_ptr(), out.nbytes(), cudaMemcpyHostToDevice, ctx.stream));
      RG_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
    });
  }
  return submit(info, {out, in}, [this, out, in, m, dt, op](const Ctx& ctx) {
    ring_reduce_scatter(ctx, byte_ptr(out), byte_ptr(in), m, dt, op);
  });
}

std::shared_ptr<Work> CudaRingGroup::do_barrier(const CollectiveInfo& info) {
  if (size_ == 1) return submit(info, {}, [](const Ctx&) {}, /*sync_on_wait=*/true);
  if (cpu_group_) {
    return submit(info, {}, [this](const Ctx& ctx) { staged(ctx, [&] { cpu_group_->barrier()->wait(); }); }, true);
  }
  // A one-element allreduce: it completes on a rank only after every rank has queued it.
  return submit(info, {}, [this](const Ctx& ctx) {
    ring_allreduce(ctx, static_cast<char*>(scratch_), 1, DType::i32, ReduceOp::Sum);
  }, /*sync_on_wait=*/true);
}

// ---- factory and registration

std::shared_ptr<ProcessGroup> make_cuda_ring_group(std::shared_ptr<Store> store, int rank, int size, Device device,
                                                   const CudaRingConfig& cfg) {
  auto g = std::make_shared<CudaRingGroup>(std::move(store), rank, size, device, cfg);
  g->start(g);
  return g;
}

void register_cuda_ring_backend() {
  static std::once_flag once;
  std::call_once(once, [] {
    register_backend("ring", DeviceType::CUDA, [](std::shared_ptr<Store> store, int rank, int size, Device device) {
      return make_cuda_ring_group(std::move(store), rank, size, device);
    });
  });
}

namespace {
const bool g_registered = (register_cuda_ring_backend(), true);
}  // namespace

}  // namespace rg::dist
