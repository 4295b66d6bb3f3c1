// copy_ and to(): casts between every pair of dtypes (truncation toward zero, bool as nonzero,
// exact where representable), strided sources and destinations, and broadcasting copy_.
#include <cmath>

#include "test_util.h"

using namespace rg;

namespace {

const std::vector<DType> kAll = test::all_dtypes();

// Values every dtype of the source kind holds exactly (no negatives: float -> uint8 of a negative is undefined).
std::vector<double> source_values(DType src) {
  if (src == DType::b8) return {0, 1, 1, 0, 1};
  if (is_floating(src)) return {0, 1, 2.5, 100, 0.5, 3.75, 255, 0.25};
  return {0, 1, 2, 100, 7, 255, 3};
}

// The value a cast to `dst` must give, worked out from the rules.
double cast_rule(double v, DType dst) {
  if (dst == DType::b8) return v != 0 ? 1 : 0;
  if (!is_floating(dst)) return std::trunc(v);
  return v;  // every source value is exact in every float dtype
}

}  // namespace

TEST_CASE("casts between every pair of dtypes") {
  for (DType src : kAll) {
    for (DType dst : kAll) {
      CAPTURE(dtype_name(src));
      CAPTURE(dtype_name(dst));
      const auto sv = source_values(src);
      // build the source from float64 values: exact for these values in every dtype
      Tensor s = empty({static_cast<int64_t>(sv.size())}, src);
      native::copy_(s, from_vector<double>(sv));
      CHECK(s.to_vector<double>() == sv);
      const Tensor d = native::to(s, kCPU, dst);
      CHECK(d.dtype() == dst);
      std::vector<double> want(sv.size());
      for (size_t i = 0; i < sv.size(); ++i) want[i] = cast_rule(sv[i], dst);
      CHECK(d.to_vector<double>() == want);
      // the same cast from a strided source into a strided destination
      const Tensor s2 = native::expand(native::unsqueeze(s, 0), {3, static_cast<int64_t>(sv.size())});
      const Tensor dbase = zeros({static_cast<int64_t>(sv.size()), 6}, dst);
      const Tensor dview = native::transpose(native::slice(dbase, 1, 0, 6, 2), 0, 1);  // (3, n)
      native::copy_(dview, s2);
      const auto dv = dview.to_vector<double>();
      for (int r = 0; r < 3; ++r)
        for (size_t i = 0; i < sv.size(); ++i) CHECK(dv[r * sv.size() + i] == want[i]);
      CHECK(native::reduce(ReduceOp::AbsMax, native::slice(dbase, 1, 1, 6, 2), {}, false).item() == 0.0);
    }
  }
}

TEST_CASE("float to integer casts truncate toward zero; integer narrowing wraps") {
  const Tensor f = from_vector<double>({-2.75, -0.5, 0.5, 2.75, -100.0});
  CHECK(native::to(f, kCPU, DType::i32).to_vector<int64_t>() == std::vector<int64_t>{-2, 0, 0, 2, -100});
  CHECK(native::to(f, kCPU, DType::i64).to_vector<int64_t>() == std::vector<int64_t>{-2, 0, 0, 2, -100});
  CHECK(native::to(f, kCPU, DType::b8).to_vector<int64_t>() == std::vector<int64_t>{1, 1, 1, 1, 1});
  const Tensor big = from_vector<int64_t>({(int64_t{1} << 32) + 5, -1, 256 + 7});
  CHECK(native::to(big, kCPU, DType::i32).to_vector<int64_t>() == std::vector<int64_t>{5, -1, 263});
  CHECK(native::to(big, kCPU, DType::u8).to_vector<int64_t>() == std::vector<int64_t>{5, 255, 7});
  // rounding to the 16-bit floats: ties to even
  const Tensor t = from_vector<float>({1.0f + std::ldexp(1.0f, -11), 1.0f + std::ldexp(3.0f, -11), 70000.0f});
  const auto h = native::to(t, kCPU, DType::f16).to_vector<double>();
  CHECK(h[0] == 1.0);
  CHECK(h[1] == 1.0 + std::ldexp(1.0, -9));
  CHECK(h[2] == INFINITY);
  const auto b = native::to(from_vector<float>({1.0f + std::ldexp(1.0f, -8), 1.0f + std::ldexp(3.0f, -8)}), kCPU,
                            DType::bf16).to_vector<double>();
  CHECK(b[0] == 1.0);
  CHECK(b[1] == 1.0 + std::ldexp(1.0, -6));
  // NaN and inf survive between float dtypes
  const Tensor nf = from_vector<float>({NAN, INFINITY, -INFINITY});
  for (DType dt : {DType::f64, DType::f16, DType::bf16}) {
    const auto v = native::to(native::to(nf, kCPU, dt), kCPU, DType::f32).to_vector<double>();
    CHECK(std::isnan(v[0]));
    CHECK(v[1] == INFINITY);
    CHECK(v[2] == -INFINITY);
  }
}

TEST_CASE("strided copies: transposes, steps, contiguous() and clone()") {
  const Tensor x = native::view(arange(24.0, DType::f64), {2, 3, 4});
  const Tensor p = native::permute(x, {2, 0, 1});  // (4, 2, 3): p[i][j][k] = x[j][k][i] = 12 j + 4 k + i
  const Tensor c = native::contiguous(p);
  CHECK(c.is_contiguous());
  std::vector<double> want;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 2; ++j)
      for (int k = 0; k < 3; ++k) want.push_back(12 * j + 4 * k + i);
  CHECK(c.to_vector<double>() == want);
  CHECK(native::contiguous(x).data_ptr() == x.data_ptr());  // already contiguous: no copy
  const Tensor cl = native::clone(x);
  CHECK(cl.data_ptr() != x.data_ptr());
  CHECK(cl.to_vector<double>() == x.to_vector<double>());
  // step slices in two dims, cast on the way
  const Tensor s = native::slice(native::slice(x, 2, 1, 4, 2), 1, 0, 3, 2);  // (2, 2, 2): x[j][2k][1 + 2i]
  const Tensor sf = native::to(s, kCPU, DType::f16);
  CHECK(sf.to_vector<double>() == std::vector<double>{1, 3, 9, 11, 13, 15, 21, 23});
  // a large strided copy (parallel rows)
  const Tensor big = test::uniform({300, 257}, -1, 1, DType::f32, 3);
  const Tensor bt = native::contiguous(native::transpose(big, 0, 1));
  const auto bv = big.to_vector<double>(), tv = bt.to_vector<double>();
  bool same = true;
  for (int i = 0; i < 300; ++i)
    for (int j = 0; j < 257; ++j) same = same && tv[static_cast<size_t>(j * 300 + i)] == bv[static_cast<size_t>(i * 257 + j)];
  CHECK(same);
}

TEST_CASE("copy_ broadcasts the source; 0-dim and empty copies; errors") {
  const Tensor dst = zeros({2, 3}, DType::f64);
  native::copy_(dst, from_vector<int32_t>({1, 2, 3}));
  CHECK(dst.to_vector<double>() == std::vector<double>{1, 2, 3, 1, 2, 3});
  native::copy_(dst, from_vector<float>({5, 6}, {2, 1}));
  CHECK(dst.to_vector<double>() == std::vector<double>{5, 5, 5, 6, 6, 6});
  native::copy_(dst, scalar_tensor(-1.5));
  CHECK(dst.to_vector<double>() == std::vector<double>(6, -1.5));
  const Tensor s = scalar_tensor(0.0, DType::i64);
  native::copy_(s, scalar_tensor(7.9));
  CHECK(s.item() == 7.0);
  native::copy_(empty({0, 3}), empty({3}));  // nothing to do
  const uint32_t v0 = dst.version();
  native::copy_(dst, scalar_tensor(2.0));
  CHECK(dst.version() == v0 + 1);
  try {
    native::copy_(zeros({2, 4}), zeros({3}));
    FAIL("expected an error");
  } catch (const rg::Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("[2, 4]") != std::string::npos);  // (the error comes from the expand inside copy_)
    CHECK(msg.find("[3]") != std::string::npos);
  }
}
