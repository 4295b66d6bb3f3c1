// The ring's shared-memory transport: each rank owns a segment holding its incoming ring buffer
// (written by prev) and its doorbell futex; waits spin briefly, yield, then sleep on the futex.
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <random>
#include <thread>

#include "core/error.h"
#include "distributed/socket_util.h"
#include "distributed/transport.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define RG_CPU_RELAX() _mm_pause()
#else
#define RG_CPU_RELAX() std::atomic_signal_fence(std::memory_order_seq_cst)
#endif

namespace rg::dist::detail {

namespace {

constexpr uint64_t kMagic = 0x52474d48535230ull;  // "0RSHMGR"
constexpr size_t kDefaultRingBytes = size_t{4} << 20;

// Note [Shm ring]
// Segment of rank r = header + ring (power-of-two bytes). head counts bytes ever written (by
// prev), tail bytes ever read (by r): used = head - tail. After moving bytes a side bumps the
// other rank's doorbell and wakes it if it sleeps. A sleeper reads its bell, raises `sleeping`,
// re-checks its conditions and only then futex-waits on the bell value it read: a bump between
// the read and the wait makes the wait return at once, so no wake-up is lost. All of these
// accesses are seq_cst. The atomics are lock-free, hence address-free across processes.
struct alignas(64) SegmentHeader {
  uint64_t magic;
  int32_t pid;  // the owner, for liveness checks
  uint32_t pad0;
  uint64_t pid_ns;  // inode of the owner's pid namespace: its pid means something to us only if equal
  uint64_t capacity;
  alignas(64) std::atomic<uint32_t> bell;
  std::atomic<uint32_t> sleeping;
  alignas(64) std::atomic<uint64_t> head;
  alignas(64) std::atomic<uint64_t> tail;
};
static_assert(std::atomic<uint32_t>::is_always_lock_free && std::atomic<uint64_t>::is_always_lock_free);
constexpr size_t kDataOffset = 4096;
static_assert(sizeof(SegmentHeader) <= kDataOffset);

long futex(std::atomic<uint32_t>* addr, int op, uint32_t val, const timespec* ts) {
  return ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), op, val, ts, nullptr, 0);
}

void ring_bell(SegmentHeader* h) {
  h->bell.fetch_add(1);
  if (h->sleeping.load()) futex(&h->bell, FUTEX_WAKE, INT_MAX, nullptr);
}

// A process that has exited (gone, or a zombie not yet reaped) is dead.
bool pid_alive(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  if (!f) return false;
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const size_t p = s.rfind(')');
  if (p == std::string::npos || p + 2 >= s.size()) return true;
  const char state = s[p + 2];
  return state != 'Z' && state != 'X';
}

uint64_t pid_namespace() {
  struct stat st {};
  return ::stat("/proc/self/ns/pid", &st) == 0 ? static_cast<uint64_t>(st.st_ino) : 0;
}

size_t ring_bytes() {
  const char* v = std::getenv("RINGGRAD_SHM_RING_BYTES");
  size_t n = v ? static_cast<size_t>(std::strtoull(v, nullptr, 10)) : kDefaultRingBytes;
  size_t p = 4096;
  while (p < n && p < (size_t{1} << 30)) p <<= 1;  // a power of two, at least a page
  return p;
}

struct Mapping {
  void* base = nullptr;
  size_t bytes = 0;
  Mapping() = default;
  Mapping(void* b, size_t n) : base(b), bytes(n) {}
  Mapping(Mapping&& o) noexcept : base(o.base), bytes(o.bytes) { o.base = nullptr; }
  Mapping& operator=(Mapping&& o) noexcept {
    std::swap(base, o.base);
    std::swap(bytes, o.bytes);
    return *this;
  }
  ~Mapping() {
    if (base) ::munmap(base, bytes);
  }
  SegmentHeader* header() const { return static_cast<SegmentHeader*>(base); }
  char* data() const { return static_cast<char*>(base) + kDataOffset; }
};

class ShmRingLink final : public RingLink {
 public:
  ShmRingLink(int rank, int size) : rank_(rank) {
    next_ = (rank + 1) % size;
    prev_ = (rank - 1 + size) % size;
    oversubscribed_ = size > static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  ~ShmRingLink() override {
    if (!own_name_.empty()) ::shm_unlink(own_name_.c_str());
  }

  void setup(Store& store, Millis timeout) {
    std::string token;
    if (rank_ == 0) {
      std::random_device rd;
      char buf[64];
      std::snprintf(buf, sizeof buf, "%d-%08x%08x", static_cast<int>(::getpid()), rd(), rd());
      token = buf;
      store.set("ring/shm/token", token);
    } else {
      store.wait({"ring/shm/token"}, timeout);
      token = store.get_string("ring/shm/token");
    }
    const size_t cap = ring_bytes();
    const size_t bytes = kDataOffset + cap;
    own_name_ = "/rg-" + token + "-" + std::to_string(rank_);
    {
      const int fd = ::shm_open(own_name_.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
      if (fd < 0) {
        const int e = errno;
        own_name_.clear();
        RG_THROW("ring (shm): rank ", rank_, " cannot create shared memory /dev/shm/", "rg-", token, "-", rank_, ": ",
                 net::errno_str(e), " (set RINGGRAD_RING_TRANSPORT=tcp to avoid shared memory)");
      }
      const int rc = ::ftruncate(fd, static_cast<off_t>(bytes));
      const int e = errno;
      void* p = rc == 0 ? ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
      ::close(fd);
      RG_CHECK(p != MAP_FAILED, "ring (shm): rank ", rank_, " cannot size/map ", bytes, " bytes of shared memory: ",
               net::errno_str(rc == 0 ? errno : e));
      own_ = Mapping(p, bytes);
      auto* h = new (p) SegmentHeader{};
      h->pid = static_cast<int32_t>(::getpid());
      h->pid_ns = pid_namespace();
      h->capacity = cap;
      h->magic = kMagic;
    }
    store.set("ring/shm/ready/" + std::to_string(rank_), std::to_string(::getpid()));
    next_map_ = open_peer(store, token, next_, timeout);
    if (prev_ != next_) prev_map_ = open_peer(store, token, prev_, timeout);
    // prev and next map our segment; once both have, the name can go (nothing leaks on a crash).
    store.set("ring/shm/mapped/" + std::to_string(rank_), "1");
    store.wait({"ring/shm/mapped/" + std::to_string(prev_), "ring/shm/mapped/" + std::to_string(next_)}, timeout);
    ::shm_unlink(own_name_.c_str());
    own_name_.clear();
    next_h_ = next_map_.header();
    prev_h_ = prev_ != next_ ? prev_map_.header() : next_h_;
    own_h_ = own_.header();
    next_pid_ = next_h_->pid;
    prev_pid_ = prev_h_->pid;
    // In another pid namespace the peers' pids mean nothing here: then skip liveness checks.
    check_pids_ = own_h_->pid_ns != 0 && next_h_->pid_ns == own_h_->pid_ns && prev_h_->pid_ns == own_h_->pid_ns;
  }

  size_t try_send(const void* p, size_t n) override {
    SegmentHeader* h = next_h_;
    const uint64_t cap = h->capacity;
    const uint64_t head = h->head.load(std::memory_order_relaxed);  // we are the only writer
    const uint64_t used = head - h->tail.load();
    const size_t k = static_cast<size_t>(std::min<uint64_t>(n, cap - used));
    if (k == 0) return 0;
    const size_t pos = static_cast<size_t>(head & (cap - 1));
    const size_t first = std::min(k, static_cast<size_t>(cap) - pos);
    char* data = next_map_.data();
    std::memcpy(data + pos, p, first);
    if (first < k) std::memcpy(data, static_cast<const char*>(p) + first, k - first);
    h->head.store(head + k);
    ring_bell(h);
    return k;
  }

  size_t try_recv(void* p, size_t n) override {
    SegmentHeader* h = own_h_;
    const uint64_t cap = h->capacity;
    const uint64_t tail = h->tail.load(std::memory_order_relaxed);  // we are the only reader
    const uint64_t avail = h->head.load() - tail;
    const size_t k = static_cast<size_t>(std::min<uint64_t>(n, avail));
    if (k == 0) return 0;
    const size_t pos = static_cast<size_t>(tail & (cap - 1));
    const size_t first = std::min(k, static_cast<size_t>(cap) - pos);
    const char* data = own_.data();
    std::memcpy(p, data + pos, first);
    if (first < k) std::memcpy(static_cast<char*>(p) + first, data, k - first);
    h->tail.store(tail + k);
    ring_bell(prev_h_);
    return k;
  }

  bool wait(bool want_send, bool want_recv, Deadline deadline, const std::atomic<bool>& abort) override {
    auto ready = [&] {
      if (want_recv && own_h_->head.load() != own_h_->tail.load(std::memory_order_relaxed)) return true;
      if (want_send && next_h_->head.load(std::memory_order_relaxed) - next_h_->tail.load() < next_h_->capacity) {
        return true;
      }
      return false;
    };
    // Spin a few microseconds only when every rank has a core; then yield (which lets a peer that
    // shares our core run, and costs ~0.5 us when nobody else wants it) for up to 200 us; then
    // sleep on the futex. Pure spinning would starve a peer when the cores are busy elsewhere.
    if (!oversubscribed_) {
      for (int i = 0; i < 256; ++i) {
        if (ready()) return true;
        RG_CPU_RELAX();
      }
    }
    const auto yield_until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
    for (int i = 0;; ++i) {
      if (ready()) return true;
      sched_yield();
      if ((i & 15) == 15 && std::chrono::steady_clock::now() >= yield_until) break;
    }
    for (;;) {
      const uint32_t seen = own_h_->bell.load();
      own_h_->sleeping.store(1);
      if (ready()) {
        own_h_->sleeping.store(0);
        return true;
      }
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline || abort.load()) {
        own_h_->sleeping.store(0);
        return false;
      }
      const auto slice = std::min<int64_t>(
          100, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1);
      timespec ts{static_cast<time_t>(slice / 1000), static_cast<long>((slice % 1000) * 1000000)};
      futex(&own_h_->bell, FUTEX_WAIT, seen, &ts);
      own_h_->sleeping.store(0);
      if (ready()) return true;
      if (check_pids_) {
        if (want_recv && !pid_alive(prev_pid_)) {
          throw LinkError("rank " + std::to_string(prev_) + " (pid " + std::to_string(prev_pid_) +
                          ") died (it exited or crashed)");
        }
        if (want_send && !pid_alive(next_pid_)) {
          throw LinkError("rank " + std::to_string(next_) + " (pid " + std::to_string(next_pid_) +
                          ") died (it exited or crashed)");
        }
      }
    }
  }

  const char* kind() const override { return "shm"; }

  bool zero_copy() const override { return true; }
  const char* peek(size_t* n) override {
    const uint64_t cap = own_h_->capacity;
    const uint64_t tail = own_h_->tail.load(std::memory_order_relaxed);
    const uint64_t avail = own_h_->head.load() - tail;
    const uint64_t pos = tail & (cap - 1);
    *n = static_cast<size_t>(std::min<uint64_t>(avail, cap - pos));
    return own_.data() + pos;
  }
  void release(size_t n) override {
    own_h_->tail.store(own_h_->tail.load(std::memory_order_relaxed) + n);
    ring_bell(prev_h_);
  }
  size_t send_pad(size_t a) const override {
    return static_cast<size_t>((a - next_h_->head.load(std::memory_order_relaxed) % a) % a);
  }
  size_t recv_pad(size_t a) const override {
    return static_cast<size_t>((a - own_h_->tail.load(std::memory_order_relaxed) % a) % a);
  }

 private:
  Mapping open_peer(Store& store, const std::string& token, int peer, Millis timeout) {
    store.wait({"ring/shm/ready/" + std::to_string(peer)}, timeout);
    const std::string name = "/rg-" + token + "-" + std::to_string(peer);
    const int fd = ::shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0600);
    RG_CHECK(fd >= 0, "ring (shm): rank ", rank_, " cannot open rank ", peer, "'s shared memory ", name, ": ",
             net::errno_str(errno), " (are the ranks really on one host? set RINGGRAD_RING_TRANSPORT=tcp)");
    struct stat st {};
    ::fstat(fd, &st);
    const size_t bytes = static_cast<size_t>(st.st_size);
    void* p = bytes >= kDataOffset ? ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
    ::close(fd);
    RG_CHECK(p != MAP_FAILED, "ring (shm): rank ", rank_, " cannot map rank ", peer, "'s shared memory ", name);
    Mapping m(p, bytes);
    RG_CHECK(m.header()->magic == kMagic && kDataOffset + m.header()->capacity == bytes, "ring (shm): rank ", peer,
             "'s shared memory ", name, " is not a ringgrad ring segment");
    return m;
  }

  int rank_, next_, prev_;
  bool oversubscribed_ = false, check_pids_ = false;
  std::string own_name_;
  Mapping own_, next_map_, prev_map_;
  SegmentHeader *own_h_ = nullptr, *next_h_ = nullptr, *prev_h_ = nullptr;
  int next_pid_ = 0, prev_pid_ = 0;
};

}  // namespace

std::unique_ptr<RingLink> connect_shm_ring(Store& store, int rank, int size, Millis timeout) {
  auto link = std::make_unique<ShmRingLink>(rank, size);
  link->setup(store, timeout);
  return link;
}

std::string host_identity() {
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  std::string boot;
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::getline(f, boot);
  return std::string(host) + "/" + boot;
}

}  // namespace rg::dist::detail
