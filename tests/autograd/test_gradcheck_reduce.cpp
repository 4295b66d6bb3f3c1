// gradcheck for the reductions (sum, mean, var, std, amax/amin, max/min with and without a dim,
// softmax/log_softmax, norm) over several dim sets, with and without keepdim; tie handling and
// the non-differentiable arg-reductions, with gradients worked out by hand.
#include "ag_util.h"

using namespace rg;
using namespace rg::agtest;

namespace {
const std::vector<Shape> kDimSets = {{}, {0}, {1}, {-1}, {0, 2}, {2, 1}, {0, 1, 2}};
}

TEST_CASE("gradcheck: sum and mean over dim sets, with and without keepdim") {
  Tensor x = leaf({2, 3, 4}, -1, 1, 71);
  for (const Shape& dims : kDimSets) {
    for (bool keep : {false, true}) {
      CAPTURE(shape_str(dims));
      CAPTURE(keep);
      CHECK_GRADCHECK([&](const TL& in) { return sum(in[0], dims, keep); }, TL{x});
      CHECK_GRADCHECK([&](const TL& in) { return mean(in[0], dims, keep); }, TL{x});
    }
  }
  CHECK_GRADCHECK([](const TL& in) { return in[0].sum(); }, TL{x});
  CHECK_GRADCHECK([](const TL& in) { return in[0].mean({1}, true); }, TL{x});
  // a 0-dim input and a non-contiguous one
  Tensor s = leaf({}, -1, 1, 72);
  CHECK_GRADCHECK([](const TL& in) { return sum(in[0]) * 2.0; }, TL{s});
  CHECK_GRADCHECK([](const TL& in) { return mean(in[0].transpose(0, 2), {0, 1}); }, TL{x});
}

TEST_CASE("gradcheck: var and std with correction 0 and 1") {
  Tensor x = leaf({2, 3, 4}, -1, 1, 73);
  for (const Shape& dims : kDimSets) {
    for (bool keep : {false, true}) {
      for (int64_t corr : {0, 1}) {
        CAPTURE(shape_str(dims));
        CAPTURE(keep);
        CAPTURE(corr);
        CHECK_GRADCHECK([&](const TL& in) { return var(in[0], dims, corr, keep); }, TL{x});
        CHECK_GRADCHECK([&](const TL& in) { return rg::std(in[0], dims, corr, keep); }, TL{x});
      }
    }
  }
}

TEST_CASE("gradcheck: amax, amin, max and min without ties") {
  Tensor x = leaf({2, 3, 4}, -1, 1, 74);  // distinct values
  for (const Shape& dims : kDimSets) {
    for (bool keep : {false, true}) {
      CAPTURE(shape_str(dims));
      CAPTURE(keep);
      CHECK_GRADCHECK([&](const TL& in) { return amax(in[0], dims, keep); }, TL{x});
      CHECK_GRADCHECK([&](const TL& in) { return amin(in[0], dims, keep); }, TL{x});
    }
  }
  for (int64_t d : {0, 1, 2, -1}) {
    for (bool keep : {false, true}) {
      CAPTURE(d);
      CAPTURE(keep);
      // values and indices: gradcheck differentiates the float output and ignores the int64 one
      CHECK_GRADCHECK(
          [&](const TL& in) {
            auto [v, i] = max(in[0], d, keep);
            return TL{v, i};
          },
          TL{x});
      CHECK_GRADCHECK([&](const TL& in) { return min(in[0], d, keep).first; }, TL{x});
    }
  }
  CHECK_GRADCHECK([](const TL& in) { return max(in[0]); }, TL{x});
  CHECK_GRADCHECK([](const TL& in) { return min(in[0]); }, TL{x});
}

TEST_CASE("amax/amin and max()/min() split the gradient evenly among ties") {
  // rows: [1, 3, 3, 2] -> max 3 twice; [5, 5, 5, 0] -> three ties; min of row 2 is 0 once
  Tensor x = leaf_of({1, 3, 3, 2, 5, 5, 5, 0}, {2, 4});
  amax(x, {1}).sum().backward();
  CHECK_VALUES(vals(x.grad()), (std::vector<double>{0, 0.5, 0.5, 0, 1.0 / 3, 1.0 / 3, 1.0 / 3, 0}), 1e-15);
  x.set_grad(Tensor());
  amin(x, {0}, true).backward(from_vector<double>({1, 2, 3, 4}, {1, 4}));  // column mins: 1, 3, 3, 0
  CHECK_VALUES(vals(x.grad()), (std::vector<double>{1, 2, 3, 0, 0, 0, 0, 4}), 1e-15);
  x.set_grad(Tensor());
  max(x).backward();  // 5 appears three times
  CHECK_VALUES(vals(x.grad()), (std::vector<double>{0, 0, 0, 0, 1.0 / 3, 1.0 / 3, 1.0 / 3, 0}), 1e-15);
  x.set_grad(Tensor());
  min(x).backward(scalar_tensor(6.0, DType::f64));  // 0 once
  CHECK_VALUES(vals(x.grad()), (std::vector<double>{0, 0, 0, 0, 0, 0, 0, 6}), 1e-15);
  x.set_grad(Tensor());
  Tensor y = leaf_of({2, 2, 2, 2}, {4});  // all equal
  max(y).backward();
  CHECK_VALUES(vals(y.grad()), (std::vector<double>{0.25, 0.25, 0.25, 0.25}), 1e-15);
}

TEST_CASE("max/min with a dim send the whole gradient to the returned index (the first among ties)") {
  Tensor x = leaf_of({1, 3, 3, 2, 5, 5, 5, 0}, {2, 4});
  auto [v, i] = max(x, 1);
  CHECK(i.dtype() == DType::i64);
  CHECK(i.to_vector<int64_t>() == std::vector<int64_t>{1, 0});
  CHECK_VALUES(vals(v), (std::vector<double>{3, 5}), 0);
  CHECK_FALSE(i.requires_grad());
  v.backward(from_vector<double>({10, 20}, {2}));
  CHECK_VALUES(vals(x.grad()), (std::vector<double>{0, 10, 0, 0, 20, 0, 0, 0}), 0);
  x.set_grad(Tensor());
  auto [mv, mi] = min(x, 0, true);  // columns: (1,5) (3,5) (3,5) (2,0)
  CHECK(mv.sizes() == Shape{1, 4});
  CHECK(mi.to_vector<int64_t>() == std::vector<int64_t>{0, 0, 0, 1});
  CHECK_VALUES(vals(mv), (std::vector<double>{1, 3, 3, 0}), 0);
  mv.sum().backward();
  CHECK_VALUES(vals(x.grad()), (std::vector<double>{1, 1, 1, 0, 0, 0, 0, 1}), 0);
  // a 0-dim input: dim 0 selects the element
  Tensor s = leaf_of({4}, {});
  auto [sv, si] = max(s, 0);
  CHECK(sv.item() == 4.0);
  CHECK(si.item() == 0.0);
  sv.backward();
  CHECK(s.grad().item() == 1.0);
}

TEST_CASE("argmax and argmin are not differentiable and return int64 indices") {
  Tensor x = leaf_of({0.5, -1, 2, 7, 3, -4}, {2, 3});
  Tensor a = argmax(x, 1);
  CHECK_FALSE(a.requires_grad());
  CHECK(a.dtype() == DType::i64);
  CHECK(a.to_vector<int64_t>() == std::vector<int64_t>{2, 0});
  CHECK(argmin(x, 1).to_vector<int64_t>() == std::vector<int64_t>{1, 2});
  CHECK(argmax(x, 0, true).sizes() == Shape{1, 3});
  CHECK(argmax(x, 0, true).to_vector<int64_t>() == std::vector<int64_t>{1, 1, 0});
  CHECK(argmin(x, -2).to_vector<int64_t>() == std::vector<int64_t>{0, 0, 1});
}

TEST_CASE("gradcheck: softmax and log_softmax on several dims") {
  Tensor x = leaf({2, 3, 4}, -2, 2, 75);
  for (int64_t d : {0, 1, 2, -1, -3}) {
    CAPTURE(d);
    CHECK_GRADCHECK([&](const TL& in) { return softmax(in[0], d); }, TL{x});
    CHECK_GRADCHECK([&](const TL& in) { return log_softmax(in[0], d); }, TL{x});
  }
  Tensor v = leaf({5}, -3, 3, 76);
  CHECK_GRADCHECK([](const TL& in) { return softmax(in[0], 0); }, TL{v});
  CHECK_GRADCHECK([](const TL& in) { return log_softmax(in[0], -1); }, TL{v});
  // non-contiguous input
  CHECK_GRADCHECK([](const TL& in) { return softmax(in[0].transpose(0, 2), 1); }, TL{x});
  // large logits stay finite (the max is subtracted)
  Tensor big = leaf_of({1000, 1001, 999}, {3});
  CHECK_GRADCHECK([](const TL& in) { return log_softmax(in[0], 0); }, TL{big});
}

TEST_CASE("gradcheck: norm, and its gradient at zero") {
  Tensor x = leaf({2, 3}, -1, 1, 77);
  CHECK_GRADCHECK([](const TL& in) { return norm(in[0]); }, TL{x});
  CHECK_GRADCHECK([](const TL& in) { return norm(in[0].t()) * norm(in[0]); }, TL{x});
  Tensor v = leaf_of({3, 4}, {2});
  Tensor n = norm(v);
  CHECK(n.item() == 5.0);
  n.backward();
  CHECK_VALUES(vals(v.grad()), (std::vector<double>{0.6, 0.8}), 1e-15);
  // f16: the sum of squares (90000) is past f16's range; the norm (300) is not
  Tensor h = from_vector<float>({180.f, 240.f}, {2}, DType::f16).set_requires_grad(true);
  Tensor nh = norm(h);
  CHECK(nh.dtype() == DType::f16);
  CHECK(nh.item() == 300.0);
  nh.backward();
  CHECK_VALUES(vals(h.grad()), (std::vector<double>{0.6, 0.8}), 1e-3);
  Tensor z = leaf_of({0, 0, 0}, {3});
  norm(z).backward();
  CHECK_VALUES(vals(z.grad()), (std::vector<double>{0, 0, 0}), 0);
}
