// random_cuda against random_cpu: the same Generator state gives the same numbers on both devices
// (Note [Philox streams]), for every kind and dtype, odd sizes and strided targets; plus the stream
// layout checked from the Philox definition, and the moments of large samples.
#include <cmath>
#include <string>
#include <vector>

#include "core/cuda_api.h"
#include "core/random.h"
#include "kernel_test_util.h"
#include "test_util.h"

using namespace rg;
using namespace rg::ktest;

namespace {

struct Kind {
  RandomKind kind;
  double a, b;
  const char* name;
};

const std::vector<Kind> kKinds = {{RandomKind::Uniform, -2.0, 3.0, "uniform"},
                                  {RandomKind::Normal, 0.5, 2.0, "normal"},
                                  {RandomKind::Bernoulli, 0.3, 0.0, "bernoulli"}};

// Uniform and Bernoulli are plain arithmetic: equal bits. Normal goes through log/cos/sin, whose
// device and host versions may differ in the last double bits (Note [Philox formulas]).
test::Tol random_tol(RandomKind k, DType dt) {
  if (k != RandomKind::Normal || !is_floating(dt)) return {0.0, 0.0};
  if (dt == DType::f64) return {1e-12, 1e-12};
  if (dt == DType::f32) return {1e-6, 1e-6};
  return test::tol_for(dt);  // a 1-ulp float difference can cross a half rounding boundary
}

}  // namespace

TEST_CASE("random_cuda gives the CPU's numbers for the same generator state") {
  const std::vector<DType> all = test::all_dtypes();
  const std::vector<Shape> shapes = {{1}, {7}, {1023}, {4097}, {3, 5, 7}, {2, 1, 33}, {100003}};
  for (const Kind& k : kKinds) {
    for (DType dt : all) {
      if (k.kind != RandomKind::Bernoulli && !is_floating(dt)) continue;
      for (const Shape& s : shapes) {
        INFO(k.name, " ", dtype_name(dt), " ", shape_str(s));
        Generator gc(20240601), gg(20240601);
        gc.set_state(20240601, 12345);
        gg.set_state(20240601, 12345);
        Tensor c = empty(s, dt), g = empty(s, TensorOptions(dt).device(kGPU));
        native::random_(c, k.kind, k.a, k.b, &gc);
        native::random_(g, k.kind, k.a, k.b, &gg);
        RG_CHECK_CLOSE(g, c, random_tol(k.kind, dt));
        CHECK(gg.offset() == gc.offset());
        CHECK(gg.offset() == 12345 + static_cast<uint64_t>((shape_numel(s) + 3) / 4));
      }
    }
  }
}

TEST_CASE("random_cuda into a strided view follows logical order like the CPU") {
  for (const Kind& k : kKinds) {
    for (DType dt : {DType::f32, DType::f16}) {
      INFO(k.name, " ", dtype_name(dt));
      Generator gc(7), gg(7);
      Tensor cb = zeros({65, 33}, dt), gb = zeros({65, 33}, TensorOptions(dt).device(kGPU));
      native::random_(native::transpose(cb, 0, 1), k.kind, k.a, k.b, &gc);
      native::random_(native::transpose(gb, 0, 1), k.kind, k.a, k.b, &gg);
      RG_CHECK_CLOSE(gb, cb, random_tol(k.kind, dt));
      Tensor cs = zeros({4097}, dt), gs = zeros({4097}, TensorOptions(dt).device(kGPU));
      native::random_(native::slice(cs, 0, 1, 4097, 3), k.kind, k.a, k.b, &gc);
      native::random_(native::slice(gs, 0, 1, 4097, 3), k.kind, k.a, k.b, &gg);
      RG_CHECK_CLOSE(gs, cs, random_tol(k.kind, dt));  // the untouched elements stay 0 on both
    }
  }
}

TEST_CASE("random_cuda element i reads Philox word i % 4 of counter offset + i / 4") {
  const uint64_t seed = 99, offset = 1000;
  Generator g(seed);
  g.set_state(seed, offset);
  Tensor u = empty({11}, TensorOptions(DType::f64).device(kGPU));
  native::random_(u, RandomKind::Uniform, 0.0, 1.0, &g);
  const auto v = u.to_vector<double>();
  for (int i = 0; i < 11; ++i) {
    uint32_t w[4];
    Philox::block(seed, offset + static_cast<uint64_t>(i / 4), w);
    CHECK(v[static_cast<size_t>(i)] == static_cast<double>(w[i % 4] >> 8) / 16777216.0);
  }
  // normals: lanes (0, 1) form one Box-Muller pair
  g.set_state(seed, offset);
  Tensor z = empty({2}, TensorOptions(DType::f64).device(kGPU));
  native::random_(z, RandomKind::Normal, 0.0, 1.0, &g);
  uint32_t w[4];
  Philox::block(seed, offset, w);
  const double u1 = 1.0 - static_cast<double>(w[0] >> 8) / 16777216.0, u2 = static_cast<double>(w[1] >> 8) / 16777216.0;
  const double r = std::sqrt(-2.0 * std::log(u1));
  const auto zv = z.to_vector<double>();
  CHECK(zv[0] == doctest::Approx(r * std::cos(6.283185307179586 * u2)).epsilon(1e-12));
  CHECK(zv[1] == doctest::Approx(r * std::sin(6.283185307179586 * u2)).epsilon(1e-12));
}

TEST_CASE("random_cuda moments of a million samples") {
  Generator g(3);
  const int64_t n = 1000000;
  Tensor z = randn({n}, TensorOptions(DType::f32).device(kGPU), &g);
  const double mean = native::mean(z).item();
  const double var = native::reduce(ReduceOp::Var, z, {}, false, 1).item();
  CHECK(std::fabs(mean) < 0.01);
  CHECK(std::fabs(var - 1.0) < 0.01);
  Tensor u = rand({n}, TensorOptions(DType::f32).device(kGPU), &g);
  CHECK(std::fabs(native::mean(u).item() - 0.5) < 0.005);
  CHECK(native::reduce(ReduceOp::Min, u, {}, false).item() >= 0.0);
  CHECK(native::reduce(ReduceOp::Max, u, {}, false).item() < 1.0);
  Tensor b = empty({n}, TensorOptions(DType::f32).device(kGPU));
  native::random_(b, RandomKind::Bernoulli, 0.3, 0.0, &g);
  CHECK(std::fabs(native::mean(b).item() - 0.3) < 0.005);
}
