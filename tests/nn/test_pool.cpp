// Pooling and nearest upsampling (label unit): max/avg/adaptive pooling and upsample against loops
// written here and hand-worked values (PyTorch's output sizes, ceil_mode, padding, divisors, NaN
// and tie rules, nearest indices), every float dtype, gradcheck of each, and argument errors.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "autograd/ag_util.h"
#include "nn/functional.h"

using namespace rg;
using namespace rg::agtest;
namespace F = rg::nn::functional;

namespace {

struct PoolCase {
  int64_t N, C, H, W;
  int64_t kh, kw, sh, sw, ph = 0, pw = 0, dh = 1, dw = 1;
  bool ceil = false, include_pad = true;
};

std::string case_str(const PoolCase& c) {
  return "x [" + std::to_string(c.N) + ", " + std::to_string(c.C) + ", " + std::to_string(c.H) + ", " +
         std::to_string(c.W) + "] k (" + std::to_string(c.kh) + ", " + std::to_string(c.kw) + ") s (" +
         std::to_string(c.sh) + ", " + std::to_string(c.sw) + ") p (" + std::to_string(c.ph) + ", " +
         std::to_string(c.pw) + ") d (" + std::to_string(c.dh) + ", " + std::to_string(c.dw) + ")" +
         (c.ceil ? " ceil" : "") + (c.include_pad ? "" : " exclude-pad");
}

PoolParams params_of(const PoolCase& c) {
  PoolParams p;
  p.kernel[0] = c.kh, p.kernel[1] = c.kw, p.stride[0] = c.sh, p.stride[1] = c.sw;
  p.padding[0] = c.ph, p.padding[1] = c.pw, p.dilation[0] = c.dh, p.dilation[1] = c.dw;
  p.ceil_mode = c.ceil, p.count_include_pad = c.include_pad;
  return p;
}
F::Pool2dOptions options_of(const PoolCase& c) {
  F::Pool2dOptions o;
  o.kernel = {c.kh, c.kw}, o.stride = {c.sh, c.sw}, o.padding = {c.ph, c.pw}, o.dilation = {c.dh, c.dw};
  o.ceil_mode = c.ceil, o.count_include_pad = c.include_pad;
  return o;
}

// Output size written out from PyTorch's documented formula.
int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode) {
  const double span = static_cast<double>(in + 2 * p - d * (k - 1) - 1) / static_cast<double>(s);
  int64_t out = static_cast<int64_t>(ceil_mode ? std::ceil(span) : std::floor(span)) + 1;
  if (ceil_mode && (out - 1) * s >= in + p) --out;  // the last window must start inside input or left padding
  return out;
}

// Max pooling by kernel taps in row-major tap order: the first strict maximum wins, NaN wins.
void naive_max(const PoolCase& c, const std::vector<double>& x, std::vector<double>* y, std::vector<int64_t>* ind) {
  const int64_t Ho = pool_out(c.H, c.kh, c.sh, c.ph, c.dh, c.ceil), Wo = pool_out(c.W, c.kw, c.sw, c.pw, c.dw, c.ceil);
  y->clear(), ind->clear();
  for (int64_t pl = 0; pl < c.N * c.C; ++pl)
    for (int64_t oh = 0; oh < Ho; ++oh)
      for (int64_t ow = 0; ow < Wo; ++ow) {
        double best = -std::numeric_limits<double>::infinity();
        int64_t bi = -1;
        for (int64_t i = 0; i < c.kh; ++i)
          for (int64_t j = 0; j < c.kw; ++j) {
            const int64_t ih = oh * c.sh - c.ph + i * c.dh, iw = ow * c.sw - c.pw + j * c.dw;
            if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
            const double v = x[(pl * c.H + ih) * c.W + iw];
            if (bi < 0) bi = ih * c.W + iw;
            if (v > best || std::isnan(v)) best = v, bi = ih * c.W + iw;
          }
        y->push_back(best);
        ind->push_back(bi);
      }
}

// Average pooling by kernel taps; divisor: the window clipped to input + padding, or to the input.
std::vector<double> naive_avg(const PoolCase& c, const std::vector<double>& x) {
  const int64_t Ho = pool_out(c.H, c.kh, c.sh, c.ph, 1, c.ceil), Wo = pool_out(c.W, c.kw, c.sw, c.pw, 1, c.ceil);
  std::vector<double> y;
  for (int64_t pl = 0; pl < c.N * c.C; ++pl)
    for (int64_t oh = 0; oh < Ho; ++oh)
      for (int64_t ow = 0; ow < Wo; ++ow) {
        double s = 0;
        int64_t inside = 0, padded = 0;
        for (int64_t i = 0; i < c.kh; ++i)
          for (int64_t j = 0; j < c.kw; ++j) {
            const int64_t ih = oh * c.sh - c.ph + i, iw = ow * c.sw - c.pw + j;
            if (ih < c.H + c.ph && iw < c.W + c.pw) ++padded;  // taps past the right padding never count
            if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
            s += x[(pl * c.H + ih) * c.W + iw];
            ++inside;
          }
        y.push_back(inside == 0 ? 0.0 : s / static_cast<double>(c.include_pad ? padded : inside));
      }
  return y;
}

std::vector<double> values(const Tensor& t) { return t.to(DType::f64).to_vector<double>(); }

double rel_tol(DType dt) {
  switch (dt) {
    case DType::f64: return 1e-12;
    case DType::f32: return 1e-6;
    case DType::f16: return 1e-3;
    default: return 8e-3;
  }
}
// |got - want| <= rel * (|want| + scale): scale bounds the magnitude of the summed terms.
void check_rel(const std::vector<double>& got, const std::vector<double>& want, double rel, const std::string& what,
               double scale = 2.0) {
  REQUIRE_MESSAGE(got.size() == want.size(), what, ": size ", got.size(), " vs ", want.size());
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i]) && std::isnan(got[i])) continue;
    if (std::isinf(want[i]) && got[i] == want[i]) continue;
    if (!(std::fabs(got[i] - want[i]) <= rel * (std::fabs(want[i]) + scale))) {
      if (bad < 4) MESSAGE(what, " [", i, "] got ", got[i], " want ", want[i]);
      ++bad;
    }
  }
  CHECK_MESSAGE(bad == 0, what, ": ", bad, " elements off");
}

std::vector<PoolCase> pool_cases() {
  return {
      {2, 3, 7, 9, 2, 2, 2, 2},                                // the common 2x2/2, odd sizes (floor)
      {2, 3, 7, 9, 2, 2, 2, 2, 0, 0, 1, 1, true},              // ceil_mode
      {1, 2, 8, 8, 3, 3, 2, 2, 1, 1},                          // ResNet's 3x3/2 pad 1
      {1, 2, 9, 10, 3, 3, 2, 2, 1, 1, 1, 1, true, false},      // ceil, padding, exclude pad
      {2, 2, 5, 5, 2, 2, 2, 2, 1, 1, 1, 1, true},              // ceil: last window dropped (starts in right pad)
      {1, 3, 11, 8, 3, 2, 3, 1, 1, 1, 2, 1},                   // non-square, dilation 2 (max)
      {1, 1, 13, 13, 5, 5, 1, 1, 2, 2},                        // YOLO-tiny style k5 s1 p2 (overlap)
      {3, 2, 6, 7, 3, 3, 3, 3, 1, 1, 1, 1, true, false},       // stride = kernel, ceil, exclude pad
      {1, 1, 1, 1, 1, 1, 1, 1},                                // 1x1
      {2, 3, 13, 37, 2, 2, 2, 2},                              // rows wider than a vector (2x2/2)
      {1, 2, 14, 40, 2, 2, 1, 1},                              // darknet's 2x2/1 on its -inf padded input
      {1, 2, 9, 35, 3, 3, 2, 2, 1, 1, 2, 2},                   // dilation 2 with padding, wide rows
  };
}

}  // namespace

TEST_CASE("pooling output sizes follow PyTorch's rule (hand-worked)") {
  // floor((5 + 2 - 1 - 1) / 2) + 1 = 3; ceil: ceil(5 / 2) + 1 = 4 but (4 - 1) * 2 = 6 >= 5 + 1: 3.
  PoolParams p;
  p.kernel[0] = p.kernel[1] = 2, p.stride[0] = p.stride[1] = 2, p.padding[0] = p.padding[1] = 1;
  CHECK(native::avg_pool2d(zeros({1, 1, 5, 5}), p).sizes() == Shape{1, 1, 3, 3});
  p.ceil_mode = true;
  CHECK(native::avg_pool2d(zeros({1, 1, 5, 5}), p).sizes() == Shape{1, 1, 3, 3});
  // 7 with k2 s2: floor 3, ceil 4 (the last window starts at 6 < 7)
  p.padding[0] = p.padding[1] = 0;
  CHECK(native::max_pool2d(zeros({1, 1, 7, 7}), p).first.sizes() == Shape{1, 1, 4, 4});
  p.ceil_mode = false;
  CHECK(native::max_pool2d(zeros({1, 1, 7, 7}), p).first.sizes() == Shape{1, 1, 3, 3});
  // 112 with 3x3/2 pad 1 (ResNet): 56
  p.kernel[0] = p.kernel[1] = 3, p.padding[0] = p.padding[1] = 1;
  CHECK(native::max_pool2d(zeros({1, 1, 112, 112}), p).first.sizes() == Shape{1, 1, 56, 56});
}

TEST_CASE("max_pool2d: hand-worked values, indices, ties and NaN") {
  // x = [[1, 5, 2], [7, 3, 7], [0, 9, 4]], 2x2 stride 1: window (0,0) = {1, 5, 7, 3} -> 7 at 3;
  // (0,1) = {5, 2, 3, 7} -> 7 at 5; (1,0) = {7, 3, 0, 9} -> 9 at 7; (1,1) = {3, 7, 9, 4} -> 9 at 7.
  const Tensor x = from_vector<double>({1, 5, 2, 7, 3, 7, 0, 9, 4}, {1, 1, 3, 3});
  F::Pool2dOptions o;
  o.kernel = {2, 2}, o.stride = {1, 1};
  auto [y, ind] = native::max_pool2d(x, PoolParams{{2, 2}, {1, 1}});
  CHECK_VALUES(y.to_vector<double>(), (std::vector<double>{7, 7, 9, 9}), 0.0);
  CHECK(ind.to_vector<int64_t>() == std::vector<int64_t>{3, 5, 7, 7});
  CHECK_VALUES(F::max_pool2d(x, o).to_vector<double>(), (std::vector<double>{7, 7, 9, 9}), 0.0);
  // ties: a constant window reports its first element
  auto [yc, ic] = native::max_pool2d(ones({1, 1, 4, 4}), PoolParams{});
  CHECK(ic.to_vector<int64_t>() == std::vector<int64_t>{0, 2, 8, 10});
  // NaN propagates and its index is reported
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto [yn, in_] = native::max_pool2d(from_vector<double>({1, nan, 3, 4}, {1, 1, 2, 2}), PoolParams{});
  CHECK(std::isnan(yn.item()));
  CHECK(in_.item() == 1);
  // padding never wins: all-negative input with padding 1
  PoolParams pp;
  pp.kernel[0] = pp.kernel[1] = 3, pp.stride[0] = pp.stride[1] = 2, pp.padding[0] = pp.padding[1] = 1;
  auto [yp, ip] = native::max_pool2d(from_vector<double>({-4, -3, -2, -1}, {1, 1, 2, 2}), pp);
  CHECK(yp.item() == -1.0);
  CHECK(ip.item() == 3);
  // nothing beats -inf: each window reports its first in-bounds position (3x3 input, 3x3/2 pad 1:
  // windows start at rows/cols -1 and 1, so their first valid cells are (0,0), (0,1), (1,0), (1,1))
  auto [yi, ii] = native::max_pool2d(full({1, 1, 3, 3}, -std::numeric_limits<double>::infinity(), TensorOptions(DType::f32)), pp);
  CHECK(ii.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 3, 4});
  CHECK(yi.to_vector<double>()[3] == -std::numeric_limits<double>::infinity());
  // backward puts each gradient at its index (and sums where windows share a maximum)
  const Tensor gx = native::max_pool2d_bwd(from_vector<double>({1, 10, 100, 1000}, {1, 1, 2, 2}), ind, x.sizes(),
                                           PoolParams{{2, 2}, {1, 1}});
  CHECK_VALUES(gx.to_vector<double>(), (std::vector<double>{0, 0, 0, 1, 0, 10, 0, 1100, 0}), 0.0);
}

TEST_CASE("max_pool2d: ties, -inf and NaN in long rows follow the tap loop (vectorised rows)") {
  // Values drawn from {-inf, -1, 0, 1, NaN}: many ties, windows that are all -inf, several NaNs in
  // one window; rows are wide enough that whole vectors of outputs are updated at once.
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  const double pick[5] = {-inf, -1, 0, 1, nan};
  const std::vector<PoolCase> cases = {
      {1, 2, 6, 45, 2, 2, 2, 2}, {1, 2, 6, 45, 2, 2, 1, 1}, {1, 1, 7, 41, 3, 3, 2, 2, 1, 1},
      {1, 1, 9, 40, 5, 5, 1, 1, 2, 2}, {1, 1, 8, 38, 3, 2, 1, 3, 1, 1, 2, 1},
  };
  uint64_t seed = 7;
  for (const PoolCase& c : cases) {
    CAPTURE(case_str(c));
    std::vector<double> xv(static_cast<size_t>(c.N * c.C * c.H * c.W));
    for (double& v : xv) {
      seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
      const uint64_t r = (seed >> 33) % 16;
      v = pick[r < 4 ? 0 : r < 7 ? 1 : r < 11 ? 2 : r < 15 ? 3 : 4];  // NaN 1/16, -inf 1/4
    }
    std::vector<double> want;
    std::vector<int64_t> want_i;
    naive_max(c, xv, &want, &want_i);
    for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
      CAPTURE(std::string(dtype_name(dt)));
      auto [y, ind] = native::max_pool2d(from_vector<double>(xv, {c.N, c.C, c.H, c.W}).to(dt), params_of(c));
      check_rel(values(y), want, 0.0, "max values");
      CHECK(ind.to_vector<int64_t>() == want_i);
    }
  }
}

TEST_CASE("max_pool2d matches the tap loop in every float dtype") {
  uint64_t seed = 40;
  for (const PoolCase& c : pool_cases()) {
    CAPTURE(case_str(c));
    const Tensor x64 = leaf({c.N, c.C, c.H, c.W}, -2, 2, ++seed, false);
    for (DType dt : test::float_dtypes()) {
      CAPTURE(std::string(dtype_name(dt)));
      const Tensor x = x64.to(dt);
      std::vector<double> want;
      std::vector<int64_t> want_i;
      naive_max(c, values(x), &want, &want_i);
      auto [y, ind] = native::max_pool2d(x, params_of(c));
      CHECK(y.dtype() == dt);
      check_rel(values(y), want, 0.0, "max values");  // a max is exact
      CHECK(ind.to_vector<int64_t>() == want_i);
      // gradient: scatter-add of gy at the indices, written out here
      const Tensor gy = leaf(y.sizes(), -1, 1, seed + 1000, false).to(dt);
      const auto gyv = values(gy);
      std::vector<double> gx_want(static_cast<size_t>(x.numel()), 0.0);
      const int64_t per_plane = y.size(2) * y.size(3);
      for (size_t k = 0; k < want_i.size(); ++k) {
        gx_want[static_cast<size_t>((static_cast<int64_t>(k) / per_plane) * c.H * c.W + want_i[k])] += gyv[k];
      }
      check_rel(values(native::max_pool2d_bwd(gy, ind, x.sizes(), params_of(c))), gx_want, rel_tol(dt), "max grad");
    }
  }
}

TEST_CASE("avg_pool2d: hand-worked divisors") {
  // x = 1..16 (4x4), 3x3 stride 2 pad 1 -> 2x2. Output (0,0) covers rows/cols -1..1: inputs
  // 1, 2, 5, 6 (sum 14); with padding counted the divisor is 9, without it 4.
  // Output (1,1) covers rows/cols 1..3: 6, 7, 8, 10, 11, 12, 14, 15, 16 (sum 99), divisor 9 both ways.
  std::vector<double> v(16);
  for (int i = 0; i < 16; ++i) v[i] = i + 1;
  const Tensor x = from_vector<double>(v, {1, 1, 4, 4});
  PoolParams p;
  p.kernel[0] = p.kernel[1] = 3, p.stride[0] = p.stride[1] = 2, p.padding[0] = p.padding[1] = 1;
  const auto inc = native::avg_pool2d(x, p).to_vector<double>();
  CHECK(inc[0] == doctest::Approx(14.0 / 9));
  CHECK(inc[3] == doctest::Approx(99.0 / 9));
  p.count_include_pad = false;
  const auto exc = native::avg_pool2d(x, p).to_vector<double>();
  CHECK(exc[0] == doctest::Approx(14.0 / 4));
  // output (0,1) covers cols 1..3 and rows -1..1: 2, 3, 4, 6, 7, 8 (sum 30) -> 30 / 6
  CHECK(exc[1] == doctest::Approx(30.0 / 6));
  CHECK(exc[3] == doctest::Approx(99.0 / 9));
  // ceil_mode window hanging past the input: 5 wide, k2 s2 ceil -> 3 outputs; the last covers
  // column 4 and the phantom column 5 (beyond input and padding): divisor 1 (not 2) either way.
  PoolParams q;
  q.kernel[0] = 1, q.kernel[1] = 2, q.stride[0] = 1, q.stride[1] = 2, q.ceil_mode = true;
  const auto r = native::avg_pool2d(from_vector<double>({1, 2, 3, 4, 10}, {1, 1, 1, 5}), q).to_vector<double>();
  CHECK_VALUES(r, (std::vector<double>{1.5, 3.5, 10}), 1e-12);
}

TEST_CASE("avg_pool2d matches the tap loop in every float dtype") {
  uint64_t seed = 80;
  for (PoolCase c : pool_cases()) {
    c.dh = c.dw = 1;  // no dilation for average pooling
    CAPTURE(case_str(c));
    const Tensor x64 = leaf({c.N, c.C, c.H, c.W}, -2, 2, ++seed, false);
    for (DType dt : test::float_dtypes()) {
      CAPTURE(std::string(dtype_name(dt)));
      const Tensor x = x64.to(dt);
      const Tensor y = native::avg_pool2d(x, params_of(c));
      check_rel(values(y), naive_avg(c, values(x)), rel_tol(dt), "avg values");
      // gradient: each output's gradient spread evenly over its in-bounds taps (with its divisor)
      const Tensor gy = leaf(y.sizes(), -1, 1, seed + 1000, false).to(dt);
      const auto gyv = values(gy);
      std::vector<double> gx_want(static_cast<size_t>(x.numel()), 0.0);
      const int64_t Ho = y.size(2), Wo = y.size(3);
      for (int64_t pl = 0; pl < c.N * c.C; ++pl)
        for (int64_t oh = 0; oh < Ho; ++oh)
          for (int64_t ow = 0; ow < Wo; ++ow) {
            int64_t inside = 0, padded = 0;
            for (int pass = 0; pass < 2; ++pass)
              for (int64_t i = 0; i < c.kh; ++i)
                for (int64_t j = 0; j < c.kw; ++j) {
                  const int64_t ih = oh * c.sh - c.ph + i, iw = ow * c.sw - c.pw + j;
                  const bool in = ih >= 0 && ih < c.H && iw >= 0 && iw < c.W;
                  if (pass == 0) {
                    padded += ih < c.H + c.ph && iw < c.W + c.pw;
                    inside += in;
                  } else if (in) {
                    gx_want[static_cast<size_t>((pl * c.H + ih) * c.W + iw)] +=
                        gyv[static_cast<size_t>((pl * Ho + oh) * Wo + ow)] / static_cast<double>(c.include_pad ? padded : inside);
                  }
                }
          }
      check_rel(values(native::avg_pool2d_bwd(gy, x.sizes(), params_of(c))), gx_want, rel_tol(dt), "avg grad");
    }
  }
}

TEST_CASE("adaptive_avg_pool2d: PyTorch's windows") {
  // 5 -> 3: windows [0, 2), [1, 4), [3, 5) (start floor(i*5/3), end ceil((i+1)*5/3)).
  const Tensor x = from_vector<double>({1, 2, 3, 4, 5}, {1, 1, 1, 5});
  CHECK_VALUES(native::adaptive_avg_pool2d(x, 1, 3).to_vector<double>(), (std::vector<double>{1.5, 3, 4.5}), 1e-12);
  // 3 -> 5 (upsampling): windows [0,1), [0,2), [1,2), [1,3), [2,3)
  const Tensor x3 = from_vector<double>({2, 4, 8}, {1, 1, 3, 1});
  CHECK_VALUES(native::adaptive_avg_pool2d(x3, 5, 1).to_vector<double>(), (std::vector<double>{2, 3, 4, 6, 8}), 1e-12);
  // gradient of 5 -> 3 with gy = 1: element 0: 1/2; 1: 1/2 + 1/3; 2: 1/3; 3: 1/3 + 1/2; 4: 1/2
  const Tensor g = native::adaptive_avg_pool2d_bwd(ones({1, 1, 1, 3}, DType::f64), {1, 1, 1, 5});
  CHECK_VALUES(g.to_vector<double>(), (std::vector<double>{0.5, 0.5 + 1.0 / 3, 1.0 / 3, 1.0 / 3 + 0.5, 0.5}), 1e-12);
  // global pooling (ResNet's head), every dtype
  for (DType dt : test::float_dtypes()) {
    CAPTURE(std::string(dtype_name(dt)));
    const Tensor xr = leaf({2, 3, 7, 5}, -1, 1, 90, false).to(dt);
    const Tensor y = native::adaptive_avg_pool2d(xr, 1, 1);
    check_rel(values(y), values(native::mean(xr.to(DType::f64), {2, 3}, true)), rel_tol(dt), "global mean");
  }
}

TEST_CASE("upsample_nearest2d: PyTorch's nearest indices") {
  // 3 -> 5: scale 0.6: dst 0..4 -> floor(0, 0.6, 1.2, 1.8, 2.4) = 0, 0, 1, 1, 2
  const Tensor x = from_vector<double>({10, 20, 30}, {1, 1, 1, 3});
  CHECK_VALUES(native::upsample_nearest2d(x, 1, 5).to_vector<double>(), (std::vector<double>{10, 10, 20, 20, 30}), 0.0);
  // 3 -> 6 (2x): dst / 2
  CHECK_VALUES(native::upsample_nearest2d(x, 1, 6).to_vector<double>(),
               (std::vector<double>{10, 10, 20, 20, 30, 30}), 0.0);
  // 3 -> 2 (down): scale 1.5: dst 0, 1 -> 0, 1
  CHECK_VALUES(native::upsample_nearest2d(x, 1, 2).to_vector<double>(), (std::vector<double>{10, 20}), 0.0);
  // 4 -> 3: scale 1.3333334: 0, 1.33, 2.67 -> 0, 1, 2
  const Tensor x4 = from_vector<double>({1, 2, 3, 4}, {1, 1, 4, 1});
  CHECK_VALUES(native::upsample_nearest2d(x4, 3, 1).to_vector<double>(), (std::vector<double>{1, 2, 3}), 0.0);
  // backward of 3 -> 5 with gy = 1..5: input 0 gets 1 + 2, input 1 gets 3 + 4, input 2 gets 5
  const Tensor g = native::upsample_nearest2d_bwd(from_vector<double>({1, 2, 3, 4, 5}, {1, 1, 1, 5}), {1, 1, 1, 3});
  CHECK_VALUES(g.to_vector<double>(), (std::vector<double>{3, 7, 5}), 0.0);
  // scale_factor 2 on a 2-D plane, every dtype; each 2x2 block copies one input
  for (DType dt : test::float_dtypes()) {
    const Tensor xs = leaf({2, 3, 3, 4}, -1, 1, 95, false).to(dt);
    const Tensor y = F::upsample_nearest2d(xs, 2.0);
    REQUIRE(y.sizes() == Shape{2, 3, 6, 8});
    const auto xv = values(xs), yv = values(y);
    bool ok = true;
    for (int64_t pl = 0; pl < 6; ++pl)
      for (int64_t h = 0; h < 6; ++h)
        for (int64_t w = 0; w < 8; ++w) ok = ok && yv[(pl * 6 + h) * 8 + w] == xv[(pl * 3 + h / 2) * 4 + w / 2];
    CHECK_MESSAGE(ok, dtype_name(dt));
    // gradient of the 2x upsample: each input gets the sum of its 2x2 block
    const Tensor gy = leaf(y.sizes(), -1, 1, 96, false).to(dt);
    const auto gv = values(gy);
    std::vector<double> want(xv.size(), 0.0);
    for (int64_t pl = 0; pl < 6; ++pl)
      for (int64_t h = 0; h < 6; ++h)
        for (int64_t w = 0; w < 8; ++w) want[(pl * 3 + h / 2) * 4 + w / 2] += gv[(pl * 6 + h) * 8 + w];
    check_rel(values(native::upsample_nearest2d_bwd(gy, xs.sizes())), want, rel_tol(dt), "upsample grad");
  }
}

TEST_CASE("gradcheck: pooling and upsampling") {
  uint64_t seed = 120;
  for (const PoolCase& c : pool_cases()) {
    CAPTURE(case_str(c));
    Tensor x = leaf({c.N, c.C, c.H, c.W}, -1, 1, ++seed);
    const F::Pool2dOptions o = options_of(c);
    CHECK_GRADCHECK([o](const TL& in) { return F::max_pool2d(in[0], o); }, TL{x});
    F::Pool2dOptions oa = o;
    oa.dilation = {1, 1};
    CHECK_GRADCHECK([oa](const TL& in) { return F::avg_pool2d(in[0], oa); }, TL{x});
  }
  Tensor x = leaf({2, 3, 7, 5}, -1, 1, 140);
  const std::vector<std::array<int64_t, 2>> sizes = {{1, 1}, {3, 2}, {7, 5}, {4, 9}};
  for (const std::array<int64_t, 2> os : sizes) {
    CAPTURE(os[0]);
    CAPTURE(os[1]);
    CHECK_GRADCHECK([os](const TL& in) { return F::adaptive_avg_pool2d(in[0], os); }, TL{x});
    CHECK_GRADCHECK([os](const TL& in) { return F::upsample_nearest2d(in[0], os); }, TL{x});
  }
  CHECK_GRADCHECK([](const TL& in) { return F::upsample_nearest2d(in[0], 2.0); }, TL{x});
  // the default stride (0 = kernel size)
  F::Pool2dOptions d;
  d.kernel = {3, 2};
  CHECK_GRADCHECK([d](const TL& in) { return F::max_pool2d(in[0], d); }, TL{x});
}

TEST_CASE("pooling argument errors name the op and the shapes") {
  PoolParams p;
  p.kernel[0] = p.kernel[1] = 3, p.padding[0] = p.padding[1] = 2;
  CHECK_THROWS_WITH_AS(native::max_pool2d(zeros({1, 1, 8, 8}), p), doctest::Contains("pad should be at most half"),
                       rg::Error);
  CHECK_THROWS_WITH_AS(native::avg_pool2d(zeros({1, 8, 8}), PoolParams{}),
                       doctest::Contains("avg_pool2d: expected input with 4 dims (N, C, H, W), got [1, 8, 8]"), rg::Error);
  PoolParams big;
  big.kernel[0] = big.kernel[1] = 4;
  CHECK_THROWS_WITH_AS(native::max_pool2d(zeros({1, 2, 3, 3}), big), doctest::Contains("output size is too small"),
                       rg::Error);
  PoolParams s0;
  s0.stride[0] = 0;
  CHECK_THROWS_WITH_AS(native::avg_pool2d(zeros({1, 1, 4, 4}), s0), doctest::Contains("stride must be positive"),
                       rg::Error);
  CHECK_THROWS_WITH_AS(native::adaptive_avg_pool2d(zeros({1, 1, 4, 4}), 0, 2),
                       doctest::Contains("adaptive_avg_pool2d: output size must be positive"), rg::Error);
  CHECK_THROWS_WITH_AS(native::upsample_nearest2d(zeros({1, 1, 0, 4}), 2, 2), doctest::Contains("empty plane"),
                       rg::Error);
  CHECK_THROWS_AS(native::max_pool2d(zeros({1, 1, 4, 4}, DType::i32), PoolParams{}), rg::Error);
  CHECK_THROWS_WITH_AS(native::max_pool2d_bwd(zeros({1, 1, 3, 3}), zeros({1, 1, 3, 3}, DType::i64), {1, 1, 4, 4},
                                              PoolParams{}),
                       doctest::Contains("grad_output has shape [1, 1, 3, 3] but the forward output had [1, 1, 2, 2]"),
                       rg::Error);
}
