// matmul (torch.matmul semantics) and bmm_out on CPU against a triple loop in double in this file:
// vectors, batches with broadcasting, transposed and sliced operands, every dtype, alpha/beta, errors.
#include <cmath>
#include <tuple>

#include "test_util.h"

using namespace rg;
using test::contains;
using test::error_of;

namespace {

Tensor ref(const std::vector<double>& v, const Shape& s) { return from_vector<double>(v, s, DType::f64); }

// Batched (Bt, M, K) @ (Bt, K, N) on dense row-major values, batch of one operand broadcast when its count is 1.
std::vector<double> ref_bmm(const std::vector<double>& a, const std::vector<double>& b, int64_t Ba, int64_t Bb,
                            int64_t M, int64_t K, int64_t N) {
  const int64_t B = std::max(Ba, Bb);
  std::vector<double> c(static_cast<size_t>(B * M * N), 0.0);
  for (int64_t bi = 0; bi < B; ++bi)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double acc = 0;
        for (int64_t k = 0; k < K; ++k) {
          acc += a[static_cast<size_t>(((Ba == 1 ? 0 : bi) * M + i) * K + k)] *
                 b[static_cast<size_t>(((Bb == 1 ? 0 : bi) * K + k) * N + j)];
        }
        c[static_cast<size_t>((bi * M + i) * N + j)] = acc;
      }
  return c;
}

// Tolerance for sums of K products of values in [-1, 1].
test::Tol mm_tol(DType dt, int64_t K) {
  const double s = std::sqrt(static_cast<double>(std::max<int64_t>(K, 1)));
  switch (dt) {
    case DType::f64: return {1e-12 * s, 1e-10};
    case DType::f32: return {2e-6 * s, 1e-5};
    case DType::f16: return {2e-3 * s, 2e-3};
    case DType::bf16: return {1.6e-2 * s, 1e-2};
    default: return {0, 0};
  }
}

}  // namespace

TEST_CASE("2-D matmul of odd sizes in every float dtype") {
  for (DType dt : test::float_dtypes()) {
    for (auto [M, K, N] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{1, 1, 1}, {7, 13, 5}, {64, 33, 17}, {3, 1, 9}, {1, 40, 1}}) {
      CAPTURE(dtype_name(dt));
      CAPTURE(M);
      CAPTURE(K);
      CAPTURE(N);
      const Tensor a = test::uniform({M, K}, -1, 1, dt, 1);
      const Tensor b = test::uniform({K, N}, -1, 1, dt, 2);
      const Tensor c = native::matmul(a, b);
      CHECK(c.sizes() == Shape{M, N});
      CHECK(c.dtype() == dt);
      RG_CHECK_CLOSE(c, ref(ref_bmm(a.to_vector<double>(), b.to_vector<double>(), 1, 1, M, K, N), {M, N}), mm_tol(dt, K));
    }
  }
}

TEST_CASE("vectors: dot to 0-dim, matrix-vector and vector-matrix") {
  const Tensor v = from_vector<double>({1, 2, 3});
  const Tensor w = from_vector<double>({4, -5, 6});
  const Tensor d = native::matmul(v, w);
  CHECK(d.dim() == 0);
  CHECK(d.item() == 12.0);  // 4 - 10 + 18
  const Tensor m = from_vector<double>({1, 0, 2, -1, 3, 1}, {2, 3});
  const Tensor mv = native::matmul(m, v);
  CHECK(mv.sizes() == Shape{2});
  CHECK(mv.to_vector<double>() == std::vector<double>{7, 8});  // [1+0+6, -1+6+3]
  const Tensor vm = native::matmul(from_vector<double>({1, -1}), m);
  CHECK(vm.sizes() == Shape{3});
  CHECK(vm.to_vector<double>() == std::vector<double>{2, -3, 1});
  // batched matrix @ vector and vector @ batched matrix
  const Tensor bm = test::uniform({4, 2, 3}, -1, 1, DType::f64, 5);
  const auto bmv = bm.to_vector<double>();
  const auto r = native::matmul(bm, v);
  CHECK(r.sizes() == Shape{4, 2});
  RG_CHECK_CLOSE(r, ref(ref_bmm(bmv, {1, 2, 3}, 4, 1, 2, 3, 1), {4, 2}), mm_tol(DType::f64, 3));
  const auto r2 = native::matmul(from_vector<double>({1, -1}), bm);
  CHECK(r2.sizes() == Shape{4, 3});
  RG_CHECK_CLOSE(r2, ref(ref_bmm({1, -1}, bmv, 1, 4, 1, 2, 3), {4, 3}), mm_tol(DType::f64, 2));
}

TEST_CASE("batched matmul with broadcast batch dims and folded rows") {
  for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
    CAPTURE(dtype_name(dt));
    // (2, 1, 4, 5) @ (3, 5, 6) -> (2, 3, 4, 6)
    const Tensor a = test::uniform({2, 1, 4, 5}, -1, 1, dt, 6);
    const Tensor b = test::uniform({3, 5, 6}, -1, 1, dt, 7);
    const auto av = a.to_vector<double>(), bv = b.to_vector<double>();
    std::vector<double> want;
    for (int i = 0; i < 2; ++i) {
      const std::vector<double> ai(av.begin() + i * 20, av.begin() + (i + 1) * 20);
      const auto ci = ref_bmm(ai, bv, 1, 3, 4, 5, 6);
      want.insert(want.end(), ci.begin(), ci.end());
    }
    const Tensor c = native::matmul(a, b);
    CHECK(c.sizes() == Shape{2, 3, 4, 6});
    RG_CHECK_CLOSE(c, ref(want, {2, 3, 4, 6}), mm_tol(dt, 5));
    // (2, 3, 7, 5) @ (5, 4): one GEMM over 42 rows
    const Tensor x = test::uniform({2, 3, 7, 5}, -1, 1, dt, 8);
    const Tensor w = test::uniform({5, 4}, -1, 1, dt, 9);
    const Tensor y = native::matmul(x, w);
    CHECK(y.sizes() == Shape{2, 3, 7, 4});
    RG_CHECK_CLOSE(y, ref(ref_bmm(x.to_vector<double>(), w.to_vector<double>(), 1, 1, 42, 5, 4), {2, 3, 7, 4}),
                   mm_tol(dt, 5));
    // the same with a transposed input (rows cannot fold: batched with a broadcast weight)
    const Tensor xt = native::transpose(test::uniform({2, 5, 7}, -1, 1, dt, 10), 1, 2);  // (2, 7, 5)
    RG_CHECK_CLOSE(native::matmul(xt, w),
                   ref(ref_bmm(xt.to_vector<double>(), w.to_vector<double>(), 2, 1, 7, 5, 4), {2, 7, 4}), mm_tol(dt, 5));
    // (3, 5) @ (2, 5, 4): the matrix broadcast over the batch
    const Tensor m = test::uniform({3, 5}, -1, 1, dt, 11);
    const Tensor bb = test::uniform({2, 5, 4}, -1, 1, dt, 12);
    RG_CHECK_CLOSE(native::matmul(m, bb),
                   ref(ref_bmm(m.to_vector<double>(), bb.to_vector<double>(), 1, 2, 3, 5, 4), {2, 3, 4}), mm_tol(dt, 5));
  }
  // many small batches run in parallel; a large one goes through Eigen's own threading
  const Tensor a = test::uniform({16, 20, 30}, -1, 1, DType::f32, 13);
  const Tensor b = test::uniform({16, 30, 10}, -1, 1, DType::f32, 14);
  RG_CHECK_CLOSE(native::matmul(a, b), ref(ref_bmm(a.to_vector<double>(), b.to_vector<double>(), 16, 16, 20, 30, 10),
                                           {16, 20, 10}), mm_tol(DType::f32, 30));
  const Tensor p = test::uniform({150, 200}, -1, 1, DType::f32, 15);
  const Tensor q = test::uniform({200, 130}, -1, 1, DType::f32, 16);
  RG_CHECK_CLOSE(native::matmul(p, q), ref(ref_bmm(p.to_vector<double>(), q.to_vector<double>(), 1, 1, 150, 200, 130),
                                           {150, 130}), mm_tol(DType::f32, 200));
}

TEST_CASE("transposed and sliced operands in every layout combination") {
  for (DType dt : {DType::f32, DType::f64, DType::f16}) {
    const int64_t M = 9, K = 11, N = 6;
    const Tensor a_rm = test::uniform({M, K}, -1, 1, dt, 20);
    const Tensor a_cm = native::transpose(test::uniform({K, M}, -1, 1, dt, 21), 0, 1);
    const Tensor a_sl = native::slice(native::slice(test::uniform({2 * M, 3 * K}, -1, 1, dt, 22), 0, 0, 2 * M, 2), 1, 0,
                                      3 * K, 3);  // no unit stride: copied
    const Tensor b_rm = test::uniform({K, N}, -1, 1, dt, 23);
    const Tensor b_cm = native::transpose(test::uniform({N, K}, -1, 1, dt, 24), 0, 1);
    const Tensor b_sl = native::slice(test::uniform({K, 2 * N}, -1, 1, dt, 25), 1, 0, 2 * N, 2);
    for (const Tensor* a : {&a_rm, &a_cm, &a_sl}) {
      for (const Tensor* b : {&b_rm, &b_cm, &b_sl}) {
        CAPTURE(dtype_name(dt));
        CAPTURE(shape_str(a->strides()));
        CAPTURE(shape_str(b->strides()));
        RG_CHECK_CLOSE(native::matmul(*a, *b),
                       ref(ref_bmm(a->to_vector<double>(), b->to_vector<double>(), 1, 1, M, K, N), {M, N}),
                       mm_tol(dt, K));
      }
    }
  }
}

TEST_CASE("integer matmul, dtype promotion, empty sizes") {
  const Tensor a = from_vector<int64_t>({1, 2, 3, 4, 5, 6}, {2, 3});
  const Tensor b = from_vector<int64_t>({1, 0, -1, 2, 3, 1}, {3, 2});
  // by hand: [1 - 2 + 9, 0 + 4 + 3; 4 - 5 + 18, 0 + 10 + 6]
  const Tensor c = native::matmul(a, b);
  CHECK(c.dtype() == DType::i64);
  CHECK(c.to_vector<int64_t>() == std::vector<int64_t>{8, 7, 17, 16});
  const Tensor ci = native::matmul(native::to(a, kCPU, DType::i32), native::to(b, kCPU, DType::i32));
  CHECK(ci.dtype() == DType::i32);
  CHECK(ci.to_vector<int64_t>() == std::vector<int64_t>{8, 7, 17, 16});
  const Tensor cf = native::matmul(native::to(a, kCPU, DType::i32), native::to(b, kCPU, DType::f32));
  CHECK(cf.dtype() == DType::f32);
  CHECK(cf.to_vector<double>() == std::vector<double>{8, 7, 17, 16});
  const Tensor ch = native::matmul(native::to(a, kCPU, DType::f16), native::to(b, kCPU, DType::bf16));
  CHECK(ch.dtype() == DType::f32);
  // K == 0 gives zeros; M == 0 gives an empty result
  CHECK(native::matmul(zeros({3, 0}), zeros({0, 2})).to_vector<double>() == std::vector<double>(6, 0.0));
  CHECK(native::matmul(zeros({0, 4}), zeros({4, 2})).sizes() == Shape{0, 2});
  CHECK(native::matmul(zeros({2, 0, 4}), zeros({4, 2})).sizes() == Shape{2, 0, 2});
  CHECK(native::matmul(zeros({0}), zeros({0})).item() == 0.0);
}

TEST_CASE("matmul errors name the op and both shapes") {
  const std::string m = error_of([] { native::matmul(zeros({2, 3}), zeros({4, 5})); });
  CHECK(contains(m, "matmul: shapes [2, 3] and [4, 5] cannot be multiplied (3 != 4)"));
  CHECK(contains(error_of([] { native::matmul(zeros({3}), zeros({4})); }), "[3] and [4]"));
  CHECK(contains(error_of([] { native::matmul(zeros({2, 2, 3}), zeros({3, 3, 2})); }), "matmul"));  // batch 2 vs 3
  CHECK(contains(error_of([] { native::matmul(scalar_tensor(1.0), zeros({2})); }), "at least 1D"));
  CHECK_THROWS_AS(native::matmul(native::to(zeros({2, 2}), kCPU, DType::b8), native::to(zeros({2, 2}), kCPU, DType::b8)),
                  rg::Error);
}

TEST_CASE("bmm_out: alpha, beta, NaN in c with beta 0, strided and overlapping outputs") {
  for (DType dt : test::float_dtypes()) {
    CAPTURE(dtype_name(dt));
    const Tensor a = test::uniform({3, 4, 5}, -1, 1, dt, 30);
    const Tensor b = test::uniform({3, 5, 2}, -1, 1, dt, 31);
    const auto ab = ref_bmm(a.to_vector<double>(), b.to_vector<double>(), 3, 3, 4, 5, 2);
    // beta 0 ignores whatever c held, even NaN
    const Tensor c = full({3, 4, 2}, NAN, dt);
    native::bmm_out(c, a, b, 2.0, 0.0);
    std::vector<double> want(ab.size());
    for (size_t i = 0; i < ab.size(); ++i) want[i] = 2.0 * ab[i];
    RG_CHECK_CLOSE(c, ref(want, {3, 4, 2}), mm_tol(dt, 5));
    // beta 1 accumulates
    const Tensor c0 = test::uniform({3, 4, 2}, -1, 1, dt, 32);
    const auto c0v = c0.to_vector<double>();
    native::bmm_out(c0, a, b, 0.5, 1.0);
    for (size_t i = 0; i < ab.size(); ++i) want[i] = 0.5 * ab[i] + c0v[i];
    RG_CHECK_CLOSE(c0, ref(want, {3, 4, 2}), mm_tol(dt, 5));
    // c a transposed view (column-major) and beta -1
    const Tensor cbase = test::uniform({3, 2, 4}, -1, 1, dt, 33);
    const Tensor ct = native::transpose(cbase, 1, 2);  // (3, 4, 2)
    const auto ctv = ct.to_vector<double>();
    native::bmm_out(ct, a, b, 1.0, -1.0);
    for (size_t i = 0; i < ab.size(); ++i) want[i] = ab[i] - ctv[i];
    RG_CHECK_CLOSE(ct, ref(want, {3, 4, 2}), mm_tol(dt, 5));
    // c without a unit stride: computed in a copy and written back; other elements untouched
    const Tensor big = zeros({3, 8, 4}, dt);
    const Tensor cs = native::slice(native::slice(big, 1, 0, 8, 2), 2, 0, 4, 2);  // (3, 4, 2), strides (32, 8, 2)
    native::bmm_out(cs, a, b, 1.0, 0.0);
    RG_CHECK_CLOSE(cs, ref(ab, {3, 4, 2}), mm_tol(dt, 5));
    CHECK(native::reduce(ReduceOp::AbsMax, native::slice(big, 1, 1, 8, 2), {}, false).item() == 0.0);
  }
  // a broadcast (batch stride 0) operand
  const Tensor a = test::uniform({1, 4, 5}, -1, 1, DType::f64, 34);
  const Tensor b = test::uniform({3, 5, 2}, -1, 1, DType::f64, 35);
  const Tensor c = empty({3, 4, 2}, DType::f64);
  native::bmm_out(c, native::expand(a, {3, 4, 5}), b);
  RG_CHECK_CLOSE(c, ref(ref_bmm(a.to_vector<double>(), b.to_vector<double>(), 1, 3, 4, 5, 2), {3, 4, 2}),
                 mm_tol(DType::f64, 5));
  // an output whose batches overlap (stride 0) is not written in place
  const Tensor shared = zeros({1, 4, 2}, DType::f64);
  const Tensor cover = native::expand(shared, {3, 4, 2});
  native::bmm_out(cover, native::expand(a, {3, 4, 5}), native::expand(native::unsqueeze(native::select(b, 0, 0), 0), {3, 5, 2}));
  RG_CHECK_CLOSE(shared, ref(ref_bmm(a.to_vector<double>(), native::select(b, 0, 0).to_vector<double>(), 1, 1, 4, 5, 2),
                             {1, 4, 2}), mm_tol(DType::f64, 5));
  // errors
  CHECK(contains(error_of([] { native::bmm_out(zeros({2, 3, 4}), zeros({2, 3, 5}), zeros({2, 6, 4})); }), "(5 != 6)"));
  CHECK(contains(error_of([] { native::bmm_out(zeros({2, 3, 5}), zeros({2, 3, 4}), zeros({2, 4, 4})); }), "[2, 3, 5]"));
  CHECK(contains(error_of([] { native::bmm_out(zeros({3, 3}), zeros({3, 3}), zeros({3, 3})); }), "3-D"));
  CHECK(contains(error_of([] { native::bmm_out(zeros({2, 3, 4}), zeros({2, 3, 5}), zeros({3, 5, 4})); }), "batch"));
}
