// bench_elementwise: do our elementwise kernels run at memory bandwidth? add, relu and the fused
// scale+add (BinaryOp::Axpby) in f32 and f16, as effective GB/s (bytes read + written / time) and as a
// ratio to a same-sized copy measured in the same run (GPU: cudaMemcpy device to device, CUDA events;
// CPU: the parallel memcpy of the copy kernel). Usage:
//   bench_elementwise [--reps N] [--gpu-mib M (256)] [--cpu-mib M (64)] [--cpu-only] [--gpu-only]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/cuda_api.h"
#include "core/native.h"

#include "bench_util.h"

using namespace rg;

namespace {

struct Op {
  const char* name;
  int operands;  // tensors touched: inputs + output
  std::function<void(const Tensor& out, const Tensor& a, const Tensor& b)> run;
  std::function<double(double a, double b)> ref;  // the value, for the sanity check
};

std::vector<Op> ops() {
  return {
      {"add", 3,
       [](const Tensor& o, const Tensor& a, const Tensor& b) {
         RG_CALL_KERNEL(binary, o.device(), o, a, b, BinaryOp::Add, 1.0, 1.0);
       },
       [](double a, double b) { return a + b; }},
      {"relu", 2,
       [](const Tensor& o, const Tensor& a, const Tensor&) {
         RG_CALL_KERNEL(unary, o.device(), o, a, UnaryOp::Relu, 0.0, 0.0);
       },
       [](double a, double) { return a > 0 ? a : 0.0; }},
      {"axpby", 3,
       [](const Tensor& o, const Tensor& a, const Tensor& b) {
         RG_CALL_KERNEL(binary, o.device(), o, a, b, BinaryOp::Axpby, 0.5, 2.0);
       },
       [](double a, double b) { return 0.5 * a + 2.0 * b; }},
  };
}

// "ok" when the first elements of out match op.ref of a and b (to the dtype's precision).
const char* sanity(const Op& op, const Tensor& out, const Tensor& a, const Tensor& b) {
  const int64_t k = std::min<int64_t>(4096, out.numel());
  const auto o = native::narrow(out, 0, 0, k).to_vector<double>();
  const auto x = native::narrow(a, 0, 0, k).to_vector<double>();
  const auto y = native::narrow(b, 0, 0, k).to_vector<double>();
  const double tol = out.dtype() == DType::f16 ? 4e-3 : 1e-6;
  for (size_t i = 0; i < o.size(); ++i) {
    const double r = op.ref(x[i], y[i]);
    if (std::fabs(o[i] - r) > tol * (1.0 + std::fabs(r))) return "MISMATCH";
  }
  return "ok";
}

void header(const char* device) {
  std::printf("\n%s\n%-8s %-8s %10s %10s %10s %9s  %s\n", device, "dtype", "op", "MiB/opnd", "ms", "GB/s", "vs copy",
              "check");
}

void row(DType dt, const char* op, double mib, double ms, double bytes, double copy_gbs, const char* check) {
  const double gbs = bytes / (ms * 1e-3) / 1e9;
  std::printf("%-8s %-8s %10.0f %10.3f %10.1f %9.2f  %s\n", dtype_name(dt), op, mib, ms, gbs,
              copy_gbs > 0 ? gbs / copy_gbs : 0.0, check);
}

void run_device(Device dev, double mib, int reps) {
  const bool gpu = dev.is_cuda();
  auto timed = [&](const std::function<void()>& fn) {
    return gpu ? bench::time_gpu_ms(fn, 3, reps) : bench::time_cpu_ms(fn, 2, reps);
  };
  for (DType dt : {DType::f32, DType::f16}) {
    const int64_t n = static_cast<int64_t>(mib * 1024 * 1024) / static_cast<int64_t>(dtype_size(dt));
    const double bytes = static_cast<double>(n) * static_cast<double>(dtype_size(dt));
    const auto opts = TensorOptions(dt).device(dev);
    // values in [-1, 1): made on the device itself (random is a kernel too)
    Tensor a = empty({n}, opts), b = empty({n}, opts), out = empty({n}, opts);
    native::random_(a, RandomKind::Uniform, -1.0, 1.0);
    native::random_(b, RandomKind::Uniform, -1.0, 1.0);
    native::fill_(out, 0.0);
    if (gpu) cuda::synchronize();

    const double copy_ms = timed([&] {
      if (gpu) {
        cuda::memcpy(out.data_ptr(), a.data_ptr(), static_cast<size_t>(bytes), cuda::CopyKind::DeviceToDevice, true);
      } else {
        RG_CALL_KERNEL(copy, dev, out, a);
      }
    });
    const double copy_gbs = 2 * bytes / (copy_ms * 1e-3) / 1e9;
    row(dt, gpu ? "memcpy" : "copy", mib, copy_ms, 2 * bytes, copy_gbs, "");
    for (const Op& op : ops()) {
      try {
        const double ms = timed([&] { op.run(out, a, b); });
        if (gpu) cuda::synchronize();
        row(dt, op.name, mib, ms, op.operands * bytes, copy_gbs, sanity(op, out, a, b));
      } catch (const std::exception& e) {
        std::printf("%-8s %-8s  failed: %s\n", dtype_name(dt), op.name, e.what());
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 20;
  double gpu_mib = 256, cpu_mib = 64;
  bool cpu_only = false, gpu_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? argv[++i] : "0"; };
    if (a == "--reps") reps = std::max(1, std::atoi(next()));
    else if (a == "--gpu-mib") gpu_mib = std::atof(next());
    else if (a == "--cpu-mib") cpu_mib = std::atof(next());
    else if (a == "--cpu-only") cpu_only = true;
    else if (a == "--gpu-only") gpu_only = true;
    else {
      std::fprintf(stderr, "usage: %s [--reps N] [--gpu-mib M] [--cpu-mib M] [--cpu-only] [--gpu-only]\n", argv[0]);
      return 2;
    }
  }
  std::printf("bench_elementwise: effective bandwidth (bytes read + written / time), median of %d runs;\n"
              "'vs copy' = GB/s over a copy of the same bytes in the same run (1.00 = copy speed)\n", reps);
  if (!cpu_only) {
    if (cuda::is_available()) {
      header(("GPU: " + cuda::device_name(0) + " (" + cuda::runtime_version() + ")").c_str());
      run_device(Device::cuda(0), gpu_mib, reps);
    } else {
      std::printf("\nGPU: skipped (%s)\n", bench::no_gpu_reason());
    }
  }
  if (!gpu_only) {
    header("CPU (OpenMP threads as set by OMP_NUM_THREADS)");
    run_device(kCPU, cpu_mib, std::max(3, reps / 4));
  }
  return 0;
}
