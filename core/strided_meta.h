// StridedMeta: the shape and per-operand strides of an elementwise op, with adjacent dims merged
// where every operand allows, so that a strided kernel (CPU or CUDA) turns a linear index into
// one offset per operand with as few divisions as possible. Plain data: it is passed to kernels by value.
#pragma once

#include <cstdint>

#include "core/tensor.h"

#if defined(__CUDACC__)
#define RG_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define RG_HOST_DEVICE inline
#endif

namespace rg {

inline constexpr int kMaxStridedDims = 10;

template <int N>
struct StridedMeta {
  int ndim = 0;           // after merging; dims are stored innermost first
  int64_t numel = 0;
  bool contiguous = false;  // every operand is dense and in the same order: use flat indexing
  int64_t sizes[kMaxStridedDims] = {};
  int64_t strides[N][kMaxStridedDims] = {};  // in elements

  // Element offsets of linear index i, for every operand.
  RG_HOST_DEVICE void offsets(int64_t i, int64_t (&off)[N]) const {
    for (int a = 0; a < N; ++a) off[a] = 0;
    for (int d = 0; d < ndim; ++d) {
      const int64_t sz = sizes[d];
      const int64_t q = i / sz;
      const int64_t r = i - q * sz;
      i = q;
      for (int a = 0; a < N; ++a) off[a] += r * strides[a][d];
    }
  }
};

// Builds the meta of N tensors that all have the same sizes (operands[0] is usually the output).
// Size-1 dims are dropped and neighbours merged when stride[d+1] == stride[d] * size[d] for all.
template <int N>
StridedMeta<N> make_strided_meta(const Tensor* const (&ts)[N]) {
  StridedMeta<N> m;
  const Shape& sizes = ts[0]->sizes();
  const int nd = static_cast<int>(sizes.size());
  for (int a = 1; a < N; ++a) {
    RG_CHECK(ts[a]->sizes() == sizes, "elementwise operands must have the same shape, got ",
             shape_str(sizes), " and ", shape_str(ts[a]->sizes()));
  }
  m.numel = shape_numel(sizes);
  m.contiguous = true;
  for (int a = 0; a < N; ++a) m.contiguous = m.contiguous && ts[a]->is_contiguous();
  int out = 0;
  for (int d = nd - 1; d >= 0; --d) {  // innermost first
    if (sizes[d] == 1) continue;
    bool merge = out > 0;
    for (int a = 0; a < N && merge; ++a) {
      merge = ts[a]->strides()[d] == m.strides[a][out - 1] * m.sizes[out - 1];
    }
    if (merge) {
      m.sizes[out - 1] *= sizes[d];
    } else {
      RG_CHECK(out < kMaxStridedDims, "elementwise op on a tensor of ", nd,
               " dims that do not merge below ", kMaxStridedDims, ": ", shape_str(sizes));
      m.sizes[out] = sizes[d];
      for (int a = 0; a < N; ++a) m.strides[a][out] = ts[a]->strides()[d];
      ++out;
    }
  }
  m.ndim = out;
  if (!m.contiguous && out <= 1) {  // e.g. every operand transposed the same way: still one dense run
    bool unit = true;
    for (int a = 0; a < N; ++a) unit = unit && (out == 0 || m.strides[a][0] == 1);
    m.contiguous = unit;
  }
  return m;
}

}  // namespace rg
