// bench_conv: how fast is our convolution on ResNet-50's layer shapes? GPU (batch 64, f32 with TF32
// off, f16): our conv2d (the cached cuDNN algorithm, through rg::native) vs the time cuDNN's
// cudnnFind reports for its best algorithm, per direction (target: within 5%). CPU (batch 8, f32):
// GFLOP/s of our im2col convolution vs our GEMM of the same (M, K, N). Runs without a GPU.
// --layers yolov3-tiny: YOLOv3-tiny-416's convolutions instead (benchmarks/torch_twin/conv_layers.py
// times PyTorch's on the same shapes).
// Usage: bench_conv [--reps N] [--cpu-only] [--gpu-only] [--cpu-batch N] [--gpu-batch N]
//        [--layers resnet50|yolov3-tiny] [--im2col]   (--im2col: no direct CPU path, Note [CPU direct convolution])
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/cpu/conv_path.h"
#include "core/cuda_api.h"
#include "core/cudnn_config.h"
#include "core/gemm_config.h"
#include "core/native.h"
#include "core/random.h"

#if defined(RINGGRAD_WITH_CUDNN)
#include <cudnn.h>
#endif

#include "bench_util.h"

using namespace rg;

namespace {

struct Layer {
  const char* name;
  int64_t C, H, O, k, stride, pad;  // square images and kernels
};
// ResNet-50 (224 x 224 input): the stem, and a 3x3 and 1x1 of each stage.
const std::vector<Layer> kResNetLayers = {
    {"conv1 7x7/2", 3, 224, 64, 7, 2, 3},
    {"layer1 3x3", 64, 56, 64, 3, 1, 1},
    {"layer1 1x1 up", 64, 56, 256, 1, 1, 0},
    {"layer2 3x3", 128, 28, 128, 3, 1, 1},
    {"layer2 1x1 down", 512, 28, 128, 1, 1, 0},
    {"layer3 3x3", 256, 14, 256, 3, 1, 1},
    {"layer3 1x1/2 ds", 512, 28, 1024, 1, 2, 0},
    {"layer4 3x3", 512, 7, 512, 3, 1, 1},
    {"layer4 1x1 up", 512, 7, 2048, 1, 1, 0},
};
// YOLOv3-tiny at 416: every convolution, by cfg layer index (the same list as torch_twin/conv_layers.py).
const std::vector<Layer> kTinyLayers = {
    {"0 3x3 3>16", 3, 416, 16, 3, 1, 1},        {"2 3x3 16>32", 16, 208, 32, 3, 1, 1},
    {"4 3x3 32>64", 32, 104, 64, 3, 1, 1},      {"6 3x3 64>128", 64, 52, 128, 3, 1, 1},
    {"8 3x3 128>256", 128, 26, 256, 3, 1, 1},   {"10 3x3 256>512", 256, 13, 512, 3, 1, 1},
    {"12 3x3 512>1024", 512, 13, 1024, 3, 1, 1}, {"13 1x1 1024>256", 1024, 13, 256, 1, 1, 0},
    {"14 3x3 256>512", 256, 13, 512, 3, 1, 1},  {"15 1x1 512>255", 512, 13, 255, 1, 1, 0},
    {"18 1x1 256>128", 256, 13, 128, 1, 1, 0},  {"21 3x3 384>256", 384, 26, 256, 3, 1, 1},
    {"22 1x1 256>255", 256, 26, 255, 1, 1, 0},
};
std::vector<Layer> kLayers = kResNetLayers;
const char* kLayerSet = "ResNet-50";

int64_t out_size(const Layer& l) { return (l.H + 2 * l.pad - l.k) / l.stride + 1; }
double conv_flops(const Layer& l, int64_t N) {
  const double P = static_cast<double>(out_size(l)) * out_size(l);
  return 2.0 * N * l.O * P * l.C * l.k * l.k;
}
ConvParams params_of(const Layer& l) {
  ConvParams p;
  p.stride[0] = p.stride[1] = l.stride;
  p.padding[0] = p.padding[1] = l.pad;
  return p;
}

Tensor rnd(const Shape& s, DType dt, Device dev, uint64_t seed) {
  Generator g(seed);
  return native::to(rand(s, DType::f32, &g), dev, dt);
}

// ---- CPU
void cpu_rows(int reps, int64_t N) {
  std::printf("CPU (f32, batch %lld): our im2col conv vs our GEMM of the same M x K x N (M = Cout, K = Cin k k, "
              "N = batch Ho Wo)\n",
              static_cast<long long>(N));
  std::printf("%-17s %-5s %9s %12s %12s %10s\n", "layer", "dir", "conv ms", "conv GFLOP/s", "GEMM GFLOP/s",
              "conv/GEMM");
  double total_ms = 0;
  for (const Layer& l : kLayers) {
    const int64_t Ho = out_size(l);
    const Tensor x = rnd({N, l.C, l.H, l.H}, DType::f32, kCPU, 1);
    const Tensor w = rnd({l.O, l.C, l.k, l.k}, DType::f32, kCPU, 2);
    const Tensor gy = rnd({N, l.O, Ho, Ho}, DType::f32, kCPU, 3);
    const ConvParams p = params_of(l);
    const double fl = conv_flops(l, N);
    // the GEMM of the same shape: (M, K) @ (K, N)
    const int64_t M = l.O, K = l.C * l.k * l.k, Ncols = N * Ho * Ho;
    const Tensor a = rnd({1, M, K}, DType::f32, kCPU, 4), b = rnd({1, K, Ncols}, DType::f32, kCPU, 5);
    const Tensor c = empty({1, M, Ncols});
    const double gemm_ms = bench::time_cpu_ms([&] { native::bmm_out(c, a, b); }, 1, reps);
    struct Dir {
      const char* name;
      std::function<void()> fn;
    };
    const std::vector<Dir> dirs = {
        {"fwd", [&] { native::conv2d(x, w, Tensor(), p); }},
        {"bwd-d", [&] { native::conv2d_bwd_input(gy, w, x.sizes(), p); }},
        {"bwd-w", [&] { native::conv2d_bwd_weight(gy, x, w.sizes(), p); }},
    };
    for (const Dir& d : dirs) {
      const double ms = bench::time_cpu_ms(d.fn, 1, reps);
      total_ms += ms;
      std::printf("%-17s %-5s %9.2f %12.1f %12.1f %10.2f\n", l.name, d.name, ms, fl / ms * 1e-6, fl / gemm_ms * 1e-6,
                  gemm_ms / ms);
      std::fflush(stdout);
    }
  }
  std::printf("%-17s %-5s %9.2f\n", "total", "", total_ms);
}

// ---- GPU
#if defined(RINGGRAD_WITH_CUDNN)
#define BENCH_CUDNN_CHECK(expr)                                                                  \
  do {                                                                                           \
    const cudnnStatus_t st_ = (expr);                                                            \
    if (st_ != CUDNN_STATUS_SUCCESS) RG_THROW("cuDNN: ", cudnnGetErrorString(st_), " from ", #expr); \
  } while (0)

// cudnnFind's time (ms) for its fastest successful algorithm in one direction (0 fwd, 1 bwd data,
// 2 bwd filter), on the given buffers, with as much workspace as the hungriest algorithm wants
// (up to 2 GiB), and that algorithm's number.
std::pair<double, int> cudnn_best_ms(int dir, const Layer& l, int64_t N, DType dt, const Tensor& x, const Tensor& w,
                                     const Tensor& y) {
  static cudnnHandle_t h = [] {
    cudnnHandle_t hh;
    BENCH_CUDNN_CHECK(cudnnCreate(&hh));
    return hh;
  }();
  BENCH_CUDNN_CHECK(cudnnSetStream(h, static_cast<cudaStream_t>(cuda::current_stream().handle)));
  const cudnnDataType_t t = dt == DType::f16 ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT;
  const int Ho = static_cast<int>(out_size(l));
  cudnnTensorDescriptor_t xd, yd;
  cudnnFilterDescriptor_t wd;
  cudnnConvolutionDescriptor_t cd;
  BENCH_CUDNN_CHECK(cudnnCreateTensorDescriptor(&xd));
  BENCH_CUDNN_CHECK(cudnnCreateTensorDescriptor(&yd));
  BENCH_CUDNN_CHECK(cudnnCreateFilterDescriptor(&wd));
  BENCH_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&cd));
  BENCH_CUDNN_CHECK(cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NCHW, t, static_cast<int>(N), static_cast<int>(l.C),
                                               static_cast<int>(l.H), static_cast<int>(l.H)));
  BENCH_CUDNN_CHECK(cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, t, static_cast<int>(N), static_cast<int>(l.O), Ho, Ho));
  BENCH_CUDNN_CHECK(cudnnSetFilter4dDescriptor(wd, t, CUDNN_TENSOR_NCHW, static_cast<int>(l.O), static_cast<int>(l.C),
                                               static_cast<int>(l.k), static_cast<int>(l.k)));
  BENCH_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(cd, static_cast<int>(l.pad), static_cast<int>(l.pad),
                                                    static_cast<int>(l.stride), static_cast<int>(l.stride), 1, 1,
                                                    CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  BENCH_CUDNN_CHECK(cudnnSetConvolutionMathType(cd, dt == DType::f16 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
  size_t want = 0;
  for (int a = 0; a < 8; ++a) {
    size_t s = 0;
    cudnnStatus_t st = CUDNN_STATUS_NOT_SUPPORTED;
    if (dir == 0 && a < CUDNN_CONVOLUTION_FWD_ALGO_COUNT)
      st = cudnnGetConvolutionForwardWorkspaceSize(h, xd, wd, cd, yd, static_cast<cudnnConvolutionFwdAlgo_t>(a), &s);
    if (dir == 1 && a < CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT)
      st = cudnnGetConvolutionBackwardDataWorkspaceSize(h, wd, yd, cd, xd, static_cast<cudnnConvolutionBwdDataAlgo_t>(a), &s);
    if (dir == 2 && a < CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT)
      st = cudnnGetConvolutionBackwardFilterWorkspaceSize(h, xd, yd, cd, wd, static_cast<cudnnConvolutionBwdFilterAlgo_t>(a),
                                                          &s);
    if (st == CUDNN_STATUS_SUCCESS) want = std::max(want, s);
  }
  want = std::min(want, size_t{2} << 30);
  const int dev = cuda::current_device();
  void* ws = want ? cuda::caching_alloc(want, dev, cuda::current_stream()) : nullptr;
  double best = -1;
  int algo = -1;
  int got = 0;
  auto pick = [&](const auto* perf) {
    for (int i = 0; i < got; ++i) {
      if (perf[i].status == CUDNN_STATUS_SUCCESS) {
        best = perf[i].time, algo = static_cast<int>(perf[i].algo);
        return;
      }
    }
  };
  if (dir == 0) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    BENCH_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(h, xd, x.data_ptr(), wd, w.data_ptr(), cd, yd, y.data_ptr(),
                                                             CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, perf, ws, want));
    pick(perf);
  } else if (dir == 1) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    BENCH_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(h, wd, w.data_ptr(), yd, y.data_ptr(), cd, xd,
                                                                  x.data_ptr(), CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got,
                                                                  perf, ws, want));
    pick(perf);
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    BENCH_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(h, xd, x.data_ptr(), yd, y.data_ptr(), cd, wd,
                                                                    w.data_ptr(), CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
                                                                    &got, perf, ws, want));
    pick(perf);
  }
  if (ws) cuda::caching_free(ws);
  cudnnDestroyConvolutionDescriptor(cd);
  cudnnDestroyFilterDescriptor(wd);
  cudnnDestroyTensorDescriptor(yd);
  cudnnDestroyTensorDescriptor(xd);
  return {best, algo};
}
#endif

void gpu_rows(int reps, int64_t N) {
#if defined(RINGGRAD_WITH_CUDNN)
  const Device dev = Device::cuda(0);
  std::printf("GPU: %s (%s, %s), batch %lld: our conv2d (cached cuDNN algorithm, through rg::native) vs the time "
              "cudnnFind reports for its best algorithm\n",
              cuda::device_name(0).c_str(), cuda::runtime_version().c_str(), cudnn_version().c_str(),
              static_cast<long long>(N));
  std::printf("%-17s %-5s %-6s %10s %11s %9s %7s %9s\n", "layer", "dtype", "dir", "ours ms", "cuDNN ms", "ours/best",
              "TFLOP/s", "best algo");
  AllowTF32Guard no_tf32(false);
  set_cudnn_benchmark(true);
  for (DType dt : {DType::f32, DType::f16}) {
    for (const Layer& l : kLayers) {
      const int64_t Ho = out_size(l);
      const Tensor x = rnd({N, l.C, l.H, l.H}, dt, dev, 1);
      const Tensor w = rnd({l.O, l.C, l.k, l.k}, dt, dev, 2);
      const Tensor gy = rnd({N, l.O, Ho, Ho}, dt, dev, 3);
      const Tensor gx = empty(x.sizes(), TensorOptions(dt).device(dev)), gw = empty(w.sizes(), TensorOptions(dt).device(dev));
      const ConvParams p = params_of(l);
      const char* names[3] = {"fwd", "bwd-d", "bwd-w"};
      for (int dir = 0; dir < 3; ++dir) {
        std::function<void()> fn;
        if (dir == 0) fn = [&] { native::conv2d(x, w, Tensor(), p); };
        if (dir == 1) fn = [&] { native::conv2d_bwd_input(gy, w, x.sizes(), p); };
        if (dir == 2) fn = [&] { native::conv2d_bwd_weight(gy, x, w.sizes(), p); };
        const double ours = bench::time_gpu_ms(fn, 3, reps, 10);  // the first call finds and caches the algorithm
        const std::string backend = detail::last_conv_backend();
        // cuDNN's own timing of its best algorithm, on separate output buffers
        const Tensor y_out = empty(gy.sizes(), TensorOptions(dt).device(dev));
        std::pair<double, int> best;
        if (dir == 0) best = cudnn_best_ms(0, l, N, dt, x, w, y_out);
        if (dir == 1) best = cudnn_best_ms(1, l, N, dt, gx, w, gy);
        if (dir == 2) best = cudnn_best_ms(2, l, N, dt, x, gw, gy);
        std::printf("%-17s %-5s %-6s %10.3f %11.3f %9.3f %7.1f %9d%s\n", l.name, dtype_name(dt), names[dir], ours,
                    best.first, ours / best.first, conv_flops(l, N) / ours * 1e-9, best.second,
                    backend == "cudnn" ? "" : "  (ours ran im2col)");
        std::fflush(stdout);
      }
    }
  }
#else
  (void)reps;
  (void)N;
  std::printf("GPU: skipped (built without cuDNN: CUDA convolutions run as im2col + GEMM)\n");
#endif
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 10;
  int64_t cpu_batch = 8, gpu_batch = 64;
  bool cpu = true, gpu = true;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--cpu-batch") && i + 1 < argc) cpu_batch = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--gpu-batch") && i + 1 < argc) gpu_batch = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--cpu-only")) gpu = false;
    else if (!std::strcmp(argv[i], "--gpu-only")) cpu = false;
    else if (!std::strcmp(argv[i], "--im2col")) cpu::set_conv_path(cpu::ConvPath::Im2col);
    else if (!std::strcmp(argv[i], "--layers") && i + 1 < argc && !std::strcmp(argv[i + 1], "yolov3-tiny")) {
      kLayers = kTinyLayers;
      kLayerSet = "YOLOv3-tiny-416";
      ++i;
    } else if (!std::strcmp(argv[i], "--layers") && i + 1 < argc && !std::strcmp(argv[i + 1], "resnet50")) {
      ++i;
    } else {
      std::fprintf(stderr, "usage: %s [--reps N] [--cpu-only] [--gpu-only] [--cpu-batch N] [--gpu-batch N] "
                   "[--layers resnet50|yolov3-tiny] [--im2col]\n", argv[0]);
      return 2;
    }
  }
  std::printf("bench_conv: %s convolution layers, median of %d timed runs after warmup\n\n", kLayerSet, reps);
  if (gpu) {
    if (cuda::device_count() > 0) {
      gpu_rows(reps, gpu_batch);
    } else {
      std::printf("GPU: skipped (%s)\n", bench::no_gpu_reason());
    }
    std::printf("\n");
  }
  if (cpu) cpu_rows(reps, cpu_batch);
  return 0;
}
