// The CUDA process-group backends living outside the base library's always-built files: "ring"
// on CUDA tensors (distributed/cuda_ring.cpp) and "nccl" (distributed/nccl_group.cpp).
#pragma once

#include <memory>

#include "distributed/process_group.h"

namespace rg::dist {

// Registers every CUDA backend this build has in the registry (Note [Backend registry]): ("ring",
// CUDA) in CUDA builds, ("nccl", CUDA) when NCCL was found. A no-op in a CPU-only build; safe to
// call any number of times. make_process_group should call it before looking a CUDA backend up,
// because a static library drops the object files whose static registrars nobody references.
void register_cuda_backends();

// Defined only in builds with NCCL (RINGGRAD_WITH_NCCL).
void register_nccl_backend();
std::shared_ptr<ProcessGroup> make_nccl_group(std::shared_ptr<Store> store, int rank, int size, Device device);

}  // namespace rg::dist
