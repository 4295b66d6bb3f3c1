// Forward values of the differentiable ops on the CPU against values worked out by hand or by a
// formula written here (std::exp, std::erf, plain loops), independently of the code under test.
#include "ag_util.h"

using namespace rg;
using namespace rg::agtest;

namespace {
Tensor t64(const std::vector<double>& v, const Shape& s) { return from_vector<double>(v, s); }

// Reference matmul of row-major (B, M, K) and (B, K, N) with batch stride 0 where b_batch is 1.
std::vector<double> ref_bmm(const std::vector<double>& a, const std::vector<double>& b, int64_t B, int64_t M,
                            int64_t K, int64_t N, bool a_shared, bool b_shared) {
  std::vector<double> c(static_cast<size_t>(B * M * N), 0.0);
  for (int64_t bi = 0; bi < B; ++bi) {
    for (int64_t i = 0; i < M; ++i) {
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) {
          s += a[static_cast<size_t>((a_shared ? 0 : bi) * M * K + i * K + k)] *
               b[static_cast<size_t>((b_shared ? 0 : bi) * K * N + k * N + j)];
        }
        c[static_cast<size_t>(bi * M * N + i * N + j)] = s;
      }
    }
  }
  return c;
}
}  // namespace

TEST_CASE("forward: softmax and log_softmax of [1, 2, 3]") {
  const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  const std::vector<double> sm = {std::exp(1.0) / z, std::exp(2.0) / z, std::exp(3.0) / z};
  // by hand: 0.0900306, 0.2447285, 0.6652410
  CHECK_VALUES(vals(softmax(t64({1, 2, 3}, {3}), 0)), (std::vector<double>{0.0900306, 0.2447285, 0.6652410}), 1e-7);
  CHECK_VALUES(vals(softmax(t64({1, 2, 3}, {3}), 0)), sm, 1e-15);
  CHECK_VALUES(vals(log_softmax(t64({1, 2, 3}, {3}), -1)),
               (std::vector<double>{1 - std::log(z), 2 - std::log(z), 3 - std::log(z)}), 1e-14);
  // along dim 0 of a (2, 2): columns [0, ln 3] -> [1/4, 3/4] and [5, 5] -> [1/2, 1/2]
  CHECK_VALUES(vals(softmax(t64({0, 5, std::log(3.0), 5}, {2, 2}), 0)), (std::vector<double>{0.25, 0.5, 0.75, 0.5}),
               1e-15);
  // f32, and huge logits where a naive exp would overflow
  Tensor f = from_vector<float>({1000.f, 1000.f}, {2});
  CHECK_VALUES(vals(softmax(f, 0)), (std::vector<double>{0.5, 0.5}), 1e-7);
  CHECK_VALUES(vals(log_softmax(f, 0)), (std::vector<double>{-std::log(2.0), -std::log(2.0)}), 1e-6);
}

TEST_CASE("forward: sum, mean, var, std, amax, amin, norm of [[1, 2, 3], [4, 5, 6]]") {
  Tensor x = t64({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(sum(x).item() == 21);
  CHECK(sum(x).dim() == 0);
  CHECK_VALUES(vals(sum(x, {0})), (std::vector<double>{5, 7, 9}), 0);
  CHECK_VALUES(vals(sum(x, {1})), (std::vector<double>{6, 15}), 0);
  CHECK(sum(x, {1}, true).sizes() == Shape{2, 1});
  CHECK(sum(x, {0, 1}, true).sizes() == Shape{1, 1});
  CHECK(mean(x).item() == 3.5);
  CHECK_VALUES(vals(mean(x, {-1})), (std::vector<double>{2, 5}), 0);
  // var of 1..6: sum of squared deviations 17.5; /5 and /6
  CHECK(std::fabs(var(x).item() - 3.5) < 1e-14);
  CHECK(std::fabs(var(x, {}, 0).item() - 17.5 / 6) < 1e-14);
  CHECK_VALUES(vals(var(x, {1})), (std::vector<double>{1, 1}), 1e-14);
  CHECK_VALUES(vals(var(x, {0}, 0)), (std::vector<double>{2.25, 2.25, 2.25}), 1e-14);
  CHECK_VALUES(vals(rg::std(x, {0}, 0)), (std::vector<double>{1.5, 1.5, 1.5}), 1e-14);
  CHECK(std::fabs(rg::std(x).item() - std::sqrt(3.5)) < 1e-14);
  CHECK(rg::std(x, {1}, 1, true).sizes() == Shape{2, 1});
  CHECK_VALUES(vals(amax(x, {0})), (std::vector<double>{4, 5, 6}), 0);
  CHECK_VALUES(vals(amin(x, {1}, true)), (std::vector<double>{1, 4}), 0);
  CHECK(amin(x, {1}, true).sizes() == Shape{2, 1});
  CHECK(max(x).item() == 6);
  CHECK(min(x).item() == 1);
  CHECK(std::fabs(norm(x).item() - std::sqrt(91.0)) < 1e-14);
  // f32 sums
  Tensor xf = from_vector<float>({0.5f, 0.25f, 0.125f, 1.0f}, {4});
  CHECK(sum(xf).item() == 1.875);
  CHECK(sum(xf).dtype() == DType::f32);
}

TEST_CASE("forward: matmul on 1-D, 2-D and batched shapes") {
  Tensor a = t64({1, 2, 3, 4}, {2, 2}), b = t64({5, 6, 7, 8}, {2, 2});
  CHECK_VALUES(vals(matmul(a, b)), (std::vector<double>{19, 22, 43, 50}), 0);
  CHECK_VALUES(vals(mm(a, b)), (std::vector<double>{19, 22, 43, 50}), 0);
  CHECK_VALUES(vals(mm(a.t(), b)), (std::vector<double>{26, 30, 38, 44}), 0);  // [[1,3],[2,4]] @ b
  Tensor u = t64({1, 2, 3}, {3}), v = t64({4, 5, 6}, {3});
  Tensor dot = matmul(u, v);
  CHECK(dot.dim() == 0);
  CHECK(dot.item() == 32);
  Tensor m = t64({1, 0, 2, 0, 1, 3}, {2, 3});
  CHECK_VALUES(vals(matmul(m, u)), (std::vector<double>{7, 11}), 0);                   // (2,3)@(3)
  CHECK_VALUES(vals(matmul(t64({1, -1}, {2}), m)), (std::vector<double>{1, -1, -1}), 0);  // (2)@(2,3)
  CHECK(matmul(m, u).sizes() == Shape{2});
  // batched with broadcasting, against a loop written here
  const auto av = uniform_values(2 * 3 * 4, -1, 1, 1), bv = uniform_values(4 * 5, -1, 1, 2);
  Tensor ab = t64(av, {2, 3, 4}), bb = t64(bv, {4, 5});
  CHECK(matmul(ab, bb).sizes() == Shape{2, 3, 5});
  CHECK_VALUES(vals(matmul(ab, bb)), ref_bmm(av, bv, 2, 3, 4, 5, false, true), 1e-14);
  const auto cv = uniform_values(3 * 4 * 5, -1, 1, 3);
  Tensor c3 = t64(cv, {3, 4, 5});
  const auto a1 = uniform_values(2 * 4, -1, 1, 4);
  CHECK_VALUES(vals(matmul(t64(a1, {2, 4}), c3)), ref_bmm(a1, cv, 3, 2, 4, 5, true, false), 1e-14);
  const auto x3 = uniform_values(3 * 2 * 4, -1, 1, 5);
  CHECK_VALUES(vals(bmm(t64(x3, {3, 2, 4}), c3)), ref_bmm(x3, cv, 3, 2, 4, 5, false, false), 1e-14);
  // f32
  Tensor af = from_vector<float>({1, 2, 3, 4}, {2, 2}), bf = from_vector<float>({5, 6, 7, 8}, {2, 2});
  Tensor cf = matmul(af, bf);
  CHECK(cf.dtype() == DType::f32);
  CHECK_VALUES(vals(cf), (std::vector<double>{19, 22, 43, 50}), 0);
}

TEST_CASE("forward: cat, stack, split, chunk, index_select, gather") {
  Tensor a = t64({1, 2, 3, 4}, {2, 2}), b = t64({5, 6}, {1, 2});
  CHECK_VALUES(vals(cat({a, b}, 0)), (std::vector<double>{1, 2, 3, 4, 5, 6}), 0);
  CHECK(cat({a, b}, 0).sizes() == Shape{3, 2});
  CHECK_VALUES(vals(cat({a, b.t()}, 1)), (std::vector<double>{1, 2, 5, 3, 4, 6}), 0);
  Tensor c = t64({7, 8, 9, 10}, {2, 2});
  CHECK_VALUES(vals(stack({a, c}, 0)), (std::vector<double>{1, 2, 3, 4, 7, 8, 9, 10}), 0);
  CHECK_VALUES(vals(stack({a, c}, 1)), (std::vector<double>{1, 2, 7, 8, 3, 4, 9, 10}), 0);
  CHECK_VALUES(vals(stack({a, c}, 2)), (std::vector<double>{1, 7, 2, 8, 3, 9, 4, 10}), 0);
  CHECK(stack({a, c}, -1).sizes() == Shape{2, 2, 2});
  Tensor r = t64({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {5, 2});
  auto s = split(r, 2, 0);
  REQUIRE(s.size() == 3);
  CHECK_VALUES(vals(s[1]), (std::vector<double>{4, 5, 6, 7}), 0);
  CHECK_VALUES(vals(s[2]), (std::vector<double>{8, 9}), 0);
  auto s2 = split(r, Shape{1, 4}, 0);
  REQUIRE(s2.size() == 2);
  CHECK(s2[1].sizes() == Shape{4, 2});
  CHECK_VALUES(vals(s2[0]), (std::vector<double>{0, 1}), 0);
  auto s3 = split(r, 1, 1);
  CHECK_VALUES(vals(s3[1]), (std::vector<double>{1, 3, 5, 7, 9}), 0);
  auto ch = chunk(r, 2, 0);  // ceil(5/2) = 3: rows 0-2 and 3-4
  REQUIRE(ch.size() == 2);
  CHECK(ch[0].sizes() == Shape{3, 2});
  CHECK_VALUES(vals(ch[1]), (std::vector<double>{6, 7, 8, 9}), 0);
  CHECK_VALUES(vals(index_select(r, 0, idx({4, 0, 4}, {3}))), (std::vector<double>{8, 9, 0, 1, 8, 9}), 0);
  CHECK_VALUES(vals(index_select(r, 1, idx({1}, {1}))), (std::vector<double>{1, 3, 5, 7, 9}), 0);
  // gather dim 1: out[i][j] = r[i][index[i][j]]
  CHECK_VALUES(vals(gather(r, 1, idx({1, 1, 0, 1, 0, 0, 1, 0, 1, 1}, {5, 2}))),
               (std::vector<double>{1, 1, 2, 3, 4, 4, 7, 6, 9, 9}), 0);
  // gather dim 0: out[i][j] = r[index[i][j]][j]
  CHECK_VALUES(vals(gather(r, 0, idx({4, 0, 2, 3}, {2, 2}))), (std::vector<double>{8, 1, 4, 7}), 0);
}

TEST_CASE("forward: a few elementwise values, by formula") {
  Tensor x = t64({-2, -0.5, 0, 1, 3}, {5});
  std::vector<double> xs = {-2, -0.5, 0, 1, 3}, e;
  for (double v : xs) e.push_back(1 / (1 + std::exp(-v)));
  CHECK_VALUES(vals(sigmoid(x)), e, 1e-14);
  e.clear();
  for (double v : xs) e.push_back(v / (1 + std::exp(-v)));
  CHECK_VALUES(vals(silu(x)), e, 1e-14);
  e.clear();
  for (double v : xs) e.push_back(0.5 * v * (1 + std::erf(v / std::sqrt(2.0))));
  CHECK_VALUES(vals(gelu(x)), e, 1e-14);
  e.clear();
  for (double v : xs) e.push_back(std::log1p(std::exp(v)));
  CHECK_VALUES(vals(softplus(x)), e, 1e-14);
  CHECK_VALUES(vals(leaky_relu(x, 0.1)), (std::vector<double>{-0.2, -0.05, 0, 1, 3}), 1e-15);
  CHECK_VALUES(vals(relu(x)), (std::vector<double>{0, 0, 0, 1, 3}), 0);
  CHECK_VALUES(vals(clamp(x, -1, 2)), (std::vector<double>{-1, -0.5, 0, 1, 2}), 0);
  CHECK_VALUES(vals(pow(x, 2.0)), (std::vector<double>{4, 0.25, 0, 1, 9}), 1e-14);
  CHECK_VALUES(vals(axpby(2.0, x, -1.0, t64({1}, {1}))), (std::vector<double>{-5, -2, -1, 1, 5}), 1e-14);
  CHECK_VALUES(vals(maximum(x, t64({0.5}, {}))), (std::vector<double>{0.5, 0.5, 0.5, 1, 3}), 0);
  CHECK_VALUES(vals(pow(t64({2, 9}, {2}), t64({3, 0.5}, {2}))), (std::vector<double>{8, 3}), 1e-14);
}

TEST_CASE("forward: log1p, expm1, round, hardswish, mish") {
  const std::vector<double> xs = {-2, -0.5, 0, 1, 3};
  Tensor x = t64(xs, {5});
  std::vector<double> e;
  for (double v : xs) e.push_back(std::log(1 + v / 4));  // log(1 + x) where 1 + x is exact
  CHECK_VALUES(vals(log1p(x * 0.25)), e, 1e-15);
  e.clear();
  for (double v : xs) e.push_back(std::exp(v) - 1);
  CHECK_VALUES(vals(expm1(x)), e, 1e-14);
  // near 0 the point of both: the series x -+ x^2 / 2, which log(1 + x) and exp(x) - 1 lose
  CHECK(std::fabs(log1p(t64({1e-10}, {1})).item() - (1e-10 - 5e-21)) < 1e-25);
  CHECK(std::fabs(expm1(t64({1e-10}, {1})).item() - (1e-10 + 5e-21)) < 1e-25);
  // half to even, by hand
  CHECK_VALUES(vals(round(t64({0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6, -2.6}, {8}))),
               (std::vector<double>{0, 2, 2, 0, -2, 2, 3, -3}), 0);
  // hardswish x * min(max(x + 3, 0), 6) / 6, by hand: 0 below -3, x above 3
  CHECK_VALUES(vals(hardswish(t64({-4, -3, -1.5, 0, 1, 3, 4}, {7}))),
               (std::vector<double>{0, 0, -0.375, 0, 2.0 / 3, 3, 4}), 1e-15);
  // mish x tanh(ln(1 + e^x)); values from Python's math module
  CHECK_VALUES(vals(mish(x)), (std::vector<double>{-0.2525014826957091, -0.22074377465173, 0, 0.8650983882673103,
                                                    2.9865350049679575}),
               1e-15);
  e.clear();
  for (double v : xs) e.push_back(v * std::tanh(std::log(1 + std::exp(v))));
  CHECK_VALUES(vals(mish(x)), e, 1e-14);
}
