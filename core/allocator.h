// Storage allocation: CPU memory is 64-byte aligned; CUDA memory comes from the caching allocator
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
  int64_t allocated = 0;
  int64_t peak_allocated = 0;
};
CpuMemoryStats cpu_memory_stats();

}  // namespace rg
