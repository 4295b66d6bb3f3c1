// CPU allocation (aligned, counted, with a cache of large blocks) and the dispatch of storage
// allocation by device. Note [CPU block cache].
#include "core/allocator.h"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/cuda_api.h"

namespace rg {

// Note [CPU block cache]
// Fresh large blocks from the OS cost a page fault per 4 KiB on first touch, which dominated
// large elementwise ops (an add into a new 64 MiB tensor ran 4x slower than in place). Blocks of
// 64 KiB and more are therefore rounded up to 8 size classes per power of two (at most 12.5%
// slack) and kept on per-class free lists when freed, up to RINGGRAD_CPU_CACHE_MB (default 1024)
// of cached bytes; beyond that they go back to the OS. Smaller blocks go straight to malloc,
// whose own bins already serve them well.
namespace {
constexpr size_t kCacheMin = size_t{64} << 10;

std::atomic<int64_t> g_cpu_allocated{0};
std::atomic<int64_t> g_cpu_peak{0};

size_t size_class(size_t n) {
  if (n < kCacheMin) return (n + 63) / 64 * 64;
  size_t p = 1;
  while ((p << 1) <= n) p <<= 1;
  const size_t step = p / 8;
  return (n + step - 1) / step * step;
}

class CpuCache {
 public:
  void* get(size_t rounded) {
    if (rounded >= kCacheMin) {
      std::lock_guard<std::mutex> lk(mu_);
      auto it = free_.find(rounded);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= rounded;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
    if (!p && rounded >= kCacheMin) {  // give the cache back and try once more
      empty();
      p = std::aligned_alloc(64, rounded);
    }
    return p;
  }

  void put(void* p, size_t rounded) {
    if (rounded >= kCacheMin) {
      std::lock_guard<std::mutex> lk(mu_);
      if (cached_ + rounded <= limit_) {
        free_[rounded].push_back(p);
        cached_ += rounded;
        return;
      }
    }
    std::free(p);
  }

  void empty() {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto& [sz, v] : free_) {
      for (void* p : v) std::free(p);
      v.clear();
    }
    cached_ = 0;
  }

  size_t cached() {
    std::lock_guard<std::mutex> lk(mu_);
    return cached_;
  }

 private:
  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
  const size_t limit_ = [] {
    const char* v = std::getenv("RINGGRAD_CPU_CACHE_MB");
    return static_cast<size_t>(v ? std::atoll(v) : 1024) << 20;
  }();
};

CpuCache& cache() {
  static auto* c = new CpuCache();  // never destroyed: storages may be freed during static teardown
  return *c;
}

void* cpu_alloc(size_t rounded) {
  void* p = cache().get(rounded);
  RG_CHECK(p != nullptr, "out of CPU memory allocating ", rounded, " bytes");
  const int64_t now = g_cpu_allocated.fetch_add(static_cast<int64_t>(rounded)) + static_cast<int64_t>(rounded);
  int64_t peak = g_cpu_peak.load();
  while (now > peak && !g_cpu_peak.compare_exchange_weak(peak, now)) {
  }
  return p;
}
}  // namespace

std::shared_ptr<Storage> allocate_storage(size_t nbytes, Device device) {
  if (device.is_cpu()) {
    const size_t rounded = size_class(nbytes);
    void* p = cpu_alloc(rounded);
    return std::make_shared<Storage>(p, nbytes, device, [rounded](void* q) {
      g_cpu_allocated.fetch_sub(static_cast<int64_t>(rounded));
      cache().put(q, rounded);
    });
  }
  RG_CHECK(cuda::built_with_cuda(), "cannot allocate on ", device.str(), ": ringgrad was built without CUDA");
  RG_CHECK(device.index >= 0 && device.index < cuda::device_count(), "cannot allocate on ", device.str(), ": ",
           cuda::device_count(), " CUDA device(s) visible");
  const cuda::Stream s = cuda::current_stream(device.index);
  void* p = nbytes ? cuda::caching_alloc(nbytes, device.index, s) : nullptr;
  return std::make_shared<Storage>(p, nbytes, device, [](void* q) { cuda::caching_free(q); });
}

std::shared_ptr<Storage> allocate_pinned_storage(size_t nbytes) {
  void* p = cuda::pinned_alloc(nbytes);
  return std::make_shared<Storage>(p, nbytes, kCPU, [](void* q) { cuda::pinned_free(q); });
}

CpuMemoryStats cpu_memory_stats() {
  return {g_cpu_allocated.load(), g_cpu_peak.load(), static_cast<int64_t>(cache().cached())};
}

void cpu_empty_cache() { cache().empty(); }

}  // namespace rg
