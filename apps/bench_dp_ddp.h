// `ringgrad bench dp-vs-ddp`: single device vs DataParallel vs DDP (overlapped and not) on a
// ResNet or a YOLO with synthetic tensors; the configuration shared by the driver and its workers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "core/json.h"

namespace rg::app::bench {

// Note [dp-vs-ddp benchmark]
// The driver (bench_dp_ddp.cpp) never touches a device: it starts one worker process per mode
// and replica count through dist::launch (the hidden --rank-worker mode of this same command,
// bench_dp_ddp_worker.cpp), so every measurement starts from a fresh process (clean allocator
// peaks; CUDA is never initialised before a fork) and every process gets the same per-replica
// thread budget through OMP_NUM_THREADS. Each worker rank writes one JSON file of raw figures;
// the driver combines the ranks (slowest rank's wall time, mean phases, largest peak) and writes
// the CSV, the SVG and the report.
struct Config {
  std::string model = "resnet50";  // resnet18|34|50|101|152, yolov3|yolov3-tiny|yolov3-spp
  bool small_input = false;
  int64_t width = 64;              // ResNet base_planes (64 = torchvision)
  int64_t num_classes = 0;         // 0: 1000 for a ResNet, 80 for a YOLO
  int64_t image_size = 0;          // 0: 224 on CUDA, 64 on CPU (YOLO: 416, 128)
  int64_t batch = 0;               // per replica; 0: 32 on CUDA, 8 on CPU
  int steps = 0;                   // timed steps; 0: 20 on CUDA, 8 on CPU
  int warmup = -1;                 // -1: 5 on CUDA, 2 on CPU
  std::vector<int> replicas{1, 2};
  std::string device = "cpu";      // cpu | cuda
  std::string backend;             // DDP backend; empty: ring on CPU, nccl when each rank has a GPU
  std::string amp = "none";        // none | f16 | bf16
  bool sync_bn = false;            // also run DDP with SyncBatchNorm (overhead = its step - DDP's)
  bool no_overlap_variant = true;  // also run DDP with overlap=false
  std::string out = "runs/bench_dp_vs_ddp";
  std::vector<double> link_gbs{370.0, 25.0};  // NVLink 4, PCIe 4 (GB/s, 1e9 bytes)
  double alpha_us = 5.0;           // per-hop latency of the alpha-beta model
  int threads = 0;                 // OMP threads per replica; 0: cores / max(replicas)
  int dp_caller_threads = 0;       // DP's caller thread (loss, backward, optimizer); 0: N * threads
  uint64_t seed = 0;
  int repeats = 1;                 // run the whole plan this many times; each mode keeps its fastest run
  bool quiet = false;

  // Filled in after parsing.
  bool cuda() const { return device == "cuda"; }
  bool yolo() const { return model.rfind("yolo", 0) == 0; }
  void resolve_defaults();
  Args to_args() const;  // the flags that reproduce this configuration (for the workers)
};

Config parse_config(const Args& args);  // strict: unknown flags raise

// The worker side (bench_dp_ddp_worker.cpp): runs `mode` ("single", "dp", "ddp", "ddp_no_overlap",
// "ddp_syncbn") with n replicas/ranks and writes <prefix>_rank<r>.json.
int run_worker(const Config& cfg, const std::string& mode, int n, const std::string& prefix);

// The driver (bench_dp_ddp.cpp).
int run_driver(const Config& cfg);

}  // namespace rg::app::bench
