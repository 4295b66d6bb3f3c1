// CPU 2-D convolution (NCHW) forward, input gradient and weight gradient: im2col over bounded
// chunks of output rows + GEMM (gemm_cpu on views of plain buffers), col2im for the input gradient.
// f16/bf16 compute in f32; 1x1 stride-1 unpadded convolutions skip im2col (they are plain GEMMs).
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "core/cpu/loops.h"
#include "core/kernels.h"

namespace rg {

namespace {

// Note [CPU conv plan]
// Work items are (image, group) pairs. When there are at least as many items as OpenMP threads,
// each thread takes a contiguous run of items with its own buffers and runs single-threaded GEMMs
// (Eigen does not thread inside a parallel region). Otherwise items run one after another on
// this thread; Eigen then threads each GEMM and im2col/col2im split their channels across threads.
// Within an item, output rows are processed in chunks so that a column buffer never exceeds
// kColBudget elements, whatever the image size.
constexpr int64_t kColBudget = int64_t{1} << 21;

struct Geom {
  int64_t N, C, H, W;   // input
  int64_t O, Ho, Wo;    // output channels and size
  int64_t kh, kw, sh, sw, ph, pw, dh, dw, G;
  int64_t Cg, Og;       // channels per group: input, output
  int64_t K;            // Cg * kh * kw: rows of a column matrix
  int64_t P;            // Ho * Wo
  int64_t rows;         // output rows per chunk
  bool direct;          // 1x1, stride 1, no padding: an input plane block is its own column matrix
};

Geom make_geom(const Shape& x, const Shape& w, const Shape& y, const ConvParams& p) {
  RG_CHECK(x.size() == 4 && w.size() == 4 && y.size() == 4, "conv2d kernel: expected 4-D tensors");
  Geom g{};
  g.N = x[0], g.C = x[1], g.H = x[2], g.W = x[3];
  g.O = w[0], g.kh = w[2], g.kw = w[3];
  g.Ho = y[2], g.Wo = y[3];
  g.sh = p.stride[0], g.sw = p.stride[1], g.ph = p.padding[0], g.pw = p.padding[1];
  g.dh = p.dilation[0], g.dw = p.dilation[1], g.G = p.groups;
  g.Cg = g.C / g.G, g.Og = g.O / g.G;
  RG_CHECK(w[1] == g.Cg && y[0] == g.N && y[1] == g.O, "conv2d kernel: inconsistent shapes");
  g.K = g.Cg * g.kh * g.kw;
  g.P = g.Ho * g.Wo;
  g.direct = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
  g.rows = std::clamp<int64_t>(kColBudget / std::max<int64_t>(1, g.K * g.Wo), 1, std::max<int64_t>(g.Ho, 1));
  return g;
}

// How items are spread over threads (Note [CPU conv plan]).
struct Plan {
  int64_t items = 0, grain = 0, chunks = 1;
  bool inner_parallel = false;  // items run serially; kernels inside may thread
};
Plan make_plan(int64_t items) {
  Plan pl;
  pl.items = items;
  const int64_t nt = omp_in_parallel() ? 1 : std::max(1, omp_get_max_threads());
  if (nt > 1 && items >= nt) {
    pl.grain = (items + nt - 1) / nt;
    pl.chunks = (items + pl.grain - 1) / pl.grain;
  } else {
    pl.grain = std::max<int64_t>(items, 1);
    pl.inner_parallel = nt > 1;
  }
  return pl;
}
// f(item_begin, item_end, chunk_index) once per chunk of the plan.
template <typename F>
void run_plan(const Plan& pl, F&& f) {
  if (pl.items <= 0) return;
  if (pl.chunks == 1) {
    f(int64_t{0}, pl.items, int64_t{0});
    return;
  }
  cpu::parallel_for(pl.items, pl.grain, [&](int64_t b, int64_t e) { f(b, e, b / pl.grain); });
}
// f(c) for c in [0, n), split across threads when `par`.
template <typename F>
void for_channels(int64_t n, bool par, int64_t work_per_channel, F&& f) {
  if (!par) {
    for (int64_t c = 0; c < n; ++c) f(c);
    return;
  }
  const int64_t grain = std::max<int64_t>(1, cpu::kGrain / std::max<int64_t>(1, work_per_channel));
  cpu::parallel_for(n, grain, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) f(c);
  });
}

// A (1, R, C) tensor over memory this file owns, with strides (rs, cs), for gemm_cpu.
template <typename A>
Tensor wrap(const A* p, int64_t R, int64_t C, int64_t rs, int64_t cs) {
  auto impl = std::make_shared<TensorImpl>();
  const int64_t span = 1 + (R - 1) * rs + (C - 1) * cs;
  impl->storage = std::make_shared<Storage>(const_cast<A*>(p), static_cast<size_t>(span) * sizeof(A), kCPU,
                                            std::function<void(void*)>{});
  impl->sizes = {1, R, C};
  impl->strides = {0, rs, cs};
  impl->dtype = DTypeOf<A>::value;
  return Tensor(std::move(impl));
}

// One matrix operand: (R, C) at p with row stride ld, read transposed when `t` (then p holds
// the (C, R) matrix row-major with row stride ld).
template <typename A>
struct Op {
  const A* p;
  int64_t ld;
  bool t;
};

// c (M, N; row stride ldc) = a (M, K) @ b (K, N) + beta * c.
template <typename A>
void mm(A* c, int64_t ldc, Op<A> a, Op<A> b, int64_t M, int64_t N, int64_t K, double beta) {
  const Tensor ta = a.t ? wrap(a.p, M, K, 1, a.ld) : wrap(a.p, M, K, a.ld, 1);
  const Tensor tb = b.t ? wrap(b.p, K, N, 1, b.ld) : wrap(b.p, K, N, b.ld, 1);
  const Tensor tc = wrap<A>(c, M, N, ldc, 1);
  gemm_cpu(tc, ta, tb, 1.0, beta);
}

int64_t ceil_div_pos(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Valid output columns [lo, hi) of kernel column j: 0 <= ow * sw - pw + j * dw < W.
void valid_cols(const Geom& g, int64_t j, int64_t* lo, int64_t* hi) {
  const int64_t off = j * g.dw - g.pw;
  int64_t l = off >= 0 ? 0 : ceil_div_pos(-off, g.sw);
  int64_t h = g.W - 1 - off < 0 ? 0 : (g.W - 1 - off) / g.sw + 1;
  h = std::min(h, g.Wo);
  l = std::min(l, h);
  *lo = l, *hi = h;
}

// col (K, L = (oh1 - oh0) * Wo) from one group's input planes x (Cg, H, W), output rows [oh0, oh1).
// Row (c, i, j) of col holds x[c, oh * sh - ph + i * dh, ow * sw - pw + j * dw], 0 outside.
template <typename A, typename T>
void im2col(A* col, const T* x, const Geom& g, int64_t oh0, int64_t oh1, bool par) {
  const int64_t L = (oh1 - oh0) * g.Wo;
  for_channels(g.Cg, par, g.kh * g.kw * L, [&](int64_t c) {
    const T* plane = x + c * g.H * g.W;
    for (int64_t i = 0; i < g.kh; ++i) {
      for (int64_t j = 0; j < g.kw; ++j) {
        A* row = col + ((c * g.kh + i) * g.kw + j) * L;
        int64_t lo, hi;
        valid_cols(g, j, &lo, &hi);
        const int64_t off = j * g.dw - g.pw;
        for (int64_t oh = oh0; oh < oh1; ++oh) {
          A* dst = row + (oh - oh0) * g.Wo;
          const int64_t ih = oh * g.sh - g.ph + i * g.dh;
          if (ih < 0 || ih >= g.H) {
            std::fill(dst, dst + g.Wo, A(0));
            continue;
          }
          const T* src = plane + ih * g.W;
          std::fill(dst, dst + lo, A(0));
          if (g.sw == 1) {
            for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = cpu::cast<A>(src[ow + off]);
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = cpu::cast<A>(src[ow * g.sw + off]);
          }
          std::fill(dst + hi, dst + g.Wo, A(0));
        }
      }
    }
  });
}

// The adjoint of im2col: adds col (K, L) into the planes x (Cg, H, W) for output rows [oh0, oh1).
template <typename A>
void col2im(A* x, const A* col, const Geom& g, int64_t oh0, int64_t oh1, bool par) {
  const int64_t L = (oh1 - oh0) * g.Wo;
  for_channels(g.Cg, par, g.kh * g.kw * L, [&](int64_t c) {
    A* plane = x + c * g.H * g.W;
    for (int64_t i = 0; i < g.kh; ++i) {
      for (int64_t j = 0; j < g.kw; ++j) {
        const A* row = col + ((c * g.kh + i) * g.kw + j) * L;
        int64_t lo, hi;
        valid_cols(g, j, &lo, &hi);
        const int64_t off = j * g.dw - g.pw;
        for (int64_t oh = oh0; oh < oh1; ++oh) {
          const int64_t ih = oh * g.sh - g.ph + i * g.dh;
          if (ih < 0 || ih >= g.H) continue;
          const A* src = row + (oh - oh0) * g.Wo;
          A* dst = plane + ih * g.W;
          if (g.sw == 1) {
            for (int64_t ow = lo; ow < hi; ++ow) dst[ow + off] += src[ow];
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) dst[ow * g.sw + off] += src[ow];
          }
        }
      }
    }
  });
}

// dst (R, L) = cast(src rows of length L at row stride lds).
template <typename D, typename S>
void cast_rows(D* dst, const S* src, int64_t R, int64_t L, int64_t lds) {
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t l = 0; l < L; ++l) dst[r * L + l] = cpu::cast<D>(src[r * lds + l]);
  }
}

// The weight as A: the tensor's own memory for f32/f64, an f32 copy for f16/bf16.
template <typename T, typename A = cpu::acc_t<T>>
const A* weight_as_acc(const Tensor& w, std::vector<A>* copy) {
  const T* wp = static_cast<const T*>(w.data_ptr());
  if constexpr (std::is_same_v<T, A>) {
    return wp;
  } else {
    copy->resize(static_cast<size_t>(w.numel()));
    for (int64_t i = 0; i < w.numel(); ++i) (*copy)[i] = cpu::cast<A>(wp[i]);
    return copy->data();
  }
}

template <typename T>
void conv_fwd(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, const Geom& g) {
  using A = cpu::acc_t<T>;
  constexpr bool same = std::is_same_v<T, A>;
  const T* xp = static_cast<const T*>(x.data_ptr());
  T* yp = static_cast<T*>(y.data_ptr());
  std::vector<A> wcopy, bcopy;
  const A* wa = weight_as_acc<T>(w, &wcopy);
  const A* ba = nullptr;
  if (bias.defined()) ba = weight_as_acc<T>(bias, &bcopy);
  const bool direct = same && g.direct;
  const Plan pl = make_plan(g.N * g.G);
  run_plan(pl, [&](int64_t b, int64_t e, int64_t) {
    std::vector<A> col(direct ? 0 : static_cast<size_t>(g.K * g.rows * g.Wo));
    std::vector<A> out(same ? 0 : static_cast<size_t>(g.Og * g.rows * g.Wo));
    for (int64_t item = b; item < e; ++item) {
      const int64_t n = item / g.G, gi = item % g.G;
      const T* xg = xp + (n * g.C + gi * g.Cg) * g.H * g.W;
      T* yg = yp + (n * g.O + gi * g.Og) * g.P;
      const A* wg = wa + gi * g.Og * g.K;
      for (int64_t oh0 = 0; oh0 < g.Ho; oh0 += g.rows) {
        const int64_t oh1 = std::min(g.Ho, oh0 + g.rows), L = (oh1 - oh0) * g.Wo;
        Op<A> bm{nullptr, L, false};
        if constexpr (same) {
          if (direct) bm = Op<A>{reinterpret_cast<const A*>(xg) + oh0 * g.Wo, g.P, false};
        }
        if (!direct) {
          im2col<A, T>(col.data(), xg, g, oh0, oh1, pl.inner_parallel);
          bm.p = col.data();
        }
        if constexpr (same) {
          A* c = reinterpret_cast<A*>(yg) + oh0 * g.Wo;
          mm<A>(c, g.P, Op<A>{wg, g.K, false}, bm, g.Og, L, g.K, 0.0);
          if (ba) {
            for (int64_t o = 0; o < g.Og; ++o) {
              const A bv = ba[gi * g.Og + o];
              for (int64_t l = 0; l < L; ++l) c[o * g.P + l] += bv;
            }
          }
        } else {
          mm<A>(out.data(), L, Op<A>{wg, g.K, false}, bm, g.Og, L, g.K, 0.0);
          for (int64_t o = 0; o < g.Og; ++o) {
            const A bv = ba ? ba[gi * g.Og + o] : A(0);
            T* dst = yg + o * g.P + oh0 * g.Wo;
            const A* src = out.data() + o * L;
            for (int64_t l = 0; l < L; ++l) dst[l] = cpu::cast<T>(src[l] + bv);
          }
        }
      }
    }
  });
}

template <typename T>
void conv_bwd_input(const Tensor& gx, const Tensor& gy, const Tensor& w, const Geom& g) {
  using A = cpu::acc_t<T>;
  constexpr bool same = std::is_same_v<T, A>;
  const T* gyp = static_cast<const T*>(gy.data_ptr());
  T* gxp = static_cast<T*>(gx.data_ptr());
  std::vector<A> wcopy;
  const A* wa = weight_as_acc<T>(w, &wcopy);
  const bool direct = same && g.direct;
  const int64_t plane = g.Cg * g.H * g.W;
  const Plan pl = make_plan(g.N * g.G);
  run_plan(pl, [&](int64_t b, int64_t e, int64_t) {
    std::vector<A> gcol(direct ? 0 : static_cast<size_t>(g.K * g.rows * g.Wo));
    std::vector<A> gyc(same ? 0 : static_cast<size_t>(g.Og * g.rows * g.Wo));
    std::vector<A> acc(same ? 0 : static_cast<size_t>(plane));
    for (int64_t item = b; item < e; ++item) {
      const int64_t n = item / g.G, gi = item % g.G;
      const T* gyg = gyp + (n * g.O + gi * g.Og) * g.P;
      T* gxg = gxp + (n * g.C + gi * g.Cg) * g.H * g.W;
      A* dst = same ? reinterpret_cast<A*>(gxg) : acc.data();
      const Op<A> wt{wa + gi * g.Og * g.K, g.K, true};  // W_g^T (K, Og)
      if (direct) {  // gx_g (Cg, HW) = W_g^T @ gy_g
        mm<A>(dst, g.P, wt, Op<A>{reinterpret_cast<const A*>(gyg), g.P, false}, g.K, g.P, g.Og, 0.0);
        continue;
      }
      std::fill(dst, dst + plane, A(0));
      for (int64_t oh0 = 0; oh0 < g.Ho; oh0 += g.rows) {
        const int64_t oh1 = std::min(g.Ho, oh0 + g.rows), L = (oh1 - oh0) * g.Wo;
        Op<A> gm{nullptr, g.P, false};
        if constexpr (same) {
          gm.p = reinterpret_cast<const A*>(gyg) + oh0 * g.Wo;
        } else {
          cast_rows(gyc.data(), gyg + oh0 * g.Wo, g.Og, L, g.P);
          gm = Op<A>{gyc.data(), L, false};
        }
        mm<A>(gcol.data(), L, wt, gm, g.K, L, g.Og, 0.0);
        col2im<A>(dst, gcol.data(), g, oh0, oh1, pl.inner_parallel);
      }
      if constexpr (!same) {
        for (int64_t i = 0; i < plane; ++i) gxg[i] = cpu::cast<T>(acc[i]);
      }
    }
  });
}

template <typename T>
void conv_bwd_weight(const Tensor& gw, const Tensor& gy, const Tensor& x, const Geom& g) {
  using A = cpu::acc_t<T>;
  constexpr bool same = std::is_same_v<T, A>;
  const T* gyp = static_cast<const T*>(gy.data_ptr());
  const T* xp = static_cast<const T*>(x.data_ptr());
  T* gwp = static_cast<T*>(gw.data_ptr());
  const bool direct = same && g.direct;
  const int64_t wsize = g.O * g.K;
  const Plan pl = make_plan(g.N * g.G);
  // One accumulator per chunk, summed in chunk order (deterministic for a given thread count).
  // A single serial chunk accumulates straight into gw when it has the compute type.
  const bool into_gw = same && pl.chunks == 1;
  std::vector<std::vector<A>> accs(static_cast<size_t>(into_gw ? 0 : pl.chunks));
  if (into_gw) std::fill(gwp, gwp + wsize, T(0));
  run_plan(pl, [&](int64_t b, int64_t e, int64_t chunk) {
    A* acc = nullptr;
    if (into_gw) {
      if constexpr (same) acc = gwp;
    } else {
      accs[chunk].assign(static_cast<size_t>(wsize), A(0));
      acc = accs[chunk].data();
    }
    std::vector<A> col(direct ? 0 : static_cast<size_t>(g.K * g.rows * g.Wo));
    std::vector<A> gyc(same ? 0 : static_cast<size_t>(g.Og * g.rows * g.Wo));
    for (int64_t item = b; item < e; ++item) {
      const int64_t n = item / g.G, gi = item % g.G;
      const T* gyg = gyp + (n * g.O + gi * g.Og) * g.P;
      const T* xg = xp + (n * g.C + gi * g.Cg) * g.H * g.W;
      A* accg = acc + gi * g.Og * g.K;
      for (int64_t oh0 = 0; oh0 < g.Ho; oh0 += g.rows) {
        const int64_t oh1 = std::min(g.Ho, oh0 + g.rows), L = (oh1 - oh0) * g.Wo;
        Op<A> gm{nullptr, g.P, false};  // gy_g chunk (Og, L)
        Op<A> ct{nullptr, 0, true};     // col^T (L, K)
        if constexpr (same) {
          gm.p = reinterpret_cast<const A*>(gyg) + oh0 * g.Wo;
          if (direct) ct = Op<A>{reinterpret_cast<const A*>(xg) + oh0 * g.Wo, g.P, true};
        } else {
          cast_rows(gyc.data(), gyg + oh0 * g.Wo, g.Og, L, g.P);
          gm = Op<A>{gyc.data(), L, false};
        }
        if (!direct) {
          im2col<A, T>(col.data(), xg, g, oh0, oh1, pl.inner_parallel);
          ct = Op<A>{col.data(), L, true};
        }
        mm<A>(accg, g.K, gm, ct, g.Og, g.K, L, 1.0);
      }
    }
  });
  if (into_gw) return;
  cpu::parallel_for(wsize, cpu::kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      A s = A(0);
      for (const auto& a : accs) s += a[i];
      gwp[i] = cpu::cast<T>(s);
    }
  });
}

void check_contiguous(const char* op, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts) {
    if (t->defined()) RG_CHECK(t->is_contiguous(), op, ": kernel expects contiguous tensors, got ", t->describe());
  }
}

}  // namespace

void conv2d_cpu(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, const ConvParams& p) {
  check_contiguous("conv2d", {&y, &x, &w, &bias});
  const Geom g = make_geom(x.sizes(), w.sizes(), y.sizes(), p);
  if (y.numel() == 0) return;
  RG_DISPATCH_FLOAT(x.dtype(), "conv2d", [&] { conv_fwd<scalar_t>(y, x, w, bias, g); });
}

void conv2d_bwd_input_cpu(const Tensor& gx, const Tensor& gy, const Tensor& w, const ConvParams& p) {
  check_contiguous("conv2d_bwd_input", {&gx, &gy, &w});
  const Geom g = make_geom(gx.sizes(), w.sizes(), gy.sizes(), p);
  if (gx.numel() == 0) return;
  if (gy.numel() == 0) {
    fill_cpu(gx, 0.0);
    return;
  }
  RG_DISPATCH_FLOAT(gx.dtype(), "conv2d_bwd_input", [&] { conv_bwd_input<scalar_t>(gx, gy, w, g); });
}

void conv2d_bwd_weight_cpu(const Tensor& gw, const Tensor& gy, const Tensor& x, const ConvParams& p) {
  check_contiguous("conv2d_bwd_weight", {&gw, &gy, &x});
  const Geom g = make_geom(x.sizes(), gw.sizes(), gy.sizes(), p);
  if (gw.numel() == 0) return;
  if (gy.numel() == 0) {
    fill_cpu(gw, 0.0);
    return;
  }
  RG_DISPATCH_FLOAT(gw.dtype(), "conv2d_bwd_weight", [&] { conv_bwd_weight<scalar_t>(gw, gy, x, g); });
}

}  // namespace rg
