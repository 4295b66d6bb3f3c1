// The data-parallel side of the training engine: this process's devices and process group
// (Note [Distributed training]), the few collectives the trainer and tasks need besides DDP's own
// (sums, byte gathers, buffer broadcasts, barriers), and starting one rank per device.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "distributed/process_group.h"
#include "nn/module.h"
#include "train/devices.h"

namespace rg::train {

// Note [Distributed training]
// (Formerly Note [Distributed classifier training]; it holds for every task.)
// - On when the environment says this process is one rank of a launched job (WORLD_SIZE > 1, or
//   Slurm's/Open MPI's variables: Note [Training devices]) or with --distributed (a world of 1
//   then runs the DDP code path). init_process_group(env://) unless the caller already made a
//   default group (then that group is used and left alone). Several devices without a launcher
//   start one rank each through dist::launch (run_self_launch) and wait for them.
// - Device: plan_devices (train/devices.h): --device cuda means cuda:LOCAL_RANK (mod the visible
//   GPUs); a list gives local rank r its r-th entry; an explicit cpu or cuda:N is shared.
// - Backend (--backend overrides): CPU "ring"; CUDA "nccl" when every rank of this node has a GPU
//   of its own and this build has NCCL, or when the launcher was given --backend nccl
//   (RINGGRAD_BACKEND=nccl); else the CUDA "ring" (several ranks per GPU).
// - --batch-size is per rank or global by task (TaskInfo::global_batch; the header says which).
//   Training reads a DistributedSampler (shuffle keyed by seed + epoch, padded to a multiple of the
//   world size, as PyTorch's default drop_last=False). Validation shards without padding (every
//   sample once) and the task reduces what it needs over the ranks (sums in one allreduce, or
//   per-image records through allgather_bytes), so the metric equals the single-process metric of
//   the same weights exactly. Before evaluating, buffers (BN running statistics) are broadcast
//   from rank 0, whose weights are the ones saved.
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
  std::string device_text;  // how --device resolved for this rank, for the header
  std::shared_ptr<dist::ProcessGroup> pg;
  bool owns_group = false;  // init_distributed made the default group (shutdown destroys it)

  bool is_main() const { return rank == 0; }
  // `values` summed over the ranks (one allreduce of an f64 tensor on the group's device); the
  // values themselves when not distributed.
  std::vector<double> sum(const std::vector<double>& values) const;
  // Every rank's `bytes`, by rank (two allgathers: the lengths, then the padded bytes); {bytes}
  // when not distributed. For tasks whose metric needs per-sample records (detection's mAP).
  std::vector<std::string> allgather_bytes(const std::string& bytes) const;
  // Every rank waits for all others (a no-op when not distributed).
  void barrier() const;
  // The module's buffers (BN running statistics, num_batches_tracked) from rank 0, in place.
  void broadcast_buffers(const nn::Module& m) const;
};

// Resolves the plan's device and backend and initialises the default process group (see the
// Note); for a single process (or DataParallel), just the device. Makes the device current.
// `backend` is --backend ("auto", "ring", "nccl").
DistContext init_distributed(const DevicePlan& plan, const std::string& device_text, const std::string& backend);
// destroy_process_group when init_distributed made the group. Call once every DDP is gone.
void shutdown_distributed(DistContext& d);
// "distributed: 2 rank(s) (2 on this node), backend ring, device cpu, batch 16 per rank = 32 global";
// with a global batch: "..., batch 32 global = 16 per rank".
std::string describe(const DistContext& d, int64_t batch, bool global_batch);

// Starts plan.devices.size() ranks of `ringgrad <command> <args>` (this executable) through
// dist::launch, prints the rank -> device table, and returns the job's exit code.
int run_self_launch(const DevicePlan& plan, const std::string& command, const std::vector<std::string>& args);

}  // namespace rg::train
