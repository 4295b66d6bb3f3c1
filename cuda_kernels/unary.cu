// CUDA unary ops and their gradients (every row of RG_UNARY_OPS), running the formulas of
// core/elementwise_formulas.h that core/cpu/unary.cpp runs too. A flat 16-byte path templated on
// the op for f32/f16/bf16; a strided path (also f64 and the integer forms) that switches at run time.
#include <cmath>

#include "core/elementwise_formulas.h"
#include "core/native.h"
#include "cuda_kernels/common.cuh"

namespace rg {

using namespace cu;

// ---- kernels

// Flat path: out (n) = op(x (n)), out and x aligned to 16-byte packs. f32/f16/bf16 only.
template <UnaryOp OP, typename T>
static __global__ void unary_fwd_kernel(T* out, const T* x, int64_t n, float alpha, float beta) {
  using F = ew::UnaryFormula<OP>;
  constexpr int W = pack_width<T>();
  grid_stride_packs<W>(
      n,
      [&](int64_t p) {
        Pack<T, W> v = load_pack<W>(x, p);
#pragma unroll
        for (int k = 0; k < W; ++k) v.v[k] = cast<T>(F::template fwd<DeviceMath>(cast<float>(v.v[k]), alpha, beta));
        store_pack<W>(out, p, v);
      },
      [&](int64_t i) { out[i] = cast<T>(F::template fwd<DeviceMath>(cast<float>(x[i]), alpha, beta)); });
}

// Strided path, any layout: out (n) = op(x (n)). O is T, or bool for the kBoolOut rows. Integer
// dtypes run the integer forms with the scalars prepared on the host (ip).
template <typename T, typename O, typename Calc>
static __global__ void unary_strided_fwd_kernel(O* out, const T* x, Calc calc, typename Calc::index_t n, UnaryOp op,
                                                double alpha, double beta, ew::UnaryIntScalars ip) {
  using C = acc_t<T>;
  grid_stride(n, [&](typename Calc::index_t i) {
    typename Calc::offset_t off[2];
    calc.get(i, off);
    if constexpr (is_float_v<T>) {
      out[off[0]] =
          cast<O>(ew::unary_fwd<DeviceMath>(op, cast<C>(x[off[1]]), static_cast<C>(alpha), static_cast<C>(beta)));
    } else {
      out[off[0]] = ew::unary_int<DeviceMath, O>(op, cast<int64_t>(x[off[1]]), ip);
    }
  });
}

// Flat gradient: gx (n) = gy (n) * op'(v (n)), all aligned to packs. f32/f16/bf16 only.
template <UnaryOp OP, typename T>
static __global__ void unary_bwd_kernel(T* gx, const T* gy, const T* v, int64_t n, float alpha, float beta) {
  constexpr int W = pack_width<T>();
  grid_stride_packs<W>(
      n,
      [&](int64_t p) {
        const Pack<T, W> g = load_pack<W>(gy, p);
        const Pack<T, W> s = load_pack<W>(v, p);
        Pack<T, W> r;
#pragma unroll
        for (int k = 0; k < W; ++k) {
          r.v[k] = cast<T>(ew::unary_bwd_of<OP, DeviceMath>(cast<float>(g.v[k]), cast<float>(s.v[k]), alpha, beta));
        }
        store_pack<W>(gx, p, r);
      },
      [&](int64_t i) {
        gx[i] = cast<T>(ew::unary_bwd_of<OP, DeviceMath>(cast<float>(gy[i]), cast<float>(v[i]), alpha, beta));
      });
}

template <typename T, typename Calc>
static __global__ void unary_strided_bwd_kernel(T* gx, const T* gy, const T* v, Calc calc, typename Calc::index_t n,
                                                UnaryOp op, double alpha, double beta) {
  using C = acc_t<T>;
  grid_stride(n, [&](typename Calc::index_t i) {
    typename Calc::offset_t off[3];
    calc.get(i, off);
    gx[off[0]] = cast<T>(ew::unary_bwd<DeviceMath>(op, cast<C>(gy[off[1]]), cast<C>(v[off[2]]),
                                                   static_cast<C>(alpha), static_cast<C>(beta)));
  });
}

// ---- launchers

namespace {

// The flat path, when the dtype is f32/f16/bf16 and every pointer is aligned to a pack: one kernel
// per row (the kBoolOut rows, with their own output dtype, take the strided path).
template <typename T>
bool launch_unary_flat(UnaryOp op, T* out, const T* x, int64_t n, double alpha, double beta) {
  if constexpr (std::is_same_v<T, float> || is_reduced_v<T>) {
    constexpr int W = pack_width<T>();
    if (!aligned_to(out, W * sizeof(T)) || !aligned_to(x, W * sizeof(T))) return false;
    const unsigned grid = grid_for((n + W - 1) / W);
    const float a = static_cast<float>(alpha), b = static_cast<float>(beta);
    return ew::visit_unary_op(op, [&](auto k) {
      constexpr UnaryOp OP = decltype(k)::value;
      if constexpr (unary_op_bool_out(OP)) {
        return false;
      } else {
        unary_fwd_kernel<OP, T><<<grid, kThreads, 0, stream()>>>(out, x, n, a, b);
        RG_CUDA_LAUNCH_CHECK("unary_fwd_kernel");
        return true;
      }
    });
  } else {
    return false;
  }
}

template <typename T>
bool launch_unary_bwd_flat(UnaryOp op, T* gx, const T* gy, const T* v, int64_t n, double alpha, double beta) {
  if constexpr (std::is_same_v<T, float> || is_reduced_v<T>) {
    constexpr int W = pack_width<T>();
    if (!aligned_to(gx, W * sizeof(T)) || !aligned_to(gy, W * sizeof(T)) || !aligned_to(v, W * sizeof(T))) {
      return false;
    }
    const unsigned grid = grid_for((n + W - 1) / W);
    const float a = static_cast<float>(alpha), b = static_cast<float>(beta);
    return ew::visit_unary_op(op, [&](auto k) {
      constexpr UnaryOp OP = decltype(k)::value;
      if constexpr (!unary_op_has_grad(OP)) {
        return false;
      } else {
        unary_bwd_kernel<OP, T><<<grid, kThreads, 0, stream()>>>(gx, gy, v, n, a, b);
        RG_CUDA_LAUNCH_CHECK("unary_bwd_kernel");
        return true;
      }
    });
  } else {
    return false;
  }
}

template <typename T, typename O>
void launch_unary_strided(const Tensor& out, const Tensor& x, UnaryOp op, double alpha, double beta) {
  const ew::UnaryIntScalars ip = ew::unary_int_scalars(op, alpha, beta);
  const Tensor* ts[2] = {&out, &x};
  const auto m = make_strided_meta<2>(ts);
  with_offset_calc(m, [&](auto calc) {
    using Calc = decltype(calc);
    unary_strided_fwd_kernel<T, O, Calc><<<grid_for(m.numel), kThreads, 0, stream()>>>(
        static_cast<O*>(out.data_ptr()), static_cast<const T*>(x.data_ptr()), calc,
        static_cast<typename Calc::index_t>(m.numel), op, alpha, beta, ip);
    RG_CUDA_LAUNCH_CHECK("unary_strided_fwd_kernel");
  });
}

}  // namespace

void unary_cuda(const Tensor& out, const Tensor& x, UnaryOp op, double alpha, double beta) {  // out, x: same shape
  if (x.numel() == 0) return;
  if (unary_op_bool_out(op)) {  // isfinite: any input dtype
    if (out.dtype() != DType::b8) {  // bool first, then cast into the requested dtype
      Tensor b = empty(out.sizes(), TensorOptions(DType::b8).device(out.device()));
      unary_cuda(b, x, op, alpha, beta);
      copy_cuda(out, b);
      return;
    }
    RG_CU_DISPATCH_ALL(x.dtype(), unary_op_name(op),
                       [&] { launch_unary_strided<scalar_t, bool>(out, x, op, alpha, beta); });
    return;
  }
  RG_CHECK(out.dtype() == x.dtype(), unary_op_name(op), ": output dtype ", dtype_name(out.dtype()),
           " differs from input dtype ", dtype_name(x.dtype()));
  if (!is_floating(x.dtype()) && !unary_op_keeps_integer(op)) {
    throw_unsupported_dtype(unary_op_name(op), x.dtype(), "cuda");
  }
  RG_CHECK(!(op == UnaryOp::Neg && x.dtype() == DType::b8),
           "Negation, the `-` operator, on a bool tensor is not supported.");
  RG_CU_DISPATCH_ALL(x.dtype(), unary_op_name(op), [&] {
    const Tensor* ts[2] = {&out, &x};
    const auto m = make_strided_meta<2>(ts);
    if (m.contiguous && launch_unary_flat<scalar_t>(op, static_cast<scalar_t*>(out.data_ptr()),
                                                    static_cast<const scalar_t*>(x.data_ptr()), m.numel, alpha, beta)) {
      return;
    }
    launch_unary_strided<scalar_t, scalar_t>(out, x, op, alpha, beta);
  });
}

void unary_bwd_cuda(const Tensor& gx, const Tensor& gy, const Tensor& xy, UnaryOp op, double alpha, double beta) {
  if (gx.numel() == 0) return;
  RG_CHECK(unary_op_has_grad(op), unary_op_name(op), " has no gradient formula");
  RG_CHECK(gx.dtype() == gy.dtype() && gx.dtype() == xy.dtype(), unary_op_name(op), " backward: dtypes ",
           dtype_name(gx.dtype()), ", ", dtype_name(gy.dtype()), " and ", dtype_name(xy.dtype()), " differ");
  RG_CU_DISPATCH_FLOAT(gx.dtype(), unary_op_name(op), [&] {
    const Tensor* ts[3] = {&gx, &gy, &xy};
    const auto m = make_strided_meta<3>(ts);
    if (m.contiguous &&
        launch_unary_bwd_flat<scalar_t>(op, static_cast<scalar_t*>(gx.data_ptr()),
                                        static_cast<const scalar_t*>(gy.data_ptr()),
                                        static_cast<const scalar_t*>(xy.data_ptr()), m.numel, alpha, beta)) {
      return;
    }
    with_offset_calc(m, [&](auto calc) {
      using Calc = decltype(calc);
      unary_strided_bwd_kernel<scalar_t, Calc><<<grid_for(m.numel), kThreads, 0, stream()>>>(
          static_cast<scalar_t*>(gx.data_ptr()), static_cast<const scalar_t*>(gy.data_ptr()),
          static_cast<const scalar_t*>(xy.data_ptr()), calc, static_cast<typename Calc::index_t>(m.numel), op, alpha,
          beta);
      RG_CUDA_LAUNCH_CHECK("unary_strided_bwd_kernel");
    });
  });
}

}  // namespace rg
