// Storage allocation: CPU memory is 64-byte aligned, large blocks cached; CUDA memory comes from the caching allocator
// (core/cuda/caching_allocator.cpp) on the device's current stream.
#pragma once

#include <cstddef>
#include <memory>

#include "core/tensor.h"

namespace rg {

std::shared_ptr<Storage> allocate_storage(size_t nbytes, Device device);
// Page-locked host memory for loaders' asynchronous copies (pageable without CUDA).
std::shared_ptr<Storage> allocate_pinned_storage(size_t nbytes);

struct CpuMemoryStats {
  int64_t allocated = 0;       // bytes in live CPU storages (rounded to their size class)
  int64_t peak_allocated = 0;
  int64_t cached = 0;          // bytes held by the block cache for reuse
};
CpuMemoryStats cpu_memory_stats();
void cpu_empty_cache();  // returns the cached blocks to the OS (Note [CPU block cache])

}  // namespace rg
