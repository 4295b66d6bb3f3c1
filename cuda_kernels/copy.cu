// CUDA fill, arange and copy (casts between any two of the 8 dtypes, any strides): the twins of
// core/cpu/copy.cpp, with the same conversions (Note [Kernel contract] in core/kernels.h).
#include <cstring>

#include "core/native.h"
#include "cuda_kernels/common.cuh"

namespace rg {

using namespace cu;

// ---- kernels

// Every element gets the bit pattern v (U is the unsigned integer of the element's size).
template <typename U>
static __global__ void fill_fwd_kernel(U* out, int64_t n, U v) {
  constexpr int W = pack_width<U>();
  Pack<U, W> pk;
#pragma unroll
  for (int k = 0; k < W; ++k) pk.v[k] = v;
  grid_stride_packs<W>(n, [&](int64_t p) { store_pack<W>(out, p, pk); }, [&](int64_t i) { out[i] = v; });
}

template <typename U, typename Calc>
static __global__ void fill_strided_fwd_kernel(U* out, Calc calc, typename Calc::index_t n, U v) {
  grid_stride(n, [&](typename Calc::index_t i) {
    typename Calc::offset_t off[1];
    calc.get(i, off);
    out[off[0]] = v;
  });
}

// out[i] = start + step * i, rounded exactly as the CPU does (no fused multiply-add).
template <typename T>
static __global__ void arange_fwd_kernel(T* out, int64_t n, double start, double step) {
  grid_stride(n, [&](int64_t i) { out[i] = cast<T>(__dadd_rn(start, __dmul_rn(step, static_cast<double>(i)))); });
}

// Same dtype, any strides: moves elements as unsigned integers of their size.
template <typename U, typename Calc>
static __global__ void copy_strided_fwd_kernel(U* dst, const U* src, Calc calc, typename Calc::index_t n) {
  grid_stride(n, [&](typename Calc::index_t i) {
    typename Calc::offset_t off[2];
    calc.get(i, off);
    dst[off[0]] = src[off[1]];
  });
}

// Contiguous cast in packs; both pointers aligned to their pack.
template <typename To, typename From>
static __global__ void copy_cast_fwd_kernel(To* dst, const From* src, int64_t n) {
  constexpr int W = pack_width<To, From>();
  grid_stride_packs<W>(
      n,
      [&](int64_t p) {
        const Pack<From, W> s = load_pack<W>(src, p);
        Pack<To, W> d;
#pragma unroll
        for (int k = 0; k < W; ++k) d.v[k] = cast<To>(s.v[k]);
        store_pack<W>(dst, p, d);
      },
      [&](int64_t i) { dst[i] = cast<To>(src[i]); });
}

// Note [Dynamic casts]
// Any dtype to any dtype without 64 instantiations: a value is loaded as int64 (integers and
// bool, exact) or double (floats, exact), then stored. Each conversion below is the one
// rg::cpu::cast makes: an integer reaches float/half through a single int64 -> float rounding,
// a float reaches an integer by truncation of the same value, bool is "!= 0".
struct AnyValue {
  double f;
  int64_t i;
  bool is_float;
};

static __device__ __forceinline__ AnyValue load_any(const char* base, DType t, int64_t off) {
  switch (t) {
    case DType::f32: return {static_cast<double>(reinterpret_cast<const float*>(base)[off]), 0, true};
    case DType::f64: return {reinterpret_cast<const double*>(base)[off], 0, true};
    case DType::f16: return {static_cast<double>(__half2float(reinterpret_cast<const __half*>(base)[off])), 0, true};
    case DType::bf16:
      return {static_cast<double>(__bfloat162float(reinterpret_cast<const __nv_bfloat16*>(base)[off])), 0, true};
    case DType::i32: return {0.0, reinterpret_cast<const int32_t*>(base)[off], false};
    case DType::i64: return {0.0, reinterpret_cast<const int64_t*>(base)[off], false};
    case DType::u8: return {0.0, reinterpret_cast<const uint8_t*>(base)[off], false};
    case DType::b8: return {0.0, reinterpret_cast<const uint8_t*>(base)[off] != 0 ? 1 : 0, false};
  }
  return {0.0, 0, false};
}

template <typename To>
static __device__ __forceinline__ To any_to(const AnyValue& v) {
  return v.is_float ? cast<To>(v.f) : static_cast<To>(v.i);  // cast: float -> u8 wraps as on the CPU
}

static __device__ __forceinline__ void store_any(char* base, DType t, int64_t off, const AnyValue& v) {
  switch (t) {
    case DType::f32: reinterpret_cast<float*>(base)[off] = any_to<float>(v); break;
    case DType::f64: reinterpret_cast<double*>(base)[off] = any_to<double>(v); break;
    case DType::f16: reinterpret_cast<__half*>(base)[off] = __float2half_rn(any_to<float>(v)); break;
    case DType::bf16: reinterpret_cast<__nv_bfloat16*>(base)[off] = __float2bfloat16_rn(any_to<float>(v)); break;
    case DType::i32: reinterpret_cast<int32_t*>(base)[off] = any_to<int32_t>(v); break;
    case DType::i64: reinterpret_cast<int64_t*>(base)[off] = any_to<int64_t>(v); break;
    case DType::u8: reinterpret_cast<uint8_t*>(base)[off] = any_to<uint8_t>(v); break;
    case DType::b8: reinterpret_cast<bool*>(base)[off] = v.is_float ? v.f != 0.0 : v.i != 0; break;
  }
}

template <typename Calc>
static __global__ void copy_dynamic_fwd_kernel(char* dst, DType dt, const char* src, DType st, Calc calc,
                                               typename Calc::index_t n) {
  grid_stride(n, [&](typename Calc::index_t i) {
    typename Calc::offset_t off[2];
    calc.get(i, off);
    store_any(dst, dt, off[0], load_any(src, st, off[1]));
  });
}

// ---- launchers

namespace {

// The value's bytes in dtype t, converted as rg::cpu::cast<T>(double) does.
uint64_t value_bits(DType t, double value) {
  uint64_t bits = 0;
  RG_DISPATCH_ALL(t, "fill", [&] {
    scalar_t v;
    if constexpr (std::is_same_v<scalar_t, bool>) {
      v = value != 0.0;
    } else if constexpr (std::is_same_v<scalar_t, Half> || std::is_same_v<scalar_t, BFloat16>) {
      v = scalar_t(static_cast<float>(value));
    } else {
      v = static_cast<scalar_t>(value);
    }
    std::memcpy(&bits, &v, sizeof(v));
  });
  return bits;
}


template <typename To, typename From>
bool launch_cast(void* dst, const void* src, int64_t n) {
  if constexpr (std::is_same_v<To, From>) {
    return false;
  } else {
    constexpr int W = pack_width<To, From>();
    if (!aligned_to(dst, W * sizeof(To)) || !aligned_to(src, W * sizeof(From))) return false;
    copy_cast_fwd_kernel<To, From><<<grid_for((n + W - 1) / W), kThreads, 0, stream()>>>(
        static_cast<To*>(dst), static_cast<const From*>(src), n);
    RG_CUDA_LAUNCH_CHECK("copy_cast_fwd_kernel");
    return true;
  }
}

// Contiguous cast to a float dtype from any dtype, in 16-byte packs. False when the pair or the
// alignment is not covered (the dynamic kernel does those).
bool launch_fast_cast(void* dst, DType dt, const void* src, DType st, int64_t n) {
  if (!is_floating(dt) || dt == st) return false;
  bool done = false;
  RG_CU_DISPATCH_FLOAT(dt, "copy", [&] {
    using To = scalar_t;
    switch (st) {
      RG_CU_FLOAT_CASES([&] { done = launch_cast<To, scalar_t>(dst, src, n); })
      RG_CU_INT_CASES([&] { done = launch_cast<To, scalar_t>(dst, src, n); })
    }
  });
  return done;
}

}  // namespace

void fill_cuda(const Tensor& out, double value) {
  const Tensor* ts[1] = {&out};
  const auto m = make_strided_meta<1>(ts);
  if (m.numel == 0) return;
  const uint64_t bits = value_bits(out.dtype(), value);
  with_uint_of_size(out.element_size(), [&](auto* tag) {
    using U = std::remove_pointer_t<decltype(tag)>;
    auto* p = static_cast<U*>(out.data_ptr());
    const U v = static_cast<U>(bits);
    constexpr int W = pack_width<U>();
    if (m.contiguous && aligned_to(p, W * sizeof(U))) {
      fill_fwd_kernel<U><<<grid_for((m.numel + W - 1) / W), kThreads, 0, stream()>>>(p, m.numel, v);
      RG_CUDA_LAUNCH_CHECK("fill_fwd_kernel");
    } else {
      with_offset_calc(m, [&](auto calc) {
        using Calc = decltype(calc);
        const auto n = static_cast<typename Calc::index_t>(m.numel);
        fill_strided_fwd_kernel<U, Calc><<<grid_for(m.numel), kThreads, 0, stream()>>>(p, calc, n, v);
        RG_CUDA_LAUNCH_CHECK("fill_strided_fwd_kernel");
      });
    }
  });
}

void arange_cuda(const Tensor& out, double start, double step) {  // out (N)
  const int64_t n = out.numel();
  if (n == 0) return;
  if (!out.is_contiguous()) {  // fill a dense buffer in logical order, then scatter it into the view
    Tensor dense = empty(out.sizes(), TensorOptions(out.dtype()).device(out.device()));
    arange_cuda(dense, start, step);
    copy_cuda(out, dense);
    return;
  }
  RG_CU_DISPATCH_ALL(out.dtype(), "arange", [&] {
    arange_fwd_kernel<scalar_t><<<grid_for(n), kThreads, 0, stream()>>>(static_cast<scalar_t*>(out.data_ptr()), n,
                                                                       start, step);
    RG_CUDA_LAUNCH_CHECK("arange_fwd_kernel");
  });
}

void copy_cuda(const Tensor& dst, const Tensor& src) {
  RG_CHECK(dst.device() == src.device(), "copy kernel between ", dst.device().str(), " and ", src.device().str(),
           ": both tensors must be on the same device");
  const Tensor* ts[2] = {&dst, &src};
  const auto m = make_strided_meta<2>(ts);
  if (m.numel == 0) return;
  if (dst.dtype() == src.dtype()) {
    if (m.contiguous) {
      RG_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), static_cast<size_t>(m.numel) * dst.element_size(),
                                    cudaMemcpyDeviceToDevice, stream()));
      return;
    }
    with_uint_of_size(dst.element_size(), [&](auto* tag) {
      using U = std::remove_pointer_t<decltype(tag)>;
      with_offset_calc(m, [&](auto calc) {
        using Calc = decltype(calc);
        copy_strided_fwd_kernel<U, Calc><<<grid_for(m.numel), kThreads, 0, stream()>>>(
            static_cast<U*>(dst.data_ptr()), static_cast<const U*>(src.data_ptr()), calc,
            static_cast<typename Calc::index_t>(m.numel));
        RG_CUDA_LAUNCH_CHECK("copy_strided_fwd_kernel");
      });
    });
    return;
  }
  if (m.contiguous && launch_fast_cast(dst.data_ptr(), dst.dtype(), src.data_ptr(), src.dtype(), m.numel)) return;
  with_offset_calc(m, [&](auto calc) {
    using Calc = decltype(calc);
    copy_dynamic_fwd_kernel<Calc><<<grid_for(m.numel), kThreads, 0, stream()>>>(
        static_cast<char*>(dst.data_ptr()), dst.dtype(), static_cast<const char*>(src.data_ptr()), src.dtype(), calc,
        static_cast<typename Calc::index_t>(m.numel));
    RG_CUDA_LAUNCH_CHECK("copy_dynamic_fwd_kernel");
  });
}

}  // namespace rg
