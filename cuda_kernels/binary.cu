// CUDA binary ops (every row of RG_BINARY_OPS, all dtypes; comparisons write bool) and where,
// running the formulas of core/elementwise_formulas.h that core/cpu/binary.cpp runs too. A flat
// 16-byte path templated on the op for f32/f16/bf16; a strided path (broadcast operands have
// stride 0) that switches on the op at run time.
#include <cmath>

#include "core/elementwise_formulas.h"
#include "core/native.h"
#include "cuda_kernels/common.cuh"

namespace rg {

using namespace cu;

// ---- kernels

// out = a op b for one element, T in, O out (bool for comparisons), computed in C = acc_t<T>
// (int64 for the integer dtypes, whose arithmetic takes its scalars from ip).
template <typename T, typename O, typename C>
static __device__ __forceinline__ O binary_element(BinaryOp op, T a, T b, C alpha, C beta,
                                                  const ew::BinaryIntScalars& ip) {
  if constexpr (std::is_same_v<O, bool>) {
    return ew::binary_cmp<DeviceMath>(op, cast<C>(a), cast<C>(b));
  } else if constexpr (is_float_v<T>) {
    return cast<O>(ew::binary_fwd<DeviceMath>(op, cast<C>(a), cast<C>(b), alpha, beta));
  } else {
    return ew::binary_int<DeviceMath, O>(op, cast<int64_t>(a), cast<int64_t>(b), ip);
  }
}

// Flat path: out (n) = a (n) op b (n), every pointer aligned to its pack. f32/f16/bf16 only.
template <BinaryOp OP, typename T>
static __global__ void binary_fwd_kernel(std::conditional_t<binary_op_is_comparison(OP), bool, T>* out, const T* a,
                                         const T* b, int64_t n, float alpha, float beta) {
  using O = std::conditional_t<binary_op_is_comparison(OP), bool, T>;
  constexpr int W = pack_width<T, O>();
  grid_stride_packs<W>(
      n,
      [&](int64_t p) {
        const Pack<T, W> x = load_pack<W>(a, p);
        const Pack<T, W> y = load_pack<W>(b, p);
        Pack<O, W> r;
#pragma unroll
        for (int k = 0; k < W; ++k) r.v[k] = binary_element<T, O, float>(OP, x.v[k], y.v[k], alpha, beta, {});
        store_pack<W>(out, p, r);
      },
      [&](int64_t i) { out[i] = binary_element<T, O, float>(OP, a[i], b[i], alpha, beta, {}); });
}

// Strided path, any layout and dtype; O is T, or bool for the comparisons.
template <typename T, typename O, typename Calc>
static __global__ void binary_strided_fwd_kernel(O* out, const T* a, const T* b, Calc calc,
                                                 typename Calc::index_t n, BinaryOp op, double alpha, double beta,
                                                 ew::BinaryIntScalars ip) {
  using C = acc_t<T>;
  // the integer dtypes take their scalars from ip (prepared on the host)
  const C al = is_float_v<T> ? static_cast<C>(alpha) : C(0), be = is_float_v<T> ? static_cast<C>(beta) : C(0);
  grid_stride(n, [&](typename Calc::index_t i) {
    typename Calc::offset_t off[3];
    calc.get(i, off);
    out[off[0]] = binary_element<T, O, C>(op, a[off[1]], b[off[2]], al, be, ip);
  });
}

// where: out = cond ? a : b, moving elements as unsigned integers U of their size.
template <typename U>
static __global__ void where_fwd_kernel(U* out, const uint8_t* cond, const U* a, const U* b, int64_t n) {
  constexpr int W = pack_width<U>();
  grid_stride_packs<W>(
      n,
      [&](int64_t p) {
        const Pack<uint8_t, W> c = load_pack<W>(cond, p);
        const Pack<U, W> x = load_pack<W>(a, p);
        const Pack<U, W> y = load_pack<W>(b, p);
        Pack<U, W> r;
#pragma unroll
        for (int k = 0; k < W; ++k) r.v[k] = c.v[k] ? x.v[k] : y.v[k];
        store_pack<W>(out, p, r);
      },
      [&](int64_t i) { out[i] = cond[i] ? a[i] : b[i]; });
}

template <typename U, typename Calc>
static __global__ void where_strided_fwd_kernel(U* out, const uint8_t* cond, const U* a, const U* b, Calc calc,
                                                typename Calc::index_t n) {
  grid_stride(n, [&](typename Calc::index_t i) {
    typename Calc::offset_t off[4];
    calc.get(i, off);
    out[off[0]] = cond[off[1]] ? a[off[2]] : b[off[3]];
  });
}

// ---- launchers

namespace {

template <typename T>
bool launch_binary_flat(BinaryOp op, void* out, const T* a, const T* b, int64_t n, double alpha, double beta) {
  if constexpr (std::is_same_v<T, float> || is_reduced_v<T>) {
    const bool cmp = binary_op_is_comparison(op);
    const int W = cmp ? pack_width<T, bool>() : pack_width<T>();
    const size_t out_size = cmp ? 1 : sizeof(T);
    if (!aligned_to(out, W * out_size) || !aligned_to(a, W * sizeof(T)) || !aligned_to(b, W * sizeof(T))) {
      return false;
    }
    const unsigned grid = grid_for((n + W - 1) / W);
    const float al = static_cast<float>(alpha), be = static_cast<float>(beta);
    return ew::visit_binary_op(op, [&](auto k) {
      constexpr BinaryOp OP = decltype(k)::value;
      using O = std::conditional_t<binary_op_is_comparison(OP), bool, T>;
      binary_fwd_kernel<OP, T><<<grid, kThreads, 0, stream()>>>(static_cast<O*>(out), a, b, n, al, be);
      RG_CUDA_LAUNCH_CHECK("binary_fwd_kernel");
      return true;
    });
  } else {
    return false;
  }
}

}  // namespace

void binary_cuda(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op, double alpha, double beta) {
  const char* name = binary_op_name(op);
  const bool cmp = binary_op_is_comparison(op);
  RG_CHECK(a.dtype() == b.dtype(), name, ": operand dtypes ", dtype_name(a.dtype()), " and ", dtype_name(b.dtype()),
           " differ (native::binary promotes them first)");
  RG_CHECK(out.dtype() == (cmp ? DType::b8 : a.dtype()), name, ": output dtype ", dtype_name(out.dtype()),
           " does not match ", cmp ? "bool" : dtype_name(a.dtype()));
  const ew::BinaryIntScalars ip = ew::binary_int_scalars(op, alpha, beta);
  const Tensor* ts[3] = {&out, &a, &b};
  const auto m = make_strided_meta<3>(ts);
  if (m.numel == 0) return;
  RG_CU_DISPATCH_ALL(a.dtype(), name, [&] {
    using T = scalar_t;
    const auto* pa = static_cast<const T*>(a.data_ptr());
    const auto* pb = static_cast<const T*>(b.data_ptr());
    if (m.contiguous && launch_binary_flat<T>(op, out.data_ptr(), pa, pb, m.numel, alpha, beta)) return;
    with_offset_calc(m, [&](auto calc) {
      using Calc = decltype(calc);
      const auto n = static_cast<typename Calc::index_t>(m.numel);
      if (cmp) {
        binary_strided_fwd_kernel<T, bool, Calc><<<grid_for(m.numel), kThreads, 0, stream()>>>(
            static_cast<bool*>(out.data_ptr()), pa, pb, calc, n, op, alpha, beta, ip);
      } else {
        binary_strided_fwd_kernel<T, T, Calc><<<grid_for(m.numel), kThreads, 0, stream()>>>(
            static_cast<T*>(out.data_ptr()), pa, pb, calc, n, op, alpha, beta, ip);
      }
      RG_CUDA_LAUNCH_CHECK("binary_strided_fwd_kernel");
    });
  });
}

void where_cuda(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  RG_CHECK(cond.dtype() == DType::b8 || cond.dtype() == DType::u8, "where: condition must be bool, got ",
           dtype_name(cond.dtype()));
  RG_CHECK(a.dtype() == out.dtype() && b.dtype() == out.dtype(), "where: dtypes ", dtype_name(a.dtype()), " and ",
           dtype_name(b.dtype()), " must both be the output's ", dtype_name(out.dtype()));
  const Tensor* ts[4] = {&out, &cond, &a, &b};
  const auto m = make_strided_meta<4>(ts);
  if (m.numel == 0) return;
  const auto* pc = static_cast<const uint8_t*>(cond.data_ptr());
  with_uint_of_size(out.element_size(), [&](auto* tag) {
    using U = std::remove_pointer_t<decltype(tag)>;
    auto* po = static_cast<U*>(out.data_ptr());
    const auto* pa = static_cast<const U*>(a.data_ptr());
    const auto* pb = static_cast<const U*>(b.data_ptr());
    constexpr int W = pack_width<U>();
    if (m.contiguous && aligned_to(po, W * sizeof(U)) && aligned_to(pa, W * sizeof(U)) &&
        aligned_to(pb, W * sizeof(U)) && aligned_to(pc, W)) {
      where_fwd_kernel<U><<<grid_for((m.numel + W - 1) / W), kThreads, 0, stream()>>>(po, pc, pa, pb, m.numel);
      RG_CUDA_LAUNCH_CHECK("where_fwd_kernel");
      return;
    }
    with_offset_calc(m, [&](auto calc) {
      using Calc = decltype(calc);
      where_strided_fwd_kernel<U, Calc><<<grid_for(m.numel), kThreads, 0, stream()>>>(
          po, pc, pa, pb, calc, static_cast<typename Calc::index_t>(m.numel));
      RG_CUDA_LAUNCH_CHECK("where_strided_fwd_kernel");
    });
  });
}

}  // namespace rg
