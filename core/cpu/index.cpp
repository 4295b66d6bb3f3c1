// CPU indexing kernels: cat, index_select, index_add, gather, scatter_add. Copies move raw
// element bits (any dtype); the add variants accumulate in acc_t (float dtypes).
#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "core/cpu/loops.h"
#include "core/kernels.h"
#include "core/native.h"

namespace rg {

namespace {

// Runs f.template operator()<U>() with U an unsigned integer of the element size (bit copies).
template <typename F>
void by_element_size(size_t es, F&& f) {
  switch (es) {
    case 1: f(uint8_t{}); break;
    case 2: f(uint16_t{}); break;
    case 4: f(uint32_t{}); break;
    case 8: f(uint64_t{}); break;
    default: RG_THROW("unsupported element size ", es);
  }
}

struct OuterInner {
  int64_t outer = 1, n = 1, inner = 1;
};
OuterInner split_at(const Shape& sizes, int64_t dim) {
  OuterInner r;
  for (int64_t d = 0; d < dim; ++d) r.outer *= sizes[d];
  r.n = sizes[dim];
  for (size_t d = static_cast<size_t>(dim) + 1; d < sizes.size(); ++d) r.inner *= sizes[d];
  return r;
}

// Reads a contiguous index tensor as int64, checking every value against [0, size).
std::vector<int64_t> checked_indices(const Tensor& index, int64_t size, int64_t dim, const char* op) {
  std::vector<int64_t> idx(static_cast<size_t>(index.numel()));
  RG_DISPATCH_INDEX(index.dtype(), op, [&] {
    const auto* p = static_cast<const scalar_t*>(index.data_ptr());
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>(p[i]);
  });
  for (int64_t v : idx) {
    RG_CHECK(v >= 0 && v < size, op, "(): index ", v, " is out of bounds for dimension ", dim, " with size ", size);
  }
  return idx;
}

// The first out-of-range index seen by a parallel loop (reported after it, since OpenMP
// regions must not throw).
struct BadIndex {
  std::atomic<bool> seen{false};
  int64_t value = 0;
  void report(int64_t v) {
    bool expected = false;
    if (seen.compare_exchange_strong(expected, true)) value = v;
  }
};

}  // namespace

// out (..., sum of sizes, ...) from xs along dim. Every x has out's dtype and sizes except at dim.
void cat_cpu(const Tensor& out, const std::vector<Tensor>& xs, int64_t dim) {
  RG_CHECK(out.is_contiguous(), "cat: the output must be contiguous");
  const OuterInner oi = split_at(out.sizes(), dim);
  const int64_t out_row = oi.n * oi.inner;
  const auto es = static_cast<int64_t>(out.element_size());
  char* o = static_cast<char*>(out.data_ptr());
  int64_t at = 0;  // elements of an output row written so far
  for (const Tensor& x : xs) {
    const int64_t x_row = x.size(dim) * oi.inner;
    if (x_row == 0 || oi.outer == 0) continue;
    if (x.is_contiguous() && x.dtype() == out.dtype()) {
      const char* xp = static_cast<const char*>(x.data_ptr());
      if (oi.outer == 1) {
        cpu::parallel_for(x_row * es, cpu::kGrain * 8,
                          [&](int64_t b, int64_t e) { std::memcpy(o + at * es + b, xp + b, static_cast<size_t>(e - b)); });
      } else {
        cpu::parallel_for(oi.outer, std::max<int64_t>(1, cpu::kGrain / x_row), [&](int64_t b, int64_t e) {
          for (int64_t r = b; r < e; ++r) {
            std::memcpy(o + (r * out_row + at) * es, xp + r * x_row * es, static_cast<size_t>(x_row * es));
          }
        });
      }
    } else {  // strided or another dtype: a strided copy into the slice of out
      const Tensor slot = native::as_strided(out, x.sizes(), out.strides(), out.storage_offset() + at);
      copy_cpu(slot, x);
    }
    at += x_row;
  }
}

// out (outer, K, inner) = x (outer, n, inner)[:, index, :]; x, index and out are contiguous.
void index_select_cpu(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) {
  RG_CHECK(x.is_contiguous() && index.is_contiguous() && out.is_contiguous(),
           "index_select: the kernel needs contiguous tensors");
  RG_CHECK(out.dtype() == x.dtype(), "index_select: output dtype differs from the input's");
  const OuterInner oi = x.dim() == 0 ? OuterInner{} : split_at(x.sizes(), dim);
  const std::vector<int64_t> idx = checked_indices(index, oi.n, dim, "index_select");
  const int64_t K = static_cast<int64_t>(idx.size()), inner = oi.inner;
  if (K == 0 || inner == 0 || oi.outer == 0) return;
  by_element_size(x.element_size(), [&](auto tag) {
    using U = decltype(tag);
    const U* xp = static_cast<const U*>(x.data_ptr());
    U* op = static_cast<U*>(out.data_ptr());
    cpu::parallel_for(oi.outer * K, std::max<int64_t>(1, cpu::kGrain / inner), [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t o = t / K, k = t - o * K;
        const U* src = xp + (o * oi.n + idx[static_cast<size_t>(k)]) * inner;
        U* dst = op + t * inner;
        if (inner == 1) dst[0] = src[0];
        else std::memcpy(dst, src, static_cast<size_t>(inner) * sizeof(U));
      }
    });
  });
}

// out (outer, n, inner)[:, index[k], :] += src (outer, K, inner)[:, k, :]; all contiguous.
void index_add_cpu(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  RG_CHECK(out.is_contiguous() && index.is_contiguous() && src.is_contiguous(),
           "index_add_: the kernel needs contiguous tensors");
  RG_CHECK(out.dtype() == src.dtype(), "index_add_: source dtype differs from self's");
  const OuterInner oi = out.dim() == 0 ? OuterInner{} : split_at(out.sizes(), dim);
  const std::vector<int64_t> idx = checked_indices(index, oi.n, dim, "index_add_");
  const int64_t K = static_cast<int64_t>(idx.size()), inner = oi.inner;
  if (K == 0 || inner == 0 || oi.outer == 0) return;
  constexpr int64_t kBlock = 1024;
  const int64_t nb = (inner + kBlock - 1) / kBlock;
  RG_DISPATCH_FLOAT(out.dtype(), "index_add_", [&] {
    using A = cpu::acc_t<scalar_t>;
    scalar_t* op = static_cast<scalar_t*>(out.data_ptr());
    const scalar_t* sp = static_cast<const scalar_t*>(src.data_ptr());
    // Tasks own disjoint (outer, inner block) slices, so repeated indices never race.
    cpu::parallel_for(oi.outer * nb, std::max<int64_t>(1, cpu::kGrain / (K * std::min(inner, kBlock))),
                      [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t o = t / nb, j0 = (t - o * nb) * kBlock, jn = std::min(kBlock, inner - j0);
        for (int64_t k = 0; k < K; ++k) {
          scalar_t* d = op + (o * oi.n + idx[static_cast<size_t>(k)]) * inner + j0;
          const scalar_t* s = sp + (o * K + k) * inner + j0;
          for (int64_t j = 0; j < jn; ++j) d[j] = static_cast<scalar_t>(static_cast<A>(d[j]) + static_cast<A>(s[j]));
        }
      }
    });
  });
}

// out[i][j][k] = x[i][index[i][j][k]][k] (dim 1); out has index's shape, any strides everywhere.
void gather_cpu(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) {
  RG_CHECK(out.dtype() == x.dtype(), "gather: output dtype differs from the input's");
  RG_CHECK(out.sizes() == index.sizes() && x.dim() == index.dim() && x.dim() > 0,
           "gather: kernel expects out and index of one shape with x's ndim");
  // x seen with index's shape and stride 0 along dim: the index picks the position along dim.
  Shape xst = x.strides();
  const int64_t n = x.size(dim), sd = x.stride(dim);
  xst[static_cast<size_t>(dim)] = 0;
  const Tensor xv = native::as_strided(x, index.sizes(), xst, x.storage_offset());
  const Tensor* ts[3] = {&out, &index, &xv};
  const auto m = make_strided_meta<3>(ts);
  BadIndex bad;
  RG_DISPATCH_INDEX(index.dtype(), "gather", [&] {
    using I = scalar_t;
    const I* ip = static_cast<const I*>(index.data_ptr());
    by_element_size(x.element_size(), [&](auto tag) {
      using U = decltype(tag);
      U* op = static_cast<U*>(out.data_ptr());
      const U* xp = static_cast<const U*>(xv.data_ptr());
      cpu::for_each_row<3>(m, [&](const int64_t (&off)[3], int64_t len, const int64_t (&st)[3]) {
        for (int64_t i = 0; i < len; ++i) {
          const auto v = static_cast<int64_t>(ip[off[1] + i * st[1]]);
          if (v < 0 || v >= n) {
            bad.report(v);
            continue;
          }
          op[off[0] + i * st[0]] = xp[off[2] + i * st[2] + v * sd];
        }
      });
    });
  });
  RG_CHECK(!bad.seen.load(), "gather(): index ", bad.value, " is out of bounds for dimension ", dim, " with size ", n);
}

// out[i][index[i][j][k]][k] += src[i][j][k] (dim 1), over index's shape; any strides.
void scatter_add_cpu(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  RG_CHECK(out.dtype() == src.dtype(), "scatter_add_: source dtype differs from self's");
  const int64_t nd = index.dim();
  RG_CHECK(nd > 0 && out.dim() == nd && src.dim() == nd, "scatter_add_: kernel expects tensors of one ndim");
  RG_CHECK(nd <= 64, "scatter_add_: at most 64 dims");
  if (index.numel() == 0) return;
  const int64_t J = index.size(dim), n = out.size(dim);
  const int64_t is = index.stride(dim), ss = src.stride(dim), os = out.stride(dim);
  // The other dims, innermost first: sizes from index, strides of index, src and out.
  std::vector<int64_t> sz, ist, sst, ost;
  for (int64_t d = nd - 1; d >= 0; --d) {
    if (d == dim) continue;
    sz.push_back(index.size(d));
    ist.push_back(index.stride(d));
    sst.push_back(src.stride(d));
    ost.push_back(out.stride(d));
  }
  const int nr = static_cast<int>(sz.size());
  const int64_t P = index.numel() / J;
  BadIndex bad;
  RG_DISPATCH_INDEX(index.dtype(), "scatter_add_", [&] {
    using I = scalar_t;
    const I* ip = static_cast<const I*>(index.data_ptr());
    RG_DISPATCH_FLOAT(out.dtype(), "scatter_add_", [&] {
      using A = cpu::acc_t<scalar_t>;
      scalar_t* op = static_cast<scalar_t*>(out.data_ptr());
      const scalar_t* sp = static_cast<const scalar_t*>(src.data_ptr());
      // Each position p of the other dims owns one line of out along dim: no two tasks write the same element.
      cpu::parallel_for(P, std::max<int64_t>(1, cpu::kGrain / J), [&](int64_t b, int64_t e) {
        int64_t pos[64];
        int64_t io = 0, so = 0, oo = 0, rem = b;
        for (int k = 0; k < nr; ++k) {
          pos[k] = rem % sz[k];
          rem /= sz[k];
          io += pos[k] * ist[k];
          so += pos[k] * sst[k];
          oo += pos[k] * ost[k];
        }
        for (int64_t p = b; p < e; ++p) {
          for (int64_t j = 0; j < J; ++j) {
            const auto v = static_cast<int64_t>(ip[io + j * is]);
            if (v < 0 || v >= n) {
              bad.report(v);
              continue;
            }
            scalar_t& d = op[oo + v * os];
            d = static_cast<scalar_t>(static_cast<A>(d) + static_cast<A>(sp[so + j * ss]));
          }
          for (int k = 0; k < nr; ++k) {  // next position (odometer, innermost first)
            io += ist[k];
            so += sst[k];
            oo += ost[k];
            if (++pos[k] < sz[k]) break;
            io -= sz[k] * ist[k];
            so -= sz[k] * sst[k];
            oo -= sz[k] * ost[k];
            pos[k] = 0;
          }
        }
      });
    });
  });
  RG_CHECK(!bad.seen.load(), "scatter_add_(): index ", bad.value, " is out of bounds for dimension ", dim,
           " with size ", n);
}

}  // namespace rg
