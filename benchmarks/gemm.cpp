// bench_gemm: how fast is our matrix multiplication? GPU: our kernels vs cuBLAS (f32 at 4096^3 with
// cuBLAS TF32 as extra information, f16 and bf16 at 8192^3), timed with CUDA events. CPU (always):
// rg::native::matmul vs a direct Eigen GEMM, f32. Usage: bench_gemm [--reps N] [--cpu-only] [--gpu-only]
#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/cuda_api.h"
#include "core/gemm_config.h"
#include "core/native.h"
#include "core/random.h"

#include "bench_util.h"

using namespace rg;

namespace {

double flops(int64_t m, int64_t n, int64_t k) { return 2.0 * static_cast<double>(m) * n * k; }

// Largest |x - y| / max |y| over the first rows of two (1, n, n) results (a sanity check that the
// timed kernels compute the same thing).
double rel_diff(const Tensor& x, const Tensor& y, int64_t rows) {
  const auto xv = native::to(native::narrow(x, 1, 0, rows), kCPU, DType::f64).to_vector<double>();
  const auto yv = native::to(native::narrow(y, 1, 0, rows), kCPU, DType::f64).to_vector<double>();
  double num = 0, den = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    num = std::max(num, std::fabs(xv[i] - yv[i]));
    den = std::max(den, std::fabs(yv[i]));
  }
  return den > 0 ? num / den : num;
}

void gpu_rows(int reps) {
  const Device dev = Device::cuda(0);
  std::printf("GPU: %s (%s)\n", cuda::device_name(0).c_str(), cuda::runtime_version().c_str());
  std::printf("%-6s %-7s %14s %14s %12s  %-18s %s\n", "dtype", "size", "cuBLAS TFLOP/s", "ours TFLOP/s", "ours/cuBLAS",
              "our kernel", "max rel diff");
  struct Row {
    DType dt;
    int64_t n;
  };
  for (const Row& row : {Row{DType::f32, 4096}, Row{DType::f16, 8192}, Row{DType::bf16, 8192}}) {
    const int64_t n = row.n;
    char size[32];
    std::snprintf(size, sizeof size, "%lld^3", static_cast<long long>(n));
    try {
      Generator g(42);
      // Inputs in [-1, 1): made on the CPU in f32, cast and moved once.
      auto input = [&] {
        Tensor t = rand({1, n, n}, DType::f32, &g);
        native::unary_(UnaryOp::Affine, t, 2.0, -1.0);
        return native::to(t, dev, row.dt);
      };
      const Tensor a = input(), b = input();
      const Tensor c_ref = empty({1, n, n}, TensorOptions(row.dt).device(dev));
      const Tensor c_ours = empty({1, n, n}, TensorOptions(row.dt).device(dev));
      auto run = [&](const Tensor& c) { RG_CALL_KERNEL(gemm, dev, c, a, b, 1.0, 0.0); };
      const double f = flops(n, n, n);
      double ms_cublas, ms_ours;
      {
        GemmBackendGuard bg(GemmBackend::Cublas);
        AllowTF32Guard tg(false);
        ms_cublas = bench::time_gpu_ms([&] { run(c_ref); }, 3, reps);
      }
      std::string kernel;
      {
        GemmBackendGuard bg(GemmBackend::Ours);
        ms_ours = bench::time_gpu_ms([&] { run(c_ours); }, 3, reps);
        kernel = detail::last_gemm_kernel();
      }
      const double t_cublas = f / (ms_cublas * 1e-3) / 1e12, t_ours = f / (ms_ours * 1e-3) / 1e12;
      std::printf("%-6s %-7s %14.1f %14.1f %12.2f  %-18s %.2e\n", dtype_name(row.dt), size, t_cublas, t_ours,
                  t_ours / t_cublas, kernel.c_str(), rel_diff(c_ours, c_ref, 64));
      if (row.dt == DType::f32) {
        GemmBackendGuard bg(GemmBackend::Cublas);
        AllowTF32Guard tg(true);
        const double ms_tf32 = bench::time_gpu_ms([&] { run(c_ref); }, 3, reps);
        std::printf("%-6s %-7s %14.1f %14s %12s  %-18s (cuBLAS with TF32, for reference)\n", "tf32", size,
                    f / (ms_tf32 * 1e-3) / 1e12, "-", "-", "cublas");
      }
    } catch (const std::exception& e) {
      std::printf("%-6s %-7s error: %s\n", dtype_name(row.dt), size, e.what());
    }
  }
}

void cpu_rows(int reps) {
  std::printf("CPU: f32, %d Eigen thread(s)\n", Eigen::nbThreads());
  std::printf("%-6s %-7s %14s %14s %12s\n", "dtype", "size", "rg GFLOP/s", "Eigen GFLOP/s", "rg/Eigen");
  using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  for (int64_t n : {512, 1024, 2048}) {
    char size[32];
    std::snprintf(size, sizeof size, "%lld^3", static_cast<long long>(n));
    Generator g(7);
    const Tensor a = rand({n, n}, DType::f32, &g), b = rand({n, n}, DType::f32, &g);
    const int r = n <= 512 ? 4 * reps : n <= 1024 ? reps : std::max(3, reps / 2);
    const double f = flops(n, n, n);
    Eigen::Map<const RowMajor> ea(a.data<float>(), n, n), eb(b.data<float>(), n, n);
    RowMajor ec(n, n);
    const double ms_eigen = bench::time_cpu_ms([&] { ec.noalias() = ea * eb; }, 1, r);
    const double g_eigen = f / (ms_eigen * 1e-3) / 1e9;
    try {
      Tensor out;
      const double ms_rg = bench::time_cpu_ms([&] { out = native::matmul(a, b); }, 1, r);
      const double g_rg = f / (ms_rg * 1e-3) / 1e9;
      std::printf("%-6s %-7s %14.1f %14.1f %12.2f\n", "f32", size, g_rg, g_eigen, g_rg / g_eigen);
    } catch (const std::exception& e) {
      std::printf("%-6s %-7s %14s %14.1f %12s  (rg::native::matmul: %s)\n", "f32", size, "error", g_eigen, "-", e.what());
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 10;
  bool cpu = true, gpu = true;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--cpu-only")) gpu = false;
    else if (!std::strcmp(argv[i], "--gpu-only")) cpu = false;
    else {
      std::fprintf(stderr, "usage: %s [--reps N] [--cpu-only] [--gpu-only]\n", argv[0]);
      return 2;
    }
  }
  std::printf("bench_gemm: C = A @ B, square, median of %d timed runs after warmup\n\n", reps);
  if (gpu) {
    if (cuda::device_count() > 0) {
      gpu_rows(reps);
    } else {
      std::printf("GPU: skipped (%s)\n", bench::no_gpu_reason());
    }
    std::printf("\n");
  }
  if (cpu) cpu_rows(reps);
  return 0;
}
