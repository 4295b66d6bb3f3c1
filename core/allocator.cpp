// CPU allocation (aligned, counted) and the dispatch of storage allocation by device.
#include "core/allocator.h"

#include <atomic>
#include <cstdlib>

#include "core/cuda_api.h"

namespace rg {

namespace {
std::atomic<int64_t> g_cpu_allocated{0};
std::atomic<int64_t> g_cpu_peak{0};

void* cpu_alloc(size_t nbytes) {
  const size_t rounded = (nbytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  RG_CHECK(p != nullptr, "out of CPU memory allocating ", nbytes, " bytes");
  const int64_t now = g_cpu_allocated.fetch_add(static_cast<int64_t>(rounded)) + static_cast<int64_t>(rounded);
  int64_t peak = g_cpu_peak.load();
  while (now > peak && !g_cpu_peak.compare_exchange_weak(peak, now)) {
  }
  return p;
}
}  // namespace

std::shared_ptr<Storage> allocate_storage(size_t nbytes, Device device) {
  if (device.is_cpu()) {
    const int64_t rounded = static_cast<int64_t>((nbytes + 63) / 64 * 64);
    void* p = cpu_alloc(nbytes);
    return std::make_shared<Storage>(p, nbytes, device, [rounded](void* q) {
      g_cpu_allocated.fetch_sub(rounded);
      std::free(q);
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

CpuMemoryStats cpu_memory_stats() { return {g_cpu_allocated.load(), g_cpu_peak.load()}; }

}  // namespace rg
