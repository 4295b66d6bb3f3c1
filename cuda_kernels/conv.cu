// CUDA 2-D convolution (NCHW), the twin of core/cpu/conv.cpp: cuDNN's convolution API with one
// algorithm per (shape, dtype, params, direction) found once and cached (Note [cuDNN plans]), or
// im2col + gemm (rg::native::bmm_out) when cuDNN is not built or is switched off (Note [cuDNN switches]).
#include <algorithm>
#include <climits>
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/cudnn_config.h"
#include "core/gemm_config.h"
#include "core/native.h"
#include "cuda_kernels/common.cuh"
#include "cuda_kernels/handle_pool.h"

#if defined(RINGGRAD_WITH_CUDNN)
#include <cudnn.h>
#endif

namespace rg {

using namespace cu;

namespace {

// Geometry of one convolution; P = Ho * Wo, K = Cg * kh * kw (rows of one group's column matrix).
struct ConvGeom {
  int64_t N, C, H, W, O, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, G, Cg, Og, K, P;
};

ConvGeom make_geom(const Tensor& x, const Tensor& w, const Tensor& y, const ConvParams& p) {
  RG_CHECK(x.dim() == 4 && w.dim() == 4 && y.dim() == 4, "conv2d kernel: expected 4-D tensors");
  RG_CHECK(x.is_contiguous() && w.is_contiguous() && y.is_contiguous(), "conv2d kernel: expected contiguous tensors");
  ConvGeom g{};
  g.N = x.size(0), g.C = x.size(1), g.H = x.size(2), g.W = x.size(3);
  g.O = w.size(0), g.kh = w.size(2), g.kw = w.size(3), g.Ho = y.size(2), g.Wo = y.size(3);
  g.sh = p.stride[0], g.sw = p.stride[1], g.ph = p.padding[0], g.pw = p.padding[1];
  g.dh = p.dilation[0], g.dw = p.dilation[1], g.G = p.groups;
  g.Cg = g.C / g.G, g.Og = g.O / g.G, g.K = g.Cg * g.kh * g.kw, g.P = g.Ho * g.Wo;
  RG_CHECK(w.size(1) == g.Cg && y.size(0) == g.N && y.size(1) == g.O, "conv2d kernel: inconsistent shapes");
  return g;
}

}  // namespace

// ---- kernels

// y (N, O, P) += bias (O), in the accumulation type.
template <typename T>
static __global__ void conv_bias_fwd_kernel(T* __restrict__ y, const T* __restrict__ bias, int64_t total, int64_t O,
                                            int64_t P) {
  using A = acc_t<T>;
  grid_stride(total, [&](int64_t i) {
    const int64_t o = (i / P) % O;
    y[i] = cast<T>(cast<A>(y[i]) + cast<A>(bias[o]));
  });
}

// col (C * kh * kw, nb, P) from images [n0, n0 + nb) of x (N, C, H, W): row (c, i, j), image n,
// output pixel (oh, ow) holds x[n0 + n, c, oh * sh - ph + i * dh, ow * sw - pw + j * dw], 0 outside.
template <typename T>
static __global__ void conv_im2col_fwd_kernel(T* __restrict__ col, const T* __restrict__ x, ConvGeom g, int64_t n0,
                                              int64_t nb) {
  const int64_t total = g.C * g.kh * g.kw * nb * g.P;
  grid_stride(total, [&](int64_t idx) {
    const int64_t p = idx % g.P;
    const int64_t t = idx / g.P;
    const int64_t n = t % nb;
    const int64_t row = t / nb;
    const int64_t j = row % g.kw;
    const int64_t i = (row / g.kw) % g.kh;
    const int64_t c = row / (g.kw * g.kh);
    const int64_t oh = p / g.Wo, ow = p - (p / g.Wo) * g.Wo;
    const int64_t ih = oh * g.sh - g.ph + i * g.dh, iw = ow * g.sw - g.pw + j * g.dw;
    T v = cast<T>(0.0f);
    if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) v = x[((n0 + n) * g.C + c) * g.H * g.W + ih * g.W + iw];
    col[idx] = v;
  });
}

// The adjoint of im2col, as a gather (deterministic): gx[n0 + n, c, ih, iw] = the sum of gcol
// (C * kh * kw, nb, P) over the taps (i, j) whose output pixel reads (ih, iw).
template <typename T>
static __global__ void conv_col2im_bwd_kernel(T* __restrict__ gx, const T* __restrict__ gcol, ConvGeom g, int64_t n0,
                                              int64_t nb) {
  using A = acc_t<T>;
  const int64_t total = nb * g.C * g.H * g.W;
  grid_stride(total, [&](int64_t idx) {
    const int64_t iw = idx % g.W;
    int64_t t = idx / g.W;
    const int64_t ih = t % g.H;
    t /= g.H;
    const int64_t c = t % g.C;
    const int64_t n = t / g.C;
    A acc = A(0);
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t hn = ih + g.ph - i * g.dh;  // = oh * sh
      if (hn < 0 || hn % g.sh != 0) continue;
      const int64_t oh = hn / g.sh;
      if (oh >= g.Ho) continue;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t wn = iw + g.pw - j * g.dw;
        if (wn < 0 || wn % g.sw != 0) continue;
        const int64_t ow = wn / g.sw;
        if (ow >= g.Wo) continue;
        acc += cast<A>(gcol[(((c * g.kh + i) * g.kw + j) * nb + n) * g.P + oh * g.Wo + ow]);
      }
    }
    gx[n0 * g.C * g.H * g.W + idx] = cast<T>(acc);
  });
}

// ---- launchers

namespace {

void add_bias(const Tensor& y, const Tensor& bias, const ConvGeom& g) {
  const int64_t total = y.numel();
  RG_CU_DISPATCH_FLOAT(y.dtype(), "conv2d", [&] {
    conv_bias_fwd_kernel<scalar_t><<<grid_for(total), kThreads, 0, stream()>>>(
        static_cast<scalar_t*>(y.data_ptr()), static_cast<const scalar_t*>(bias.data_ptr()), total, g.O, g.P);
    RG_CUDA_LAUNCH_CHECK("conv_bias_fwd_kernel");
  });
}

// ---- im2col + gemm path
// Note [CUDA im2col layout]
// A chunk of nb images is unfolded into col (C * kh * kw, nb, P): group g's rows are one (K, nb * P)
// matrix, so each direction is one batched GEMM over the groups per chunk:
//   forward       ybuf_g (Og, nb P) = W_g (Og, K) @ col_g (K, nb P), then ybuf (O, nb, P) -> y (nb, O, P)
//   input grad    gcol_g (K, nb P)  = W_g^T (K, Og) @ gyT_g (Og, nb P), then col2im
//   weight grad   gW_g (Og, K)     += gyT_g (Og, nb P) @ col_g^T (nb P, K)
// with gyT (O, nb, P) the chunk of gy transposed. Chunks hold at most kColBudget column elements.
constexpr int64_t kColBudget = int64_t{1} << 26;

int64_t chunk_images(const ConvGeom& g) {
  const int64_t per_image = std::max<int64_t>(1, g.C * g.kh * g.kw * g.P);
  return std::clamp<int64_t>(kColBudget / per_image, 1, std::max<int64_t>(g.N, 1));
}

Tensor scratch(const Shape& s, const Tensor& like) { return empty(s, TensorOptions(like.dtype()).device(like.device())); }

// A (d0, d1, d2) view of the first elements of t's storage with the given strides.
Tensor view3(const Tensor& t, int64_t d0, int64_t d1, int64_t d2, int64_t s0, int64_t s1, int64_t s2, int64_t off = 0) {
  return native::as_strided(t, {d0, d1, d2}, {s0, s1, s2}, t.storage_offset() + off);
}

void im2col(const Tensor& col, const Tensor& x, const ConvGeom& g, int64_t n0, int64_t nb) {
  const int64_t total = g.C * g.kh * g.kw * nb * g.P;
  RG_CU_DISPATCH_FLOAT(x.dtype(), "conv2d", [&] {
    conv_im2col_fwd_kernel<scalar_t><<<grid_for(total), kThreads, 0, stream()>>>(
        static_cast<scalar_t*>(col.data_ptr()), static_cast<const scalar_t*>(x.data_ptr()), g, n0, nb);
    RG_CUDA_LAUNCH_CHECK("conv_im2col_fwd_kernel");
  });
}

void col2im(const Tensor& gx, const Tensor& gcol, const ConvGeom& g, int64_t n0, int64_t nb) {
  const int64_t total = nb * g.C * g.H * g.W;
  RG_CU_DISPATCH_FLOAT(gx.dtype(), "conv2d_bwd_input", [&] {
    conv_col2im_bwd_kernel<scalar_t><<<grid_for(total), kThreads, 0, stream()>>>(
        static_cast<scalar_t*>(gx.data_ptr()), static_cast<const scalar_t*>(gcol.data_ptr()), g, n0, nb);
    RG_CUDA_LAUNCH_CHECK("conv_col2im_bwd_kernel");
  });
}

// gyT (O, nb, P) <- gy[n0 : n0 + nb] (nb, O, P)
void transpose_grad(const Tensor& gyT, const Tensor& gy, const ConvGeom& g, int64_t n0, int64_t nb) {
  const int64_t L = nb * g.P;
  native::copy_(view3(gyT, nb, g.O, g.P, g.P, L, 1), view3(gy, nb, g.O, g.P, g.O * g.P, g.P, 1, n0 * g.O * g.P));
}

void im2col_fwd(const Tensor& y, const Tensor& x, const Tensor& w, const ConvGeom& g) {
  const int64_t nbmax = chunk_images(g);
  const Tensor col = scratch({g.C * g.kh * g.kw * nbmax * g.P}, x);
  const Tensor ybuf = scratch({g.O * nbmax * g.P}, x);
  const Tensor w3 = view3(w, g.G, g.Og, g.K, g.Og * g.K, g.K, 1);
  for (int64_t n0 = 0; n0 < g.N; n0 += nbmax) {
    const int64_t nb = std::min(nbmax, g.N - n0), L = nb * g.P;
    im2col(col, x, g, n0, nb);
    native::bmm_out(view3(ybuf, g.G, g.Og, L, g.Og * L, L, 1), w3, view3(col, g.G, g.K, L, g.K * L, L, 1), 1.0, 0.0);
    // y[n0 : n0 + nb] (nb, O, P) <- ybuf (O, nb, P)
    native::copy_(view3(y, nb, g.O, g.P, g.O * g.P, g.P, 1, n0 * g.O * g.P), view3(ybuf, nb, g.O, g.P, g.P, L, 1));
  }
}

void im2col_bwd_input(const Tensor& gx, const Tensor& gy, const Tensor& w, const ConvGeom& g) {
  const int64_t nbmax = chunk_images(g);
  const Tensor gcol = scratch({g.C * g.kh * g.kw * nbmax * g.P}, gy);
  const Tensor gyT = scratch({g.O * nbmax * g.P}, gy);
  const Tensor wT3 = view3(w, g.G, g.K, g.Og, g.Og * g.K, 1, g.K);  // W_g^T (K, Og)
  for (int64_t n0 = 0; n0 < g.N; n0 += nbmax) {
    const int64_t nb = std::min(nbmax, g.N - n0), L = nb * g.P;
    transpose_grad(gyT, gy, g, n0, nb);
    native::bmm_out(view3(gcol, g.G, g.K, L, g.K * L, L, 1), wT3, view3(gyT, g.G, g.Og, L, g.Og * L, L, 1), 1.0, 0.0);
    col2im(gx, gcol, g, n0, nb);
  }
}

void im2col_bwd_weight(const Tensor& gw, const Tensor& gy, const Tensor& x, const ConvGeom& g) {
  const int64_t nbmax = chunk_images(g);
  const Tensor col = scratch({g.C * g.kh * g.kw * nbmax * g.P}, x);
  const Tensor gyT = scratch({g.O * nbmax * g.P}, gy);
  const Tensor gw3 = view3(gw, g.G, g.Og, g.K, g.Og * g.K, g.K, 1);
  for (int64_t n0 = 0; n0 < g.N; n0 += nbmax) {
    const int64_t nb = std::min(nbmax, g.N - n0), L = nb * g.P;
    im2col(col, x, g, n0, nb);
    transpose_grad(gyT, gy, g, n0, nb);
    native::bmm_out(gw3, view3(gyT, g.G, g.Og, L, g.Og * L, L, 1), view3(col, g.G, L, g.K, g.K * L, 1, L), 1.0,
                    n0 == 0 ? 0.0 : 1.0);
  }
}

}  // namespace

#if defined(RINGGRAD_WITH_CUDNN)

#define RG_CUDNN_CHECK(expr)                                                                 \
  do {                                                                                       \
    const cudnnStatus_t rg_st_ = (expr);                                                     \
    if (rg_st_ != CUDNN_STATUS_SUCCESS) {                                                    \
      RG_THROW("cuDNN error: ", cudnnGetErrorString(rg_st_), " (status ", static_cast<int>(rg_st_), ") from ", #expr); \
    }                                                                                        \
  } while (0)

namespace {

// ---- handles: one per device per thread (Note [Library handles]), set to the current stream at
// every call.
cudnnHandle_t cudnn_handle(int device) {
  return cuda::ThreadHandleCache<cudnnHandle_t>::get(device, [] {
    cudnnHandle_t h = nullptr;
    RG_CUDNN_CHECK(cudnnCreate(&h));
    return h;
  });
}

// ---- descriptors (RAII)
template <typename D, cudnnStatus_t (*Create)(D*), cudnnStatus_t (*Destroy)(D)>
class Desc {
 public:
  Desc() { RG_CUDNN_CHECK(Create(&d_)); }
  ~Desc() {
    if (d_) Destroy(d_);
  }
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;
  D get() const { return d_; }

 private:
  D d_ = nullptr;
};
using TensorDesc = Desc<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor>;
using FilterDesc = Desc<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvDesc = Desc<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor, cudnnDestroyConvolutionDescriptor>;

cudnnDataType_t cudnn_dtype(DType dt) {
  switch (dt) {
    case DType::f32: return CUDNN_DATA_FLOAT;
    case DType::f64: return CUDNN_DATA_DOUBLE;
    case DType::f16: return CUDNN_DATA_HALF;
    case DType::bf16: return CUDNN_DATA_BFLOAT16;
    default: throw_unsupported_dtype("conv2d", dt, "cuda");
  }
}

int to_int(int64_t v, const char* what) {
  RG_CHECK(v >= 0 && v <= INT_MAX, "conv2d: ", what, " = ", v, " does not fit cuDNN's int");
  return static_cast<int>(v);
}

enum class Dir : int { Fwd = 0, BwdData = 1, BwdFilter = 2 };

// Note [cuDNN plans]
// A plan holds the descriptors and the algorithm for one key: device, direction, dtype, batch,
// shapes, stride/padding/dilation/groups, TF32 (f32 only), the benchmark switch and the alignment
// of the pointers (1 to 16 bytes: some algorithms need more than the element size). The first call with a key times the
// algorithms (cudnnFind*AlgorithmEx, on the call's own buffers, with as much workspace as the
// hungriest algorithm wants, up to kFindWorkspaceCap) or asks the heuristics, keeps the fastest
// that succeeded, and sets the convolution descriptor's math type to the one it was timed with
// (f32 without TF32 stays CUDNN_FMA_MATH; f16/bf16 may use tensor cores, accumulating in f32).
// Later calls only look the plan up. Plans live until exit. When cuDNN has no algorithm for a
// key (algo < 0), the im2col path runs instead. The workspace of each call comes from the
// caching allocator on the current stream and goes back right after the launch (stream-ordered).
struct PlanKey {
  int64_t v[20];
  bool operator==(const PlanKey& o) const { return std::memcmp(v, o.v, sizeof(v)) == 0; }
};
struct PlanKeyHash {
  size_t operator()(const PlanKey& k) const {
    uint64_t h = 1469598103934665603ull;
    for (int64_t x : k.v) {
      h ^= static_cast<uint64_t>(x);
      h *= 1099511628211ull;
    }
    return static_cast<size_t>(h);
  }
};

struct Plan {
  TensorDesc x, y;  // x: input (or its gradient); y: output (or its gradient)
  FilterDesc w;
  ConvDesc conv;
  int algo = -1;
  size_t workspace = 0;
};

struct PlanCache {
  std::mutex mu;
  std::unordered_map<PlanKey, std::unique_ptr<Plan>, PlanKeyHash> plans;
};
PlanCache& plan_cache() {
  static auto* c = new PlanCache();  // never destroyed: descriptors must not outlive the library
  return *c;
}

constexpr size_t kFindWorkspaceCap = size_t{2} << 30;

// Buffers of one call: x (input or its gradient), w (weight or its gradient), y (output or its gradient).
struct Bufs {
  void* x;
  void* w;
  void* y;
};

template <Dir D>
struct DirOps;
template <>
struct DirOps<Dir::Fwd> {
  using Perf = cudnnConvolutionFwdAlgoPerf_t;
  using Algo = cudnnConvolutionFwdAlgo_t;
  static constexpr int kCount = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
  static constexpr const char* kName = "conv2d";
  static cudnnStatus_t ws(cudnnHandle_t h, const Plan& p, int a, size_t* s) {
    return cudnnGetConvolutionForwardWorkspaceSize(h, p.x.get(), p.w.get(), p.conv.get(), p.y.get(),
                                                   static_cast<Algo>(a), s);
  }
  static cudnnStatus_t heuristic(cudnnHandle_t h, const Plan& p, int n, int* got, Perf* perf) {
    return cudnnGetConvolutionForwardAlgorithm_v7(h, p.x.get(), p.w.get(), p.conv.get(), p.y.get(), n, got, perf);
  }
  static cudnnStatus_t find(cudnnHandle_t h, const Plan& p, const Bufs& b, void* out, int n, int* got, Perf* perf,
                            void* ws, size_t wsb) {
    return cudnnFindConvolutionForwardAlgorithmEx(h, p.x.get(), b.x, p.w.get(), b.w, p.conv.get(), p.y.get(), out, n,
                                                  got, perf, ws, wsb);
  }
  static void* output(const Bufs& b) { return b.y; }
  static size_t output_bytes(const ConvGeom& g, int64_t nb, size_t es) { return static_cast<size_t>(nb * g.O * g.P) * es; }
  static cudnnStatus_t run(cudnnHandle_t h, const Plan& p, const Bufs& b, const void* alpha, const void* beta, void* ws,
                           size_t wsb) {
    return cudnnConvolutionForward(h, alpha, p.x.get(), b.x, p.w.get(), b.w, p.conv.get(), static_cast<Algo>(p.algo), ws,
                                   wsb, beta, p.y.get(), b.y);
  }
};
template <>
struct DirOps<Dir::BwdData> {
  using Perf = cudnnConvolutionBwdDataAlgoPerf_t;
  using Algo = cudnnConvolutionBwdDataAlgo_t;
  static constexpr int kCount = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
  static constexpr const char* kName = "conv2d_bwd_input";
  static cudnnStatus_t ws(cudnnHandle_t h, const Plan& p, int a, size_t* s) {
    return cudnnGetConvolutionBackwardDataWorkspaceSize(h, p.w.get(), p.y.get(), p.conv.get(), p.x.get(),
                                                        static_cast<Algo>(a), s);
  }
  static cudnnStatus_t heuristic(cudnnHandle_t h, const Plan& p, int n, int* got, Perf* perf) {
    return cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p.w.get(), p.y.get(), p.conv.get(), p.x.get(), n, got, perf);
  }
  static cudnnStatus_t find(cudnnHandle_t h, const Plan& p, const Bufs& b, void* out, int n, int* got, Perf* perf,
                            void* ws, size_t wsb) {
    return cudnnFindConvolutionBackwardDataAlgorithmEx(h, p.w.get(), b.w, p.y.get(), b.y, p.conv.get(), p.x.get(), out,
                                                       n, got, perf, ws, wsb);
  }
  static void* output(const Bufs& b) { return b.x; }
  static size_t output_bytes(const ConvGeom& g, int64_t nb, size_t es) {
    return static_cast<size_t>(nb * g.C * g.H * g.W) * es;
  }
  static cudnnStatus_t run(cudnnHandle_t h, const Plan& p, const Bufs& b, const void* alpha, const void* beta, void* ws,
                           size_t wsb) {
    return cudnnConvolutionBackwardData(h, alpha, p.w.get(), b.w, p.y.get(), b.y, p.conv.get(), static_cast<Algo>(p.algo),
                                        ws, wsb, beta, p.x.get(), b.x);
  }
};
template <>
struct DirOps<Dir::BwdFilter> {
  using Perf = cudnnConvolutionBwdFilterAlgoPerf_t;
  using Algo = cudnnConvolutionBwdFilterAlgo_t;
  static constexpr int kCount = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
  static constexpr const char* kName = "conv2d_bwd_weight";
  static cudnnStatus_t ws(cudnnHandle_t h, const Plan& p, int a, size_t* s) {
    return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p.x.get(), p.y.get(), p.conv.get(), p.w.get(),
                                                          static_cast<Algo>(a), s);
  }
  static cudnnStatus_t heuristic(cudnnHandle_t h, const Plan& p, int n, int* got, Perf* perf) {
    return cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p.x.get(), p.y.get(), p.conv.get(), p.w.get(), n, got, perf);
  }
  static cudnnStatus_t find(cudnnHandle_t h, const Plan& p, const Bufs& b, void* out, int n, int* got, Perf* perf,
                            void* ws, size_t wsb) {
    return cudnnFindConvolutionBackwardFilterAlgorithmEx(h, p.x.get(), b.x, p.y.get(), b.y, p.conv.get(), p.w.get(), out,
                                                         n, got, perf, ws, wsb);
  }
  static void* output(const Bufs& b) { return b.w; }
  static size_t output_bytes(const ConvGeom& g, int64_t, size_t es) { return static_cast<size_t>(g.O * g.K) * es; }
  static cudnnStatus_t run(cudnnHandle_t h, const Plan& p, const Bufs& b, const void* alpha, const void* beta, void* ws,
                           size_t wsb) {
    return cudnnConvolutionBackwardFilter(h, alpha, p.x.get(), b.x, p.y.get(), b.y, p.conv.get(),
                                          static_cast<Algo>(p.algo), ws, wsb, beta, p.w.get(), b.w);
  }
};

// Caching-allocator memory released at scope exit (stream-ordered: safe right after a launch).
class Workspace {
 public:
  Workspace(size_t bytes, int device, const cuda::Stream& s) : bytes_(bytes) {
    if (bytes > 0) ptr_ = cuda::caching_alloc(bytes, device, s);
  }
  ~Workspace() {
    if (ptr_) cuda::caching_free(ptr_);
  }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// The largest workspace we can get, at most `want` bytes: halves on allocation failure.
std::unique_ptr<Workspace> largest_workspace(size_t want, int device, const cuda::Stream& s) {
  while (true) {
    try {
      return std::make_unique<Workspace>(want, device, s);
    } catch (const Error&) {
      if (want == 0) throw;
      want = want < (size_t{1} << 20) ? 0 : want / 2;
    }
  }
}

void describe(Plan& plan, const ConvGeom& g, int64_t nb, DType dt, cudnnMathType_t math) {
  const cudnnDataType_t t = cudnn_dtype(dt);
  RG_CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan.x.get(), CUDNN_TENSOR_NCHW, t, to_int(nb, "N"), to_int(g.C, "C"),
                                            to_int(g.H, "H"), to_int(g.W, "W")));
  RG_CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan.y.get(), CUDNN_TENSOR_NCHW, t, to_int(nb, "N"), to_int(g.O, "Cout"),
                                            to_int(g.Ho, "Ho"), to_int(g.Wo, "Wo")));
  RG_CUDNN_CHECK(cudnnSetFilter4dDescriptor(plan.w.get(), t, CUDNN_TENSOR_NCHW, to_int(g.O, "Cout"), to_int(g.Cg, "Cin/groups"),
                                            to_int(g.kh, "kh"), to_int(g.kw, "kw")));
  // f16/bf16 accumulate in f32 (as PyTorch's cuDNN convolutions); f64 in f64.
  const cudnnDataType_t compute = dt == DType::f64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
  RG_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(plan.conv.get(), to_int(g.ph, "padding"), to_int(g.pw, "padding"),
                                                 to_int(g.sh, "stride"), to_int(g.sw, "stride"), to_int(g.dh, "dilation"),
                                                 to_int(g.dw, "dilation"), CUDNN_CROSS_CORRELATION, compute));
  RG_CUDNN_CHECK(cudnnSetConvolutionGroupCount(plan.conv.get(), to_int(g.G, "groups")));
  RG_CUDNN_CHECK(cudnnSetConvolutionMathType(plan.conv.get(), math));
  int on, oc, oh, ow;
  RG_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(plan.conv.get(), plan.x.get(), plan.w.get(), &on, &oc, &oh, &ow));
  RG_CHECK(on == nb && oc == g.O && oh == g.Ho && ow == g.Wo, "conv2d: cuDNN computes output ", on, "x", oc, "x", oh,
           "x", ow, " but ours is ", nb, "x", g.O, "x", g.Ho, "x", g.Wo);
}

// Picks and stores the algorithm of a described plan (Note [cuDNN plans]).
template <Dir D>
void choose_algorithm(Plan& plan, cudnnHandle_t h, const ConvGeom& g, int64_t nb, DType dt, bool fma_only,
                      const Bufs& b, bool output_live, int device, const cuda::Stream& s) {
  using Ops = DirOps<D>;
  typename Ops::Perf perf[Ops::kCount];
  int got = 0;
  size_t limit = SIZE_MAX;
  if (cudnn_benchmark()) {
    size_t want = 0;
    for (int a = 0; a < Ops::kCount; ++a) {
      size_t sz = 0;
      if (Ops::ws(h, plan, a, &sz) == CUDNN_STATUS_SUCCESS) want = std::max(want, sz);
    }
    auto ws = largest_workspace(std::min(want, kFindWorkspaceCap), device, s);
    limit = ws->bytes();
    // Find writes its output: into a scratch buffer when the real one holds values to keep.
    std::unique_ptr<Workspace> out_scratch;
    void* out = Ops::output(b);
    if (output_live) {
      out_scratch = std::make_unique<Workspace>(Ops::output_bytes(g, nb, dtype_size(dt)), device, s);
      out = out_scratch->get();
    }
    const cudnnStatus_t st = Ops::find(h, plan, b, out, Ops::kCount, &got, perf, ws->get(), ws->bytes());
    if (st == CUDNN_STATUS_NOT_SUPPORTED) got = 0;
    else RG_CUDNN_CHECK(st);
  } else {
    const cudnnStatus_t st = Ops::heuristic(h, plan, Ops::kCount, &got, perf);
    if (st == CUDNN_STATUS_NOT_SUPPORTED) got = 0;
    else RG_CUDNN_CHECK(st);
  }
  for (int i = 0; i < got; ++i) {
    const auto& r = perf[i];
    if (r.status != CUDNN_STATUS_SUCCESS || r.memory > limit) continue;
    const bool tensor_op = r.mathType == CUDNN_TENSOR_OP_MATH || r.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    if (fma_only && tensor_op) continue;
    RG_CUDNN_CHECK(cudnnSetConvolutionMathType(plan.conv.get(), fma_only ? CUDNN_FMA_MATH : r.mathType));
    size_t need = 0;
    if (Ops::ws(h, plan, static_cast<int>(r.algo), &need) != CUDNN_STATUS_SUCCESS) continue;
    plan.algo = static_cast<int>(r.algo);
    plan.workspace = std::max(need, static_cast<size_t>(r.memory));
    return;
  }
  plan.algo = -1;  // nothing usable: the im2col path runs
}

template <Dir D>
Plan* get_plan(cudnnHandle_t h, const ConvGeom& g, int64_t nb, DType dt, const Bufs& b, bool output_live, int device,
               const cuda::Stream& s) {
  const bool tf32 = dt == DType::f32 && allow_tf32();
  // the largest power of two (up to 16 bytes) every pointer is aligned to
  const auto align_of = [](const void* p) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    return static_cast<int64_t>(a == 0 ? 16 : std::min<uintptr_t>(a & (~a + 1), 16));
  };
  const int64_t aligned = std::min({align_of(b.x), align_of(b.w), align_of(b.y)});
  const PlanKey key{{device, static_cast<int64_t>(D), static_cast<int64_t>(dt), tf32, cudnn_benchmark(), aligned, nb,
                     g.C, g.H, g.W, g.O, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.G}};
  auto& cache = plan_cache();
  {
    std::lock_guard<std::mutex> lk(cache.mu);
    auto it = cache.plans.find(key);
    if (it != cache.plans.end()) return it->second.get();
  }
  auto plan = std::make_unique<Plan>();
  const bool fma_only = dt == DType::f32 && !tf32;
  const cudnnMathType_t math = fma_only                  ? CUDNN_FMA_MATH
                               : (dt == DType::f16 || dt == DType::bf16) ? CUDNN_TENSOR_OP_MATH
                                                                          : CUDNN_DEFAULT_MATH;
  describe(*plan, g, nb, dt, math);
  choose_algorithm<D>(*plan, h, g, nb, dt, fma_only, b, output_live, device, s);
  std::lock_guard<std::mutex> lk(cache.mu);
  auto [it, inserted] = cache.plans.emplace(key, std::move(plan));  // another thread may have won: keep its plan
  return it->second.get();
}

// Images per cuDNN call: every tensor of a call must have fewer than 2^31 elements.
int64_t cudnn_chunk(const ConvGeom& g) {
  const int64_t per = std::max<int64_t>({int64_t{1}, g.C * g.H * g.W, g.O * g.P});
  return std::clamp<int64_t>(INT_MAX / per, 1, std::max<int64_t>(g.N, 1));
}

// Runs direction D with cuDNN over chunks of images; false (nothing done) when cuDNN has no
// algorithm for the first chunk. x, w, y: the input, weight and output of the forward
// convolution (or their gradients, per direction).
template <Dir D>
bool cudnn_conv(const Tensor& x, const Tensor& w, const Tensor& y, const ConvGeom& g) {
  const DType dt = x.dtype();
  const int device = x.device().index;
  const cuda::Stream s = cuda::current_stream(device);
  cudnnHandle_t h = cudnn_handle(device);
  RG_CUDNN_CHECK(cudnnSetStream(h, cuda::raw(s)));
  const size_t es = dtype_size(dt);
  const int64_t nbmax = cudnn_chunk(g);
  const double one_d = 1.0, zero_d = 0.0;
  const float one_f = 1.0f, zero_f = 0.0f;
  const bool f64 = dt == DType::f64;
  for (int64_t n0 = 0; n0 < g.N; n0 += nbmax) {
    const int64_t nb = std::min(nbmax, g.N - n0);
    const Bufs b{static_cast<char*>(x.data_ptr()) + static_cast<size_t>(n0 * g.C * g.H * g.W) * es, w.data_ptr(),
                 static_cast<char*>(y.data_ptr()) + static_cast<size_t>(n0 * g.O * g.P) * es};
    // the weight gradient accumulates over chunks after the first
    const bool accumulate = D == Dir::BwdFilter && n0 > 0;
    const Plan* plan = get_plan<D>(h, g, nb, dt, b, accumulate, device, s);
    if (plan->algo < 0) {
      RG_CHECK(n0 == 0, DirOps<D>::kName, ": cuDNN has no algorithm for a batch of ", nb, " after running ", n0,
               " images");
      return false;
    }
    Workspace ws(plan->workspace, device, s);
    const void* alpha = f64 ? static_cast<const void*>(&one_d) : &one_f;
    const void* beta = accumulate ? (f64 ? static_cast<const void*>(&one_d) : &one_f)
                                  : (f64 ? static_cast<const void*>(&zero_d) : &zero_f);
    RG_CUDNN_CHECK(DirOps<D>::run(h, *plan, b, alpha, beta, ws.get(), ws.bytes()));
  }
  detail::set_last_conv_backend("cudnn");
  return true;
}

}  // namespace

#endif  // RINGGRAD_WITH_CUDNN

void conv2d_cuda(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, const ConvParams& p) {
  const ConvGeom g = make_geom(x, w, y, p);  // y (N, O, Ho, Wo), x (N, C, H, W), w (O, C/G, kh, kw)
  if (y.numel() == 0) return;
  bool done = false;
#if defined(RINGGRAD_WITH_CUDNN)
  if (cudnn_enabled()) done = cudnn_conv<Dir::Fwd>(x, w, y, g);
#endif
  if (!done) {
    im2col_fwd(y, x, w, g);
    detail::set_last_conv_backend("im2col");
  }
  if (bias.defined()) add_bias(y, bias, g);  // bias (O)
}

void conv2d_bwd_input_cuda(const Tensor& gx, const Tensor& gy, const Tensor& w, const ConvParams& p) {
  const ConvGeom g = make_geom(gx, w, gy, p);  // gx (N, C, H, W), gy (N, O, Ho, Wo)
  if (gx.numel() == 0) return;
  if (gy.numel() == 0 || w.numel() == 0) {  // no term reaches gx (as the CPU kernel)
    fill_cuda(gx, 0.0);
    return;
  }
  bool done = false;
#if defined(RINGGRAD_WITH_CUDNN)
  if (cudnn_enabled()) done = cudnn_conv<Dir::BwdData>(gx, w, gy, g);
#endif
  if (!done) {
    im2col_bwd_input(gx, gy, w, g);
    detail::set_last_conv_backend("im2col");
  }
}

void conv2d_bwd_weight_cuda(const Tensor& gw, const Tensor& gy, const Tensor& x, const ConvParams& p) {
  const ConvGeom g = make_geom(x, gw, gy, p);  // gw (O, C/G, kh, kw), gy (N, O, Ho, Wo), x (N, C, H, W)
  if (gw.numel() == 0) return;
  if (gy.numel() == 0 || x.numel() == 0) {  // an empty batch: zero gradient (the chunk loops would write nothing)
    fill_cuda(gw, 0.0);
    return;
  }
  bool done = false;
#if defined(RINGGRAD_WITH_CUDNN)
  if (cudnn_enabled()) done = cudnn_conv<Dir::BwdFilter>(x, gw, gy, g);
#endif
  if (!done) {
    im2col_bwd_weight(gw, gy, x, g);
    detail::set_last_conv_backend("im2col");
  }
}

}  // namespace rg
