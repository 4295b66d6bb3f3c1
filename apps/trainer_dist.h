// The data-parallel side of the classifier trainer (`ringgrad launch --nproc-per-node N --
// ringgrad train-classifier ...`): when to go distributed, this rank's device and process group,
// and the few collectives the trainer needs besides DDP's own (sums, buffer broadcasts, barriers).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "distributed/process_group.h"
#include "nn/module.h"

namespace rg::app {

struct ClassifyConfig;

// Note [Distributed classifier training]
// - On when WORLD_SIZE > 1 (torchrun / `ringgrad launch` set it) or with --distributed (a world of
//   1 then runs the DDP code path). init_process_group(env://) unless the caller already made a
//   default group (then that group is used and left alone).
// - Device: --device cuda means cuda:LOCAL_RANK (cuda:(LOCAL_RANK mod GPUs) when the node runs
//   more ranks than it has GPUs); an explicit cuda:N is honoured as given.
// - Backend (--backend overrides): CPU "ring"; CUDA "nccl" when every rank of this node has a GPU
//   of its own (--device cuda and LOCAL_WORLD_SIZE <= visible GPUs, or cuda:N and one rank on this
//   node) and this build has NCCL, or when the launcher was given --backend nccl
//   (RINGGRAD_BACKEND=nccl); else the CUDA "ring" (several ranks per GPU).
// - --batch-size is per rank (the global batch is world x batch). Training reads a
//   DistributedSampler (shuffle keyed by seed + epoch, padded to a multiple of the world size, as
//   PyTorch's default drop_last=False); the loader drops a final per-rank batch of one sample, as
//   the single-process loader does. Validation shards without padding (every sample once) and sums
//   (loss, correct, count) over the ranks in one allreduce: the accuracy equals the single-process
//   accuracy of the same weights exactly. Before evaluating, buffers (BN running statistics) are
//   broadcast from rank 0, whose weights are the ones saved.
// - Only rank 0 prints and writes checkpoints (the unwrapped model's state_dict: no "module."),
//   then every rank meets at a barrier. The trainer metadata records "world_size".
// - --resume: every rank loads the same file, the weights before DDP wraps the model. At the same
//   world size (and per-rank batch size) the run continues exactly. At another world size the
//   steps per epoch change: the run re-plans -- it continues at the saved epoch with the schedule
//   set to epoch x (new steps per epoch), and the next epoch's permutation (keyed by seed + epoch,
//   the same for every world size) is sharded over the new ranks; nothing is skipped or repeated,
//   but the result is not bitwise that of an uninterrupted run.
// - A rank that fails exits non-zero and the launcher stops the others; no rank waits forever.
struct DistContext {
  bool enabled = false;
  int rank = 0, world = 1, local_rank = 0, local_world = 1;
  std::string backend;  // "" when not distributed
  Device device = kCPU;
  bool device_per_local_rank = false;  // --device cuda in distributed mode: cuda:LOCAL_RANK
  std::shared_ptr<dist::ProcessGroup> pg;
  bool owns_group = false;  // init_distributed made the default group (shutdown destroys it)

  bool is_main() const { return rank == 0; }
  // `values` summed over the ranks (one allreduce of an f64 tensor on the group's device); the
  // values themselves when not distributed.
  std::vector<double> sum(const std::vector<double>& values) const;
  // Every rank waits for all others (a no-op when not distributed).
  void barrier() const;
  // The module's buffers (BN running statistics, num_batches_tracked) from rank 0, in place.
  void broadcast_buffers(const nn::Module& m) const;
};

// WORLD_SIZE > 1 in the environment, or --distributed.
bool distributed_requested(const ClassifyConfig& c);
// RANK from the environment (0 when unset): lets code that runs before the group exists print once.
int env_rank();
// Resolves this rank's device and backend and initialises the default process group (see the
// Note); for a single-process run, just the device of --device. Makes the device current.
DistContext init_distributed(const ClassifyConfig& c);
// destroy_process_group when init_distributed made the group. Call once every DDP is gone.
void shutdown_distributed(DistContext& d);
// "distributed: 2 ranks (2 on this node), backend ring, device cpu, batch 32 per rank = 64 global".
std::string describe(const DistContext& d, int64_t batch_per_rank);

}  // namespace rg::app
