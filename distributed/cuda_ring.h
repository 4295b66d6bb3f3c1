// The "ring" process group on CUDA tensors (distributed/cuda_ring.cpp): ranks on one host -- several
// on ONE GPU, or one per GPU -- run a chunked, pipelined ring through CUDA IPC buffers.
// Only built with CUDA (CMake compiles distributed/cuda_ring*.cpp in CUDA builds only).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "distributed/cuda_ring_schedule.h"  // CudaRingConfig, RingRound, the schedules
#include "distributed/process_group.h"

namespace rg::dist {

// A CUDA ring group on `device` (a CUDA device of this process). Ranks on different hosts fall
// back to staging through host memory and the CPU ring (slow, but it works).
std::shared_ptr<ProcessGroup> make_cuda_ring_group(std::shared_ptr<Store> store, int rank, int size, Device device,
                                                   const CudaRingConfig& cfg = CudaRingConfig::from_env());

// Registers the factory above as ("ring", CUDA) in the backend registry (Note [Backend registry]).
// Idempotent; also run by a static initialiser of cuda_ring.cpp when that object is linked.
void register_cuda_ring_backend();

}  // namespace rg::dist
