// CUDA indexing kernels: cat, index_select, index_add, gather, scatter_add, the twins of
// core/cpu/index.cpp (inputs as Note [Index kernel inputs] in core/native_index.cpp describes).
// Every index is checked on the device: Note [Device index check].
#include "core/native.h"
#include "cuda_kernels/common.cuh"

namespace rg {

using namespace cu;

// Note [Device index check]
// A kernel that meets an index outside [0, size) skips that element and writes {1, value} into a
// 2 x int64 flag buffer. The launcher copies the flag back (synchronising the stream, the price of
// a clear error) and raises "<op>(): index V is out of bounds for dimension D with size S", the
// CPU kernels' message. Concurrent writers may leave any one of the bad values.

// ---- kernels

static __device__ __forceinline__ void flag_bad_index(int64_t* bad, int64_t v) {
  bad[1] = v;
  bad[0] = 1;
}

// out (outer, K, inner) = x (outer, n, inner)[:, index, :]; all contiguous. U moves element bits.
template <typename U, typename I>
static __global__ void index_select_fwd_kernel(U* out, const U* x, const I* index, int64_t total, int64_t K, int64_t n,
                                               int64_t inner, int64_t* bad) {
  grid_stride(total, [&](int64_t t) {
    const int64_t q = t / inner, j = t - q * inner;
    const int64_t o = q / K, k = q - o * K;
    const auto v = static_cast<int64_t>(index[k]);
    if (v < 0 || v >= n) {
      flag_bad_index(bad, v);
      return;
    }
    out[t] = x[(o * n + v) * inner + j];
  });
}

// out (outer, n, inner)[:, index[k], :] += src (outer, K, inner)[:, k, :]; all contiguous, floats.
template <typename T, typename I>
static __global__ void index_add_fwd_kernel(T* out, const T* src, const I* index, int64_t total, int64_t K, int64_t n,
                                            int64_t inner, int64_t* bad) {
  grid_stride(total, [&](int64_t t) {
    const int64_t q = t / inner, j = t - q * inner;
    const int64_t o = q / K, k = q - o * K;
    const auto v = static_cast<int64_t>(index[k]);
    if (v < 0 || v >= n) {
      flag_bad_index(bad, v);
      return;
    }
    atomicAdd(out + (o * n + v) * inner + j, src[t]);
  });
}

// out[i][j][k] = x[i][index[i][j][k]][k] (dim 1). The meta walks (out, index, x seen with index's
// shape and stride 0 along dim); the index value times sd (x's stride along dim) is added on top.
template <typename U, typename I, typename Calc>
static __global__ void gather_fwd_kernel(U* out, const I* index, const U* x, Calc calc, typename Calc::index_t N,
                                         int64_t n, int64_t sd, int64_t* bad) {
  grid_stride(N, [&](typename Calc::index_t i) {
    typename Calc::offset_t off[3];
    calc.get(i, off);
    const auto v = static_cast<int64_t>(index[off[1]]);
    if (v < 0 || v >= n) {
      flag_bad_index(bad, v);
      return;
    }
    out[off[0]] = x[off[2] + v * sd];
  });
}

// out[i][index[i][j][k]][k] += src[i][j][k] (dim 1) over index's shape. The meta walks (index, src
// seen with index's shape, out seen with index's shape and stride 0 along dim); floats only.
template <typename T, typename I, typename Calc>
static __global__ void scatter_add_fwd_kernel(T* out, const I* index, const T* src, Calc calc,
                                              typename Calc::index_t N, int64_t n, int64_t os, int64_t* bad) {
  grid_stride(N, [&](typename Calc::index_t i) {
    typename Calc::offset_t off[3];
    calc.get(i, off);
    const auto v = static_cast<int64_t>(index[off[0]]);
    if (v < 0 || v >= n) {
      flag_bad_index(bad, v);
      return;
    }
    atomicAdd(out + off[2] + v * os, src[off[1]]);
  });
}

// ---- launchers

namespace {

// The flag of Note [Device index check], cleared on the current stream.
class IndexCheck {
 public:
  explicit IndexCheck(Device d) : buf_(empty({2}, TensorOptions(DType::i64).device(d))) {
    RG_CUDA_CHECK(cudaMemsetAsync(buf_.data_ptr(), 0, 2 * sizeof(int64_t), stream()));
  }
  int64_t* ptr() const { return static_cast<int64_t*>(buf_.data_ptr()); }
  void raise_if_bad(const char* op, int64_t dim, int64_t size) const {
    int64_t h[2] = {0, 0};
    RG_CUDA_CHECK(cudaMemcpyAsync(h, buf_.data_ptr(), sizeof(h), cudaMemcpyDeviceToHost, stream()));
    RG_CUDA_CHECK(cudaStreamSynchronize(stream()));
    RG_CHECK(h[0] == 0, op, "(): index ", h[1], " is out of bounds for dimension ", dim, " with size ", size);
  }

 private:
  Tensor buf_;
};

struct OuterInner {
  int64_t outer = 1, n = 1, inner = 1;
};
OuterInner split_at(const Tensor& t, int64_t dim) {
  OuterInner r;
  if (t.dim() == 0) return r;
  for (int64_t d = 0; d < dim; ++d) r.outer *= t.size(d);
  r.n = t.size(dim);
  for (int64_t d = dim + 1; d < t.dim(); ++d) r.inner *= t.size(d);
  return r;
}

}  // namespace

void cat_cuda(const Tensor& out, const std::vector<Tensor>& xs, int64_t dim) {  // out (..., sum of sizes, ...)
  RG_CHECK(out.is_contiguous(), "cat: the output must be contiguous");
  const int64_t inner = split_at(out, dim).inner;
  int64_t at = 0;  // elements of an output row written so far
  for (const Tensor& x : xs) {
    RG_CHECK(x.device() == out.device(), "cat: input on ", x.device().str(), " but output on ", out.device().str());
    const int64_t x_row = x.size(dim) * inner;
    if (x.numel() == 0) continue;
    // the slice of out that x fills: x's sizes, out's strides (one strided copy, any dtype)
    copy_cuda(native::as_strided(out, x.sizes(), out.strides(), out.storage_offset() + at), x);
    at += x_row;
  }
}

void index_select_cuda(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) {
  // out (outer, K, inner), x (outer, n, inner), index (K)
  RG_CHECK(x.is_contiguous() && index.is_contiguous() && out.is_contiguous(),
           "index_select: the kernel needs contiguous tensors");
  RG_CHECK(out.dtype() == x.dtype(), "index_select: output dtype differs from the input's");
  const OuterInner oi = split_at(x, dim);
  const int64_t K = index.numel(), total = out.numel();
  if (K == 0 || total == 0) return;
  IndexCheck check(out.device());
  RG_CU_DISPATCH_INDEX(index.dtype(), "index_select", [&] {
    using I = scalar_t;
    with_uint_of_size(x.element_size(), [&](auto* tag) {
      using U = std::remove_pointer_t<decltype(tag)>;
      index_select_fwd_kernel<U, I><<<grid_for(total), kThreads, 0, stream()>>>(
          static_cast<U*>(out.data_ptr()), static_cast<const U*>(x.data_ptr()), static_cast<const I*>(index.data_ptr()),
          total, K, oi.n, oi.inner, check.ptr());
      RG_CUDA_LAUNCH_CHECK("index_select_fwd_kernel");
    });
  });
  check.raise_if_bad("index_select", dim, oi.n);
}

void index_add_cuda(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  // out (outer, n, inner), src (outer, K, inner), index (K)
  RG_CHECK(out.is_contiguous() && index.is_contiguous() && src.is_contiguous(),
           "index_add_: the kernel needs contiguous tensors");
  RG_CHECK(out.dtype() == src.dtype(), "index_add_: source dtype differs from self's");
  const OuterInner oi = split_at(out, dim);
  const int64_t K = index.numel(), total = src.numel();
  if (K == 0 || total == 0 || out.numel() == 0) return;
  IndexCheck check(out.device());
  RG_CU_DISPATCH_INDEX(index.dtype(), "index_add_", [&] {
    using I = scalar_t;
    RG_CU_DISPATCH_FLOAT(out.dtype(), "index_add_", [&] {
      index_add_fwd_kernel<scalar_t, I><<<grid_for(total), kThreads, 0, stream()>>>(
          static_cast<scalar_t*>(out.data_ptr()), static_cast<const scalar_t*>(src.data_ptr()),
          static_cast<const I*>(index.data_ptr()), total, K, oi.n, oi.inner, check.ptr());
      RG_CUDA_LAUNCH_CHECK("index_add_fwd_kernel");
    });
  });
  check.raise_if_bad("index_add_", dim, oi.n);
}

void gather_cuda(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) {
  // out and index (..., J, ...), x (..., n, ...); any strides
  RG_CHECK(out.dtype() == x.dtype(), "gather: output dtype differs from the input's");
  RG_CHECK(out.sizes() == index.sizes() && x.dim() == index.dim() && x.dim() > 0,
           "gather: kernel expects out and index of one shape with x's ndim");
  if (out.numel() == 0) return;
  Shape xst = x.strides();
  const int64_t n = x.size(dim), sd = x.stride(dim);
  xst[static_cast<size_t>(dim)] = 0;
  const Tensor xv = native::as_strided(x, index.sizes(), xst, x.storage_offset());
  const Tensor* ts[3] = {&out, &index, &xv};
  const auto m = make_strided_meta<3>(ts);
  IndexCheck check(out.device());
  RG_CU_DISPATCH_INDEX(index.dtype(), "gather", [&] {
    using I = scalar_t;
    with_uint_of_size(x.element_size(), [&](auto* tag) {
      using U = std::remove_pointer_t<decltype(tag)>;
      with_offset_calc(m, [&](auto calc) {
        using Calc = decltype(calc);
        gather_fwd_kernel<U, I, Calc><<<grid_for(m.numel), kThreads, 0, stream()>>>(
            static_cast<U*>(out.data_ptr()), static_cast<const I*>(index.data_ptr()),
            static_cast<const U*>(xv.data_ptr()), calc, static_cast<typename Calc::index_t>(m.numel), n, sd,
            check.ptr());
        RG_CUDA_LAUNCH_CHECK("gather_fwd_kernel");
      });
    });
  });
  check.raise_if_bad("gather", dim, n);
}

void scatter_add_cuda(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  // index (..., J, ...) no larger than src, and than out outside dim; out (..., n, ...); any strides
  RG_CHECK(out.dtype() == src.dtype(), "scatter_add_: source dtype differs from self's");
  const int64_t nd = index.dim();
  RG_CHECK(nd > 0 && out.dim() == nd && src.dim() == nd, "scatter_add_: kernel expects tensors of one ndim");
  if (index.numel() == 0) return;
  Shape ost = out.strides();
  const int64_t n = out.size(dim), os = out.stride(dim);
  ost[static_cast<size_t>(dim)] = 0;
  const Tensor ov = native::as_strided(out, index.sizes(), ost, out.storage_offset());
  const Tensor sv = native::as_strided(src, index.sizes(), src.strides(), src.storage_offset());
  const Tensor* ts[3] = {&index, &sv, &ov};
  const auto m = make_strided_meta<3>(ts);
  IndexCheck check(out.device());
  RG_CU_DISPATCH_INDEX(index.dtype(), "scatter_add_", [&] {
    using I = scalar_t;
    RG_CU_DISPATCH_FLOAT(out.dtype(), "scatter_add_", [&] {
      with_offset_calc(m, [&](auto calc) {
        using Calc = decltype(calc);
        scatter_add_fwd_kernel<scalar_t, I, Calc><<<grid_for(m.numel), kThreads, 0, stream()>>>(
            static_cast<scalar_t*>(ov.data_ptr()), static_cast<const I*>(index.data_ptr()),
            static_cast<const scalar_t*>(sv.data_ptr()), calc, static_cast<typename Calc::index_t>(m.numel), n, os,
            check.ptr());
        RG_CUDA_LAUNCH_CHECK("scatter_add_fwd_kernel");
      });
    });
  });
  check.raise_if_bad("scatter_add_", dim, n);
}

}  // namespace rg
