// CUDA softmax and log_softmax along one dim, forward and backward: the twins of
// core/cpu/softmax.cpp. Inputs are contiguous, seen as (outer, D, inner); math in float (double for f64).
#include "core/native.h"
#include "cuda_kernels/common.cuh"

namespace rg {

using namespace cu;

// ---- kernels

// inner == 1 and D >= 32: each row of blockDim.x threads (a multiple of 32) handles one of `rows`
// rows of length D; blockDim.y rows per block. out (rows, D) = softmax(x (rows, D)).
template <typename T>
static __global__ void softmax_fwd_kernel(T* out, const T* x, int64_t rows, int64_t D, bool log) {
  using A = acc_t<T>;
  extern __shared__ __align__(16) unsigned char softmax_smem[];
  A* smem = reinterpret_cast<A*>(softmax_smem);
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  const bool active = row < rows;
  const int64_t base = active ? row * D : 0;
  A m = lowest<A>();
  if (active) {
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) m = max_nan(m, cast<A>(x[base + j]));
  }
  m = row_allreduce(m, smem, [](A p, A q) { return max_nan(p, q); });
  A s = A(0);
  if (active) {
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) s += dm::exp(cast<A>(x[base + j]) - m);
  }
  s = row_allreduce(s, smem, [](A p, A q) { return p + q; });
  if (!active) return;  // no barrier follows
  if (log) {
    const A ls = dm::log(s);
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) out[base + j] = cast<T>(cast<A>(x[base + j]) - m - ls);
  } else {
    const A inv = A(1) / s;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
      out[base + j] = cast<T>(dm::exp(cast<A>(x[base + j]) - m) * inv);
    }
  }
}

// Any inner (or short rows): one thread per (outer, inner) position walks the D elements, which
// lie `inner` apart, so neighbouring threads read neighbouring addresses. out, x (outer, D, inner).
template <typename T>
static __global__ void softmax_strided_fwd_kernel(T* out, const T* x, int64_t outer, int64_t D, int64_t inner,
                                                  bool log) {
  using A = acc_t<T>;
  grid_stride(outer * inner, [&](int64_t t) {
    const int64_t p = t / inner, q = t - p * inner;
    const int64_t base = p * D * inner + q;
    A m = lowest<A>();
    for (int64_t d = 0; d < D; ++d) m = max_nan(m, cast<A>(x[base + d * inner]));
    A s = A(0);
    for (int64_t d = 0; d < D; ++d) s += dm::exp(cast<A>(x[base + d * inner]) - m);
    if (log) {
      const A ls = dm::log(s);
      for (int64_t d = 0; d < D; ++d) out[base + d * inner] = cast<T>(cast<A>(x[base + d * inner]) - m - ls);
    } else {
      const A inv = A(1) / s;
      for (int64_t d = 0; d < D; ++d) out[base + d * inner] = cast<T>(dm::exp(cast<A>(x[base + d * inner]) - m) * inv);
    }
  });
}

// softmax: gx = y * (gy - sum(gy * y)); log_softmax: gx = gy - exp(y) * sum(gy). Row layout as
// softmax_fwd_kernel. gx, gy, y (rows, D).
template <typename T>
static __global__ void softmax_bwd_kernel(T* gx, const T* gy, const T* y, int64_t rows, int64_t D, bool log) {
  using A = acc_t<T>;
  extern __shared__ __align__(16) unsigned char softmax_smem[];
  A* smem = reinterpret_cast<A*>(softmax_smem);
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  const bool active = row < rows;
  const int64_t base = active ? row * D : 0;
  A s = A(0);
  if (active) {
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
      s += log ? cast<A>(gy[base + j]) : cast<A>(gy[base + j]) * cast<A>(y[base + j]);
    }
  }
  s = row_allreduce(s, smem, [](A p, A q) { return p + q; });
  if (!active) return;
  for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
    const A g = cast<A>(gy[base + j]), v = cast<A>(y[base + j]);
    gx[base + j] = cast<T>(log ? g - dm::exp(v) * s : v * (g - s));
  }
}

template <typename T>
static __global__ void softmax_strided_bwd_kernel(T* gx, const T* gy, const T* y, int64_t outer, int64_t D,
                                                  int64_t inner, bool log) {
  using A = acc_t<T>;
  grid_stride(outer * inner, [&](int64_t t) {
    const int64_t p = t / inner, q = t - p * inner;
    const int64_t base = p * D * inner + q;
    A s = A(0);
    for (int64_t d = 0; d < D; ++d) {
      const int64_t i = base + d * inner;
      s += log ? cast<A>(gy[i]) : cast<A>(gy[i]) * cast<A>(y[i]);
    }
    for (int64_t d = 0; d < D; ++d) {
      const int64_t i = base + d * inner;
      const A g = cast<A>(gy[i]), v = cast<A>(y[i]);
      gx[i] = cast<T>(log ? g - dm::exp(v) * s : v * (g - s));
    }
  });
}

// ---- launchers

namespace {

struct SoftmaxShape {
  int64_t outer = 1, D = 1, inner = 1;
};

SoftmaxShape split_at(const Tensor& t, int64_t dim) {
  SoftmaxShape s;
  if (t.dim() == 0) return s;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (d < dim) s.outer *= t.size(d);
    else if (d == dim) s.D = t.size(d);
    else s.inner *= t.size(d);
  }
  return s;
}

// Row layout: threads per row and rows per block for rows of length D.
dim3 row_block(int64_t D, int64_t rows) {
  const int64_t bx = D <= 1024 ? 32 : (D <= 4096 ? 128 : 512);
  const int64_t by = std::max<int64_t>(1, std::min<int64_t>(256 / bx, rows));
  return dim3(static_cast<unsigned>(bx), static_cast<unsigned>(by));
}

}  // namespace

void softmax_cuda(const Tensor& out, const Tensor& x, int64_t dim, bool log) {  // out, x (outer, D, inner)
  RG_CHECK(out.sizes() == x.sizes() && out.dtype() == x.dtype(), "softmax: output ", out.describe(),
           " does not match input ", x.describe());
  RG_CHECK(x.dim() == 0 ? dim == 0 : dim >= 0 && dim < x.dim(), "softmax: dim ", dim, " out of range for ",
           shape_str(x.sizes()));
  if (x.numel() == 0) return;
  if (!out.is_contiguous()) {
    Tensor dense = empty(out.sizes(), TensorOptions(out.dtype()).device(out.device()));
    softmax_cuda(dense, x, dim, log);
    copy_cuda(out, dense);
    return;
  }
  const Tensor xc = native::contiguous(x);
  const SoftmaxShape s = split_at(xc, dim);
  RG_CU_DISPATCH_FLOAT(x.dtype(), log ? "log_softmax" : "softmax", [&] {
    using A = acc_t<scalar_t>;
    auto* po = static_cast<scalar_t*>(out.data_ptr());
    const auto* px = static_cast<const scalar_t*>(xc.data_ptr());
    if (s.inner == 1 && s.D >= 32) {
      const dim3 block = row_block(s.D, s.outer);
      const int64_t blocks = (s.outer + block.y - 1) / block.y;
      const size_t smem = static_cast<size_t>(block.y * (block.x / 32)) * sizeof(A);
      softmax_fwd_kernel<scalar_t><<<static_cast<unsigned>(blocks), block, smem, stream()>>>(po, px, s.outer, s.D, log);
      RG_CUDA_LAUNCH_CHECK("softmax_fwd_kernel");
    } else {
      softmax_strided_fwd_kernel<scalar_t><<<grid_for(s.outer * s.inner), kThreads, 0, stream()>>>(
          po, px, s.outer, s.D, s.inner, log);
      RG_CUDA_LAUNCH_CHECK("softmax_strided_fwd_kernel");
    }
  });
}

void softmax_bwd_cuda(const Tensor& gx, const Tensor& gy, const Tensor& y, int64_t dim, bool log) {
  // gx, gy, y (outer, D, inner)
  RG_CHECK(gx.sizes() == y.sizes() && gy.sizes() == y.sizes() && gx.dtype() == y.dtype() && gy.dtype() == y.dtype(),
           "softmax backward: ", gx.describe(), ", ", gy.describe(), " and ", y.describe(), " must match");
  RG_CHECK(y.dim() == 0 ? dim == 0 : dim >= 0 && dim < y.dim(), "softmax backward: dim ", dim, " out of range for ",
           shape_str(y.sizes()));
  if (y.numel() == 0) return;
  if (!gx.is_contiguous()) {
    Tensor dense = empty(gx.sizes(), TensorOptions(gx.dtype()).device(gx.device()));
    softmax_bwd_cuda(dense, gy, y, dim, log);
    copy_cuda(gx, dense);
    return;
  }
  const Tensor gc = native::contiguous(gy), yc = native::contiguous(y);
  const SoftmaxShape s = split_at(yc, dim);
  RG_CU_DISPATCH_FLOAT(y.dtype(), log ? "log_softmax_backward" : "softmax_backward", [&] {
    using A = acc_t<scalar_t>;
    auto* pgx = static_cast<scalar_t*>(gx.data_ptr());
    const auto* pgy = static_cast<const scalar_t*>(gc.data_ptr());
    const auto* py = static_cast<const scalar_t*>(yc.data_ptr());
    if (s.inner == 1 && s.D >= 32) {
      const dim3 block = row_block(s.D, s.outer);
      const int64_t blocks = (s.outer + block.y - 1) / block.y;
      const size_t smem = static_cast<size_t>(block.y * (block.x / 32)) * sizeof(A);
      softmax_bwd_kernel<scalar_t><<<static_cast<unsigned>(blocks), block, smem, stream()>>>(pgx, pgy, py, s.outer,
                                                                                             s.D, log);
      RG_CUDA_LAUNCH_CHECK("softmax_bwd_kernel");
    } else {
      softmax_strided_bwd_kernel<scalar_t><<<grid_for(s.outer * s.inner), kThreads, 0, stream()>>>(
          pgx, pgy, py, s.outer, s.D, s.inner, log);
      RG_CUDA_LAUNCH_CHECK("softmax_strided_bwd_kernel");
    }
  });
}

}  // namespace rg
