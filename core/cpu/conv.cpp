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

#include <atomic>

#include "core/cpu/conv_path.h"
#include "core/cpu/loops.h"
#include "core/cpu/sgemm.h"
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

// The adjoint of im2col: adds col (K, L; row stride ld, L by default) into the planes x (Cg, H, W)
// for output rows [oh0, oh1).
template <typename A>
void col2im(A* x, const A* col, const Geom& g, int64_t oh0, int64_t oh1, bool par, int64_t ld = 0) {
  const int64_t L = (oh1 - oh0) * g.Wo;
  if (ld == 0) ld = L;
  for_channels(g.Cg, par, g.kh * g.kw * L, [&](int64_t c) {
    A* plane = x + c * g.H * g.W;
    for (int64_t i = 0; i < g.kh; ++i) {
      for (int64_t j = 0; j < g.kw; ++j) {
        const A* row = col + ((c * g.kh + i) * g.kw + j) * ld;
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

// ---- f32 over our GEMM (Note [CPU conv over sgemm])

// Note [CPU conv over sgemm]
// Where core/cpu/sgemm.h has its micro-kernel, f32 convolutions run group by group and block by
// block, every GEMM threaded inside (sgemm splits its output across threads) rather than images
// across threads. The GEMM's columns are output positions q of a block (Block): several whole
// images when an image has fewer than kMinCols positions, so that the packed weight is reused
// across images, else output rows of one image.
// - forward: y_g (Og, Q) = W_g (Og, K) @ col (K, Q); the B packer (im_col_pack) builds the column
//   panels straight from the image, so im2col is never written out;
// - input gradient: gcol (K, Q) = W_g^T @ gy_g (Og, Q) (gy packed by planes_pack), then col2im;
// - weight gradient: gw_g (Og, K) = sum over blocks of gy_g (Og, Q) @ col (K, Q)^T, in block order:
//   deterministic, and no per-thread copies of the weight gradient.
// Column and gradient buffers stay under kColBudget floats.
constexpr int64_t kMinCols = 2048;
constexpr int64_t kL2Budget = int64_t{96} << 10;  // floats of buffer per block when a thread works alone

// Images [n0, n1) x output rows [oh0, oh1): more than one image only with all rows.
struct Block {
  int64_t n0, n1, oh0, oh1;
  int64_t rows() const { return oh1 - oh0; }
};
// f(block) for row blocks of image n, each with at most `budget` floats of buffer at `per_col` per column.
template <typename F>
void for_image_rows(const Geom& g, int64_t n, int64_t per_col, int64_t budget, F&& f) {
  const int64_t cap = per_col > 0 ? std::max<int64_t>(1, budget / per_col) : INT64_MAX;  // columns
  const int64_t rows = std::clamp<int64_t>(cap / std::max<int64_t>(g.Wo, 1), 1, std::max<int64_t>(g.Ho, 1));
  for (int64_t oh0 = 0; oh0 < g.Ho; oh0 += rows) f(Block{n, n + 1, oh0, std::min(g.Ho, oh0 + rows)});
}
// f(block) for the blocks covering every output position; `per_col` floats of buffer per column,
// at most `budget` floats in all.
template <typename F>
void for_blocks(const Geom& g, int64_t per_col, F&& f, int64_t budget = kColBudget) {
  const int64_t cap = per_col > 0 ? std::max<int64_t>(1, budget / per_col) : INT64_MAX;  // columns
  if (g.P >= kMinCols || g.N == 1 || g.P * 2 > cap) {
    for (int64_t n = 0; n < g.N; ++n) for_image_rows(g, n, per_col, budget, f);
    return;
  }
  const int64_t per = std::clamp<int64_t>((kMinCols + g.P - 1) / g.P, 1, std::min(g.N, cap / g.P));
  for (int64_t n0 = 0; n0 < g.N; n0 += per) f(Block{n0, std::min(g.N, n0 + per), 0, g.Ho});
}

// Contiguous runs of a block's columns [q, q + len): image n, output row oh, columns from ow0.
struct Run {
  int64_t n, oh, ow0, len, at;  // `at`: offset of the run within the requested columns
};
int64_t block_runs(const Geom& g, const Block& b, int64_t q, int64_t len, Run* out) {
  const int64_t per_img = b.rows() * g.Wo;
  int64_t k = 0, at = 0;
  while (at < len) {
    const int64_t qq = q + at, n = b.n0 + qq / per_img, r = qq % per_img;
    const int64_t oh = b.oh0 + r / g.Wo, ow0 = r % g.Wo;
    const int64_t l = std::min(len - at, g.Wo - ow0);
    out[k++] = Run{n, oh, ow0, l, at};
    at += l;
  }
  return k;
}
constexpr int64_t kMaxRuns = cpu::kSgemmNR + 1;  // a panel's columns span at most NR rows (Wo >= 1)

// Kernel column j's valid output columns [lo, hi) and input offset (valid_cols), per j.
struct TapCols {
  int64_t lo, hi, off;
};
std::vector<TapCols> tap_cols(const Geom& g) {
  std::vector<TapCols> t(static_cast<size_t>(g.kw));
  for (int64_t j = 0; j < g.kw; ++j) {
    valid_cols(g, j, &t[j].lo, &t[j].hi);
    t[j].off = j * g.dw - g.pw;
  }
  return t;
}
// The (c, i, j) of column-matrix rows k, k + 1, ... without a division per row.
struct Tap {
  int64_t c, i, j;
  Tap(const Geom& g, int64_t k) : c(k / (g.kh * g.kw)), i(k % (g.kh * g.kw) / g.kw), j(k % g.kw) {}
  void next(const Geom& g) {
    if (++j < g.kw) return;
    j = 0;
    if (++i < g.kh) return;
    i = 0;
    ++c;
  }
};

// d[0, len) = row (c, i, j) of the block's column matrix over the runs' columns, from the images
// x (N, C, H, W) of group gi.
void im_col_row(const float* x, const Geom& g, int64_t gi, const Run* runs, int64_t nruns, const Tap& t,
                const TapCols& tc, float* d) {
  for (int64_t u = 0; u < nruns; ++u) {
    const Run& ru = runs[u];
    float* dst = d + ru.at;
    const int64_t ih = ru.oh * g.sh - g.ph + t.i * g.dh;
    if (ih < 0 || ih >= g.H) {
      cpu::zero_short(dst, ru.len);
      continue;
    }
    const float* src = x + ((ru.n * g.C + gi * g.Cg + t.c) * g.H + ih) * g.W;
    const int64_t a = std::clamp(tc.lo, ru.ow0, ru.ow0 + ru.len), b = std::clamp(tc.hi, a, ru.ow0 + ru.len);
    cpu::zero_short(dst, a - ru.ow0);
    if (g.sw == 1) {
      cpu::copy_short(dst + (a - ru.ow0), src + a + tc.off, b - a);
    } else {
      for (int64_t ow = a; ow < b; ++ow) dst[ow - ru.ow0] = src[ow * g.sw + tc.off];
    }
    cpu::zero_short(dst + (b - ru.ow0), ru.ow0 + ru.len - b);
  }
}

struct ImColCtx {
  const float* x;
  const Geom* g;
  int64_t gi;
  Block b;
  const TapCols* tc;  // tap_cols(*g)
};
// PackB: the block's column matrix (K, Q) of the images, packed without writing it out.
void im_col_pack(const void* p, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
  const auto& cx = *static_cast<const ImColCtx*>(p);
  Run runs[kMaxRuns];
  for (int64_t q = 0; q < nc; q += cpu::kSgemmNR, dst += kc * cpu::kSgemmNR) {
    const int64_t cols = std::min(cpu::kSgemmNR, nc - q);
    const int64_t nr = block_runs(*cx.g, cx.b, j0 + q, cols, runs);
    Tap t(*cx.g, k0);
    for (int64_t k = 0; k < kc; ++k, t.next(*cx.g)) {
      float* d = dst + k * cpu::kSgemmNR;
      im_col_row(cx.x, *cx.g, cx.gi, runs, nr, t, cx.tc[t.j], d);
      cpu::zero_short(d + cols, cpu::kSgemmNR - cols);
    }
  }
}

struct PlanesCtx {
  const float* y;  // (N, O, Ho, Wo)
  const Geom* g;
  int64_t gi;
  Block b;
};
// PackB: gy_g over the block's columns, (Og, Q).
void planes_pack(const void* p, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
  const auto& cx = *static_cast<const PlanesCtx*>(p);
  const Geom& g = *cx.g;
  Run runs[kMaxRuns];
  for (int64_t q = 0; q < nc; q += cpu::kSgemmNR, dst += kc * cpu::kSgemmNR) {
    const int64_t cols = std::min(cpu::kSgemmNR, nc - q);
    const int64_t nr = block_runs(g, cx.b, j0 + q, cols, runs);
    for (int64_t k = 0; k < kc; ++k) {
      float* d = dst + k * cpu::kSgemmNR;
      for (int64_t u = 0; u < nr; ++u) {
        const Run& ru = runs[u];
        const float* src = cx.y + (ru.n * g.O + cx.gi * g.Og + k0 + k) * g.P + ru.oh * g.Wo + ru.ow0;
        cpu::copy_short(d + ru.at, src, ru.len);
      }
      cpu::zero_short(d + cols, cpu::kSgemmNR - cols);
    }
  }
}

int gemm_threads() { return omp_in_parallel() ? 1 : std::max(1, omp_get_max_threads()); }
int64_t cols_of(const Geom& g, const Block& b) { return (b.n1 - b.n0) * b.rows() * g.Wo; }

// Note [CPU direct convolution]
// A stride-1 convolution needs no column matrix at all: on a zero-padded copy of the image
// (Hp x Wp per channel), output position (oh, ow) of tap (c, i, j) reads xpad[c, oh + i dh, ow + j dw],
// so if the outputs are computed on the padded width (column q = oh * Wp + ow, ow < Wp), row
// (c, i, j) of the column matrix is the padded image itself shifted by c Hp Wp + i dh Wp + j dw:
// the GEMM reads it in place (sgemm_offsets), no im2col and no packing of B. The Wp - Wo extra
// columns of each output row are computed and dropped when the result is copied into y, so the
// path is taken for rows of at least kDirectMinWo outputs (at most ~8% extra for a 3x3 kernel).
// The input gradient of a stride-1 convolution is one too (transposed_geom). The weight gradient
// stays on the column-matrix path: read in place, its transposed B (Ho Wp, K) was slower than the
// blocked im2col (YOLOv3-tiny's 416 and 208 layers 1.3x slower, the others even).
constexpr int64_t kDirectMinWo = 24;
std::atomic<cpu::ConvPath> g_conv_path{cpu::ConvPath::Auto};
bool direct_fits(const Geom& g) {
  return g_conv_path.load(std::memory_order_relaxed) == cpu::ConvPath::Auto && g.sh == 1 && g.sw == 1 &&
         g.Wo >= kDirectMinWo;
}

// The padded planes of one image's group and the row offsets of its column matrix.
struct PaddedImage {
  int64_t Hp, Wp, plane;
  std::vector<int64_t> off;  // (K): row (c, i, j) at c plane + i dh Wp + j dw
  std::vector<float> buf;    // (Cg, Hp, Wp) + slack, borders zero
  explicit PaddedImage(const Geom& g)
      : Hp(g.H + 2 * g.ph), Wp(g.W + 2 * g.pw), plane(Hp * Wp), off(static_cast<size_t>(g.K)) {
    for (Tap t(g, 0); t.c < g.Cg; t.next(g)) {
      off[static_cast<size_t>((t.c * g.kh + t.i) * g.kw + t.j)] = t.c * plane + t.i * g.dh * Wp + t.j * g.dw;
    }
    // reads reach (kw - 1) dw + NR - 1 past the last plane's end (sgemm_offsets)
    buf.assign(static_cast<size_t>(g.Cg * plane + (g.kw - 1) * g.dw + cpu::kSgemmNR), 0.f);
  }
  // Copies planes (Cg, H, W) into the interior; the borders stay zero.
  void fill(const float* planes, const Geom& g, bool par) {
    for_channels(g.Cg, par, g.H * g.W, [&](int64_t c) {
      for (int64_t h = 0; h < g.H; ++h) {
        std::memcpy(buf.data() + c * plane + (h + g.ph) * Wp + g.pw, planes + (c * g.H + h) * g.W,
                    static_cast<size_t>(g.W) * sizeof(float));
      }
    });
  }
};

// y (N, O, Ho, Wo) = conv(x (N, C, H, W), w (O, Cg, kh, kw)) + bias on the direct path.
void direct_fwd(float* yp, const float* xp, const float* wp, const float* bp, const Geom& g) {
  const int nt = gemm_threads();
  PaddedImage pad(g);
  const int64_t Q = g.Ho * pad.Wp;  // output columns on the padded width
  std::vector<float> tmp(static_cast<size_t>(g.Og * Q));
  for (int64_t n = 0; n < g.N; ++n) {
    for (int64_t gi = 0; gi < g.G; ++gi) {
      pad.fill(xp + (n * g.C + gi * g.Cg) * g.H * g.W, g, nt > 1);
      cpu::sgemm_offsets(g.Og, Q, g.K, 1.f, cpu::MatRef{wp + gi * g.Og * g.K, g.K, 1}, pad.buf.data(), pad.off.data(),
                         0.f, tmp.data(), Q, nt);
      cpu::parallel_for(g.Og, std::max<int64_t>(1, cpu::kGrain / g.P), [&](int64_t o0, int64_t o1) {
        for (int64_t o = o0; o < o1; ++o) {
          const float bv = bp ? bp[gi * g.Og + o] : 0.f;
          float* dst = yp + (n * g.O + gi * g.Og + o) * g.P;
          for (int64_t oh = 0; oh < g.Ho; ++oh) {
            const float* src = tmp.data() + o * Q + oh * pad.Wp;
            for (int64_t ow = 0; ow < g.Wo; ++ow) dst[oh * g.Wo + ow] = src[ow] + bv;
          }
        }
      });
    }
  }
}

// The input gradient of a stride-1 convolution is itself a stride-1 convolution of gy with the
// kernel flipped and its channel axes swapped, padded by dilation (k - 1) - padding: the geometry
// of that convolution, when it can take the direct path.
bool transposed_geom(const Geom& g, Geom* t) {
  const int64_t qh = g.dh * (g.kh - 1) - g.ph, qw = g.dw * (g.kw - 1) - g.pw;
  if (g.sh != 1 || g.sw != 1 || qh < 0 || qw < 0) return false;
  ConvParams p;
  p.padding[0] = qh, p.padding[1] = qw, p.dilation[0] = g.dh, p.dilation[1] = g.dw, p.groups = g.G;
  *t = make_geom({g.N, g.O, g.Ho, g.Wo}, {g.C, g.Og, g.kh, g.kw}, {g.N, g.C, g.H, g.W}, p);
  return direct_fits(*t);
}

// gx = conv(gy, w flipped and transposed per group) on the direct path (transposed_geom).
void direct_bwd_input(float* gxp, const float* gyp, const float* wp, const Geom& g, const Geom& t) {
  std::vector<float> wt(static_cast<size_t>(g.O * g.K));  // (C, Og, kh, kw)
  const int64_t kk = g.kh * g.kw;
  for (int64_t gi = 0; gi < g.G; ++gi) {
    for (int64_t o = 0; o < g.Og; ++o) {
      for (int64_t c = 0; c < g.Cg; ++c) {
        const float* src = wp + ((gi * g.Og + o) * g.Cg + c) * kk;
        float* dst = wt.data() + ((gi * g.Cg + c) * g.Og + o) * kk;
        for (int64_t r = 0; r < kk; ++r) dst[r] = src[kk - 1 - r];
      }
    }
  }
  direct_fwd(gxp, gyp, wt.data(), nullptr, t);
}

void conv_fwd_f32(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, const Geom& g) {
  const float* xp = x.data<float>();
  const float* wp = w.data<float>();
  const float* bp = bias.defined() ? bias.data<float>() : nullptr;
  float* yp = y.data<float>();
  const int nt = gemm_threads();
  const std::vector<TapCols> tc = tap_cols(g);
  std::vector<float> tmp;
  for (int64_t gi = 0; gi < g.G; ++gi) {
    const cpu::MatRef wg{wp + gi * g.Og * g.K, g.K, 1};
    for_blocks(g, 0, [&](const Block& b) {
      const ImColCtx cx{xp, &g, gi, b, tc.data()};
      const int64_t Q = cols_of(g, b);
      const cpu::PackB pack{&cx, &im_col_pack};
      if (b.n1 - b.n0 == 1) {  // straight into y, rows [oh0, oh1) of image n0
        float* c = yp + (b.n0 * g.O + gi * g.Og) * g.P + b.oh0 * g.Wo;
        if (bp) {
          for (int64_t o = 0; o < g.Og; ++o) std::fill(c + o * g.P, c + o * g.P + Q, bp[gi * g.Og + o]);
        }
        cpu::sgemm(g.Og, Q, g.K, 1.f, wg, pack, bp ? 1.f : 0.f, c, g.P, nt);
        return;
      }
      tmp.resize(static_cast<size_t>(g.Og * Q));
      cpu::sgemm(g.Og, Q, g.K, 1.f, wg, pack, 0.f, tmp.data(), Q, nt);
      cpu::parallel_for(g.Og * (b.n1 - b.n0), std::max<int64_t>(1, cpu::kGrain / g.P), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t n = r / g.Og, o = r % g.Og;
          const float bv = bp ? bp[gi * g.Og + o] : 0.f;
          const float* src = tmp.data() + o * Q + n * g.P;
          float* dst = yp + ((b.n0 + n) * g.O + gi * g.Og + o) * g.P;
          for (int64_t l = 0; l < g.P; ++l) dst[l] = src[l] + bv;
        }
      });
    });
  }
}

// gcol (K, Q) = W_g^T @ gy_g over one block's columns, added into the images' planes by col2im.
void input_grad_block(float* gxp, const float* gyp, const float* wp, const Geom& g, int64_t gi, const Block& b,
                      int threads, std::vector<float>* gcol) {
  const cpu::MatRef wt{wp + gi * g.Og * g.K, 1, g.K};  // W_g^T (K, Og)
  const PlanesCtx cx{gyp, &g, gi, b};
  const int64_t Q = cols_of(g, b), L = b.rows() * g.Wo;
  gcol->resize(static_cast<size_t>(g.K * Q));
  cpu::sgemm(g.K, Q, g.Og, 1.f, wt, cpu::PackB{&cx, &planes_pack}, 0.f, gcol->data(), Q, threads);
  for (int64_t n = b.n0; n < b.n1; ++n) {
    float* planes = gxp + (n * g.C + gi * g.Cg) * g.H * g.W;
    col2im<float>(planes, gcol->data() + (n - b.n0) * L, g, b.oh0, b.oh1, threads > 1, Q);
  }
}

void conv_bwd_input_f32(const Tensor& gx, const Tensor& gy, const Tensor& w, const Geom& g) {
  const float* gyp = gy.data<float>();
  const float* wp = w.data<float>();
  float* gxp = gx.data<float>();
  const int nt = gemm_threads();
  if (nt > 1 && g.N >= nt && g.P >= kMinCols) {
    // Large images, at least one per thread: each thread owns whole images (their planes are
    // written by it alone) and goes through them in L2-sized blocks, its GEMMs single-threaded.
#pragma omp parallel for schedule(static, 1) num_threads(nt)
    for (int64_t t = 0; t < nt; ++t) {
      std::vector<float> gcol;
      for (int64_t n = g.N * t / nt; n < g.N * (t + 1) / nt; ++n) {
        std::fill(gxp + n * g.C * g.H * g.W, gxp + (n + 1) * g.C * g.H * g.W, 0.f);
        for (int64_t gi = 0; gi < g.G; ++gi) {
          for_image_rows(g, n, g.K, kL2Budget,
                         [&](const Block& b) { input_grad_block(gxp, gyp, wp, g, gi, b, 1, &gcol); });
        }
      }
    }
    return;
  }
  fill_cpu(gx, 0.0);
  std::vector<float> gcol;
  for (int64_t gi = 0; gi < g.G; ++gi) {
    for_blocks(g, g.K, [&](const Block& b) { input_grad_block(gxp, gyp, wp, g, gi, b, nt, &gcol); });
  }
}

// acc_g (Og, K) = [acc_g +] gy_g (Og, Q) @ col (K, Q)^T over one block's columns Q; `col` and `gyc`
// are scratch. The GEMM's packer reads the column matrix transposed.
void weight_grad_block(const float* gyp, const float* xp, const Geom& g, int64_t gi, const Block& b, bool accumulate,
                       float* acc, int threads, bool par, std::vector<float>* col, std::vector<float>* gyc) {
  const int64_t Q = cols_of(g, b), L = b.rows() * g.Wo;
  cpu::MatRef a{gyp + (b.n0 * g.O + gi * g.Og) * g.P + b.oh0 * g.Wo, g.P, 1};  // in place for one image
  if (b.n1 - b.n0 > 1) {
    gyc->resize(static_cast<size_t>(g.Og * Q));
    for (int64_t o = 0; o < g.Og; ++o) {
      for (int64_t n = b.n0; n < b.n1; ++n) {
        std::memcpy(gyc->data() + o * Q + (n - b.n0) * L, gyp + (n * g.O + gi * g.Og + o) * g.P,
                    static_cast<size_t>(L) * sizeof(float));
      }
    }
    a = cpu::MatRef{gyc->data(), Q, 1};
  }
  // B = col^T (Q, K): read in place from the image for a 1x1 stride-1 unpadded convolution over one
  // image, else the block's column matrix written out (rows split across threads when `par`).
  cpu::MatRef bt{xp + (b.n0 * g.C + gi * g.Cg) * g.H * g.W + b.oh0 * g.Wo, 1, g.P};
  if (!g.direct || b.n1 - b.n0 > 1) {
    col->resize(static_cast<size_t>(g.K * Q));
    float* cp = col->data();
    const std::vector<TapCols> tc = tap_cols(g);
    auto rows = [&](int64_t k0, int64_t k1) {
      std::vector<Run> runs(static_cast<size_t>(Q / std::max<int64_t>(g.Wo, 1) + 2));
      const int64_t nr = block_runs(g, b, 0, Q, runs.data());
      Tap t(g, k0);
      for (int64_t k = k0; k < k1; ++k, t.next(g)) im_col_row(xp, g, gi, runs.data(), nr, t, tc[t.j], cp + k * Q);
    };
    if (par) {
      cpu::parallel_for(g.K, std::max<int64_t>(1, cpu::kGrain / std::max<int64_t>(Q, 1)), rows);
    } else {
      rows(0, g.K);
    }
    bt = cpu::MatRef{cp, 1, Q};
  }
  cpu::sgemm(g.Og, g.K, Q, 1.f, a, bt, accumulate ? 1.f : 0.f, acc, g.K, threads);
}

// Weight gradients of at most this many floats per group are summed per thread over an equal
// share of the column blocks (blocks sized for L2), then added up in thread order; larger ones
// go block by block with the GEMM threaded inside.
constexpr int64_t kPrivateGradMax = int64_t{1} << 17;

void conv_bwd_weight_f32(const Tensor& gw, const Tensor& gy, const Tensor& x, const Geom& g) {
  const float* gyp = gy.data<float>();
  const float* xp = x.data<float>();
  float* gwp = gw.data<float>();
  const int nt = gemm_threads();
  const int64_t wsize = g.Og * g.K;
  for (int64_t gi = 0; gi < g.G; ++gi) {
    float* gwg = gwp + gi * wsize;
    std::vector<Block> blocks;
    const bool private_acc = nt > 1 && wsize <= kPrivateGradMax;
    for_blocks(g, g.K + g.Og, [&](const Block& b) { blocks.push_back(b); }, private_acc ? kL2Budget : kColBudget);
    if (!private_acc || blocks.size() < 2) {
      std::vector<float> col, gyc;
      for (size_t i = 0; i < blocks.size(); ++i) {
        weight_grad_block(gyp, xp, g, gi, blocks[i], i > 0, gwg, nt, nt > 1, &col, &gyc);
      }
      continue;
    }
    const int64_t T = std::min<int64_t>(nt, static_cast<int64_t>(blocks.size()));
    std::vector<float> accs(static_cast<size_t>(T * wsize));
#pragma omp parallel for schedule(static, 1) num_threads(T)
    for (int64_t t = 0; t < T; ++t) {
      std::vector<float> col, gyc;
      const auto nb = static_cast<int64_t>(blocks.size());
      for (int64_t i = nb * t / T; i < nb * (t + 1) / T; ++i) {
        weight_grad_block(gyp, xp, g, gi, blocks[static_cast<size_t>(i)], i > nb * t / T, accs.data() + t * wsize, 1,
                          false, &col, &gyc);
      }
    }
    cpu::parallel_for(wsize, cpu::kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        float s = 0.f;
        for (int64_t t = 0; t < T; ++t) s += accs[static_cast<size_t>(t * wsize + i)];
        gwg[i] = s;
      }
    });
  }
}

void check_contiguous(const char* op, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts) {
    if (t->defined()) RG_CHECK(t->is_contiguous(), op, ": kernel expects contiguous tensors, got ", t->describe());
  }
}

}  // namespace

void cpu::set_conv_path(ConvPath p) { g_conv_path.store(p, std::memory_order_relaxed); }
cpu::ConvPath cpu::conv_path() { return g_conv_path.load(std::memory_order_relaxed); }

void conv2d_cpu(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, const ConvParams& p) {
  check_contiguous("conv2d", {&y, &x, &w, &bias});
  const Geom g = make_geom(x.sizes(), w.sizes(), y.sizes(), p);
  if (y.numel() == 0) return;
  if (x.dtype() == DType::f32 && cpu::sgemm_available()) {
    if (!direct_fits(g)) return conv_fwd_f32(y, x, w, bias, g);
    return direct_fwd(y.data<float>(), x.data<float>(), w.data<float>(), bias.defined() ? bias.data<float>() : nullptr,
                      g);
  }
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
  if (gx.dtype() == DType::f32 && cpu::sgemm_available()) {
    Geom t;
    if (!transposed_geom(g, &t)) return conv_bwd_input_f32(gx, gy, w, g);
    return direct_bwd_input(gx.data<float>(), gy.data<float>(), w.data<float>(), g, t);
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
  if (gw.dtype() == DType::f32 && cpu::sgemm_available()) return conv_bwd_weight_f32(gw, gy, x, g);
  RG_DISPATCH_FLOAT(gw.dtype(), "conv2d_bwd_weight", [&] { conv_bwd_weight<scalar_t>(gw, gy, x, g); });
}

}  // namespace rg
