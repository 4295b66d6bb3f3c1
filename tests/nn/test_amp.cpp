// Autocast (dtype policy, the weight cast cache, f32 gradients for f32 weights) and GradScaler
// (an overflowing f16 step is skipped, the scale halves, the skip is counted, the next step
// proceeds with exactly unscaled gradients; growth; the found_inf reducer; misuse errors; state).
// The GradScaler sequence runs on the CPU and, when a CUDA device is present, on the GPU too.
#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "autograd/autocast.h"
#include "autograd/grad_mode.h"
#include "core/cuda_api.h"
#include "nn/amp/grad_scaler.h"
#include "nn/functional.h"
#include "nn/optim/clip_grad.h"
#include "nn/optim/sgd.h"
#include "nn_util.h"

using namespace rg;
using namespace rg::nntest;
using rg::amp::AutocastGuard;
using rg::amp::GradScaler;
using rg::amp::GradScalerOptions;

namespace {

// Values exact in f16 and bf16, so the expected gradients are exact too.
const std::vector<double> kW = {0.5, -1.0, 0.25, 2.0};                             // (2, 2)
const std::vector<double> kX = {1.0, 0.5, -0.5, 0.25, 0.75, -1.0, 0.25, 0.5};      // (4, 2)
// d mean(x @ w) / dw[i][j] = (column i of x summed) / 8: column sums 1.5 and 0.25.
const std::vector<double> kGradW = {1.5 / 8, 1.5 / 8, 0.25 / 8, 0.25 / 8};

Tensor weight(Device d) {
  Tensor w = native::to(from_vector<double>(kW, {2, 2}, DType::f32), d, DType::f32, true);
  w.set_requires_grad(true);
  return w;
}

Tensor input(Device d, DType dt = DType::f16) { return native::to(from_vector<double>(kX, {4, 2}, dt), d, dt, true); }

// mean(x @ w) under f16 autocast, times `mult`.
Tensor amp_loss(const Tensor& x, const Tensor& w, double mult) {
  AutocastGuard guard(DType::f16);
  Tensor y = matmul(x, w);
  CHECK(y.dtype() == DType::f16);
  Tensor loss = mean(y);
  CHECK(loss.dtype() == DType::f32);
  return mul(loss, mult);
}

void run_scaler_sequence(Device dev) {
  CAPTURE(dev.str());
  Tensor w = weight(dev);
  const Tensor x = input(dev);
  optim::SGD opt({w}, optim::SGDOptions{.lr = 0.5});
  GradScaler scaler;
  CHECK(scaler.get_scale() == 65536.0);

  // 1. a huge loss: the scaled gradient overflows f16 on its way into the f16 matmul backward
  opt.zero_grad();
  scaler.scale(amp_loss(x, w, 1e6)).backward();
  CHECK(!scaler.step(opt));
  scaler.update();
  CHECK_VALUES(vals(w), kW, 0.0);  // unchanged
  CHECK(scaler.get_scale() == 32768.0);
  CHECK(scaler.skipped_steps() == 1);
  CHECK(scaler.get_growth_tracker() == 0);

  // 2. a normal step: grads unscaled exactly, the update applied, the scale kept
  opt.zero_grad();
  Tensor scaled = scaler.scale(amp_loss(x, w, 1.0));
  scaled.backward();
  CHECK(w.grad().dtype() == DType::f32);
  std::vector<double> raw = kGradW;
  for (double& v : raw) v *= 32768.0;
  CHECK_VALUES(vals(w.grad()), raw, 0.0);  // still scaled before unscale_
  scaler.unscale_(opt);
  CHECK_VALUES(vals(w.grad()), kGradW, 0.0);
  CHECK(scaler.step(opt));
  scaler.update();
  std::vector<double> expect = kW;
  for (size_t i = 0; i < 4; ++i) expect[i] -= 0.5 * kGradW[i];
  CHECK_VALUES(vals(w), expect, 1e-7);
  CHECK(scaler.get_scale() == 32768.0);
  CHECK(scaler.skipped_steps() == 1);
  CHECK(scaler.get_growth_tracker() == 1);
  CHECK(scaler.scale_tensor().device() == dev);
}

}  // namespace

TEST_CASE("autocast: lower-precision matmul, f32 reductions, f32 weight gradients") {
  Tensor w = weight(kCPU);
  const Tensor x = input(kCPU, DType::f32);
  CHECK(!amp::is_autocast_enabled());
  CHECK(amp::autocast_lower(w).is_same(w));  // disabled: a no-op
  {
    AutocastGuard g(DType::bf16);
    CHECK(amp::is_autocast_enabled());
    CHECK(amp::autocast_dtype() == DType::bf16);
    Tensor y = matmul(x, w);
    CHECK(y.dtype() == DType::bf16);
    CHECK(mm(x, w).dtype() == DType::bf16);
    CHECK(bmm(x.unsqueeze(0), w.unsqueeze(0)).dtype() == DType::bf16);
    CHECK(sum(y).dtype() == DType::f32);
    CHECK(y.mean().dtype() == DType::f32);
    CHECK(softmax(y, 1).dtype() == DType::f32);
    CHECK(log_softmax(y, 1).dtype() == DType::f32);
    CHECK(norm(y).dtype() == DType::f32);
    CHECK(add(y, y).dtype() == DType::bf16);  // not on either list
    const Tensor d = from_vector<double>({1.0, 2.0}, {1, 2});
    CHECK(matmul(d, from_vector<double>({1.0, 2.0}, {2, 1})).dtype() == DType::f64);  // f64 is never lowered
    sum(y).backward();
    {
      AutocastGuard off(DType::f16, false);
      CHECK(!amp::is_autocast_enabled());
      CHECK(matmul(x, w).dtype() == DType::f32);
    }
    CHECK(amp::is_autocast_enabled());
  }
  CHECK(!amp::is_autocast_enabled());
  CHECK(w.grad().dtype() == DType::f32);
  // d sum(x @ w) / dw[i][j] = column sum i of x
  CHECK_VALUES(vals(w.grad()), (std::vector<double>{1.5, 1.5, 0.25, 0.25}), 0.0);
  CHECK(sum(input(kCPU)).dtype() == DType::f16);  // outside autocast: unchanged
}

TEST_CASE("autocast weight cast cache: per outermost scope, invalidated by in-place updates") {
  Tensor w = weight(kCPU);
  Tensor c1;
  {
    AutocastGuard g(DType::f16);
    c1 = amp::autocast_lower(w);
    CHECK(c1.dtype() == DType::f16);
    CHECK(amp::autocast_lower(w).is_same(c1));
    {
      AutocastGuard inner(DType::f16);
      CHECK(amp::autocast_lower(w).is_same(c1));  // nested scopes share the cache
    }
    CHECK(amp::autocast_lower(w).is_same(c1));
    {
      NoGradGuard ng;
      native::fill_(w, 3.0);  // an in-place update: the cached cast is stale
    }
    const Tensor c2 = amp::autocast_lower(w);
    CHECK(!c2.is_same(c1));
    CHECK_VALUES(vals(c2), std::vector<double>(4, 3.0), 0.0);
    // a non-leaf is cast every time, never cached
    const Tensor h = mul(w, 2.0);
    CHECK(!amp::autocast_lower(h).is_same(amp::autocast_lower(h)));
    {
      NoGradGuard ng;  // no caching without grad mode
      CHECK(!amp::autocast_lower(w).is_same(amp::autocast_lower(w)));
    }
  }
  AutocastGuard again(DType::f16);
  CHECK(!amp::autocast_lower(w).is_same(c1));  // the cache died with the outermost scope
  CHECK_THROWS_AS(AutocastGuard(DType::f32), Error);
}

namespace {
// Note [Linear rounds once]: integer inputs make every f32 partial sum exact, so the only rounding
// is the final one to bf16, and a half-integer bias makes rounding the product first visible (the
// products exceed 256, where bf16's spacing is 2 or more). Expected: the exact f64 value rounded once.
void check_linear_rounds_once(Device dev) {
  const int64_t rows = 7, in = 13, out = 11;
  std::mt19937_64 gen(1234);
  std::uniform_int_distribution<int> small(-20, 20), half(-20, 19);
  std::vector<double> xv(rows * in), wv(out * in), bv(out);
  for (double& v : xv) v = small(gen);  // integers in [-20, 20]
  for (double& v : wv) v = small(gen);
  for (double& v : bv) v = half(gen) + 0.5;  // half-integers
  const Tensor x = native::to(from_vector<double>(xv, {rows, in}), dev, DType::f32);
  Tensor w = native::to(from_vector<double>(wv, {out, in}), dev, DType::f32);
  Tensor b = native::to(from_vector<double>(bv, {out}), dev, DType::f32);
  w.set_requires_grad();
  b.set_requires_grad();
  Tensor y;
  {
    AutocastGuard g(DType::bf16);
    y = nn::functional::linear(x, w, b);
  }
  REQUIRE(y.dtype() == DType::bf16);
  std::vector<double> want(rows * out);
  int64_t twice_differs = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      double dot = 0;
      for (int64_t k = 0; k < in; ++k) dot += xv[r * in + k] * wv[o * in + k];
      want[r * out + o] = static_cast<float>(BFloat16(static_cast<float>(dot + bv[o])));
      const float twice = static_cast<float>(BFloat16(static_cast<float>(BFloat16(static_cast<float>(dot))) +
                                                      static_cast<float>(BFloat16(static_cast<float>(bv[o])))));
      twice_differs += static_cast<double>(twice) != want[r * out + o];
    }
  }
  CHECK(twice_differs > 5);  // the case really tells the two roundings apart
  CHECK_VALUES(vals(native::to(y, kCPU, DType::f64)), want, 0.0);
  sum(y).backward();  // d sum / d bias = rows, in f32
  CHECK(b.grad().dtype() == DType::f32);
  CHECK_VALUES(vals(native::to(b.grad(), kCPU, DType::f64)), std::vector<double>(out, double(rows)), 0.0);
}
}  // namespace

TEST_CASE("autocast linear adds the bias before its single bf16 rounding (CPU)") { check_linear_rounds_once(kCPU); }

TEST_CASE("autocast linear adds the bias before its single bf16 rounding (CUDA)" * RG_GPU_SUITE) {
  RG_SKIP_UNLESS_GPU(1);
  check_linear_rounds_once(Device::cuda(0));
}

TEST_CASE("GradScaler on CPU: overflow skips the step and halves the scale; the next step proceeds") {
  run_scaler_sequence(kCPU);
}

TEST_CASE("GradScaler on CUDA" * RG_GPU_SUITE) {
  RG_SKIP_UNLESS_GPU(1);
  run_scaler_sequence(Device::cuda(0));
}

namespace {
// ||a - b|| / ||b|| over all elements (a and b on any devices).
double rel_err(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = vals(native::to(a, kCPU, DType::f64)), y = vals(native::to(b, kCPU, DType::f64));
  REQUIRE(x.size() == y.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (x[i] - y[i]) * (x[i] - y[i]);
    den += y[i] * y[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : vals(native::to(t, kCPU, DType::f64))) m = std::max(m, std::abs(v));
  return m;
}

// conv2d -> batch_norm (training) -> relu -> spatial mean -> linear -> cross_entropy on `dev`, from
// the same f32 values wherever it runs.
struct SmallNet {
  Tensor x, cw, cb, bw, bb, rm, rv, fw, fb, y;
  explicit SmallNet(Device dev) {
    auto leaf = [&](const Shape& s, double lo, double hi, uint64_t seed) {
      Tensor t = native::to(values(s, lo, hi, seed), dev, DType::f32, true);
      t.set_requires_grad(true);
      return t;
    };
    x = native::to(values({3, 3, 9, 11}, -1.0, 1.0, 80), dev, DType::f32, true);  // (N, C, H, W)
    cw = leaf({6, 3, 3, 3}, -0.4, 0.4, 81);
    cb = leaf({6}, -0.2, 0.2, 82);
    bw = leaf({6}, 0.5, 1.5, 83);
    bb = leaf({6}, -0.3, 0.3, 84);
    rm = native::to(values({6}, -0.1, 0.1, 85), dev, DType::f32, true);
    rv = native::to(values({6}, 0.5, 1.5, 86), dev, DType::f32, true);
    fw = leaf({5, 6}, -0.5, 0.5, 87);
    fb = leaf({5}, -0.1, 0.1, 88);
    y = native::to(from_vector<double>({1, 4, 0}, {3}, DType::i64), dev, DType::i64, true);
  }
  // {conv output (N, 6, 7, 9), logits (N, 5), loss}
  std::vector<Tensor> run(DType dt, bool autocast) {
    AutocastGuard g(dt, autocast);
    const Tensor h = nn::functional::conv2d(x, cw, cb);
    const Tensor a = relu(nn::functional::batch_norm(h, rm, rv, bw, bb, true));
    const Tensor logits = nn::functional::linear(mean(a, {2, 3}), fw, fb);
    return {h, logits, nn::functional::cross_entropy(logits, y, 0.1)};
  }
  // The leaves whose gradient is not zero in exact arithmetic (the conv bias's is: batch norm in
  // training removes any per-channel shift).
  std::vector<Tensor> leaves() const { return {cw, bw, bb, fw, fb}; }
};

// The net under autocast `dt` on `dev` against plain f32 on the CPU: autocast changes the precision,
// not the function, so they agree to a tolerance set by dt's unit roundoff u (2^-11 for f16, 2^-8
// for bf16; conv and linear round every operand, each output sums 27 or 6 such products). Measured
// on the CPU, the worst relative error of these checks is 1.15 u (f16) and 2.6 u (bf16): 8 u
// leaves room for other accumulation orders and still fails a wrong dtype (bf16 rounding where
// f16 was asked is 8 times f16's u) or a wrong formula. On a device other than the CPU the net is
// also compared with the CPU's autocast: both round the same f32 values to dt, so they are closer.
void check_autocast_net(Device dev, DType dt) {
  CAPTURE(dev.str());
  CAPTURE(dtype_name(dt));
  SmallNet g(dev), f(kCPU);
  const auto og = g.run(dt, true), of = f.run(dt, false);
  CHECK(og[0].dtype() == dt);
  CHECK(og[0].device() == dev);
  CHECK(og[1].dtype() == dt);
  CHECK(og[2].dtype() == DType::f32);
  CHECK(og[2].device() == dev);
  CHECK(of[1].dtype() == DType::f32);
  const double u = dt == DType::f16 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8);
  const double tol32 = 8 * u;  // against plain f32
  const double tol = dt == DType::f16 ? 5e-3 : 2e-2;  // device against the CPU's autocast
  const bool other_device = dev != kCPU;
  std::unique_ptr<SmallNet> c;
  std::vector<Tensor> oc;
  if (other_device) {
    c = std::make_unique<SmallNet>(kCPU);
    oc = c->run(dt, true);
  }
  double worst = 0;
  auto against_f32 = [&](const Tensor& a, const Tensor& b) {
    const double e = rel_err(a, b);
    worst = std::max(worst, e);
    return e;
  };
  CHECK(against_f32(og[0], of[0]) <= tol32);
  CHECK(against_f32(og[1], of[1]) <= tol32);
  CHECK(og[2].item() == doctest::Approx(of[2].item()).epsilon(tol32));
  if (other_device) {
    CHECK(rel_err(og[0], oc[0]) <= tol);
    CHECK(rel_err(og[1], oc[1]) <= tol);
    CHECK(og[2].item() == doctest::Approx(oc[2].item()).epsilon(tol));
    oc[2].backward();
  }
  og[2].backward();
  of[2].backward();
  const auto lg = g.leaves(), lf = f.leaves();
  for (size_t i = 0; i < lg.size(); ++i) {
    CAPTURE(i);
    REQUIRE(lg[i].grad().defined());
    CHECK(lg[i].grad().dtype() == DType::f32);  // f32 master weights get f32 gradients
    CHECK(lg[i].grad().device() == dev);
    CHECK(against_f32(lg[i].grad(), lf[i].grad()) <= tol32);
    if (other_device) CHECK(rel_err(lg[i].grad(), c->leaves()[i].grad()) <= tol);
  }
  REQUIRE(g.cb.grad().defined());
  CHECK(g.cb.grad().dtype() == DType::f32);
  CHECK(max_abs(g.cb.grad()) <= tol32 * max_abs(f.cw.grad()));  // zero up to rounding
  // the running statistics moved the same way
  CHECK(against_f32(g.rm, f.rm) <= tol32);
  CHECK(against_f32(g.rv, f.rv) <= tol32);
  if (other_device) {
    CHECK(rel_err(g.rm, c->rm) <= tol);
    CHECK(rel_err(g.rv, c->rv) <= tol);
  }
  MESSAGE(std::string(dtype_name(dt)), " autocast on ", dev.str(), " vs f32: worst relative error ", worst, " = ", worst / u, " u");
}
}  // namespace

TEST_CASE("autocast net on the CPU: conv/linear in f16 and bf16 stay close to f32, f32 master-weight gradients") {
  for (DType dt : {DType::f16, DType::bf16}) check_autocast_net(kCPU, dt);
}

TEST_CASE("autocast net on CUDA matches the CPU's autocast" * RG_GPU_SUITE) {
  RG_SKIP_UNLESS_GPU(1);
  for (DType dt : {DType::f16, DType::bf16}) check_autocast_net(Device::cuda(0), dt);
}

TEST_CASE("GradScaler growth, reducer hook, clip after unscale_, and misuse errors") {
  Tensor w = weight(kCPU);
  const Tensor x = input(kCPU, DType::f32);
  optim::SGD opt({w}, optim::SGDOptions{.lr = 0.1});
  GradScaler scaler(GradScalerOptions{.init_scale = 4.0, .growth_interval = 2});
  auto iteration = [&](bool clip) {
    opt.zero_grad();
    scaler.scale(mean(matmul(x, w))).backward();
    if (clip) {
      scaler.unscale_(opt);
      optim::clip_grad_norm_({w}, 1e-3);
    }
    const bool stepped = scaler.step(opt);
    scaler.update();
    return stepped;
  };
  CHECK(iteration(false));
  CHECK(scaler.get_scale() == 4.0);
  CHECK(iteration(true));
  CHECK(scaler.get_scale() == 8.0);  // two clean steps: grown
  CHECK(scaler.get_growth_tracker() == 0);

  // the reducer sees the combined found_inf (DDP: another rank overflowed)
  int calls = 0;
  scaler.set_found_inf_reducer([&](Tensor& f) {
    ++calls;
    CHECK(f.numel() == 1);
    CHECK(f.item() == 0.0);
    native::fill_(f, 1.0);
  });
  const std::vector<double> before = vals(w);
  CHECK(!iteration(false));
  CHECK(calls == 1);
  CHECK_VALUES(vals(w), before, 0.0);
  CHECK(scaler.get_scale() == 4.0);
  CHECK(scaler.skipped_steps() == 1);
  scaler.set_found_inf_reducer(nullptr);

  // misuse
  opt.zero_grad();
  scaler.scale(mean(matmul(x, w))).backward();
  scaler.unscale_(opt);
  CHECK_THROWS_AS(scaler.unscale_(opt), Error);
  CHECK(scaler.step(opt));
  CHECK_THROWS_AS(scaler.step(opt), Error);
  CHECK_THROWS_AS(scaler.unscale_(opt), Error);
  scaler.update();
  CHECK_THROWS_AS(scaler.update(), Error);  // no inf checks recorded since
  GradScaler fresh;
  CHECK_THROWS_AS(fresh.unscale_(opt), Error);  // scale() never called
  // an f16 gradient is refused
  Tensor h = from_vector<double>({1.0}, {1}, DType::f16);
  h.set_requires_grad(true);
  optim::SGD hopt({h});
  Tensor hh = h;
  hh.set_grad(from_vector<double>({1.0}, {1}, DType::f16));
  GradScaler s2;
  s2.scale(mean(mul(x, 1.0)));
  CHECK_THROWS_AS(s2.unscale_(hopt), Error);
}

TEST_CASE("GradScaler state_dict round trip; disabled scaler passes through") {
  Tensor w = weight(kCPU);
  const Tensor x = input(kCPU);
  optim::SGD opt({w});
  GradScaler scaler;
  opt.zero_grad();
  scaler.scale(amp_loss(x, w, 1e6)).backward();
  scaler.step(opt);
  scaler.update();
  opt.zero_grad();
  scaler.scale(amp_loss(x, w, 1.0)).backward();
  scaler.step(opt);
  scaler.update();
  const optim::TrainState st = scaler.state_dict();
  CHECK(st.meta["scale"].as_double() == 32768.0);
  CHECK(st.meta["_growth_tracker"].as_int() == 1);
  CHECK(st.meta["growth_interval"].as_int() == 2000);
  CHECK(st.meta["growth_factor"].as_double() == 2.0);
  CHECK(st.meta["backoff_factor"].as_double() == 0.5);
  CHECK(st.meta["skipped_steps"].as_int() == 1);

  optim::TrainState through;
  through.meta = Json::parse(st.meta.dump());
  GradScaler loaded;
  loaded.load_state_dict(through);
  CHECK(loaded.get_scale() == 32768.0);
  CHECK(loaded.get_growth_tracker() == 1);
  CHECK(loaded.skipped_steps() == 1);
  loaded.scale(mean(mul(x, 1.0)));  // lazily creates the tensors from the loaded values
  CHECK(loaded.scale_tensor().item() == 32768.0);
  CHECK(loaded.state_dict().meta.dump() == st.meta.dump());
  CHECK_THROWS_AS(loaded.load_state_dict(optim::TrainState{}), Error);

  GradScaler off(GradScalerOptions{.enabled = false});
  const Tensor loss = mean(mul(x, 1.0));
  CHECK(off.scale(loss).is_same(loss));
  CHECK(off.get_scale() == 1.0);
  CHECK(off.state_dict().meta.size() == 0);
  opt.zero_grad();
  const std::vector<double> before = vals(w);
  mean(matmul(native::to(x, kCPU, DType::f32), w)).backward();
  CHECK(off.step(opt));
  CHECK(vals(w) != before);
  off.update();
}
