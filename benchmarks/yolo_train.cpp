// bench_yolo_train: how fast do YOLOv3-416 and YOLOv3-tiny-416 run forward and train, and how much of the
// machine's peak do they use? f32 and AMP (CPU: bf16 autocast, batch 2; GPU: f16 autocast + GradScaler,
// batch 16). Model FLOPs come from our layer table (2 x conv multiply-adds per image; a training step
// counts 3x); the CPU peak is an Eigen f32 GEMM measured in the same run, the GPU peak the device's spec.
// Then where a CPU training step goes by layer type (each layer's ops timed alone, forward + backward).
// Usage: bench_yolo_train [--cpu-only] [--gpu-only] [--models yolov3,yolov3-tiny] [--size 416]
//        [--cpu-batch 2] [--batch 16] [--steps N] [--cpu-steps N] [--cpu-modes f32,bf16] [--gpu-modes f32,f16]
//        [--no-peak]
//        [--no-breakdown | --breakdown-only]   (benchmarks/torch_twin/compare.sh runs the f32 CPU row alone)
// GCC 12 reports false -Wmaybe-uninitialized inside Eigen's AVX-512 intrinsics (as for core/cpu/gemm.cpp).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Dense>
#pragma GCC diagnostic pop

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "autograd/autocast.h"
#include "autograd/grad_mode.h"
#include "core/cuda_api.h"
#include "core/random.h"
#include "models/darknet.h"
#include "nn/amp/grad_scaler.h"
#include "nn/functional.h"
#include "nn/optim/sgd.h"

#include "bench_util.h"

using namespace rg;

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
void sync(Device d) {
  if (d.is_cuda()) cuda::synchronize(d.index);
}

// ---- peaks
// Eigen's f32 GEMM (2048^3) on this machine, GFLOP/s: the CPU's practical f32 peak.
double eigen_gemm_gflops() {
  using M = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const int64_t n = 2048;
  const M a = M::Random(n, n), b = M::Random(n, n);
  M c(n, n);
  const double ms = bench::time_cpu_ms([&] { c.noalias() = a * b; }, 1, 5);
  return 2.0 * n * n * n / (ms * 1e-3) / 1e9;
}

// Dense (no sparsity) peaks from NVIDIA's data sheets, TFLOP/s: f32 on CUDA cores, f16/bf16 tensor cores.
struct GpuPeak {
  double f32 = 0, f16 = 0;
  std::string name;
};
GpuPeak gpu_peak(const std::string& device) {
  auto has = [&](const char* s) { return device.find(s) != std::string::npos; };
  if (has("H200")) return {67.0, 989.4, "H200 (SXM) data sheet"};
  if (has("H100") && (has("PCIe") || has("PCI"))) return {51.2, 756.0, "H100 PCIe data sheet"};
  if (has("H100")) return {67.0, 989.4, "H100 SXM data sheet"};
  if (has("A100")) return {19.5, 312.0, "A100 data sheet"};
  if (has("L40S")) return {91.6, 362.1, "L40S data sheet"};
  return {};
}

// ---- one configuration
struct Mode {
  std::string model;  // cfg name without .cfg
  std::string name;   // f32, bf16-amp, f16-amp
  Device device = kCPU;
  bool amp = false;
  DType amp_dtype = DType::bf16;
  int64_t batch = 2, size = 416;
  int steps = 3, warmup = 1;
};

struct Row {
  Mode mode;
  double fwd_img_s = 0, step_img_s = 0, step_ms = 0, fwd_gflop = 0, loss = 0;
};

std::shared_ptr<models::Darknet> make_model(const std::string& name) {
  manual_seed(0);
  return models::darknet_from_cfg(name + ".cfg");
}

// Forward GFLOP per image: 2 x the convolutions' multiply-adds, from the layer table.
double forward_gflop(const models::Darknet& m, int64_t size) {
  double g = 0;
  for (const auto& r : m.layer_table(size, size)) g += r.type == "conv" ? r.bflops : 0;
  return g;
}

Row run(const Mode& mode) {
  Row row;
  row.mode = mode;
  if (mode.device.is_cuda()) cuda::set_device(mode.device.index);
  auto model = make_model(mode.model);
  row.fwd_gflop = forward_gflop(*model, mode.size);
  model->to(mode.device);
  const Tensor x = rand({mode.batch, 3, mode.size, mode.size}, TensorOptions().device(mode.device));  // (B, 3, S, S)

  // Inference forward (eval, no grad).
  model->eval();
  auto fwd = [&] {
    NoGradGuard ng;
    amp::AutocastGuard ac(mode.amp_dtype, mode.amp);
    model->forward(x);
  };
  for (int i = 0; i < mode.warmup; ++i) fwd();
  sync(mode.device);
  double t0 = now_s();
  for (int i = 0; i < mode.steps; ++i) fwd();
  sync(mode.device);
  row.fwd_img_s = static_cast<double>(mode.batch * mode.steps) / (now_s() - t0);

  // Training step: SGD (ultralytics' momentum 0.937, nesterov, weight decay 5e-4); the loss is a
  // stand-in (1e-3 mean square of the raw output: the YOLO loss is timed with the loss itself).
  model->train();
  optim::SGD opt(model->parameters(),
                 optim::SGDOptions{.lr = 1e-4, .momentum = 0.937, .weight_decay = 5e-4, .nesterov = true});
  amp::GradScalerOptions gso;
  gso.enabled = mode.amp && mode.amp_dtype == DType::f16;
  amp::GradScaler scaler(gso);
  Tensor loss;
  auto step = [&] {
    opt.zero_grad();
    {
      amp::AutocastGuard ac(mode.amp_dtype, mode.amp);
      loss = mul(square(model->forward(x).to(DType::f32)).mean(), 1e-3);
    }
    if (scaler.is_enabled()) {
      scaler.scale(loss).backward();
      scaler.step(opt);
      scaler.update();
    } else {
      loss.backward();
      opt.step();
    }
  };
  for (int i = 0; i < mode.warmup; ++i) step();
  sync(mode.device);
  t0 = now_s();
  for (int i = 0; i < mode.steps; ++i) step();
  sync(mode.device);
  const double dt = now_s() - t0;
  row.step_ms = dt * 1e3 / mode.steps;
  row.step_img_s = static_cast<double>(mode.batch * mode.steps) / dt;
  row.loss = loss.item();
  return row;
}

void print_row(const Row& r, double peak_gflops) {
  const double fwd_tflops = r.fwd_gflop * r.fwd_img_s / 1e3, step_tflops = 3 * r.fwd_gflop * r.step_img_s / 1e3;
  std::printf("%-12s %-7s %-9s %5lld %9.2f %9.2f %9.1f %9.3f %9.3f", r.mode.model.c_str(), r.mode.device.str().c_str(),
              r.mode.name.c_str(), static_cast<long long>(r.mode.batch), r.fwd_img_s, r.step_img_s, r.step_ms,
              fwd_tflops, step_tflops);
  if (peak_gflops > 0) {
    std::printf(" %7.1f%% %7.1f%%\n", 100 * fwd_tflops * 1e3 / peak_gflops, 100 * step_tflops * 1e3 / peak_gflops);
  } else {
    std::printf(" %8s %8s\n", "-", "-");
  }
  std::fflush(stdout);
}

// ---- where a training step goes: each layer's ops alone on its input shape, forward + backward
struct Cost {
  double ms = 0, gflop = 0;
};

// Median ms of f() forward + backward with a given output gradient (contiguous, as a real backward's),
// the leaves' and the module's gradients cleared before each run so that nothing accumulates.
double time_fwd_bwd(const std::vector<Tensor>& leaves, nn::Module* module, const std::function<Tensor()>& f,
                    const Tensor& gy, int reps) {
  return bench::time_cpu_ms(
      [&] {
        for (Tensor l : leaves) l.set_grad(Tensor());
        if (module) module->zero_grad(true);
        f().backward(gy);
      },
      1, reps);
}

void breakdown(const std::string& name, int64_t batch, int64_t size, int reps, double step_ms) {
  auto m = make_model(name);
  m->train();
  std::map<std::string, Cost> cost;
  const auto table = m->layer_table(size, size);
  auto shape = [&](const std::array<int64_t, 3>& s) { return Shape{batch, s[0], s[1], s[2]}; };
  auto leaf = [&](const std::array<int64_t, 3>& s) { return randn(shape(s)).set_requires_grad(true); };
  const char* kGlue = "upsample, route, shortcut";
  for (const auto& r : table) {
    const auto layer = m->layer(r.index);
    const models::DarknetLayer& l = m->cfg().layers[static_cast<size_t>(r.index)];
    const Tensor gy = randn(shape(r.out));
    switch (l.type) {
      case models::DarknetLayerType::Convolutional: {
        const Tensor x = leaf(r.in), y = leaf(r.out);
        auto conv = layer->child("Conv2d");
        Cost& c = cost[l.size == 1 ? "conv 1x1" : "conv 3x3+"];
        c.ms += time_fwd_bwd({x}, conv.get(), [&] { return conv->forward(x); }, gy, reps);
        c.gflop += 3 * r.bflops * static_cast<double>(batch);
        if (l.batch_normalize) {
          auto bn = layer->child("BatchNorm2d");
          cost["batch norm"].ms += time_fwd_bwd({y}, bn.get(), [&] { return bn->forward(y); }, gy, reps);
        }
        if (l.activation != models::DarknetActivation::Linear) {
          cost["activation"].ms +=
              time_fwd_bwd({y}, nullptr, [&] { return models::darknet_activation(y, l.activation); }, gy, reps);
        }
        break;
      }
      case models::DarknetLayerType::MaxPool: {
        const Tensor x = leaf(r.in);
        cost["maxpool"].ms += time_fwd_bwd({x}, nullptr, [&] { return layer->forward(x); }, gy, reps);
        break;
      }
      case models::DarknetLayerType::Upsample: {
        const Tensor x = leaf(r.in);
        cost[kGlue].ms += time_fwd_bwd({x}, nullptr, [&] { return layer->forward(x); }, gy, reps);
        break;
      }
      case models::DarknetLayerType::Route: {
        if (l.inputs.size() < 2) break;  // a single route is a reference, no work
        std::vector<Tensor> parts;
        for (int64_t ref : l.inputs) parts.push_back(leaf(table[static_cast<size_t>(ref)].out));
        cost[kGlue].ms += time_fwd_bwd(parts, nullptr, [&] { return cat(parts, 1); }, gy, reps);
        break;
      }
      case models::DarknetLayerType::Shortcut: {
        const Tensor a = leaf(r.in), b = leaf(r.in);
        cost[kGlue].ms += time_fwd_bwd({a, b}, nullptr, [&] { return add(a, b); }, gy, reps);
        break;
      }
      case models::DarknetLayerType::Yolo: break;
    }
  }
  double total = 0;
  for (const auto& [k, c] : cost) total += c.ms;
  std::printf("\n%s-%lld training step by layer type (CPU f32, batch %lld; each layer's op alone on its shapes, "
              "forward + backward, median of %d):\n", name.c_str(), static_cast<long long>(size),
              static_cast<long long>(batch), reps);
  std::printf("  %-26s %9s %7s %10s\n", "layer type", "ms/step", "share", "GFLOP/s");
  for (const auto& [k, c] : cost) {
    std::printf("  %-26s %9.1f %6.1f%%", k.c_str(), c.ms, 100 * c.ms / total);
    if (c.gflop > 0) std::printf(" %10.1f", c.gflop / (c.ms * 1e-3));
    std::printf("\n");
  }
  std::printf("  %-26s %9.1f", "sum of the ops", total);
  if (step_ms > 0) std::printf("   (measured step: %.1f ms, which also holds the optimizer, the loss and the glue)", step_ms);
  std::printf("\n");
}


}  // namespace

int main(int argc, char** argv) {
  const bool cpu = !bench::has_arg(argc, argv, "--gpu-only"), gpu = !bench::has_arg(argc, argv, "--cpu-only");
  std::vector<std::string> names;
  {
    std::string list = bench::arg_value(argc, argv, "--models") ? bench::arg_value(argc, argv, "--models") : "yolov3,yolov3-tiny";
    size_t at = 0;
    while (at <= list.size()) {
      const size_t comma = std::min(list.find(',', at), list.size());
      names.push_back(list.substr(at, comma - at));
      at = comma + 1;
    }
  }
  const int64_t size = bench::int_arg(argc, argv, "--size", 416);

  std::printf("bench_yolo_train: darknet cfgs at %lldx%lld, synthetic input; img/s of inference (eval, no grad) and of "
              "an SGD training step\n", static_cast<long long>(size), static_cast<long long>(size));
  for (const auto& n : names) {
    auto m = make_model(n);
    double total = 0;
    for (const auto& r : m->layer_table(size, size)) total += r.bflops;
    std::printf("  %s: %.3f GFLOP per image forward in convolutions (our layer table; darknet's total with shortcuts "
                "and maxpools: %.3f)%s\n", n.c_str(), forward_gflop(*m, size), total,
                n == "yolov3" && size == 416 ? "; the issue's figure: 65.9" : "");
  }
  std::printf("TFLOP/s = model FLOPs x img/s (a step counts 3x the forward); MFU = that over the peak below\n\n");

  if (cpu) {
    const double peak = bench::has_arg(argc, argv, "--no-peak") ? 0.0 : eigen_gemm_gflops();
    if (peak > 0) {
      std::printf("CPU peak: Eigen f32 GEMM 2048^3 in this run, %d thread(s): %.1f GFLOP/s (also the bf16 rows' "
                  "reference)\n", Eigen::nbThreads(), peak);
    }
    const std::string cpu_modes = bench::arg_value(argc, argv, "--cpu-modes") ? bench::arg_value(argc, argv, "--cpu-modes") : "f32,bf16";
    std::printf("%-12s %-7s %-9s %5s %9s %9s %9s %9s %9s %8s %8s\n", "model", "device", "mode", "batch", "fwd img/s",
                "step img/s", "ms/step", "fwd TF/s", "step TF/s", "MFU fwd", "MFU step");
    std::map<std::string, double> f32_step_ms;
    for (const auto& n : names) {
      if (bench::has_arg(argc, argv, "--breakdown-only")) break;
      for (const bool amp : {false, true}) {
        if (cpu_modes.find(amp ? "bf16" : "f32") == std::string::npos) continue;
        Mode m;
        m.model = n;
        m.name = amp ? "bf16-amp" : "f32";
        m.amp = amp;
        m.amp_dtype = DType::bf16;
        m.batch = bench::int_arg(argc, argv, "--cpu-batch", 2);
        m.size = size;
        m.steps = static_cast<int>(bench::int_arg(argc, argv, "--cpu-steps", n == "yolov3-tiny" ? 5 : 2));
        try {
          const Row r = run(m);
          print_row(r, peak);
          if (!amp) f32_step_ms[n] = r.step_ms;
        } catch (const std::exception& e) {
          std::printf("%-12s %-7s %-9s error: %s\n", n.c_str(), "cpu", m.name.c_str(), e.what());
        }
      }
    }
    if (!bench::has_arg(argc, argv, "--no-breakdown")) {
      for (const auto& n : names) breakdown(n, bench::int_arg(argc, argv, "--cpu-batch", 2), size, 3, f32_step_ms[n]);
    }
  }
  if (gpu) {
    std::printf("\n");
    if (!cuda::is_available()) {
      std::printf("GPU rows skipped: %s\n", bench::no_gpu_reason());
    } else {
      const std::string dev = cuda::device_name(0);
      const GpuPeak p = gpu_peak(dev);
      if (p.f32 > 0) {
        std::printf("GPU: %s; peak %.1f TFLOP/s f32, %.1f f16 tensor cores (%s)\n", dev.c_str(), p.f32, p.f16,
                    p.name.c_str());
      } else {
        std::printf("GPU: %s; peak unknown (not in the spec table): no MFU\n", dev.c_str());
      }
      std::printf("%-12s %-7s %-9s %5s %9s %9s %9s %9s %9s %8s %8s\n", "model", "device", "mode", "batch", "fwd img/s",
                  "step img/s", "ms/step", "fwd TF/s", "step TF/s", "MFU fwd", "MFU step");
      const std::string gpu_modes = bench::arg_value(argc, argv, "--gpu-modes") ? bench::arg_value(argc, argv, "--gpu-modes") : "f32,f16";
      for (const auto& n : names) {
        for (const bool amp : {false, true}) {
          if (gpu_modes.find(amp ? "f16" : "f32") == std::string::npos) continue;
          Mode m;
          m.model = n;
          m.name = amp ? "f16-amp" : "f32";
          m.device = Device::cuda(0);
          m.amp = amp;
          m.amp_dtype = DType::f16;
          m.batch = bench::int_arg(argc, argv, "--batch", 16);
          m.size = size;
          m.steps = static_cast<int>(bench::int_arg(argc, argv, "--steps", 20));
          m.warmup = 3;
          try {
            print_row(run(m), (amp ? p.f16 : p.f32) * 1e3);
          } catch (const std::exception& e) {
            std::printf("%-12s %-7s %-9s error: %s\n", n.c_str(), "cuda:0", m.name.c_str(), e.what());
          }
          cuda::empty_cache();
        }
      }
    }
  }
  std::string cmd = "build/benchmarks/bench_yolo_train";
  for (int i = 1; i < argc; ++i) cmd += std::string(" ") + argv[i];
  std::printf("\nreproduce: OMP_NUM_THREADS=<cores> %s\n", cmd.c_str());
  return 0;
}
