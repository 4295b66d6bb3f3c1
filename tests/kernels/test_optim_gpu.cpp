// Multi-tensor CUDA kernels against the CPU kernels: SGD and Adam/AdamW steps in every option
// combination, AMP unscale with inf/nan detection, the loss-scale update, per-tensor sums of
// squares, scale and axpby. The lists are long (more tensors than one launch's slots), hold empty,
// odd-sized and misaligned tensors, and one tensor longer than one launch's blocks.
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "core/cuda_api.h"
#include "kernel_test_util.h"
#include "test_util.h"

using namespace rg;
using namespace rg::ktest;

namespace {

constexpr int64_t kChunk = 65536;

// Sizes: odd ones, empty, chunk boundaries, 130 small tensors (more than any launch's slots),
// and one tensor of more chunks than a launch has blocks (321 chunks + 17).
std::vector<int64_t> list_sizes(bool with_huge) {
  std::vector<int64_t> s = {1, 7, 0, 1023, 4097, kChunk, kChunk + 1, 3};
  for (int i = 0; i < 130; ++i) s.push_back((i * 37) % 500 + 1);
  if (with_huge) s.push_back(321 * kChunk + 17);
  s.push_back(200000);
  s.push_back(5);
  return s;
}

bool misaligned(size_t i) { return i % 5 == 3; }  // every fifth tensor starts one element in

struct Pair {
  std::vector<Tensor> cpu, gpu;
};

// The same values on both devices; misaligned tensors are narrowed views of a base one longer.
Pair make_list(const std::vector<int64_t>& sizes, DType dt, double lo, double hi, uint64_t seed) {
  Pair p;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const int64_t n = sizes[i];
    if (misaligned(i) && n > 0) {
      const Tensor base = test::uniform({n + 1}, lo, hi, dt, seed + i);
      const Tensor gbase = to_gpu(base);
      p.cpu.push_back(native::narrow(base, 0, 1, n));
      p.gpu.push_back(native::narrow(gbase, 0, 1, n));
    } else {
      const Tensor t = test::uniform({n}, lo, hi, dt, seed + i);
      p.cpu.push_back(t);
      p.gpu.push_back(to_gpu(t));
    }
  }
  return p;
}

void check_lists(const Pair& p, test::Tol tol, const std::string& what) {
  for (size_t i = 0; i < p.cpu.size(); ++i) {
    CAPTURE(what);
    CAPTURE(i);
    RG_CHECK_CLOSE(to_cpu(p.gpu[i]), p.cpu[i], tol);
  }
}

test::Tol opt_tol(DType dt) { return dt == DType::f64 ? test::Tol{1e-12, 1e-12} : test::Tol{1e-5, 1e-5}; }

}  // namespace

TEST_CASE("sgd_step: CUDA matches CPU in every option combination") {
  struct Cfg {
    double momentum, dampening, wd;
    bool nesterov, maximize, first;
  };
  const std::vector<Cfg> cfgs = {{0, 0, 0, false, false, false},    {0, 0, 1e-2, false, true, false},
                                 {0.9, 0.1, 1e-4, false, false, true}, {0.9, 0.1, 1e-4, false, false, false},
                                 {0.8, 0, 5e-4, true, false, false},   {0.9, 0, 0, true, true, true}};
  uint64_t seed = 1000;
  for (DType dt : {DType::f32, DType::f64}) {
    for (size_t k = 0; k < cfgs.size(); ++k) {
      const Cfg& c = cfgs[k];
      CAPTURE(dtype_name(dt));
      CAPTURE(k);
      const auto sizes = list_sizes(k == 2 && dt == DType::f32);
      Pair p = make_list(sizes, dt, -1, 1, seed), g = make_list(sizes, dt, -1, 1, seed + 300);
      Pair b = make_list(sizes, dt, -1, 1, seed + 600);
      seed += 1000;
      SgdParams sp;
      sp.lr = 0.05;
      sp.momentum = c.momentum;
      sp.dampening = c.dampening;
      sp.weight_decay = c.wd;
      sp.nesterov = c.nesterov;
      sp.maximize = c.maximize;
      sp.first_step = c.first;
      const std::vector<Tensor> none;
      native::sgd_step_(p.cpu, g.cpu, c.momentum != 0 ? b.cpu : none, sp);
      native::sgd_step_(p.gpu, g.gpu, c.momentum != 0 ? b.gpu : none, sp);
      check_lists(p, opt_tol(dt), "params");
      if (c.momentum != 0) check_lists(b, opt_tol(dt), "momentum buffers");
      check_lists(g, test::Tol{0, 0}, "grads (read only)");
    }
  }
}

TEST_CASE("adam_step: CUDA matches CPU (amsgrad, AdamW, maximize, steps)") {
  struct Cfg {
    bool amsgrad, decoupled, maximize;
    double wd;
    int64_t step;
  };
  const std::vector<Cfg> cfgs = {{false, false, false, 0, 1},   {true, false, false, 0, 7},  {false, true, false, 1e-2, 3},
                                 {true, true, true, 1e-2, 1},   {false, false, true, 0.1, 20}};
  uint64_t seed = 20000;
  for (DType dt : {DType::f32, DType::f64}) {
    for (size_t k = 0; k < cfgs.size(); ++k) {
      const Cfg& c = cfgs[k];
      CAPTURE(dtype_name(dt));
      CAPTURE(k);
      const auto sizes = list_sizes(k == 1 && dt == DType::f32);
      Pair p = make_list(sizes, dt, -1, 1, seed), g = make_list(sizes, dt, -1, 1, seed + 300);
      Pair m = make_list(sizes, dt, -0.5, 0.5, seed + 600), v = make_list(sizes, dt, 0.01, 1, seed + 900);
      Pair vmax = make_list(sizes, dt, 0.01, 1, seed + 1200);
      seed += 2000;
      AdamParams ap;
      ap.lr = 1e-3;
      ap.beta1 = 0.9;
      ap.beta2 = 0.99;
      ap.eps = 1e-8;
      ap.weight_decay = c.wd;
      ap.decoupled = c.decoupled;
      ap.amsgrad = c.amsgrad;
      ap.maximize = c.maximize;
      ap.step = c.step;
      const std::vector<Tensor> none;
      native::adam_step_(p.cpu, g.cpu, m.cpu, v.cpu, c.amsgrad ? vmax.cpu : none, ap);
      native::adam_step_(p.gpu, g.gpu, m.gpu, v.gpu, c.amsgrad ? vmax.gpu : none, ap);
      check_lists(p, opt_tol(dt), "params");
      check_lists(m, opt_tol(dt), "exp_avg");
      check_lists(v, opt_tol(dt), "exp_avg_sq");
      if (c.amsgrad) check_lists(vmax, opt_tol(dt), "max_exp_avg_sq");
      check_lists(g, test::Tol{0, 0}, "grads (read only)");
    }
  }
}

TEST_CASE("amp_unscale: CUDA matches CPU, finds inf and nan in any dtype") {
  uint64_t seed = 40000;
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    for (int bad = 0; bad < 3; ++bad) {  // none, an inf, a nan
      CAPTURE(dtype_name(dt));
      CAPTURE(bad);
      const auto sizes = list_sizes(dt == DType::f16 && bad == 1);
      Pair g = make_list(sizes, dt, -1000, 1000, seed);
      seed += 500;
      if (bad > 0) {  // in a tensor in the middle of the list, at an odd position
        const double v = bad == 1 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
        const size_t i = sizes.size() - 2;  // the 200000-element tensor
        native::fill_(native::narrow(g.cpu[i], 0, 12345, 1), v);
        native::fill_(native::narrow(g.gpu[i], 0, 12345, 1), v);
      }
      const Tensor fc = zeros({1}), fg = zeros({1}, TensorOptions(DType::f32).device(kGPU));
      const Tensor inv = full({1}, 1.0 / 1024.0);
      native::amp_unscale_(g.cpu, fc, inv);
      native::amp_unscale_(g.gpu, fg, to_gpu(inv));
      CHECK(fc.item() == (bad > 0 ? 1.0 : 0.0));
      CHECK(fg.item() == fc.item());
      check_lists(g, test::tol_for(dt), "unscaled grads");
    }
  }
  // mixed dtypes in one call
  Pair a = make_list({5, 70000}, DType::f16, -1, 1, 41000), b = make_list({3, 9}, DType::bf16, -1, 1, 41100);
  std::vector<Tensor> gc = a.cpu, gg = a.gpu;
  gc.insert(gc.end(), b.cpu.begin(), b.cpu.end());
  gg.insert(gg.end(), b.gpu.begin(), b.gpu.end());
  native::fill_(native::narrow(gc[3], 0, 8, 1), std::numeric_limits<double>::infinity());
  native::fill_(native::narrow(gg[3], 0, 8, 1), std::numeric_limits<double>::infinity());
  const Tensor fg = zeros({1}, TensorOptions(DType::f32).device(kGPU));
  native::amp_unscale_(gg, fg, full({1}, 0.5, TensorOptions(DType::f32).device(kGPU)));
  CHECK(fg.item() == 1.0);
  RG_CHECK_CLOSE(to_cpu(gg[1]), native::unary(UnaryOp::Affine, a.cpu[1], 0.5, 0.0), test::tol_for(DType::f16));
}

TEST_CASE("amp_update_scale on CUDA follows PyTorch's rule") {
  const TensorOptions o = TensorOptions(DType::f32).device(kGPU);
  Tensor scale = full({1}, 1024.0, o), tracker = zeros({1}, TensorOptions(DType::i32).device(kGPU));
  auto update = [&](bool inf) {
    native::amp_update_scale_(scale, tracker, full({1}, inf ? 1.0 : 0.0, o), 2.0, 0.5, 3);
    return std::make_pair(scale.item(), tracker.item<int64_t>());
  };
  CHECK(update(false) == std::make_pair(1024.0, int64_t{1}));
  CHECK(update(false) == std::make_pair(1024.0, int64_t{2}));
  CHECK(update(false) == std::make_pair(2048.0, int64_t{0}));
  CHECK(update(true) == std::make_pair(1024.0, int64_t{0}));
  CHECK(update(false) == std::make_pair(1024.0, int64_t{1}));
  native::fill_(scale, 3e38);
  native::fill_(tracker, 2.0);
  CHECK(update(false).first == doctest::Approx(3e38).epsilon(1e-6));  // never grows into inf
}

TEST_CASE("multi_sum_squares, multi_scale, multi_axpby: CUDA matches CPU") {
  uint64_t seed = 50000;
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    CAPTURE(dtype_name(dt));
    const auto sizes = list_sizes(dt == DType::f32);
    Pair x = make_list(sizes, dt, -2, 2, seed);
    Pair y = make_list(sizes, dt, -2, 2, seed + 700);
    seed += 2000;
    const Tensor sc = native::multi_sum_squares(x.cpu), sg = native::multi_sum_squares(x.gpu);
    CHECK(sg.dtype() == (dt == DType::f64 ? DType::f64 : DType::f32));
    CHECK(sg.numel() == static_cast<int64_t>(sizes.size()));
    RG_CHECK_CLOSE(to_cpu(sg), sc, (dt == DType::f64 ? test::Tol{1e-9, 1e-12} : test::Tol{1e-4, 1e-5}));

    const DType st = dt == DType::f64 ? DType::f64 : DType::f32;
    native::multi_scale_(x.cpu, full({1}, 0.375, st));
    native::multi_scale_(x.gpu, full({1}, 0.375, TensorOptions(st).device(kGPU)));
    check_lists(x, test::tol_for(dt), "scaled");

    native::multi_axpby_(y.cpu, x.cpu, 0.9, -0.25);
    native::multi_axpby_(y.gpu, x.gpu, 0.9, -0.25);
    check_lists(y, test::tol_for(dt), "axpby");
  }
  // a mixed-dtype sum of squares (one launch per dtype, one output)
  Pair a = make_list({10, 0, 300000}, DType::f16, -1, 1, 52000), b = make_list({4097, 1}, DType::f32, -1, 1, 52100);
  std::vector<Tensor> mc = a.cpu, mg = a.gpu;
  mc.insert(mc.begin() + 1, b.cpu.begin(), b.cpu.end());
  mg.insert(mg.begin() + 1, b.gpu.begin(), b.gpu.end());
  RG_CHECK_CLOSE(to_cpu(native::multi_sum_squares(mg)), native::multi_sum_squares(mc), (test::Tol{1e-3, 1e-5}));
  // a worked value: 3^2 + 4^2
  const Tensor t = to_gpu(from_vector<double>({3.0, 4.0}, {2}, DType::f32));
  CHECK(native::multi_sum_squares({t}).item() == 25.0);
}
