// Devices and modes for the trainer (Note [Training devices]): parsing --device, reading what a
// launcher set in the environment, and planning one process, a DataParallel process, one rank of
// a launched job, or starting one rank per device. Pure functions of their inputs (tested as such).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/device.h"
#include "distributed/launcher.h"

namespace rg::train {

// Note [Training devices]
// --device takes "cpu", "cuda" (cuda:0; under a launcher cuda:LOCAL_RANK), "cuda:N", "N", a list
// of GPUs "0,1,2,3" (or "cuda:0,cuda:1"), or a list of CPU entries "cpu,cpu" (virtual devices:
// CPU ranks or CPU DataParallel replicas, for testing and for the DP-vs-DDP comparison). GPU
// ordinals count the GPUs CUDA_VISIBLE_DEVICES leaves visible, renumbered from 0 as CUDA and
// PyTorch do. Plans, by what the environment says:
// - not launched (no RANK/WORLD_SIZE, Slurm or Open MPI variables with a world above 1):
//   one device -> one process (DDP only with --distributed: a world of one);
//   several devices, --mode ddp -> the trainer starts one rank per device itself through the
//     launcher (torchrun-style); each rank is then "launched" and takes its entry below;
//   several devices, --mode dp -> DataParallel in this process over the devices (devices[0] holds
//     the model, gathers the outputs and steps the optimizer).
// - launched (ringgrad launch, srun, mpirun, or the self-launch above): one rank per process;
//   a list must name one device per rank of this node (local rank r takes entry r); a single
//   "cuda" means cuda:(LOCAL_RANK mod visible GPUs); a single cpu or cuda:N is shared by every
//   rank. --mode dp is refused there (DataParallel is one process).
// The planner never initialises CUDA (it counts visible GPUs as the launcher does), so the
// self-launch can fork.
struct DeviceList {
  std::vector<Device> devices;
  bool bare_cuda = false;  // "cuda": one rank per GPU under a launcher
};
// Throws naming the text and the entry that is not understood.
DeviceList parse_device_list(const std::string& text);

// What a launcher put in the environment (RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE as
// torchrun sets them, else Slurm's SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID, else Open MPI's
// OMPI_COMM_WORLD_*), in the order init_process_group reads them.
struct LaunchEnv {
  std::string launcher;  // "" when not launched
  int rank = 0, world = 1, local_rank = 0, local_world = 1;
  bool launched() const { return !launcher.empty() && world > 1; }
};
using GetEnv = std::function<const char*(const char*)>;
LaunchEnv launch_env(const GetEnv& getenv_fn);
LaunchEnv launch_env();  // from this process's environment

enum class RunKind {
  Single,        // one process, one device
  Rank,          // one rank of a launched job (or --distributed alone)
  DataParallel,  // one process, DataParallel over `devices`
  SelfLaunch,    // start one rank per device of `devices` and wait for them
};

struct DevicePlan {
  RunKind kind = RunKind::Single;
  std::vector<Device> devices;  // Single, Rank: {this process's device}; DataParallel: the replicas; SelfLaunch: one per rank
  bool distinct_gpus = false;   // Rank: every rank of this node has a GPU of its own (NCCL possible)
  std::string table;            // DataParallel, SelfLaunch: the replica/rank -> device table to print
};

// `mode` is "ddp" or "dp"; `distributed` is --distributed; `gpus` what the launcher would see.
DevicePlan plan_devices(const std::string& device, const std::string& mode, bool distributed, const LaunchEnv& env,
                        const dist::VisibleGpus& gpus);

// The process-group backend: `choice` ("auto", "ring", "nccl"); auto is ring on CPU, and on CUDA
// nccl when `env_backend` (RINGGRAD_BACKEND, set by `ringgrad launch --backend`) says so, or when
// NCCL is built and every rank of the node has its own GPU, else the CUDA ring.
std::string choose_backend(const std::string& choice, Device device, bool distinct_gpus, bool nccl_built,
                           const std::string& env_backend);

}  // namespace rg::train
