// CUDA multi-tensor kernels for optimizers and AMP, the twins of core/cpu/optim.cpp: every op is
// one launch (or a few) over a whole list of tensors, not one per tensor (Note [Multi-tensor launches]).
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/native.h"
#include "cuda_kernels/common.cuh"

namespace rg {

using namespace cu;

// Note [Multi-tensor launches]
// A launch gets, by value, a TensorListMeta<D>: for up to kListCap<D> tensors the D pointers of
// each (param, grad, state...) and its element count, and for up to kListBlocks blocks the
// (tensor slot, chunk) pair that block handles. A chunk is kChunk consecutive elements of one
// tensor; block b walks its chunk with a 16-byte vectorised loop when every pointer of its
// tensor is 16-byte aligned (a uniform branch per block), else with scalar loads. The host packs
// tensors and chunks in list order and launches whenever the slots or the blocks run out; a
// tensor whose chunks straddle two launches keeps its slot (copied to slot 0 of the next one).
// The struct stays under 4 KiB of kernel parameters (static_assert below). Every list must hold
// contiguous tensors of matching sizes (native_optim.cpp checks and makes them so).

// ---- kernels

constexpr int64_t kChunk = 65536;
constexpr int kListBlocks = 320;
constexpr int kListThreads = 512;

template <int D>
struct ListCap;
template <> struct ListCap<1> { static constexpr int value = 96; };
template <> struct ListCap<2> { static constexpr int value = 64; };
template <> struct ListCap<3> { static constexpr int value = 48; };
template <> struct ListCap<4> { static constexpr int value = 36; };
template <> struct ListCap<5> { static constexpr int value = 28; };

template <int D>
struct TensorListMeta {
  static constexpr int kCap = ListCap<D>::value;
  void* ptr[D][kCap];
  int64_t numel[kCap];
  int32_t tag[kCap];                // per-tensor extra: the output slot (sum of squares)
  uint8_t block_slot[kListBlocks];  // tensor slot of each block
  int32_t block_chunk[kListBlocks]; // chunk index of each block within its tensor
};
static_assert(sizeof(TensorListMeta<1>) < 4000 && sizeof(TensorListMeta<2>) < 4000 &&
                  sizeof(TensorListMeta<3>) < 4000 && sizeof(TensorListMeta<4>) < 4000 &&
                  sizeof(TensorListMeta<5>) < 4000,
              "multi-tensor metadata must fit in the 4 KiB kernel parameter space");

// The chunk of the current block: slot, first element offset and length.
template <int D>
struct BlockChunk {
  int slot;
  int64_t begin, n;
};
template <int D>
__device__ __forceinline__ BlockChunk<D> block_chunk(const TensorListMeta<D>& m) {
  const int slot = m.block_slot[blockIdx.x];
  const int64_t begin = static_cast<int64_t>(m.block_chunk[blockIdx.x]) * kChunk;
  const int64_t left = m.numel[slot] - begin;
  return {slot, begin, left < kChunk ? left : kChunk};
}

template <int D>
__device__ __forceinline__ bool slot_aligned(const TensorListMeta<D>& m, int slot) {
  bool ok = true;
#pragma unroll
  for (int d = 0; d < D; ++d) ok = ok && (reinterpret_cast<uintptr_t>(m.ptr[d][slot]) % 16 == 0);
  return ok;
}

// Runs f(ptrs (T*[D]), i) for every element i of this block's chunk, where ptrs are offset to the
// chunk start; elements go W at a time through registers when aligned (f sees one element).
// f reads and writes element i of each list through the pointers it is given. List 1, when there
// is one, is read-only in every caller (grads, or axpby's xs) and is never stored back.
template <int D>
__device__ __forceinline__ constexpr bool list_written(int d) {
  return D < 2 || d != 1;
}

template <int D, typename T, typename F>
__device__ __forceinline__ void for_chunk(const TensorListMeta<D>& m, F&& f) {
  const BlockChunk<D> bc = block_chunk(m);
  T* p[D];
#pragma unroll
  for (int d = 0; d < D; ++d) p[d] = static_cast<T*>(m.ptr[d][bc.slot]) + bc.begin;
  constexpr int W = 16 / sizeof(T);
  if (slot_aligned(m, bc.slot)) {
    const int64_t packs = bc.n / W;
    for (int64_t q = threadIdx.x; q < packs; q += blockDim.x) {
      Pack<T, W> r[D];
#pragma unroll
      for (int d = 0; d < D; ++d) r[d] = load_pack<W>(p[d], q);
#pragma unroll
      for (int e = 0; e < W; ++e) {
        T v[D];
#pragma unroll
        for (int d = 0; d < D; ++d) v[d] = r[d].v[e];
        f(v);
#pragma unroll
        for (int d = 0; d < D; ++d) r[d].v[e] = v[d];
      }
#pragma unroll
      for (int d = 0; d < D; ++d) {
        if (list_written<D>(d)) store_pack<W>(p[d], q, r[d]);
      }
    }
    for (int64_t i = packs * W + threadIdx.x; i < bc.n; i += blockDim.x) {
      T v[D];
#pragma unroll
      for (int d = 0; d < D; ++d) v[d] = p[d][i];
      f(v);
#pragma unroll
      for (int d = 0; d < D; ++d) {
        if (list_written<D>(d)) p[d][i] = v[d];
      }
    }
  } else {
    for (int64_t i = threadIdx.x; i < bc.n; i += blockDim.x) {
      T v[D];
#pragma unroll
      for (int d = 0; d < D; ++d) v[d] = p[d][i];
      f(v);
#pragma unroll
      for (int d = 0; d < D; ++d) {
        if (list_written<D>(d)) p[d][i] = v[d];
      }
    }
  }
}

// Hyper-parameters in the math type, prepared on the host.
template <typename A>
struct SgdArgs {
  A lr, momentum, damp, wd;  // damp = 1 - dampening
  bool use_momentum, nesterov, maximize, first_step, decay;
};

// v = {param, grad, momentum_buffer}: PyTorch's torch.optim.SGD update of one element.
template <int D, typename T>
static __global__ void sgd_step_fwd_kernel(TensorListMeta<D> m, SgdArgs<T> a) {
  for_chunk<D, T>(m, [&](T (&v)[D]) {
    T d = a.maximize ? -v[1] : v[1];
    if (a.decay) d = d + a.wd * v[0];
    if constexpr (D == 3) {
      v[2] = a.first_step ? d : a.momentum * v[2] + a.damp * d;
      d = a.nesterov ? d + a.momentum * v[2] : v[2];
    }
    v[0] = v[0] - a.lr * d;
  });
}

template <typename A>
struct AdamArgs {
  A step_size, bc2_sqrt, beta1, beta2, omb1, omb2, eps, wd, decay_factor;
  bool decay, decoupled, maximize;
};

// v = {param, grad, exp_avg, exp_avg_sq[, max_exp_avg_sq]}: torch.optim.Adam / AdamW.
template <int D, typename T>
static __global__ void adam_step_fwd_kernel(TensorListMeta<D> m, AdamArgs<T> a) {
  for_chunk<D, T>(m, [&](T (&v)[D]) {
    T d = a.maximize ? -v[1] : v[1];
    T w = v[0];
    if (a.decay) {
      if (a.decoupled) {
        w = w * a.decay_factor;
      } else {
        d = d + a.wd * w;
      }
    }
    const T mi = a.beta1 * v[2] + a.omb1 * d;
    const T vi = a.beta2 * v[3] + a.omb2 * d * d;
    v[2] = mi;
    v[3] = vi;
    T vden = vi;
    if constexpr (D == 5) {
      vden = (vi > v[4] || isnan(vi)) ? vi : v[4];  // torch.maximum: a NaN in either propagates
      v[4] = vden;
    }
    const T denom = dm::sqrt(vden) / a.bc2_sqrt + a.eps;
    v[0] = w - a.step_size * mi / denom;
  });
}

// grads *= inv_scale; *found_inf = 1 when any element (before scaling) is inf or nan.
template <typename T>
static __global__ void amp_unscale_fwd_kernel(TensorListMeta<1> m, float* found_inf, const float* inv_scale) {
  using A = acc_t<T>;
  const A inv = static_cast<A>(*inv_scale);
  bool bad = false;
  for_chunk<1, T>(m, [&](T (&v)[1]) {
    const A x = cast<A>(v[0]);
    bad = bad || !dm::isfinite(x);
    v[0] = cast<T>(x * inv);
  });
  if (__syncthreads_or(bad) && threadIdx.x == 0) *found_inf = 1.0f;  // every writer stores the same value
}

// PyTorch's _amp_update_scale_: one thread.
static __global__ void amp_update_scale_fwd_kernel(float* scale, int32_t* tracker, const float* found_inf,
                                                   float growth, float backoff, int32_t interval) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  if (*found_inf != 0.0f) {
    *scale = *scale * backoff;
    *tracker = 0;
    return;
  }
  const int32_t successful = *tracker + 1;
  if (successful == interval) {
    const float grown = *scale * growth;
    if (dm::isfinite(grown)) *scale = grown;
    *tracker = 0;
  } else {
    *tracker = successful;
  }
}

// One partial sum of squares per block, at partial[tag[slot] + chunk] (Note [Sum of squares partials]).
template <typename T, typename A>
static __global__ void multi_sum_squares_fwd_kernel(TensorListMeta<1> m, A* partial) {
  __shared__ A smem[kListThreads / 32];
  A s = A(0);
  const BlockChunk<1> bc = block_chunk(m);
  const T* p = static_cast<const T*>(m.ptr[0][bc.slot]) + bc.begin;
  for (int64_t i = threadIdx.x; i < bc.n; i += blockDim.x) {
    const A v = cast<A>(p[i]);
    s += v * v;
  }
  s = warp_allreduce(s, [](A x, A y) { return x + y; });
  const int warp = static_cast<int>(threadIdx.x) / 32;
  if (threadIdx.x % 32 == 0) smem[warp] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    A t = smem[0];
    for (int k = 1; k < static_cast<int>(blockDim.x) / 32; ++k) t += smem[k];
    partial[m.tag[bc.slot] + m.block_chunk[blockIdx.x]] = t;
  }
}

// Sums each tensor's partials in order: one warp per tensor.
struct SumSegments {
  static constexpr int kCap = 224;
  int64_t first[kCap];  // first partial of the tensor
  int32_t count[kCap];  // its number of partials
  int32_t out[kCap];    // its index in `out`
  int n;
};
static_assert(sizeof(SumSegments) < 4000, "segment metadata must fit in the kernel parameter space");

template <typename A>
static __global__ void multi_sum_squares_finish_fwd_kernel(A* out, const A* partial, SumSegments seg) {
  const int warp = static_cast<int>((blockIdx.x * blockDim.x + threadIdx.x) / 32);
  const int lane = static_cast<int>(threadIdx.x % 32);
  if (warp >= seg.n) return;  // whole warps leave together
  A s = A(0);
  for (int k = lane; k < seg.count[warp]; k += 32) s += partial[seg.first[warp] + k];
  s = warp_allreduce(s, [](A x, A y) { return x + y; });
  if (lane == 0) out[seg.out[warp]] = s;
}

template <typename T, typename S>
static __global__ void multi_scale_fwd_kernel(TensorListMeta<1> m, const S* scale) {
  using A = acc_t<T>;
  const A s = static_cast<A>(*scale);
  for_chunk<1, T>(m, [&](T (&v)[1]) { v[0] = cast<T>(cast<A>(v[0]) * s); });
}

template <typename T>
static __global__ void multi_axpby_fwd_kernel(TensorListMeta<2> m, acc_t<T> a, acc_t<T> b) {
  using A = acc_t<T>;
  for_chunk<2, T>(m, [&](T (&v)[2]) { v[0] = cast<T>(a * cast<A>(v[0]) + b * cast<A>(v[1])); });
}

// ---- launchers

namespace {

int64_t chunks_of(int64_t numel) { return (numel + kChunk - 1) / kChunk; }

// Packs `lists` (D lists of equal length; lists[0] decides the sizes) into launches:
// launch(meta, blocks). tag_of(t) fills meta.tag for tensor t. Note [Multi-tensor launches].
template <int D, typename Launch, typename Tag>
void multi_tensor_apply(const std::vector<const std::vector<Tensor>*>& lists, Launch&& launch, Tag&& tag_of) {
  TensorListMeta<D> m;
  int slots = 0, blocks = 0;  // used slots and queued blocks of the launch being packed
  const size_t n = lists[0]->size();
  for (size_t t = 0; t < n; ++t) {
    const int64_t numel = (*lists[0])[t].numel();
    if (numel == 0) continue;
    if (slots == TensorListMeta<D>::kCap) {  // no free slot: send what is packed (blocks > 0 here)
      launch(m, blocks);
      slots = 0;
      blocks = 0;
    }
    int slot = slots++;
    for (int d = 0; d < D; ++d) m.ptr[d][slot] = (*lists[d])[t].data_ptr();
    m.numel[slot] = numel;
    m.tag[slot] = tag_of(t);
    const int64_t chunks = chunks_of(numel);
    for (int64_t c = 0; c < chunks; ++c) {
      if (blocks == kListBlocks) {  // no free block: send, and keep only this tensor, in slot 0
        launch(m, blocks);
        blocks = 0;
        for (int d = 0; d < D; ++d) m.ptr[d][0] = m.ptr[d][slot];
        m.numel[0] = m.numel[slot];
        m.tag[0] = m.tag[slot];
        slot = 0;
        slots = 1;
      }
      m.block_slot[blocks] = static_cast<uint8_t>(slot);
      m.block_chunk[blocks] = static_cast<int32_t>(c);
      ++blocks;
    }
  }
  if (blocks > 0) launch(m, blocks);
}

template <int D, typename Launch>
void multi_tensor_apply(const std::vector<const std::vector<Tensor>*>& lists, Launch&& launch) {
  multi_tensor_apply<D>(lists, launch, [](size_t) { return 0; });
}

#define RG_CU_DISPATCH_OPTIM(DTYPE, OPNAME, ...)                    \
  switch (DTYPE) {                                                  \
    RG_CU_CASE(f32, float, __VA_ARGS__)                             \
    RG_CU_CASE(f64, double, __VA_ARGS__)                            \
    default: ::rg::throw_unsupported_dtype(OPNAME, DTYPE, "cuda");  \
  }

}  // namespace

void sgd_step_cuda(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& bufs,
                   const SgdParams& p) {
  if (params.empty()) return;
  RG_CU_DISPATCH_OPTIM(params[0].dtype(), "sgd_step", [&] {
    using T = scalar_t;
    SgdArgs<T> a;
    a.lr = static_cast<T>(p.lr);
    a.momentum = static_cast<T>(p.momentum);
    a.damp = static_cast<T>(1.0 - p.dampening);
    a.wd = static_cast<T>(p.weight_decay);
    a.use_momentum = p.momentum != 0.0;
    a.nesterov = p.nesterov;
    a.maximize = p.maximize;
    a.first_step = p.first_step;
    a.decay = p.weight_decay != 0.0;
    if (a.use_momentum) {
      multi_tensor_apply<3>({&params, &grads, &bufs}, [&](const TensorListMeta<3>& m, int blocks) {
        sgd_step_fwd_kernel<3, T><<<blocks, kListThreads, 0, stream()>>>(m, a);
        RG_CUDA_LAUNCH_CHECK("sgd_step_fwd_kernel");
      });
    } else {
      multi_tensor_apply<2>({&params, &grads}, [&](const TensorListMeta<2>& m, int blocks) {
        sgd_step_fwd_kernel<2, T><<<blocks, kListThreads, 0, stream()>>>(m, a);
        RG_CUDA_LAUNCH_CHECK("sgd_step_fwd_kernel");
      });
    }
  });
}

void adam_step_cuda(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                    const std::vector<Tensor>& exp_avg, const std::vector<Tensor>& exp_avg_sq,
                    const std::vector<Tensor>& max_exp_avg_sq, const AdamParams& p) {
  if (params.empty()) return;
  RG_CU_DISPATCH_OPTIM(params[0].dtype(), "adam_step", [&] {
    using T = scalar_t;
    const double bc1 = 1.0 - std::pow(p.beta1, static_cast<double>(p.step));
    const double bc2 = 1.0 - std::pow(p.beta2, static_cast<double>(p.step));
    AdamArgs<T> a;
    a.step_size = static_cast<T>(p.lr / bc1);
    a.bc2_sqrt = static_cast<T>(std::sqrt(bc2));
    a.beta1 = static_cast<T>(p.beta1);
    a.beta2 = static_cast<T>(p.beta2);
    a.omb1 = static_cast<T>(1.0 - p.beta1);
    a.omb2 = static_cast<T>(1.0 - p.beta2);
    a.eps = static_cast<T>(p.eps);
    a.wd = static_cast<T>(p.weight_decay);
    a.decay_factor = static_cast<T>(1.0 - p.lr * p.weight_decay);
    a.decay = p.weight_decay != 0.0;
    a.decoupled = p.decoupled;
    a.maximize = p.maximize;
    if (p.amsgrad) {
      multi_tensor_apply<5>({&params, &grads, &exp_avg, &exp_avg_sq, &max_exp_avg_sq},
                            [&](const TensorListMeta<5>& m, int blocks) {
                              adam_step_fwd_kernel<5, T><<<blocks, kListThreads, 0, stream()>>>(m, a);
                              RG_CUDA_LAUNCH_CHECK("adam_step_fwd_kernel");
                            });
    } else {
      multi_tensor_apply<4>({&params, &grads, &exp_avg, &exp_avg_sq}, [&](const TensorListMeta<4>& m, int blocks) {
        adam_step_fwd_kernel<4, T><<<blocks, kListThreads, 0, stream()>>>(m, a);
        RG_CUDA_LAUNCH_CHECK("adam_step_fwd_kernel");
      });
    }
  });
}

void amp_unscale_cuda(const std::vector<Tensor>& grads, const Tensor& found_inf, const Tensor& inv_scale) {
  if (grads.empty()) return;
  auto* fi = static_cast<float*>(found_inf.data_ptr());
  const auto* inv = static_cast<const float*>(inv_scale.data_ptr());
  // One list per dtype (a launch handles one element type).
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    std::vector<Tensor> same;
    for (const Tensor& g : grads) {
      if (g.dtype() == dt) same.push_back(g);
    }
    if (same.empty()) continue;
    RG_CU_DISPATCH_FLOAT(dt, "amp_unscale", [&] {
      multi_tensor_apply<1>({&same}, [&](const TensorListMeta<1>& m, int blocks) {
        amp_unscale_fwd_kernel<scalar_t><<<blocks, kListThreads, 0, stream()>>>(m, fi, inv);
        RG_CUDA_LAUNCH_CHECK("amp_unscale_fwd_kernel");
      });
    });
  }
}

void amp_update_scale_cuda(const Tensor& scale, const Tensor& growth_tracker, const Tensor& found_inf, double growth,
                           double backoff, int64_t interval) {
  amp_update_scale_fwd_kernel<<<1, 32, 0, stream()>>>(
      static_cast<float*>(scale.data_ptr()), static_cast<int32_t*>(growth_tracker.data_ptr()),
      static_cast<const float*>(found_inf.data_ptr()), static_cast<float>(growth), static_cast<float>(backoff),
      static_cast<int32_t>(interval));
  RG_CUDA_LAUNCH_CHECK("amp_update_scale_fwd_kernel");
}

// Note [Sum of squares partials]
// Tensor t's chunk c writes partial[first(t) + c], where first(t) is the number of chunks of the
// tensors before it; the finishing kernel adds each tensor's partials in chunk order, one warp
// per tensor, so the result is deterministic. Zero-element tensors get 0 directly.
void multi_sum_squares_cuda(const Tensor& out, const std::vector<Tensor>& xs) {
  if (xs.empty()) return;
  fill_cuda(out, 0.0);
  std::vector<int64_t> first(xs.size(), 0);
  int64_t total = 0;
  for (size_t t = 0; t < xs.size(); ++t) {
    first[t] = total;
    total += chunks_of(xs[t].numel());
  }
  if (total == 0) return;
  RG_CU_DISPATCH_OPTIM(out.dtype(), "multi_sum_squares", [&] {
    using A = scalar_t;
    Tensor ws = empty({total}, TensorOptions(out.dtype()).device(out.device()));
    A* partial = static_cast<A*>(ws.data_ptr());
    for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
      std::vector<Tensor> same;
      std::vector<size_t> index;
      for (size_t t = 0; t < xs.size(); ++t) {
        if (xs[t].dtype() == dt) {
          same.push_back(xs[t]);
          index.push_back(t);
        }
      }
      if (same.empty()) continue;
      RG_CU_DISPATCH_FLOAT(dt, "multi_sum_squares", [&] {
        using T = scalar_t;
        multi_tensor_apply<1>(
            {&same},
            [&](const TensorListMeta<1>& m, int blocks) {
              multi_sum_squares_fwd_kernel<T, A><<<blocks, kListThreads, 0, stream()>>>(m, partial);
              RG_CUDA_LAUNCH_CHECK("multi_sum_squares_fwd_kernel");
            },
            [&](size_t k) { return static_cast<int32_t>(first[index[k]]); });
      });
    }
    SumSegments seg;
    seg.n = 0;
    auto flush = [&] {
      if (seg.n == 0) return;
      const int threads = 256;  // 8 warps = 8 tensors per block
      const unsigned blocks = static_cast<unsigned>((seg.n * 32 + threads - 1) / threads);
      multi_sum_squares_finish_fwd_kernel<A><<<blocks, threads, 0, stream()>>>(static_cast<A*>(out.data_ptr()),
                                                                             partial, seg);
      RG_CUDA_LAUNCH_CHECK("multi_sum_squares_finish_fwd_kernel");
      seg.n = 0;
    };
    for (size_t t = 0; t < xs.size(); ++t) {
      const int64_t c = chunks_of(xs[t].numel());
      if (c == 0) continue;
      seg.first[seg.n] = first[t];
      seg.count[seg.n] = static_cast<int32_t>(c);
      seg.out[seg.n] = static_cast<int32_t>(t);
      if (++seg.n == SumSegments::kCap) flush();
    }
    flush();
  });
}

void multi_scale_cuda(const std::vector<Tensor>& xs, const Tensor& scale) {
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    std::vector<Tensor> same;
    for (const Tensor& x : xs) {
      if (x.dtype() == dt) same.push_back(x);
    }
    if (same.empty()) continue;
    RG_CU_DISPATCH_FLOAT(dt, "multi_scale", [&] {
      using T = scalar_t;
      RG_CU_DISPATCH_OPTIM(scale.dtype(), "multi_scale", [&] {
        using S = scalar_t;
        const S* sp = static_cast<const S*>(scale.data_ptr());
        multi_tensor_apply<1>({&same}, [&](const TensorListMeta<1>& m, int blocks) {
          multi_scale_fwd_kernel<T, S><<<blocks, kListThreads, 0, stream()>>>(m, sp);
          RG_CUDA_LAUNCH_CHECK("multi_scale_fwd_kernel");
        });
      });
    });
  }
}

void multi_axpby_cuda(const std::vector<Tensor>& ys, const std::vector<Tensor>& xs, double a, double b) {
  if (ys.empty()) return;
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    std::vector<Tensor> ysame, xsame;
    for (size_t t = 0; t < ys.size(); ++t) {
      if (ys[t].dtype() == dt) {
        ysame.push_back(ys[t]);
        xsame.push_back(xs[t]);
      }
    }
    if (ysame.empty()) continue;
    RG_CU_DISPATCH_FLOAT(dt, "multi_axpby", [&] {
      using T = scalar_t;
      using A = acc_t<T>;
      multi_tensor_apply<2>({&ysame, &xsame}, [&](const TensorListMeta<2>& m, int blocks) {
        multi_axpby_fwd_kernel<T><<<blocks, kListThreads, 0, stream()>>>(m, static_cast<A>(a), static_cast<A>(b));
        RG_CUDA_LAUNCH_CHECK("multi_axpby_fwd_kernel");
      });
    });
  }
}

}  // namespace rg
