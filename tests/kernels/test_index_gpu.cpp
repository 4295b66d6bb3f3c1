// Indexing kernels on CUDA (cat, index_select, index_add, gather, scatter_add) against the CPU
// kernels, every dtype they take, i32 and i64 indices with repeats, strided views; and the
// device-side bounds check turned into an rg::Error naming the op.
#include <functional>
#include <string>
#include <vector>

#include "core/cuda_api.h"
#include "kernel_test_util.h"
#include "test_util.h"

using namespace rg;
using namespace rg::ktest;

namespace {

// Indices in [0, n), with repeats.
Tensor indices(const Shape& shape, int64_t n, DType it, uint64_t seed) {
  return native::to(test::uniform(shape, 0.0, static_cast<double>(n), DType::i64, seed), kCPU, it);
}

test::Tol atomic_tol(DType t) { return loose(t, 4); }  // adds land in another order on the GPU

// Runs f and checks it raises an rg::Error whose message holds `needle`.
void check_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    FAIL("expected an error containing: ", needle);
  } catch (const rg::Error& e) {
    const std::string msg = e.what();
    CHECK_MESSAGE(msg.find(needle) != std::string::npos, msg);
  }
}

}  // namespace

TEST_CASE("cat_cuda matches the CPU along every dim, in every dtype, from strided inputs") {
  for (DType dt : kAllDTypes) {
    for (int64_t dim : {0, 1, 2, -1}) {
      const int64_t d = (dim + 3) % 3;
      Shape s1 = {3, 5, 7}, s2 = {3, 5, 7}, s3 = {3, 5, 7};
      s1[static_cast<size_t>(d)] = 2;
      s2[static_cast<size_t>(d)] = 9;
      s3[static_cast<size_t>(d)] = 1;
      INFO("cat ", dtype_name(dt), " dim ", dim);
      const Tensor a = values(s1, dt, -9, 9, 201);
      Shape s2t = s2;
      std::swap(s2t[1], s2t[2]);
      const Tensor b_base = values(s2t, dt, -9, 9, 202);  // b is a transposed view
      const Tensor c_base = values({s3[0], s3[1], 2 * s3[2]}, dt, -9, 9, 203);  // c takes every other element
      auto b_of = [](const Tensor& t) { return native::transpose(t, 1, 2); };
      auto c_of = [](const Tensor& t) { return native::slice(t, 2, 0, t.size(2), 2); };
      const Tensor co = native::cat({a, b_of(b_base), c_of(c_base)}, dim);
      const Tensor go = native::cat({to_gpu(a), b_of(to_gpu(b_base)), c_of(to_gpu(c_base))}, dim);
      RG_CHECK_CLOSE(go, co, test::tol_for(dt));
    }
  }
  const Tensor x = test::uniform({4097}, -1, 1, DType::f32, 204), y = test::uniform({1023}, -1, 1, DType::f32, 205);
  RG_CHECK_CLOSE(native::cat({to_gpu(x), to_gpu(y)}, 0), native::cat({x, y}, 0), test::tol_for(DType::f32));
}

TEST_CASE("index_select_cuda matches the CPU") {
  for (DType dt : kAllDTypes) {
    for (DType it : {DType::i32, DType::i64}) {
      for (int64_t dim : {0, 1, 2, -1}) {
        const Shape s = {5, 7, 3};
        const int64_t n = s[static_cast<size_t>((dim + 3) % 3)];
        INFO("index_select ", dtype_name(dt), " index ", dtype_name(it), " dim ", dim);
        const Tensor x = values(s, dt, -9, 9, 211);
        const Tensor idx = indices({11}, n, it, 212);
        RG_CHECK_CLOSE(native::index_select(to_gpu(x), dim, to_gpu(idx)), native::index_select(x, dim, idx),
                       test::tol_for(dt));
        // a transposed input (made contiguous by native) and a 0-dim index
        const Tensor xt = native::transpose(x, 0, 2);
        const Tensor i0 = native::to(scalar_tensor(1.0), kCPU, it);
        RG_CHECK_CLOSE(native::index_select(native::transpose(to_gpu(x), 0, 2), dim, to_gpu(i0)),
                       native::index_select(xt, dim, i0), test::tol_for(dt));
      }
    }
  }
  const Tensor big = test::uniform({1000, 64}, -1, 1, DType::f32, 213);
  const Tensor bi = indices({5003}, 1000, DType::i64, 214);
  RG_CHECK_CLOSE(native::index_select(to_gpu(big), 0, to_gpu(bi)), native::index_select(big, 0, bi),
                 test::tol_for(DType::f32));
  const Tensor v = test::uniform({4097}, -1, 1, DType::f16, 215);
  const Tensor vi = indices({1023}, 4097, DType::i32, 216);
  RG_CHECK_CLOSE(native::index_select(to_gpu(v), 0, to_gpu(vi)), native::index_select(v, 0, vi),
                 test::tol_for(DType::f16));
}

TEST_CASE("index_add_cuda matches the CPU with repeated indices") {
  for (DType dt : test::float_dtypes()) {
    for (DType it : {DType::i32, DType::i64}) {
      for (int64_t dim : {0, 1, 2}) {
        const Shape s = {5, 7, 3};
        const int64_t n = s[static_cast<size_t>(dim)];
        Shape ss = s;
        ss[static_cast<size_t>(dim)] = 13;
        INFO("index_add_ ", dtype_name(dt), " index ", dtype_name(it), " dim ", dim);
        const Tensor base = values(s, dt, -2, 2, 221);
        const Tensor src = values(ss, dt, -2, 2, 222);
        const Tensor idx = indices({13}, n, it, 223);
        Tensor co = native::clone(base), go = to_gpu(base);
        native::index_add_(co, dim, idx, src);
        native::index_add_(go, dim, to_gpu(idx), to_gpu(src));
        RG_CHECK_CLOSE(go, co, atomic_tol(dt));
        // into a transposed (non-contiguous) self
        Tensor ct = native::clone(native::transpose(base, 0, 1)), gt = to_gpu(ct);
        Tensor cv = native::transpose(ct, 0, 1), gv = native::transpose(gt, 0, 1);
        native::index_add_(cv, dim, idx, src);
        native::index_add_(gv, dim, to_gpu(idx), to_gpu(src));
        RG_CHECK_CLOSE(gt, ct, atomic_tol(dt));
      }
    }
  }
  for (DType dt : {DType::f32, DType::f64}) {  // ~400 adds per row
    INFO("index_add_ many repeats ", dtype_name(dt));
    const Tensor base = values({10, 64}, dt, -1, 1, 224), src = values({4000, 64}, dt, -1, 1, 225);
    const Tensor idx = indices({4000}, 10, DType::i64, 226);
    Tensor co = native::clone(base), go = to_gpu(base);
    native::index_add_(co, 0, idx, src);
    native::index_add_(go, 0, to_gpu(idx), to_gpu(src));
    RG_CHECK_CLOSE(go, co, atomic_tol(dt));
  }
}

TEST_CASE("gather_cuda matches the CPU, with strided inputs and indices") {
  for (DType dt : kAllDTypes) {
    for (DType it : {DType::i32, DType::i64}) {
      for (int64_t dim : {0, 1, 2}) {
        const Shape s = {5, 7, 3};
        const int64_t n = s[static_cast<size_t>(dim)];
        Shape is = {4, 4, 2};  // no larger than x outside dim; any size along dim
        is[static_cast<size_t>(dim)] = 9;
        INFO("gather ", dtype_name(dt), " index ", dtype_name(it), " dim ", dim);
        const Tensor x = values(s, dt, -9, 9, 231);
        const Tensor idx = indices(is, n, it, 232);
        RG_CHECK_CLOSE(native::gather(to_gpu(x), dim, to_gpu(idx)), native::gather(x, dim, idx), test::tol_for(dt));
        // x and index both transposed views: x's dim `dim` is dim 2 - dim of xt (3, 7, 5)
        const Tensor xt = native::transpose(x, 0, 2);
        Shape ibase = {2, 2, 2};
        ibase[static_cast<size_t>(dim)] = 9;
        const Tensor ib = indices(ibase, n, it, 233);
        const Tensor it_view = native::transpose(ib, 0, 2);
        RG_CHECK_CLOSE(native::gather(native::transpose(to_gpu(x), 0, 2), 2 - dim, native::transpose(to_gpu(ib), 0, 2)),
                       native::gather(xt, 2 - dim, it_view), test::tol_for(dt));
      }
    }
  }
}

TEST_CASE("scatter_add_cuda matches the CPU, with a larger src and strided self") {
  for (DType dt : test::float_dtypes()) {
    for (DType it : {DType::i32, DType::i64}) {
      for (int64_t dim : {0, 1, 2}) {
        const Shape s = {5, 7, 3};
        const int64_t n = s[static_cast<size_t>(dim)];
        Shape is = {4, 4, 2};
        is[static_cast<size_t>(dim)] = 6;
        const Shape ss = {6, 8, 4};  // src no smaller than index
        INFO("scatter_add_ ", dtype_name(dt), " index ", dtype_name(it), " dim ", dim);
        const Tensor base = values(s, dt, -2, 2, 241), src = values(ss, dt, -2, 2, 242);
        const Tensor idx = indices(is, n, it, 243);
        Tensor co = native::clone(base), go = to_gpu(base);
        native::scatter_add_(co, dim, idx, src);
        native::scatter_add_(go, dim, to_gpu(idx), to_gpu(src));
        RG_CHECK_CLOSE(go, co, atomic_tol(dt));
        Tensor ct = native::clone(native::transpose(base, 0, 1)), gt = to_gpu(ct);
        native::scatter_add_(native::transpose(ct, 0, 1), dim, idx, src);
        native::scatter_add_(native::transpose(gt, 0, 1), dim, to_gpu(idx), to_gpu(src));
        RG_CHECK_CLOSE(gt, ct, atomic_tol(dt));
      }
    }
  }
}

TEST_CASE("index kernels: hand-checked values") {
  const auto f32 = TensorOptions(DType::f32).device(kGPU);
  const auto i64 = TensorOptions(DType::i64).device(kGPU);
  Tensor x = from_vector<float>({10, 11, 12, 13, 14, 15}, {2, 3}, f32);
  CHECK(native::index_select(x, 1, from_vector<int64_t>({2, 0, 2}, {3}, i64)).to_vector<double>() ==
        std::vector<double>{12, 10, 12, 15, 13, 15});
  CHECK(native::gather(x, 1, from_vector<int64_t>({1, 1, 0, 2}, {2, 2}, i64)).to_vector<double>() ==
        std::vector<double>{11, 11, 13, 15});
  Tensor acc = zeros({4}, f32);
  native::index_add_(acc, 0, from_vector<int64_t>({3, 3, 0}, {3}, i64), from_vector<float>({1, 2, 5}, {3}, f32));
  CHECK(acc.to_vector<double>() == std::vector<double>{5, 0, 0, 3});
  Tensor sc = zeros({2, 3}, f32);
  native::scatter_add_(sc, 1, from_vector<int64_t>({0, 0, 2, 1}, {2, 2}, i64),
                       from_vector<float>({1, 2, 3, 4}, {2, 2}, f32));
  CHECK(sc.to_vector<double>() == std::vector<double>{3, 0, 0, 0, 4, 3});
}

TEST_CASE("index kernels raise an error naming the op for an index out of range") {
  const auto f32 = TensorOptions(DType::f32).device(kGPU);
  Tensor x = zeros({5, 7}, f32);
  for (DType it : {DType::i32, DType::i64}) {
    const auto io = TensorOptions(it).device(kGPU);
    Tensor bad = from_vector<int64_t>({1, 7, 2}, {3}, io);
    Tensor neg = from_vector<int64_t>({1, -1, 2}, {3}, io);
    check_error([&] { native::index_select(x, 1, bad); },
                "index_select(): index 7 is out of bounds for dimension 1 with size 7");
    check_error([&] { native::index_select(x, 1, neg); }, "index_select(): index -1 is out of bounds");
    check_error([&] { native::index_add_(x, 1, bad, zeros({5, 3}, f32)); }, "index_add_(): index 7 is out of bounds");
    Tensor gbad = from_vector<int64_t>({0, 5, 0, 0}, {2, 2}, io);
    check_error([&] { native::gather(x, 0, gbad); }, "gather(): index 5 is out of bounds for dimension 0 with size 5");
    check_error([&] { native::scatter_add_(x, 0, gbad, zeros({2, 2}, f32)); },
                "scatter_add_(): index 5 is out of bounds for dimension 0 with size 5");
  }
  // the device is usable afterwards
  CHECK(native::reduce(ReduceOp::Sum, x, {}, false).item() == 0.0);
  // an index on the CPU with data on the GPU names both devices
  check_error([&] { native::index_select(x, 0, from_vector<int64_t>({0}, {1}, DType::i64)); }, "cuda:0");
  check_error([&] { native::index_select(x, 0, from_vector<int64_t>({0}, {1}, DType::i64)); }, "cpu");
}
