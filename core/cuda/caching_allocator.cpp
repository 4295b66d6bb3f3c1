// The CUDA caching allocator: cudaMalloc'd segments are split into blocks, cached per stream and
// reused, so steady-state training allocates nothing from the driver. Note [Caching allocator streams].
#include <cuda_runtime.h>

#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <unordered_map>
#include <vector>

#include "core/cuda/cuda_check.h"

namespace rg::cuda {

// Note [Caching allocator streams]
// A block is owned by the stream it was allocated on. Freeing it makes it reusable at once by
// that stream, since later work on the same stream is ordered after every earlier use. A block
// also used on another stream (record_stream) is held back until an event recorded on each such
// stream at free time has completed. Sizes round to 512 B; requests of 1 MiB or less come from
// 2 MiB segments (the small pool), larger ones from 20 MiB segments or their own 2 MiB-rounded
// segment (the large pool). Free neighbours within a segment merge.
namespace {
constexpr size_t kRound = 512;
constexpr size_t kSmallSize = size_t{1} << 20;
constexpr size_t kSmallBuffer = size_t{2} << 20;
constexpr size_t kLargeBuffer = size_t{20} << 20;
constexpr size_t kMinLargeAlloc = size_t{10} << 20;
constexpr size_t kRoundLarge = size_t{2} << 20;

size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

struct Block {
  int device = 0;
  cudaStream_t stream = nullptr;
  size_t size = 0;
  char* ptr = nullptr;
  bool small = false;
  bool allocated = false;
  int pending_events = 0;
  Block* prev = nullptr;  // neighbours inside one cudaMalloc segment
  Block* next = nullptr;
  std::vector<Stream> other_streams;
};

struct BlockLess {
  bool operator()(const Block* a, const Block* b) const {
    if (a->stream != b->stream) return reinterpret_cast<uintptr_t>(a->stream) < reinterpret_cast<uintptr_t>(b->stream);
    if (a->size != b->size) return a->size < b->size;
    return reinterpret_cast<uintptr_t>(a->ptr) < reinterpret_cast<uintptr_t>(b->ptr);
  }
};

struct DeviceCache {
  std::set<Block*, BlockLess> small_free, large_free;
  std::deque<std::pair<cudaEvent_t, Block*>> pending;
  MemoryStats stats;
};

std::string mib(int64_t b) { return std::to_string(static_cast<double>(b) / (1 << 20)) + " MiB"; }

class CachingAllocator {
 public:
  void* alloc(size_t nbytes, int device, cudaStream_t stream) {
    std::lock_guard<std::mutex> lk(mu_);
    DeviceCache& dc = cache(device);
    process_pending(dc);
    const size_t size = round_up(nbytes == 0 ? 1 : nbytes, kRound);
    const bool small = size <= kSmallSize;
    auto& pool = small ? dc.small_free : dc.large_free;
    Block key;
    key.stream = stream;
    key.size = size;
    Block* b = nullptr;
    auto it = pool.lower_bound(&key);
    if (it != pool.end() && (*it)->stream == stream) {
      b = *it;
      pool.erase(it);
    } else {
      const size_t seg = small ? kSmallBuffer : (size < kMinLargeAlloc ? kLargeBuffer : round_up(size, kRoundLarge));
      b = new_segment(dc, device, stream, seg, small, nbytes);
    }
    const size_t rest = b->size - size;
    if (small ? rest >= kRound : rest > kSmallSize) {  // split: the tail goes back to the pool
      auto tail = std::make_unique<Block>();
      tail->device = device;
      tail->stream = stream;
      tail->size = rest;
      tail->ptr = b->ptr + size;
      tail->small = small;
      tail->prev = b;
      tail->next = b->next;
      if (b->next) b->next->prev = tail.get();
      b->next = tail.get();
      b->size = size;
      pool.insert(tail.get());
      blocks_[tail->ptr] = std::move(tail);
    }
    b->allocated = true;
    dc.stats.allocated += static_cast<int64_t>(b->size);
    dc.stats.peak_allocated = std::max(dc.stats.peak_allocated, dc.stats.allocated);
    ++dc.stats.num_allocs;
    return b->ptr;
  }

  void free(void* ptr) {
    if (!ptr) return;
    std::lock_guard<std::mutex> lk(mu_);
    auto it = blocks_.find(ptr);
    RG_CHECK(it != blocks_.end() && it->second->allocated, "caching allocator: free of unknown pointer");
    Block* b = it->second.get();
    DeviceCache& dc = cache(b->device);
    b->allocated = false;
    dc.stats.allocated -= static_cast<int64_t>(b->size);
    if (!b->other_streams.empty()) {
      DeviceGuard g(b->device);
      for (const Stream& s : b->other_streams) {
        cudaEvent_t e = nullptr;
        RG_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
        RG_CUDA_CHECK(cudaEventRecord(e, raw(s)));
        dc.pending.emplace_back(e, b);
        ++b->pending_events;
      }
      b->other_streams.clear();
      return;
    }
    release_to_pool(dc, b);
  }

  void record_stream(void* ptr, const Stream& s) {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = blocks_.find(ptr);
    if (it == blocks_.end() || !it->second->allocated) return;  // not a live block start
    Block* b = it->second.get();
    if (raw(s) == b->stream) return;
    for (const Stream& o : b->other_streams) {
      if (o == s) return;
    }
    b->other_streams.push_back(s);
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lk(mu_);
    for (size_t d = 0; d < caches_.size(); ++d) {
      drain_pending(*caches_[d]);
      release_cached(*caches_[d], static_cast<int>(d));
    }
  }

  MemoryStats stats(int device) {
    std::lock_guard<std::mutex> lk(mu_);
    return cache(device).stats;
  }
  void reset_peak(int device) {
    std::lock_guard<std::mutex> lk(mu_);
    auto& s = cache(device).stats;
    s.peak_allocated = s.allocated;
    s.peak_reserved = s.reserved;
  }

 private:
  DeviceCache& cache(int device) {
    while (static_cast<int>(caches_.size()) <= device) caches_.push_back(std::make_unique<DeviceCache>());
    return *caches_[device];
  }

  Block* new_segment(DeviceCache& dc, int device, cudaStream_t stream, size_t seg, bool small, size_t asked) {
    DeviceGuard g(device);
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, seg);
    if (e == cudaErrorMemoryAllocation) {  // give the cache back to the driver and try once more
      (void)cudaGetLastError();
      drain_pending(dc);  // blocks held back by record_stream count too
      release_cached(dc, device);
      e = cudaMalloc(&p, seg);
    }
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      (void)cudaMemGetInfo(&free_b, &total_b);
      (void)cudaGetLastError();
      RG_THROW("CUDA out of memory on cuda:", device, ": tried to allocate ", mib(static_cast<int64_t>(asked)),
               " (segment ", mib(static_cast<int64_t>(seg)), "); ", mib(dc.stats.allocated), " allocated by ringgrad, ",
               mib(dc.stats.reserved), " reserved, ", mib(static_cast<int64_t>(free_b)), " free of ",
               mib(static_cast<int64_t>(total_b)), " (", cudaGetErrorString(e), ")");
    }
    auto b = std::make_unique<Block>();
    b->device = device;
    b->stream = stream;
    b->size = seg;
    b->ptr = static_cast<char*>(p);
    b->small = small;
    dc.stats.reserved += static_cast<int64_t>(seg);
    dc.stats.peak_reserved = std::max(dc.stats.peak_reserved, dc.stats.reserved);
    ++dc.stats.num_cuda_mallocs;
    Block* raw_b = b.get();
    blocks_[b->ptr] = std::move(b);
    return raw_b;
  }

  static bool mergeable(const Block* n) { return n && !n->allocated && n->pending_events == 0; }

  void release_to_pool(DeviceCache& dc, Block* b) {
    auto& pool = b->small ? dc.small_free : dc.large_free;
    if (mergeable(b->prev)) {
      Block* p = b->prev;
      pool.erase(p);
      p->size += b->size;
      p->next = b->next;
      if (b->next) b->next->prev = p;
      blocks_.erase(b->ptr);
      b = p;
    }
    if (mergeable(b->next)) {
      Block* n = b->next;
      pool.erase(n);
      b->size += n->size;
      b->next = n->next;
      if (n->next) n->next->prev = b;
      blocks_.erase(n->ptr);
    }
    pool.insert(b);
  }

  void process_pending(DeviceCache& dc) {
    while (!dc.pending.empty()) {
      auto [e, b] = dc.pending.front();
      const cudaError_t q = cudaEventQuery(e);
      if (q == cudaErrorNotReady) {
        (void)cudaGetLastError();
        break;
      }
      RG_CUDA_CHECK(q);
      RG_CUDA_CHECK(cudaEventDestroy(e));
      dc.pending.pop_front();
      if (--b->pending_events == 0) release_to_pool(dc, b);
    }
  }

  // Waits for every event of dc's held-back blocks, then returns those blocks to their pools.
  void drain_pending(DeviceCache& dc) {
    for (const auto& pe : dc.pending) RG_CUDA_CHECK(cudaEventSynchronize(pe.first));
    process_pending(dc);
  }

  void release_cached(DeviceCache& dc, int device) {
    DeviceGuard g(device);
    for (auto* pool : {&dc.small_free, &dc.large_free}) {
      for (auto it = pool->begin(); it != pool->end();) {
        Block* b = *it;
        if (!b->prev && !b->next) {  // a whole, free segment
          RG_CUDA_CHECK(cudaFree(b->ptr));
          dc.stats.reserved -= static_cast<int64_t>(b->size);
          it = pool->erase(it);
          blocks_.erase(b->ptr);
        } else {
          ++it;
        }
      }
    }
  }

  std::mutex mu_;
  std::unordered_map<void*, std::unique_ptr<Block>> blocks_;
  std::vector<std::unique_ptr<DeviceCache>> caches_;
};

CachingAllocator& allocator() {
  static auto* a = new CachingAllocator();  // never destroyed: tensors may outlive static teardown
  return *a;
}

// ---- pinned host memory: exact-size free lists, never returned to the driver
std::mutex g_pinned_mu;
std::unordered_map<void*, std::pair<size_t, bool>> g_pinned_live;  // ptr -> (size, is_pinned)
std::unordered_map<size_t, std::vector<void*>> g_pinned_free;
}  // namespace

void* caching_alloc(size_t nbytes, int device, const Stream& stream) {
  return allocator().alloc(nbytes, device, raw(stream));
}
void caching_free(void* ptr) { allocator().free(ptr); }
void record_stream(void* ptr, const Stream& s) { allocator().record_stream(ptr, s); }
void empty_cache() { allocator().empty_cache(); }
MemoryStats memory_stats(int device) { return allocator().stats(device < 0 ? current_device() : device); }
void reset_peak_stats(int device) { allocator().reset_peak(device < 0 ? current_device() : device); }

void* pinned_alloc(size_t nbytes) {
  std::lock_guard<std::mutex> lk(g_pinned_mu);
  auto& fl = g_pinned_free[nbytes];
  if (!fl.empty()) {
    void* p = fl.back();
    fl.pop_back();
    g_pinned_live[p] = {nbytes, true};
    return p;
  }
  void* p = nullptr;
  bool pinned = false;
  if (device_count() > 0 && cudaHostAlloc(&p, nbytes == 0 ? 1 : nbytes, cudaHostAllocDefault) == cudaSuccess) {
    pinned = true;
  } else {
    (void)cudaGetLastError();
    p = std::aligned_alloc(64, round_up(nbytes == 0 ? 1 : nbytes, 64));
    RG_CHECK(p, "out of host memory allocating ", nbytes, " bytes");
  }
  g_pinned_live[p] = {nbytes, pinned};
  return p;
}

void pinned_free(void* ptr) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lk(g_pinned_mu);
  auto it = g_pinned_live.find(ptr);
  if (it == g_pinned_live.end()) return;
  const auto [size, pinned] = it->second;
  g_pinned_live.erase(it);
  if (pinned) {
    g_pinned_free[size].push_back(ptr);
  } else {
    std::free(ptr);
  }
}

}  // namespace rg::cuda
