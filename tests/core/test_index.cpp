// cat, stack, split, index_select, index_add_, gather and scatter_add_ on CPU: values from loops in
// this file, every dtype for the copies, strided inputs, 0-dim and empty cases, and the errors.
#include <cmath>

#include "test_util.h"

using namespace rg;
using test::contains;
using test::error_of;

namespace {

Tensor ref(const std::vector<double>& v, const Shape& s) { return from_vector<double>(v, s, DType::f64); }

const std::vector<DType> kAllDTypes = test::all_dtypes();

// Integers 0..n-1 (mod 200, so they survive u8, f16 and bf16 exactly) as a tensor of dtype.
Tensor iota(const Shape& s, DType dt) {
  std::vector<double> v(static_cast<size_t>(shape_numel(s)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = dt == DType::b8 ? static_cast<double>(i % 3 == 0) : static_cast<double>(i % 200);
  return native::to(ref(v, s), kCPU, dt);
}

}  // namespace

TEST_CASE("cat along each dim, every dtype, strided inputs") {
  for (DType dt : kAllDTypes) {
    CAPTURE(dtype_name(dt));
    const Tensor a = iota({2, 3, 4}, dt);
    const Tensor b = native::transpose(iota({2, 4, 5}, dt), 1, 2);  // (2, 5, 4), strided
    const Tensor c = iota({2, 1, 4}, dt);
    const Tensor y = native::cat({a, b, c}, 1);
    CHECK(y.sizes() == Shape{2, 9, 4});
    CHECK(y.dtype() == dt);
    const auto av = a.to_vector<double>(), bv = b.to_vector<double>(), cv = c.to_vector<double>();
    std::vector<double> want;
    for (int i = 0; i < 2; ++i) {
      for (int j = 0; j < 3 * 4; ++j) want.push_back(av[static_cast<size_t>(i * 12 + j)]);
      for (int j = 0; j < 5 * 4; ++j) want.push_back(bv[static_cast<size_t>(i * 20 + j)]);
      for (int j = 0; j < 1 * 4; ++j) want.push_back(cv[static_cast<size_t>(i * 4 + j)]);
    }
    CHECK(y.to_vector<double>() == want);
    // dim 0 (one contiguous block per input) and dim -1
    const Tensor y0 = native::cat({a, a}, 0);
    std::vector<double> w0 = av;
    w0.insert(w0.end(), av.begin(), av.end());
    CHECK(y0.to_vector<double>() == w0);
    const Tensor d = iota({2, 3, 1}, dt);
    const Tensor y2 = native::cat({d, a}, -1);
    CHECK(y2.sizes() == Shape{2, 3, 5});
    const auto dv = d.to_vector<double>(), y2v = y2.to_vector<double>();
    CHECK(y2v[(1 * 3 + 2) * 5 + 0] == dv[5]);
    CHECK(y2v[(1 * 3 + 2) * 5 + 3] == av[(1 * 3 + 2) * 4 + 2]);
  }
  // a large dim-0 cat goes through the parallel byte copy
  const Tensor big = test::uniform({70000}, 0, 1, DType::f32, 3);
  const Tensor yb = native::cat({big, big}, 0);
  CHECK(native::slice(yb, 0, 70000, 140000).to_vector<double>() == big.to_vector<double>());
}

TEST_CASE("cat promotes dtypes, skips legacy empty tensors and keeps empty slices") {
  const Tensor y = native::cat({from_vector<int32_t>({1, 2}), from_vector<float>({0.5f}), from_vector<uint8_t>({7})}, 0);
  CHECK(y.dtype() == DType::f32);
  CHECK(y.to_vector<double>() == std::vector<double>{1, 2, 0.5, 7});
  const Tensor legacy = empty({0});
  const Tensor z = native::cat({legacy, iota({2, 3}, DType::f64), legacy}, 1);
  CHECK(z.sizes() == Shape{2, 3});
  CHECK(z.dtype() == DType::f64);
  const Tensor w = native::cat({iota({2, 0}, DType::f32), iota({2, 3}, DType::f32)}, 1);
  CHECK(w.sizes() == Shape{2, 3});
  CHECK(native::cat({legacy, legacy}, 0).sizes() == Shape{0});
  // f16 with bf16 is float32
  CHECK(native::cat({iota({1}, DType::f16), iota({1}, DType::bf16)}, 0).dtype() == DType::f32);
}

TEST_CASE("cat errors name both shapes and the dim") {
  const std::string m = error_of([] { native::cat({zeros({2, 3}), zeros({4, 4})}, 0); });
  CHECK(contains(m, "cat"));
  CHECK(contains(m, "[2, 3]"));
  CHECK(contains(m, "[4, 4]"));
  CHECK(contains(m, "dimension 0"));
  const std::string m2 = error_of([] { native::cat({zeros({2, 3}), zeros({2, 3, 1})}, 0); });
  CHECK(contains(m2, "[2, 3, 1]"));
  CHECK(contains(error_of([] { native::cat({scalar_tensor(1.0)}, 0); }), "zero-dimensional"));
  CHECK(contains(error_of([] { native::cat({}, 0); }), "non-empty"));
  CHECK(contains(error_of([] { native::cat({zeros({2, 3})}, 2); }), "dimension out of range"));
}

TEST_CASE("stack, split and split_with_sizes") {
  const Tensor a = iota({2, 3}, DType::f32);
  const Tensor b = native::unary(UnaryOp::Affine, a, 1, 100);
  const Tensor s = native::stack({a, b}, 1);  // (2, 2, 3): s[i][0] = a[i], s[i][1] = b[i]
  CHECK(s.sizes() == Shape{2, 2, 3});
  CHECK(s.to_vector<double>() == std::vector<double>{0, 1, 2, 100, 101, 102, 3, 4, 5, 103, 104, 105});
  CHECK(native::stack({a, b}, -1).sizes() == Shape{2, 3, 2});
  CHECK(native::stack({scalar_tensor(1.0), scalar_tensor(2.0)}, 0).to_vector<double>() == std::vector<double>{1, 2});
  CHECK(contains(error_of([&] { native::stack({a, zeros({3, 2})}, 0); }), "[3, 2]"));

  const Tensor x = iota({7, 2}, DType::f64);
  const auto parts = native::split(x, 3, 0);
  REQUIRE(parts.size() == 3);
  CHECK(parts[0].sizes() == Shape{3, 2});
  CHECK(parts[2].sizes() == Shape{1, 2});
  CHECK(parts[1].data_ptr() == static_cast<char*>(x.data_ptr()) + 6 * sizeof(double));  // a view
  CHECK(parts[2].to_vector<double>() == std::vector<double>{12, 13});
  const auto cols = native::split(x, 1, -1);
  REQUIRE(cols.size() == 2);
  CHECK(cols[1].to_vector<double>() == std::vector<double>{1, 3, 5, 7, 9, 11, 13});
  const auto ws = native::split_with_sizes(x, {2, 0, 5}, 0);
  REQUIRE(ws.size() == 3);
  CHECK(ws[1].sizes() == Shape{0, 2});
  CHECK(ws[2].to_vector<double>()[0] == 4.0);
  CHECK(native::split(zeros({0, 3}), 2, 0).size() == 1);
  const std::string m = error_of([&] { native::split_with_sizes(x, {2, 2}, 0); });
  CHECK(contains(m, "sum exactly to 7"));
  CHECK(contains(m, "[2, 2]"));
  CHECK_THROWS_AS(native::split(x, -1, 0), rg::Error);
  CHECK_THROWS_AS(native::split(scalar_tensor(1.0), 1, 0), rg::Error);
}

TEST_CASE("index_select along each dim, every dtype, both index dtypes") {
  for (DType dt : kAllDTypes) {
    for (DType it : {DType::i32, DType::i64}) {
      CAPTURE(dtype_name(dt));
      const Tensor x = iota({4, 5, 3}, dt);
      const auto xv = x.to_vector<double>();
      const std::vector<int64_t> idx = {3, 0, 3, 1};
      const Tensor index = from_vector<int64_t>(idx, {4}, it);
      for (int64_t dim = 0; dim < 3; ++dim) {
        if (dim > 0 && idx[0] >= x.size(dim)) continue;
        const Tensor y = native::index_select(x, dim, index);
        Shape ys = x.sizes();
        ys[static_cast<size_t>(dim)] = 4;
        CHECK(y.sizes() == ys);
        std::vector<double> want;
        for (int64_t i = 0; i < ys[0]; ++i)
          for (int64_t j = 0; j < ys[1]; ++j)
            for (int64_t k = 0; k < ys[2]; ++k) {
              int64_t p[3] = {i, j, k};
              p[dim] = idx[static_cast<size_t>(p[dim])];
              want.push_back(xv[static_cast<size_t>((p[0] * 5 + p[1]) * 3 + p[2])]);
            }
        CHECK(y.to_vector<double>() == want);
      }
    }
  }
  // strided input (copied to contiguous first), 0-dim index, empty index, 0-dim input
  const Tensor xt = native::transpose(iota({3, 4}, DType::f32), 0, 1);  // (4, 3)
  CHECK(native::index_select(xt, 0, from_vector<int64_t>({2})).to_vector<double>() == std::vector<double>{2, 6, 10});
  const Tensor sel = native::index_select(xt, 1, scalar_tensor(1.0, DType::i64));
  CHECK(sel.sizes() == Shape{4, 1});
  CHECK(native::index_select(xt, 0, empty({0}, DType::i64)).sizes() == Shape{0, 3});
  CHECK(native::index_select(scalar_tensor(4.0), 0, from_vector<int64_t>({0})).item() == 4.0);
  // an embedding lookup: (V, D) rows by a long index
  const Tensor w = test::uniform({50, 64}, -1, 1, DType::f32, 4);
  std::vector<int64_t> toks(3000);
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = static_cast<int64_t>((i * 7919) % 50);
  const Tensor e = native::index_select(w, 0, from_vector<int64_t>(toks));
  const auto wv = w.to_vector<double>(), ev = e.to_vector<double>();
  bool same = true;
  for (size_t i = 0; i < toks.size(); ++i)
    for (size_t j = 0; j < 64; ++j) same = same && ev[i * 64 + j] == wv[static_cast<size_t>(toks[i]) * 64 + j];
  CHECK(same);
}

TEST_CASE("index_select errors: out of range values and bad index tensors") {
  const Tensor x = zeros({5, 3});
  const std::string m = error_of([&] { native::index_select(x, 0, from_vector<int64_t>({1, 7})); });
  CHECK(contains(m, "index_select"));
  CHECK(contains(m, "index 7"));
  CHECK(contains(m, "size 5"));
  CHECK(contains(error_of([&] { native::index_select(x, 1, from_vector<int32_t>({-1})); }), "index -1"));
  CHECK(contains(error_of([&] { native::index_select(x, 0, from_vector<float>({1.0f})); }), "int32 or int64"));
  CHECK(contains(error_of([&] { native::index_select(x, 0, zeros({2, 2}, DType::i64)); }), "vector"));
}

TEST_CASE("index_add_ accumulates repeated indices, any dim, every float dtype") {
  for (DType dt : test::float_dtypes()) {
    for (int64_t dim = 0; dim < 3; ++dim) {
      CAPTURE(dtype_name(dt));
      CAPTURE(dim);
      const Tensor out = iota({4, 3, 5}, dt);
      const auto ov = out.to_vector<double>();
      const std::vector<int64_t> idx = {2, 0, 2, 2, 1};
      const int64_t K = 5;
      Shape ss = out.sizes();
      ss[static_cast<size_t>(dim)] = K;
      const Tensor src = native::to(test::uniform(ss, -2, 2, DType::f64, 12), kCPU, dt);
      const auto sv = src.to_vector<double>();
      std::vector<double> want = ov;
      for (int64_t i = 0; i < ss[0]; ++i)
        for (int64_t j = 0; j < ss[1]; ++j)
          for (int64_t k = 0; k < ss[2]; ++k) {
            int64_t p[3] = {i, j, k};
            p[dim] = idx[static_cast<size_t>(p[dim])];
            want[static_cast<size_t>((p[0] * 3 + p[1]) * 5 + p[2])] += sv[static_cast<size_t>((i * ss[1] + j) * ss[2] + k)];
          }
      native::index_add_(out, dim, from_vector<int64_t>(idx), src);
      const test::Tol t = test::tol_for(dt);
      RG_CHECK_CLOSE(out, ref(want, {4, 3, 5}), (test::Tol{t.atol * 8, t.rtol * 8}));  // up to 4 rounded adds
    }
  }
  // a non-contiguous self is updated through a copy; its other elements stay
  const Tensor base = zeros({3, 4});
  const Tensor view = native::transpose(base, 0, 1);  // (4, 3)
  native::index_add_(view, 0, from_vector<int32_t>({1, 1}), from_vector<float>({1, 2, 3, 10, 20, 30}, {2, 3}));
  CHECK(base.to_vector<double>() == std::vector<double>{0, 11, 0, 0, 0, 22, 0, 0, 0, 33, 0, 0});
  // the embedding backward shape: many rows into a small table
  const Tensor table = zeros({10, 300});
  std::vector<int64_t> toks(2000);
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = static_cast<int64_t>(i % 10);
  native::index_add_(table, 0, from_vector<int64_t>(toks), ones({2000, 300}));
  CHECK(native::reduce(ReduceOp::Min, table, {}, false).item() == 200.0);
  CHECK(native::reduce(ReduceOp::Max, table, {}, false).item() == 200.0);
}

TEST_CASE("index_add_ errors") {
  const Tensor out = zeros({5, 3});
  const std::string m = error_of([&] { native::index_add_(out, 0, from_vector<int64_t>({5}), ones({1, 3})); });
  CHECK(contains(m, "index_add_"));
  CHECK(contains(m, "index 5"));
  CHECK(contains(m, "size 5"));
  CHECK(contains(error_of([&] { native::index_add_(out, 0, from_vector<int64_t>({1, 2}), ones({3, 3})); }),
            "number of indices (2)"));
  CHECK(contains(error_of([&] { native::index_add_(out, 0, from_vector<int64_t>({1}), ones({1, 4})); }), "[1, 4]"));
  CHECK(contains(error_of([&] { native::index_add_(out, 0, from_vector<int64_t>({1}), ones({1, 3}, DType::f64)); }),
            "same scalar type"));
}

TEST_CASE("gather along each dim with smaller index shapes, every dtype, strided inputs") {
  for (DType dt : kAllDTypes) {
    for (DType it : {DType::i32, DType::i64}) {
      CAPTURE(dtype_name(dt));
      const Tensor x = iota({4, 5, 6}, dt);
      const auto xv = x.to_vector<double>();
      for (int64_t dim = 0; dim < 3; ++dim) {
        const Shape is = {3, 4, 2};  // no larger than x outside dim; free along dim
        const int64_t n = x.size(dim);
        std::vector<int64_t> idx(24);
        for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>((i * 5 + 3) % static_cast<size_t>(n));
        const Tensor y = native::gather(x, dim, from_vector<int64_t>(idx, is, it));
        CHECK(y.sizes() == is);
        std::vector<double> want;
        for (int64_t i = 0; i < 3; ++i)
          for (int64_t j = 0; j < 4; ++j)
            for (int64_t k = 0; k < 2; ++k) {
              int64_t p[3] = {i, j, k};
              p[dim] = idx[static_cast<size_t>((i * 4 + j) * 2 + k)];
              want.push_back(xv[static_cast<size_t>((p[0] * 5 + p[1]) * 6 + p[2])]);
            }
        CHECK(y.to_vector<double>() == want);
      }
    }
  }
  // transposed input and transposed index
  const Tensor xt = native::transpose(iota({3, 4}, DType::f32), 0, 1);  // (4, 3): xt[i][j] = 4 j + i
  const Tensor it = native::transpose(from_vector<int64_t>({2, 0, 1, 1}, {2, 2}), 0, 1);  // [[2, 1], [0, 1]]
  CHECK(native::gather(xt, 1, it).to_vector<double>() == std::vector<double>{8, 4, 1, 5});
  CHECK(native::gather(scalar_tensor(3.0), 0, scalar_tensor(0.0, DType::i64)).item() == 3.0);
  CHECK(native::gather(xt, 0, empty({0, 3}, DType::i64)).sizes() == Shape{0, 3});
  const std::string m = error_of([&] { native::gather(xt, 1, from_vector<int64_t>({0, 3}, {1, 2})); });
  CHECK(contains(m, "gather"));
  CHECK(contains(m, "index 3"));
  CHECK(contains(m, "size 3"));
  CHECK(contains(error_of([&] { native::gather(xt, 1, zeros({5, 1}, DType::i64)); }), "[5, 1]"));
  CHECK(contains(error_of([&] { native::gather(xt, 0, zeros({2}, DType::i64)); }), "same number of dimensions"));
}

TEST_CASE("scatter_add_ accumulates along dim with repeated indices, strided tensors") {
  for (DType dt : test::float_dtypes()) {
    for (int64_t dim = 0; dim < 2; ++dim) {
      CAPTURE(dtype_name(dt));
      const Tensor out = iota({4, 5}, dt);
      const auto ov = out.to_vector<double>();
      const Shape is = {3, 4};
      std::vector<int64_t> idx(12);
      const int64_t n = out.size(dim);
      for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>((i * 7 + 1) % static_cast<size_t>(n));
      const Tensor src = native::to(test::uniform({3, 5}, -2, 2, DType::f64, 14), kCPU, dt);  // larger than index
      const auto sv = src.to_vector<double>();
      std::vector<double> want = ov;
      for (int64_t i = 0; i < 3; ++i)
        for (int64_t j = 0; j < 4; ++j) {
          int64_t p[2] = {i, j};
          p[dim] = idx[static_cast<size_t>(i * 4 + j)];
          want[static_cast<size_t>(p[0] * 5 + p[1])] += sv[static_cast<size_t>(i * 5 + j)];
        }
      native::scatter_add_(out, dim, from_vector<int64_t>(idx, is), src);
      const test::Tol t = test::tol_for(dt);
      RG_CHECK_CLOSE(out, ref(want, {4, 5}), (test::Tol{t.atol * 8, t.rtol * 8}));
    }
  }
  // strided self and index; an i32 index; every index pointing at one row
  const Tensor base = zeros({2, 3});
  const Tensor view = native::transpose(base, 0, 1);  // (3, 2)
  native::scatter_add_(view, 0, native::transpose(from_vector<int32_t>({1, 1, 1, 1}, {2, 2}), 0, 1),
                       from_vector<float>({1, 2, 3, 4, 5, 6}, {3, 2}));
  CHECK(base.to_vector<double>() == std::vector<double>{0, 4, 0, 0, 6, 0});
  const std::string m = error_of([] { native::scatter_add_(zeros({3}), 0, from_vector<int64_t>({3}), ones({1})); });
  CHECK(contains(m, "scatter_add_"));
  CHECK(contains(m, "index 3"));
  CHECK(contains(m, "size 3"));
  CHECK(contains(error_of([] { native::scatter_add_(zeros({3, 2}), 0, zeros({2, 3}, DType::i64), ones({2, 3})); }),
            "[2, 3]"));
  CHECK(contains(error_of([] { native::scatter_add_(zeros({3, 2}), 0, zeros({2, 2}, DType::i64), ones({1, 2})); }),
            "no larger than src"));
}
