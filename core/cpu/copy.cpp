// CPU fill, arange and copy (with casts between any two dtypes).
#include <cstring>

#include "core/cpu/loops.h"
#include "core/kernels.h"

namespace rg {

void fill_cpu(const Tensor& out, double value) {
  RG_DISPATCH_ALL(out.dtype(), "fill", [&] {
    const scalar_t v = cpu::cast<scalar_t>(value);
    const Tensor* ts[1] = {&out};
    const auto m = make_strided_meta<1>(ts);
    auto* p = static_cast<scalar_t*>(out.data_ptr());
    cpu::for_each_row<1>(m, [&](const int64_t (&off)[1], int64_t n, const int64_t (&st)[1]) {
      scalar_t* q = p + off[0];
      for (int64_t i = 0; i < n; ++i) q[i * st[0]] = v;
    });
  });
}

void arange_cpu(const Tensor& out, double start, double step) {
  RG_DISPATCH_ALL(out.dtype(), "arange", [&] {
    auto* p = static_cast<scalar_t*>(out.data_ptr());
    const int64_t n = out.numel();
    for (int64_t i = 0; i < n; ++i) p[i] = cpu::cast<scalar_t>(start + step * static_cast<double>(i));
  });
}

void copy_cpu(const Tensor& dst, const Tensor& src) {
  const Tensor* ts[2] = {&dst, &src};
  const auto m = make_strided_meta<2>(ts);
  if (m.contiguous && dst.dtype() == src.dtype()) {
    auto* d = static_cast<char*>(dst.data_ptr());
    const auto* s = static_cast<const char*>(src.data_ptr());
    const int64_t es = static_cast<int64_t>(dst.element_size());
    cpu::parallel_for(m.numel * es, cpu::kGrain * 8, [&](int64_t b, int64_t e) { std::memcpy(d + b, s + b, e - b); });
    return;
  }
  RG_DISPATCH_ALL(dst.dtype(), "copy", [&] {
    using dst_t = scalar_t;
    auto* d = static_cast<dst_t*>(dst.data_ptr());
    RG_DISPATCH_ALL(src.dtype(), "copy", [&] {
      const auto* s = static_cast<const scalar_t*>(src.data_ptr());
      cpu::for_each_row<2>(m, [&](const int64_t (&off)[2], int64_t n, const int64_t (&st)[2]) {
        dst_t* dp = d + off[0];
        const scalar_t* sp = s + off[1];
        for (int64_t i = 0; i < n; ++i) dp[i * st[0]] = cpu::cast<dst_t>(sp[i * st[1]]);
      });
    });
  });
}

}  // namespace rg
