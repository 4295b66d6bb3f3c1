// bench_resnet_train: how fast does a ResNet-50 training step run, and what do TF32 and AMP buy?
// Synthetic tensors, SGD with momentum. GPU: batch 64 at 224 in f32, TF32, f16 autocast (with a
// GradScaler) and bf16 autocast; CPU: f32 at a smaller batch. Reports images/s, peak memory and
// the forward/backward/optimizer split, plus the f16-AMP/f32 ratio (issue target >= 2.0 on GPU).
// Usage: bench_resnet_train [--cpu-only] [--gpu-only] [--model resnet50|resnet18] [--batch 64]
//        [--size 224] [--cpu-batch 8] [--cpu-size 224] [--steps N] [--cpu-steps N]
//        [--gpu-modes f32,tf32,f16-amp,bf16-amp]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "autograd/autocast.h"
#include "core/allocator.h"
#include "core/cuda_api.h"
#include "core/gemm_config.h"
#include "core/random.h"
#include "models/resnet.h"
#include "nn/amp/grad_scaler.h"
#include "nn/functional.h"
#include "nn/optim/sgd.h"

#include "bench_util.h"

using namespace rg;

namespace {

struct Mode {
  std::string name;   // f32, tf32, f16-amp, bf16-amp
  Device device;
  bool tf32 = false;
  bool amp = false;
  DType amp_dtype = DType::f16;
  int64_t batch = 64, size = 224;
  int steps = 20;      // timed steps (throughput pass)
  int warmup = 5;
  int split_steps = 5; // steps of the synchronised breakdown pass
};

struct Row {
  Mode mode;
  double images_per_s = 0, ms_per_step = 0, fwd_ms = 0, bwd_ms = 0, opt_ms = 0;
  double peak_mib = 0;
  double loss = 0;
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void sync(Device d) {
  if (d.is_cuda()) cuda::synchronize(d.index);
}

Row run(const Mode& m, const std::string& model_name) {
  Row row;
  row.mode = m;
  AllowTF32Guard tf32(m.tf32);
  if (m.device.is_cuda()) cuda::set_device(m.device.index);
  manual_seed(0);
  models::ResNetOptions ro;
  ro.num_classes = 1000;
  auto model = model_name == "resnet18" ? models::resnet18(ro) : models::resnet50(ro);
  model->to(m.device);
  model->train();
  optim::SGDOptions so;
  so.lr = 0.01;  // small enough that the loss stays finite on random labels (no skipped steps)
  so.momentum = 0.9;
  so.weight_decay = 1e-4;
  optim::SGD opt(model->parameters(), so);
  amp::GradScalerOptions gso;
  gso.enabled = m.amp && m.amp_dtype == DType::f16;
  amp::GradScaler scaler(gso);
  const Tensor x = randn({m.batch, 3, m.size, m.size}, TensorOptions().device(m.device));  // (B, 3, S, S)
  const Tensor y = randint(0, 1000, {m.batch}, TensorOptions(DType::i64).device(m.device));  // (B)

  // One step; with `split`, synchronises after each phase and adds the phase times.
  auto step = [&](bool split) {
    double t0 = split ? now_s() : 0;
    opt.zero_grad();
    Tensor loss;
    {
      amp::AutocastGuard ac(m.amp_dtype, m.amp);
      const Tensor logits = model->forward(x);  // (B, 1000)
      loss = nn::functional::cross_entropy(logits, y);
    }
    if (split) {
      sync(m.device);
      const double t1 = now_s();
      row.fwd_ms += (t1 - t0) * 1e3;
      t0 = t1;
    }
    if (scaler.is_enabled()) {
      scaler.scale(loss).backward();
    } else {
      loss.backward();
    }
    if (split) {
      sync(m.device);
      const double t1 = now_s();
      row.bwd_ms += (t1 - t0) * 1e3;
      t0 = t1;
    }
    if (scaler.is_enabled()) {
      scaler.step(opt);
      scaler.update();
    } else {
      opt.step();
    }
    if (split) {
      sync(m.device);
      row.opt_ms += (now_s() - t0) * 1e3;
    }
    return loss;
  };

  for (int i = 0; i < m.warmup; ++i) step(false);  // cuDNN autotuning, allocator warm-up
  sync(m.device);
  if (m.device.is_cuda()) cuda::reset_peak_stats(m.device.index);

  // Throughput: no synchronisation between steps.
  const double t0 = now_s();
  Tensor loss;
  for (int i = 0; i < m.steps; ++i) loss = step(false);
  sync(m.device);
  const double dt = now_s() - t0;
  row.ms_per_step = dt * 1e3 / m.steps;
  row.images_per_s = static_cast<double>(m.batch) * m.steps / dt;
  row.loss = loss.item();

  // Breakdown: synchronised phases (slightly slower in total than the pass above).
  for (int i = 0; i < m.split_steps; ++i) step(true);
  row.fwd_ms /= m.split_steps;
  row.bwd_ms /= m.split_steps;
  row.opt_ms /= m.split_steps;

  if (m.device.is_cuda()) {
    row.peak_mib = static_cast<double>(cuda::memory_stats(m.device.index).peak_allocated) / (1 << 20);
  } else {
    row.peak_mib = static_cast<double>(cpu_memory_stats().peak_allocated) / (1 << 20);
  }
  return row;
}

void print_row(const Row& r) {
  std::printf("%-7s %-9s %5lld %5lld %9.1f %9.1f %8.1f %8.1f %8.1f %9.0f %8.3f\n", r.mode.device.str().c_str(),
              r.mode.name.c_str(), static_cast<long long>(r.mode.batch), static_cast<long long>(r.mode.size),
              r.images_per_s, r.ms_per_step, r.fwd_ms, r.bwd_ms, r.opt_ms, r.peak_mib, r.loss);
  std::fflush(stdout);
}


}  // namespace

int main(int argc, char** argv) {
  const bool cpu = !bench::has_arg(argc, argv, "--gpu-only"), gpu = !bench::has_arg(argc, argv, "--cpu-only");
  const std::string model = bench::arg_value(argc, argv, "--model") ? bench::arg_value(argc, argv, "--model") : "resnet50";
  if (model != "resnet50" && model != "resnet18") {
    std::fprintf(stderr, "bench_resnet_train: --model must be resnet50 or resnet18\n");
    return 2;
  }
  std::printf("bench_resnet_train: %s training step (SGD lr 0.01, momentum 0.9, weight decay 1e-4), synthetic data, "
              "1000 classes\n", model.c_str());
  std::printf("img/s and ms/step from unsynchronised steps; fwd/bwd/opt from a separate pass synchronised after "
              "each phase; peak = allocator peak (CUDA caching allocator since the timed passes began; CPU "
              "allocator over the process)\n\n");
  std::printf("%-7s %-9s %5s %5s %9s %9s %8s %8s %8s %9s %8s\n", "device", "mode", "batch", "size", "img/s",
              "ms/step", "fwd ms", "bwd ms", "opt ms", "peak MiB", "loss");

  std::vector<Row> gpu_rows;
  if (cpu) {
    Mode m;
    m.name = "f32";
    m.device = kCPU;
    m.batch = bench::int_arg(argc, argv, "--cpu-batch", 8);
    m.size = bench::int_arg(argc, argv, "--cpu-size", 224);
    m.steps = static_cast<int>(bench::int_arg(argc, argv, "--cpu-steps", 3));
    m.warmup = 1;
    m.split_steps = 2;
    print_row(run(m, model));
  }
  if (gpu) {
    if (!cuda::is_available()) {
      std::printf("%-7s (GPU rows skipped: %s)\n", "cuda", bench::no_gpu_reason());
    } else {
      const int64_t batch = bench::int_arg(argc, argv, "--batch", 64), size = bench::int_arg(argc, argv, "--size", 224);
      const int steps = static_cast<int>(bench::int_arg(argc, argv, "--steps", 20));
      struct Spec {
        const char* name;
        bool tf32, amp;
        DType dt;
      };
      const Spec specs[] = {{"f32", false, false, DType::f32},
                            {"tf32", true, false, DType::f32},
                            {"f16-amp", false, true, DType::f16},
                            {"bf16-amp", false, true, DType::bf16}};
      const char* only = bench::arg_value(argc, argv, "--gpu-modes");  // e.g. "f32,f16-amp"
      for (const Spec& s : specs) {
        if (only) {  // exact names, comma-separated
          const std::string list = std::string(",") + only + ",";
          if (list.find(std::string(",") + s.name + ",") == std::string::npos) continue;
        }
        Mode m;
        m.name = s.name;
        m.device = Device::cuda(0);
        m.tf32 = s.tf32;
        m.amp = s.amp;
        m.amp_dtype = s.amp ? s.dt : DType::f16;
        m.batch = batch;
        m.size = size;
        m.steps = steps;
        gpu_rows.push_back(run(m, model));
        print_row(gpu_rows.back());
        cuda::empty_cache();
      }
    }
  }
  if (gpu_rows.size() == 4) {
    const double f32 = gpu_rows[0].images_per_s;
    std::printf("\nratios vs GPU f32 throughput: tf32 %.2fx, f16-amp %.2fx (issue target >= 2.0), bf16-amp %.2fx\n",
                gpu_rows[1].images_per_s / f32, gpu_rows[2].images_per_s / f32, gpu_rows[3].images_per_s / f32);
    std::printf("peak memory vs f32: f16-amp %.2fx, bf16-amp %.2fx\n", gpu_rows[2].peak_mib / gpu_rows[0].peak_mib,
                gpu_rows[3].peak_mib / gpu_rows[0].peak_mib);
  }
  std::string cmd = "build/benchmarks/bench_resnet_train";
  for (int i = 1; i < argc; ++i) cmd += std::string(" ") + argv[i];
  std::printf("\nreproduce: OMP_NUM_THREADS=<cores> %s\n", cmd.c_str());
  return 0;
}
