// CPU loop helpers: an OpenMP parallel_for with a grain size, and a strided elementwise walk
// that decomposes the index once per innermost row.
#pragma once

#include <cstdint>
#include <type_traits>

#include "core/strided_meta.h"

namespace rg::cpu {

// Converts between element types the way a copy does: through float for half/bfloat16,
// to bool by comparing with zero.
template <typename To, typename From>
inline To cast(From v) {
  if constexpr (std::is_same_v<To, bool>) {
    if constexpr (std::is_same_v<From, bool>) return v;
    else return static_cast<double>(v) != 0.0;
  } else if constexpr (std::is_same_v<To, Half> || std::is_same_v<To, BFloat16>) {
    return To(static_cast<float>(v));
  } else if constexpr (std::is_same_v<From, Half> || std::is_same_v<From, BFloat16>) {
    return static_cast<To>(static_cast<float>(v));
  } else {
    return static_cast<To>(v);
  }
}

// The type arithmetic runs in: float for half/bfloat16, else the type itself.
template <typename T> struct AccType { using type = T; };
template <> struct AccType<Half> { using type = float; };
template <> struct AccType<BFloat16> { using type = float; };
template <typename T> using acc_t = typename AccType<T>::type;

inline constexpr int64_t kGrain = 32768;  // elements per task below which threads cost more than they save

// f(begin, end) over [0, n) in chunks; runs inline when n is small.
template <typename F>
void parallel_for(int64_t n, int64_t grain, F&& f) {
  if (n <= 0) return;
  if (n <= grain) {
    f(int64_t{0}, n);
    return;
  }
  const int64_t chunks = (n + grain - 1) / grain;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t b = c * grain;
    const int64_t e = b + grain < n ? b + grain : n;
    f(b, e);
  }
}

// Calls f(ptr offsets (&off)[N], inner_len, inner strides (&st)[N]) once per innermost run,
// so the caller's inner loop is a plain strided loop.
template <int N, typename F>
void for_each_row(const StridedMeta<N>& m, F&& f) {
  if (m.numel == 0) return;
  if (m.contiguous || m.ndim == 0) {
    parallel_for(m.numel, kGrain, [&](int64_t b, int64_t e) {
      int64_t off[N], st[N];
      for (int a = 0; a < N; ++a) {
        off[a] = b;
        st[a] = 1;
      }
      f(off, e - b, st);
    });
    return;
  }
  if (m.ndim == 1) {  // one long strided run (e.g. a stride-0 operand): split it across threads
    parallel_for(m.numel, kGrain, [&](int64_t b, int64_t e) {
      int64_t off[N], st[N];
      for (int a = 0; a < N; ++a) {
        st[a] = m.strides[a][0];
        off[a] = b * st[a];
      }
      f(off, e - b, st);
    });
    return;
  }
  const int64_t inner = m.sizes[0];
  const int64_t rows = m.numel / inner;
  int64_t st[N];
  for (int a = 0; a < N; ++a) st[a] = m.strides[a][0];
  const int64_t row_grain = inner >= kGrain ? 1 : kGrain / inner;
  parallel_for(rows, row_grain, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      int64_t off[N];
      m.offsets(r * inner, off);
      int64_t st_copy[N];
      for (int a = 0; a < N; ++a) st_copy[a] = st[a];
      f(off, inner, st_copy);
    }
  });
}

}  // namespace rg::cpu
