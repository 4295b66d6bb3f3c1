// gradcheck for matmul (1-D, 2-D, batched and broadcast shapes), mm, bmm, and the joining and
// indexing ops: cat, stack, split (both overloads), chunk, index_select, gather.
#include "ag_util.h"

using namespace rg;
using namespace rg::agtest;

TEST_CASE("gradcheck: matmul on 1-D, 2-D, batched and broadcast shapes") {
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{3}, {3}},                // dot -> 0-dim
      {{2, 3}, {3}},             // matrix-vector
      {{3}, {3, 4}},             // vector-matrix
      {{2, 3}, {3, 4}},          // mm
      {{5, 2, 3}, {3, 4}},       // batched @ matrix (b's gradient folds the batch)
      {{2, 3}, {5, 3, 4}},       // matrix @ batched (a's gradient sums over the batch)
      {{3}, {5, 3, 4}},          // vector @ batched
      {{5, 2, 3}, {3}},          // batched @ vector
      {{5, 2, 3}, {5, 3, 4}},    // bmm
      {{2, 1, 2, 3}, {5, 3, 4}}, // broadcast batch dims both ways
      {{1, 2, 3}, {4, 3, 2}},    // batch of 1 against 4
  };
  uint64_t seed = 900;
  for (const auto& [sa, sb] : shapes) {
    CAPTURE(shape_str(sa));
    CAPTURE(shape_str(sb));
    Tensor a = leaf(sa, -1, 1, ++seed), b = leaf(sb, -1, 1, ++seed);
    CHECK_GRADCHECK([](const TL& in) { return matmul(in[0], in[1]); }, TL{a, b});
    CHECK_GRADCHECK([](const TL& in) { return matmul(in[0], in[1]); }, TL{a.detach(), b});
    CHECK_GRADCHECK([](const TL& in) { return matmul(in[0], in[1]); }, TL{a, b.detach()});
  }
  // transposed (non-contiguous) operands, and an operand used twice
  Tensor m = leaf({3, 3}, -1, 1, 950), p = leaf({4, 3}, -1, 1, 951);
  CHECK_GRADCHECK([](const TL& in) { return matmul(in[1], in[0].t()); }, TL{m, p});
  CHECK_GRADCHECK([](const TL& in) { return matmul(in[0], in[0]); }, TL{m});
  CHECK_GRADCHECK([](const TL& in) { return matmul(in[1].t(), in[1]); }, TL{m, p});
  // a scalar-expanded gradient reaching the backward (sum of a product)
  CHECK_GRADCHECK([](const TL& in) { return matmul(in[1], in[0]).sum(); }, TL{m, p});
  Tensor bt = leaf({2, 4, 3}, -1, 1, 952);
  CHECK_GRADCHECK([](const TL& in) { return matmul(in[0].transpose(1, 2), in[1]); }, TL{bt, p});
}

TEST_CASE("gradcheck: mm and bmm") {
  Tensor a = leaf({2, 3}, -1, 1, 960), b = leaf({3, 4}, -1, 1, 961), at = leaf({3, 2}, -1, 1, 962);
  CHECK_GRADCHECK([](const TL& in) { return mm(in[0], in[1]); }, TL{a, b});
  CHECK_GRADCHECK([](const TL& in) { return mm(in[0].t(), in[1]); }, TL{at, b});
  CHECK_GRADCHECK([](const TL& in) { return mm(in[0], in[1]).sum(); }, TL{a, b});
  Tensor x = leaf({4, 2, 3}, -1, 1, 963), y = leaf({4, 3, 5}, -1, 1, 964), yt = leaf({4, 5, 3}, -1, 1, 965);
  CHECK_GRADCHECK([](const TL& in) { return bmm(in[0], in[1]); }, TL{x, y});
  CHECK_GRADCHECK([](const TL& in) { return bmm(in[0], in[1].transpose(1, 2)); }, TL{x, yt});
  CHECK_GRADCHECK([](const TL& in) { return bmm(in[0], in[1]).mean(); }, TL{x, y});
  CHECK_GRADCHECK([](const TL& in) { return bmm(in[0], in[1]); }, TL{x.detach(), y});
  // shape errors name the op
  CHECK_THROWS_WITH_AS(mm(a, a), doctest::Contains("mm"), rg::Error);
  CHECK_THROWS_WITH_AS(bmm(x, x), doctest::Contains("bmm"), rg::Error);
  CHECK_THROWS_AS(mm(x, y), rg::Error);
}

TEST_CASE("gradcheck: addmm (bias + product), and its shape errors name the op and shapes") {
  Tensor bias = leaf({5}, -1, 1, 970), a = leaf({3, 4}, -1, 1, 971), b = leaf({4, 5}, -1, 1, 972);
  Tensor bt = leaf({5, 4}, -1, 1, 973);
  CHECK_GRADCHECK([](const TL& in) { return addmm(in[0], in[1], in[2]); }, TL{bias, a, b});
  CHECK_GRADCHECK([](const TL& in) { return addmm(in[0], in[1], in[2].t()); }, TL{bias, a, bt});
  CHECK_GRADCHECK([](const TL& in) { return addmm(in[0], in[1], in[2]).sum(); }, TL{bias, a, b});
  CHECK_GRADCHECK([](const TL& in) { return addmm(in[0], in[1], in[2]); }, TL{bias.detach(), a, b});
  // one row: the bias must stay untouched (an output aliasing it would be overwritten by the gemm)
  Tensor row = leaf({1, 4}, -1, 1, 975);
  const std::vector<double> bias_before = vals(bias);
  CHECK_GRADCHECK([](const TL& in) { return addmm(in[0], in[1], in[2]); }, TL{bias, row, b});
  CHECK_VALUES(vals(bias), bias_before, 0.0);
  CHECK_THROWS_WITH_AS(addmm(leaf({4}, -1, 1, 974), a, b), doctest::Contains("addmm: bias [4]"), rg::Error);
  CHECK_THROWS_WITH_AS(addmm(bias, a, a), doctest::Contains("addmm: mat1 and mat2"), rg::Error);
}

TEST_CASE("gradcheck: cat and stack") {
  Tensor a = leaf({2, 3}, -1, 1, 970), b = leaf({1, 3}, -1, 1, 971), c = leaf({4, 3}, -1, 1, 972);
  CHECK_GRADCHECK([](const TL& in) { return cat({in[0], in[1], in[2]}, 0); }, TL{a, b, c});
  Tensor d = leaf({2, 1}, -1, 1, 973), e = leaf({2, 4}, -1, 1, 974);
  CHECK_GRADCHECK([](const TL& in) { return cat({in[0], in[1], in[2]}, 1); }, TL{a, d, e});
  CHECK_GRADCHECK([](const TL& in) { return cat({in[0], in[1], in[0]}, -1); }, TL{a, d});  // a used twice
  // an input that does not require grad
  CHECK_GRADCHECK([](const TL& in) { return cat({in[0], in[1]}, 0); }, TL{a, b.detach()});
  Tensor f = leaf({2, 3}, -1, 1, 975), g = leaf({2, 3}, -1, 1, 976);
  for (int64_t dim : {0, 1, 2, -1}) {
    CAPTURE(dim);
    CHECK_GRADCHECK([&](const TL& in) { return stack({in[0], in[1], in[2]}, dim); }, TL{a, f, g});
  }
  CHECK_GRADCHECK([](const TL& in) { return stack({in[0], in[1]}, 1); }, TL{a, f.detach()});
  // 3-D cat along the middle dim of non-contiguous inputs
  Tensor h = leaf({2, 4, 3}, -1, 1, 977);
  CHECK_GRADCHECK([](const TL& in) { return cat({in[0].transpose(1, 2), in[1].unsqueeze(0).expand({2, 2, 3}).transpose(1, 2)}, 2); },
                  TL{h, a});
}

TEST_CASE("gradcheck: split (both overloads) and chunk, using some or all pieces") {
  Tensor x = leaf({5, 4}, -1, 1, 980);
  CHECK_GRADCHECK([](const TL& in) { return split(in[0], 2, 0); }, TL{x});  // 2, 2, 1
  CHECK_GRADCHECK([](const TL& in) { return split(in[0], 3, 1); }, TL{x});  // 3, 1
  // only the middle piece is used: the others get zero gradient
  CHECK_GRADCHECK([](const TL& in) { return split(in[0], 2, 0)[1] * 3.0; }, TL{x});
  CHECK_GRADCHECK([](const TL& in) { return split(in[0], Shape{1, 3}, 1); }, TL{x});
  CHECK_GRADCHECK([](const TL& in) { return split(in[0], Shape{2, 0, 3}, 0); }, TL{x});
  CHECK_GRADCHECK([](const TL& in) { return split(in[0], Shape{4, 1}, -2)[0].sum(); }, TL{x});
  CHECK_GRADCHECK([](const TL& in) { return chunk(in[0], 3, 0); }, TL{x});  // 2, 2, 1
  CHECK_GRADCHECK([](const TL& in) { return chunk(in[0], 2, 1); }, TL{x});  // 2, 2
  CHECK_GRADCHECK(
      [](const TL& in) {
        auto p = chunk(in[0], 2, -1);
        return p[0] * p[1];
      },
      TL{x});
  // chunk sizes as PyTorch: ceil(5 / 3) = 2 -> 2, 2, 1
  auto pieces = chunk(x, 3, 0);
  REQUIRE(pieces.size() == 3);
  CHECK(pieces[0].sizes() == Shape{2, 4});
  CHECK(pieces[2].sizes() == Shape{1, 4});
  CHECK(pieces[1].grad_fn() == pieces[0].grad_fn());  // one node for all the pieces
}

TEST_CASE("gradcheck: index_select and gather, with repeated indices") {
  Tensor x = leaf({4, 3}, -1, 1, 990);
  Tensor i0 = idx({3, 0, 3, 1, 3}, {5});
  CHECK_GRADCHECK([&](const TL& in) { return index_select(in[0], 0, i0); }, TL{x});
  Tensor i1 = idx({2, 2, 0}, {3});
  CHECK_GRADCHECK([&](const TL& in) { return index_select(in[0], 1, i1); }, TL{x});
  CHECK_GRADCHECK([&](const TL& in) { return index_select(in[0], -1, i1); }, TL{x});
  Tensor i32 = native::to(i0, kCPU, DType::i32);
  CHECK_GRADCHECK([&](const TL& in) { return index_select(in[0].t(), 1, i32); }, TL{x});
  // gather along each dim: index has x's ndim
  Tensor g0 = idx({0, 3, 1, 3, 3, 2}, {2, 3});
  CHECK_GRADCHECK([&](const TL& in) { return gather(in[0], 0, g0); }, TL{x});
  Tensor g1 = idx({2, 2, 0, 1, 1, 1, 0, 2}, {4, 2});
  CHECK_GRADCHECK([&](const TL& in) { return gather(in[0], 1, g1); }, TL{x});
  CHECK_GRADCHECK([&](const TL& in) { return gather(in[0], -1, g1); }, TL{x});
  // by hand: index_select of rows (3, 0, 3, 1, 3) sends row 3 three gradients
  Tensor y = leaf_of({1, 2, 3, 4}, {4, 1});
  index_select(y, 0, i0).sum().backward();
  CHECK_VALUES(vals(y.grad()), (std::vector<double>{1, 1, 0, 3}), 0);
  Tensor z = leaf_of({1, 2, 3}, {1, 3});
  gather(z, 1, idx({2, 2, 0, 2}, {1, 4})).sum().backward();
  CHECK_VALUES(vals(z.grad()), (std::vector<double>{1, 0, 3}), 0);
}
