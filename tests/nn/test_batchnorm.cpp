// nn::functional::batch_norm against formulas written here: training and eval forward values in
// every float dtype, running-stat updates (momentum, unbiased variance), the n == 1 refusal,
// gradcheck of x, weight and bias in both modes, gradients against the same normalisation built
// from generic autograd ops, and the native pieces' argument checks.
#include <cmath>
#include <string>

#include "autograd/grad_mode.h"
#include "core/cuda_api.h"
#include "nn/functional.h"
#include "nn_util.h"

using namespace rg;
using namespace rg::nntest;
namespace F = rg::nn::functional;

namespace {

// Per-channel mean and biased variance of x (N, C, *) computed from its values.
struct ChannelStats {
  std::vector<double> mean, var;
  int64_t count = 0;
};
ChannelStats channel_stats(const Tensor& x) {
  const auto v = vals(x);
  const int64_t N = x.size(0), C = x.size(1), S = x.numel() / (N * C);
  ChannelStats st;
  st.count = N * S;
  for (int64_t c = 0; c < C; ++c) {
    double s = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < S; ++i) s += v[static_cast<size_t>((n * C + c) * S + i)];
    const double m = s / static_cast<double>(st.count);
    double ss = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < S; ++i) {
        const double d = v[static_cast<size_t>((n * C + c) * S + i)] - m;
        ss += d * d;
      }
    st.mean.push_back(m);
    st.var.push_back(ss / static_cast<double>(st.count));
  }
  return st;
}

// y = (x - mean) / sqrt(var + eps) * w + b, element by element.
std::vector<double> normalise(const Tensor& x, const std::vector<double>& mean, const std::vector<double>& var,
                              const std::vector<double>& w, const std::vector<double>& b, double eps) {
  const auto v = vals(x);
  const int64_t N = x.size(0), C = x.size(1), S = x.numel() / (N * C);
  std::vector<double> y(v.size());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < S; ++i) {
        const size_t k = static_cast<size_t>((n * C + c) * S + i);
        const double wc = w.empty() ? 1.0 : w[static_cast<size_t>(c)], bc = b.empty() ? 0.0 : b[static_cast<size_t>(c)];
        y[k] = (v[k] - mean[static_cast<size_t>(c)]) / std::sqrt(var[static_cast<size_t>(c)] + eps) * wc + bc;
      }
  return y;
}

// The same normalisation from generic differentiable ops (an independent gradient reference).
Tensor batch_norm_reference(const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
  const Shape dims = x.dim() == 2 ? Shape{0} : (x.dim() == 3 ? Shape{0, 2} : Shape{0, 2, 3});
  Shape cshape(static_cast<size_t>(x.dim()), 1);
  cshape[1] = x.size(1);
  const Tensor m = mean(x, dims, true);
  const Tensor v = var(x, dims, /*correction=*/0, true);
  Tensor y = div(sub(x, m), sqrt(add(v, eps)));
  if (w.defined()) y = mul(y, w.reshape(cshape));
  if (b.defined()) y = add(y, b.reshape(cshape));
  return y;
}

}  // namespace

TEST_CASE("batch_norm training forward: batch statistics, affine, every float dtype") {
  const Shape shape{3, 4, 2, 5};
  const Tensor x64 = values(shape, -2.0, 3.0, 11, DType::f64);
  const std::vector<double> w = {0.5, -1.0, 2.0, 1.5}, b = {0.1, 0.0, -0.3, 1.0};
  const ChannelStats st = channel_stats(x64);
  const double eps = 1e-5;
  const auto expected = normalise(x64, st.mean, st.var, w, b, eps);
  for (DType dt : test::float_dtypes()) {
    CAPTURE(dtype_name(dt));
    const Tensor x = native::to(x64, kCPU, dt);
    // f16/bf16 inputs are rounded; compare with the formula applied to the rounded values.
    const ChannelStats sr = channel_stats(x);
    const auto exp_r = normalise(x, sr.mean, sr.var, w, b, eps);
    const DType pdt = dt == DType::f64 ? DType::f64 : DType::f32;
    Tensor y = F::batch_norm(x, Tensor(), Tensor(), from_vector<double>(w, {4}, pdt), from_vector<double>(b, {4}, pdt),
                             /*training=*/true);
    CHECK(y.dtype() == dt);
    CHECK(y.sizes() == shape);
    const double tol = dt == DType::f64 ? 1e-10 : dt == DType::f32 ? 1e-5 : dt == DType::f16 ? 1e-2 : 5e-2;
    CHECK_VALUES(vals(y), exp_r, tol);
    if (dt == DType::f64) CHECK_VALUES(vals(y), expected, 1e-10);
  }
}

TEST_CASE("batch_norm training updates running stats with momentum and the unbiased variance") {
  const Tensor x = values({4, 3, 3, 2}, -1.0, 2.0, 12, DType::f32);
  const ChannelStats st = channel_stats(x);
  Tensor rm = from_vector<double>({0.5, -0.5, 1.0}, {3}, DType::f32);
  Tensor rv = from_vector<double>({2.0, 1.0, 0.5}, {3}, DType::f32);
  const Tensor rm_handle = rm, rv_handle = rv;  // updated in place: every handle sees it
  const uint32_t v0 = rm.version();
  for (double momentum : {0.1, 0.3}) {
    const auto rm0 = vals(rm), rv0 = vals(rv);
    F::batch_norm(x, rm, rv, Tensor(), Tensor(), true, momentum);
    std::vector<double> erm, erv;
    const double n = static_cast<double>(st.count);
    for (size_t c = 0; c < 3; ++c) {
      erm.push_back((1 - momentum) * rm0[c] + momentum * st.mean[c]);
      erv.push_back((1 - momentum) * rv0[c] + momentum * st.var[c] * n / (n - 1));
    }
    CHECK_VALUES(vals(rm_handle), erm, 1e-6);
    CHECK_VALUES(vals(rv_handle), erv, 1e-6);
  }
  CHECK(rm.version() > v0);
  // training normalises with the biased batch variance, whatever the running stats hold
  const Tensor y = F::batch_norm(x, rm, rv, Tensor(), Tensor(), true);
  CHECK_VALUES(vals(y), normalise(x, st.mean, st.var, {}, {}, 1e-5), 1e-5);
}

TEST_CASE("batch_norm eval uses the running stats and leaves them alone") {
  const Tensor x = values({2, 3, 4}, -1.0, 1.0, 13, DType::f64);  // (N, C, L)
  const std::vector<double> m = {0.2, -0.1, 0.5}, v = {1.5, 0.25, 4.0}, w = {1.0, 2.0, -0.5}, b = {0.0, 1.0, 0.5};
  Tensor rm = from_vector<double>(m, {3}), rv = from_vector<double>(v, {3});
  const double eps = 1e-3;
  Tensor y = F::batch_norm(x, rm, rv, from_vector<double>(w, {3}), from_vector<double>(b, {3}), false, 0.1, eps);
  CHECK_VALUES(vals(y), normalise(x, m, v, w, b, eps), 1e-12);
  CHECK_VALUES(vals(rm), m, 0.0);
  CHECK_VALUES(vals(rv), v, 0.0);
  // a single value per channel is fine in eval
  const Tensor one = values({1, 3, 1, 1}, -1.0, 1.0, 14, DType::f64);
  CHECK_NOTHROW(F::batch_norm(one, rm, rv, Tensor(), Tensor(), false));
  // eval without running stats normalises with the batch statistics (track_running_stats=False)
  const ChannelStats st = channel_stats(x);
  CHECK_VALUES(vals(F::batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), false)),
               normalise(x, st.mean, st.var, {}, {}, 1e-5), 1e-12);
}

TEST_CASE("batch_norm (N, C) input and odd channel counts") {
  const Tensor x = values({5, 7}, -3.0, 3.0, 15, DType::f32);
  const ChannelStats st = channel_stats(x);
  CHECK_VALUES(vals(F::batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), true)),
               normalise(x, st.mean, st.var, {}, {}, 1e-5), 2e-5);
  // a non-contiguous input (channels strided)
  const Tensor base = values({3, 5, 2}, -1.0, 1.0, 16, DType::f64);
  const Tensor xt = base.transpose(0, 2);  // (2, 5, 3)
  const Tensor xc = native::contiguous(xt);
  const ChannelStats sc = channel_stats(xc);
  CHECK_VALUES(vals(F::batch_norm(xt, Tensor(), Tensor(), Tensor(), Tensor(), true)),
               normalise(xc, sc.mean, sc.var, {}, {}, 1e-5), 1e-12);
}

TEST_CASE("batch_norm refuses one value per channel in training") {
  const Tensor x = values({1, 3, 1, 1}, -1.0, 1.0, 17, DType::f32);
  try {
    F::batch_norm(x, zeros({3}), ones({3}), Tensor(), Tensor(), true);
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("Expected more than 1 value per channel when training, got input size [1, 3, 1, 1]") !=
          std::string::npos);
  }
  CHECK_THROWS_AS(F::batch_norm(values({1, 2}, -1.0, 1.0, 18), Tensor(), Tensor(), Tensor(), Tensor(), true), Error);
}

TEST_CASE("batch_norm argument checks") {
  const Tensor x = values({2, 3, 2, 2}, -1.0, 1.0, 19);
  CHECK_THROWS_AS(F::batch_norm(x, zeros({4}), ones({4}), Tensor(), Tensor(), true), Error);  // channel count
  CHECK_THROWS_AS(F::batch_norm(x, Tensor(), Tensor(), ones({2}), Tensor(), true), Error);
  CHECK_THROWS_AS(F::batch_norm(x, zeros({3}), Tensor(), Tensor(), Tensor(), true), Error);  // mean without var
  CHECK_THROWS_AS(F::batch_norm(values({3}, -1.0, 1.0, 20), Tensor(), Tensor(), Tensor(), Tensor(), true), Error);
  CHECK_THROWS_AS(F::batch_norm(zeros({2, 3}, DType::i64), Tensor(), Tensor(), Tensor(), Tensor(), true), Error);
  CHECK_THROWS_AS(native::batchnorm_fwd(x, zeros({3}), ones({2}), Tensor(), Tensor()), Error);
  CHECK_THROWS_AS(native::batchnorm_stats(zeros({0, 3})), Error);
}

TEST_CASE("gradcheck batch_norm in training: x, weight, bias") {
  const Tensor x = leaf64({3, 2, 2, 3}, -1.0, 1.0, 21);
  const Tensor w = leaf64({2}, 0.5, 1.5, 22), b = leaf64({2}, -0.5, 0.5, 23);
  CHECK_GRADCHECK([](const TL& in) { return F::batch_norm(in[0], Tensor(), Tensor(), in[1], in[2], true); },
                  TL{x, w, b});
  // running stats present (they are updated on every call and do not affect training outputs)
  const Tensor rm = zeros({2}, DType::f64), rv = ones({2}, DType::f64);
  CHECK_GRADCHECK([&](const TL& in) { return F::batch_norm(in[0], rm, rv, in[1], in[2], true, 0.1, 1e-3); },
                  TL{x, w, b});
  // without affine, and with only some inputs requiring grad
  CHECK_GRADCHECK([](const TL& in) { return F::batch_norm(in[0], Tensor(), Tensor(), Tensor(), Tensor(), true); },
                  TL{x});
  const Tensor xc = values({3, 2, 2, 3}, -1.0, 1.0, 24, DType::f64);
  CHECK_GRADCHECK([&](const TL& in) { return F::batch_norm(xc, Tensor(), Tensor(), in[0], in[1], true); }, TL{w, b});
  // (N, C) input
  const Tensor x2 = leaf64({4, 3}, -1.0, 1.0, 25);
  const Tensor w3 = leaf64({3}, 0.5, 1.5, 26);
  CHECK_GRADCHECK([](const TL& in) { return F::batch_norm(in[0], Tensor(), Tensor(), in[1], Tensor(), true); },
                  TL{x2, w3});
}

TEST_CASE("gradcheck batch_norm in eval: x, weight, bias") {
  const Tensor x = leaf64({2, 3, 2, 2}, -1.0, 1.0, 27);
  const Tensor w = leaf64({3}, 0.5, 1.5, 28), b = leaf64({3}, -0.5, 0.5, 29);
  const Tensor rm = from_vector<double>({0.1, -0.2, 0.3}, {3}), rv = from_vector<double>({0.5, 1.5, 2.0}, {3});
  CHECK_GRADCHECK([&](const TL& in) { return F::batch_norm(in[0], rm, rv, in[1], in[2], false); }, TL{x, w, b});
  CHECK_GRADCHECK([&](const TL& in) { return F::batch_norm(in[0], rm, rv, Tensor(), Tensor(), false); }, TL{x});
}

TEST_CASE("batch_norm gradients match the normalisation built from generic ops") {
  for (DType dt : {DType::f64, DType::f32}) {
    CAPTURE(dtype_name(dt));
    Tensor x = values({4, 3, 3, 2}, -2.0, 2.0, 30, dt, true);
    Tensor w = values({3}, 0.5, 1.5, 31, dt, true), b = values({3}, -0.5, 0.5, 32, dt, true);
    const Tensor gy = values({4, 3, 3, 2}, -1.0, 1.0, 33, dt);
    F::batch_norm(x, Tensor(), Tensor(), w, b, true, 0.1, 1e-4).backward(gy);
    const Tensor gx = x.grad(), gw = w.grad(), gb = b.grad();
    x.set_grad(Tensor());
    w.set_grad(Tensor());
    b.set_grad(Tensor());
    batch_norm_reference(x, w, b, 1e-4).backward(gy);
    const double tol = dt == DType::f64 ? 1e-10 : 2e-4;
    CHECK(gx.dtype() == dt);
    CHECK_VALUES(vals(gx), vals(x.grad()), tol);
    CHECK_VALUES(vals(gw), vals(w.grad()), tol);
    CHECK_VALUES(vals(gb), vals(b.grad()), tol);
  }
}

TEST_CASE("batch_norm reduced-precision input with f32 weights: y, dx, dweight, dbias against f64 on the same values") {
  // A random dL/dy: with a constant one, training-mode dx and dweight are exactly zero and any
  // wrong formula would pass. The reference is the generic-op normalisation in f64 on the very same
  // (f16/bf16-rounded) x and dL/dy and the f32 weights, so the only differences left are the f32
  // arithmetic of the kernels and the final rounding to the input dtype.
  for (DType dt : {DType::f16, DType::bf16}) {
    CAPTURE(dtype_name(dt));
    const Tensor x = values({2, 3, 4, 4}, -2.0, 2.0, 34, dt, true);
    const Tensor w = values({3}, 0.5, 1.5, 35, DType::f32, true), b = values({3}, -0.5, 0.5, 36, DType::f32, true);
    const Tensor gy = values({2, 3, 4, 4}, -1.0, 1.0, 37, dt);
    Tensor rm = zeros({3}), rv = ones({3});
    Tensor y = F::batch_norm(x, rm, rv, w, b, true);
    CHECK(y.dtype() == dt);
    CHECK(rm.dtype() == DType::f32);
    y.backward(gy);
    CHECK(x.grad().dtype() == dt);
    CHECK(w.grad().dtype() == DType::f32);
    CHECK(b.grad().dtype() == DType::f32);

    Tensor xr = native::to(x, kCPU, DType::f64, true), wr = native::to(w, kCPU, DType::f64, true),
           br = native::to(b, kCPU, DType::f64, true);
    for (Tensor* t : {&xr, &wr, &br}) t->set_requires_grad(true);
    const Tensor yr = batch_norm_reference(xr, wr, br, 1e-5);
    yr.backward(native::to(gy, kCPU, DType::f64));
    // y and dx: f32 arithmetic (relative error ~1e-7 on terms of size <= 10) rounded once to dt,
    // so |got - ref| <= u |ref| + 1e-5 with u = 2^-11 (f16) or 2^-8 (bf16), half an ulp.
    const double u = dt == DType::f16 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8);
    RG_CHECK_CLOSE(y, yr, (test::Tol{1e-5, u}));
    RG_CHECK_CLOSE(x.grad(), xr.grad(), (test::Tol{1e-5, u}));
    // dweight, dbias: f32 sums of 32 values per channel, |dy (x - mean)| <= 4, so at worst
    // 31 * 2^-24 * 128 = 2.4e-4 from the summation order; a wrong formula is off by > 1e-2.
    RG_CHECK_CLOSE(w.grad(), wr.grad(), (test::Tol{3e-4, 1e-5}));
    RG_CHECK_CLOSE(b.grad(), br.grad(), (test::Tol{3e-4, 1e-5}));
    CHECK(test::compare(x.grad(), zeros_like(xr), test::Tol{0.05, 0}) != "");  // not the zero of a constant dL/dy
  }
}

TEST_CASE("batch_norm on CUDA matches the CPU: forward, running stats, gradients" * RG_GPU_SUITE) {
  RG_SKIP_UNLESS_GPU(1);
  const Device gpu = Device::cuda(0);
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    for (bool training : {true, false}) {
      CAPTURE(dtype_name(dt));
      CAPTURE(training);
      Tensor xc = values({4, 5, 6, 7}, -2.0, 2.0, 40, dt, true);
      Tensor wc = values({5}, 0.5, 1.5, 41, DType::f32, true), bc = values({5}, -0.5, 0.5, 42, DType::f32, true);
      Tensor xg = native::to(xc, gpu, dt, true), wg = native::to(wc, gpu, DType::f32, true),
             bg = native::to(bc, gpu, DType::f32, true);
      xg.set_requires_grad(true);
      wg.set_requires_grad(true);
      bg.set_requires_grad(true);
      Tensor rmc = values({5}, -0.1, 0.1, 43), rvc = values({5}, 0.5, 1.5, 44);
      Tensor rmg = native::to(rmc, gpu, DType::f32, true), rvg = native::to(rvc, gpu, DType::f32, true);
      const Tensor gy = values({4, 5, 6, 7}, -1.0, 1.0, 45, dt);
      Tensor yc = F::batch_norm(xc, rmc, rvc, wc, bc, training);
      Tensor yg = F::batch_norm(xg, rmg, rvg, wg, bg, training);
      yc.backward(gy);
      yg.backward(native::to(gy, gpu, dt, true));
      // Reduced-precision outputs may round one ulp apart (f16 2^-11, bf16 2^-8 relative).
      const test::Tol tol = dt == DType::f32   ? test::Tol{1e-4, 1e-4}
                            : dt == DType::f16 ? test::Tol{1e-2, 1e-2}
                                               : test::Tol{3e-2, 2e-2};
      RG_CHECK_CLOSE(native::to(yg, kCPU, dt), yc, tol);
      RG_CHECK_CLOSE(native::to(rmg, kCPU, DType::f32), rmc, (test::Tol{1e-6, 1e-5}));
      RG_CHECK_CLOSE(native::to(rvg, kCPU, DType::f32), rvc, (test::Tol{1e-6, 1e-5}));
      RG_CHECK_CLOSE(native::to(xg.grad(), kCPU, dt), xc.grad(), tol);
      RG_CHECK_CLOSE(native::to(wg.grad(), kCPU, DType::f32), wc.grad(), (test::Tol{1e-3, 1e-4}));
      RG_CHECK_CLOSE(native::to(bg.grad(), kCPU, DType::f32), bc.grad(), (test::Tol{1e-3, 1e-4}));
    }
  }
}
