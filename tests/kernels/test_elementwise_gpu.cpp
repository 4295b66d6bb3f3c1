// Elementwise CUDA kernels (fill, arange, copy/cast, unary, unary_bwd, binary, where) against the
// CPU kernels: the same rg::native op on the same values on cpu and cuda:0, on odd shapes, through
// contiguous, misaligned, stepped, transposed and broadcast views, in every dtype each op takes.
// The unary and binary sweeps iterate the op rows (core/elementwise_ops.h) and fail for a row
// without a case here.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "core/cuda_api.h"
#include "kernel_test_util.h"
#include "test_util.h"

using namespace rg;
using namespace rg::ktest;

namespace {

std::vector<Shape> shapes() {
  std::vector<Shape> s = test::odd_shapes();
  s.push_back({33, 65});
  return s;
}

std::string ctx(const std::string& what, DType dt, const Shape& s, const std::string& view) {
  return what + " " + dtype_name(dt) + " " + shape_str(s) + " " + view;
}

// ---- unary: every op with a sensible input range and its parameters (integer dtypes: the rows
// with kKeepsInt, on whole numbers in [-20, 20])
struct UnaryCase {
  UnaryOp op;
  double alpha, beta, lo, hi;
};

std::vector<UnaryCase> unary_cases() {
  const double inf = std::numeric_limits<double>::infinity();
  return {
      {UnaryOp::Neg, 0, 0, -4, 4},         {UnaryOp::Abs, 0, 0, -4, 4},
      {UnaryOp::Exp, 0, 0, -4, 4},         {UnaryOp::Log, 0, 0, 0.1, 4},
      {UnaryOp::Sqrt, 0, 0, 0.1, 4},       {UnaryOp::Rsqrt, 0, 0, 0.1, 4},
      {UnaryOp::Sigmoid, 0, 0, -6, 6},     {UnaryOp::Tanh, 0, 0, -3, 3},
      {UnaryOp::Relu, 0, 0, -4, 4},        {UnaryOp::LeakyRelu, 0.1, 0, -4, 4},
      {UnaryOp::Silu, 0, 0, -6, 6},        {UnaryOp::Pow, 2.5, 0, 0.1, 3},
      {UnaryOp::Pow, 2, 0, -3, 3},         {UnaryOp::Pow, 0.5, 0, 0.1, 3},
      {UnaryOp::Pow, -1, 0, 0.5, 3},       {UnaryOp::Pow, 3, 0, -2, 2},
      {UnaryOp::Pow, 0, 0, -2, 2},         {UnaryOp::Clamp, -1, 2, -4, 4},
      {UnaryOp::Clamp, -inf, 0.5, -4, 4},  {UnaryOp::Clamp, 1.5, 2.5, -4, 4},
      {UnaryOp::Affine, 1.5, -0.25, -4, 4}, {UnaryOp::Affine, 2, 3, -4, 4},
      {UnaryOp::Reciprocal, 0, 0, 0.5, 3}, {UnaryOp::Sign, 0, 0, -3, 3},
      {UnaryOp::Square, 0, 0, -4, 4},      {UnaryOp::Softplus, 0, 0, -25, 25},
      {UnaryOp::Log1p, 0, 0, -0.5, 3},     {UnaryOp::Expm1, 0, 0, -2, 2},
      {UnaryOp::Floor, 0, 0, -4, 4},       {UnaryOp::Round, 0, 0, -4, 4},
      {UnaryOp::RDiv, 2, 0, 0.5, 3},       {UnaryOp::IsFinite, 0, 0, -4, 4},
      {UnaryOp::Gelu, 0, 0, -4, 4},        {UnaryOp::Hardswish, 0, 0, -5, 5},
      {UnaryOp::Mish, 0, 0, -25, 25},
  };
}

std::string unary_name(const UnaryCase& c) {
  return std::string(unary_op_name(c.op)) + "(" + std::to_string(c.alpha) + ", " + std::to_string(c.beta) + ")";
}

// ---- binary
struct BinaryCase {
  BinaryOp op;
  double alpha, beta;
  double alo, ahi, blo, bhi;
  bool coarse;  // whole-number inputs (comparisons, logical ops)
};

std::vector<BinaryCase> binary_cases() {
  return {
      {BinaryOp::Add, 1, 1, -4, 4, -4, 4, false},    {BinaryOp::Add, 2, 1, -4, 4, -4, 4, false},
      {BinaryOp::Add, 0.5, 1, -4, 4, -4, 4, false},  {BinaryOp::Sub, 1, 1, -4, 4, -4, 4, false},
      {BinaryOp::Sub, -3, 1, -4, 4, -4, 4, false},   {BinaryOp::Mul, 1, 1, -4, 4, -4, 4, false},
      {BinaryOp::Div, 1, 1, -4, 4, 0.5, 3, false},   {BinaryOp::Maximum, 1, 1, -4, 4, -4, 4, true},
      {BinaryOp::Minimum, 1, 1, -4, 4, -4, 4, true}, {BinaryOp::Maximum, 1, 1, -4, 4, -4, 4, false},
      {BinaryOp::Pow, 1, 1, 0.1, 3, -2, 2, false},   {BinaryOp::Axpby, 0.3, -1.7, -4, 4, -4, 4, false},
      {BinaryOp::Axpby, 2, -3, -4, 4, -4, 4, false}, {BinaryOp::Eq, 1, 1, -3, 3, -3, 3, true},
      {BinaryOp::Ne, 1, 1, -3, 3, -3, 3, true},      {BinaryOp::Lt, 1, 1, -3, 3, -3, 3, true},
      {BinaryOp::Le, 1, 1, -3, 3, -3, 3, true},      {BinaryOp::Gt, 1, 1, -3, 3, -3, 3, true},
      {BinaryOp::Ge, 1, 1, -3, 3, -3, 3, true},      {BinaryOp::LogicalAnd, 1, 1, -2, 2, -2, 2, true},
      {BinaryOp::LogicalOr, 1, 1, -2, 2, -2, 2, true}, {BinaryOp::Atan2, 1, 1, -2, 2, -2, 2, false},
  };
}

// Integer inputs for the ops whose float ranges do not suit integers.
void int_ranges(const BinaryCase& c, double* alo, double* ahi, double* blo, double* bhi) {
  *alo = -20, *ahi = 20, *blo = -20, *bhi = 20;
  if (c.op == BinaryOp::Pow) *alo = -5, *ahi = 5, *blo = -1, *bhi = 4;
  if (c.op == BinaryOp::Div) *blo = -3, *bhi = 4;  // includes 0: x / 0 gives 0 on integers
}

std::string binary_name(const BinaryCase& c) {
  return std::string(binary_op_name(c.op)) + "(" + std::to_string(c.alpha) + ", " + std::to_string(c.beta) + ")";
}

}  // namespace

TEST_CASE("fill_cuda matches the CPU fill in every dtype and view") {
  for (DType dt : kAllDTypes) {
    for (const Shape& s : shapes()) {
      for (const View& v : views_of(s, false)) {
        for (double value : {3.75, -2.0, 1e10}) {
          if (dt == DType::u8 && value < 0) continue;  // out of range: conversion undefined
          if (!is_floating(dt) && value > 1e9) continue;
          INFO(ctx("fill " + std::to_string(value), dt, s, v.name));
          Tensor cb = full(v.base, 7.0, dt), gb = to_gpu(cb);
          native::fill_(v.make(cb), value);
          native::fill_(v.make(gb), value);
          RG_CHECK_CLOSE(gb, cb, test::tol_for(dt));  // the whole base: nothing outside the view changes
        }
      }
    }
  }
}

TEST_CASE("fill_cuda writes the value itself (checked by hand)") {
  Tensor g = empty({4099}, TensorOptions(DType::f16).device(kGPU));
  native::fill_(g, 0.1);
  for (double v : g.to_vector<double>()) CHECK(v == static_cast<double>(static_cast<float>(Half(0.1f))));
  Tensor b = empty({33}, TensorOptions(DType::b8).device(kGPU));
  native::fill_(b, 0.5);  // nonzero is true
  for (double v : b.to_vector<double>()) CHECK(v == 1.0);
}

TEST_CASE("arange_cuda matches the CPU arange") {
  for (DType dt : kAllDTypes) {
    if (dt == DType::b8) continue;
    const bool fl = is_floating(dt);
    const double start = fl ? -3.0 : 0.0, end = fl ? 7.5 : (dt == DType::u8 ? 250.0 : 5000.0);
    const double step = fl ? 0.37 : 3.0;
    INFO("arange ", dtype_name(dt));
    Tensor c = arange(start, end, step, dt);
    Tensor g = arange(start, end, step, TensorOptions(dt).device(kGPU));
    RG_CHECK_CLOSE(g, c, test::tol_for(dt));
  }
  Tensor g = arange(0.0, 1.0, 0.1, TensorOptions(DType::f64).device(kGPU));
  const auto v = g.to_vector<double>();
  REQUIRE(v.size() == 10);
  for (size_t i = 0; i < v.size(); ++i) CHECK(v[i] == 0.1 * static_cast<double>(i));  // start + step * i, unfused
}

TEST_CASE("copy_cuda casts between every pair of dtypes through every view") {
  const std::vector<Shape> ss = {{7}, {1023}, {3, 5, 7}, {33, 65}};
  for (DType st : kAllDTypes) {
    for (DType dt : kAllDTypes) {
      const bool unsigned_side = st == DType::u8 || dt == DType::u8;
      const double lo = unsigned_side ? 0.0 : -50.0, hi = unsigned_side ? 100.0 : 50.0;
      for (const Shape& s : ss) {
        for (const View& sv : views_of(s, true)) {
          for (const View& dv : views_of(s, false)) {
            INFO(ctx(std::string("copy ") + dtype_name(st) + " -> ", dt, s, sv.name + " into " + dv.name));
            const Tensor src_base = values(sv.base, st, lo, hi, 11);
            Tensor cb = full(dv.base, 3.0, dt), gb = to_gpu(cb);
            native::copy_(dv.make(cb), sv.make(src_base));
            native::copy_(dv.make(gb), sv.make(to_gpu(src_base)));
            RG_CHECK_CLOSE(gb, cb, test::tol_for(dt));
          }
        }
      }
    }
  }
}

TEST_CASE("copy_cuda: hand-checked casts") {
  Tensor src = from_vector<double>({-2.75, -0.5, 0.0, 0.25, 1.5, 65504.0, 1e6}, {7},
                                   TensorOptions(DType::f64).device(kGPU));
  CHECK(native::to(src, kGPU, DType::i32).to_vector<double>() == std::vector<double>{-2, 0, 0, 0, 1, 65504, 1e6});
  CHECK(native::to(src, kGPU, DType::b8).to_vector<double>() == std::vector<double>{1, 1, 0, 1, 1, 1, 1});
  const auto h = native::to(src, kGPU, DType::f16).to_vector<double>();
  CHECK(h[0] == -2.75);
  CHECK(h[5] == 65504.0);
  CHECK(std::isinf(h[6]));  // above the largest half
}

TEST_CASE("copy_cuda: f32 -> f16/bf16 round to nearest even, packed and unpacked, by hand") {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  // f16: ulp 2^-10 at 1; 65520 is halfway between 65504 and 2^16 (inf); 2^-25 is half the smallest subnormal
  const std::vector<double> h_in = {1 + std::ldexp(1, -11), 1 + 3 * std::ldexp(1, -11), 1 + std::ldexp(1, -11) + std::ldexp(1, -20),
                                    65519.0, 65520.0, std::ldexp(1, -25), 3 * std::ldexp(1, -25), -0.0, nan};
  const std::vector<double> h_out = {1.0, 1 + std::ldexp(1, -9), 1 + std::ldexp(1, -10), 65504.0, inf, 0.0,
                                     std::ldexp(1, -23), -0.0, nan};
  // bf16: ulp 2^-7 at 1
  const std::vector<double> b_in = {1 + std::ldexp(1, -8), 1 + 3 * std::ldexp(1, -8), 1 + std::ldexp(1, -8) + std::ldexp(1, -20),
                                    -3.0, -0.0, nan};
  const std::vector<double> b_out = {1.0, 1 + std::ldexp(1, -6), 1 + std::ldexp(1, -7), -3.0, -0.0, nan};
  struct Case {
    DType to;
    const std::vector<double>& in;
    const std::vector<double>& out;
  };
  for (const Case& c : {Case{DType::f16, h_in, h_out}, Case{DType::bf16, b_in, b_out}}) {
    for (DType from : {DType::f32, DType::f64}) {
      const int64_t n = static_cast<int64_t>(c.in.size());
      std::vector<double> padded = {0.0};  // element 0 is a pad: the view from 1 is not 16-byte aligned
      padded.insert(padded.end(), c.in.begin(), c.in.end());
      const Tensor base = from_vector<double>(padded, {n + 1}, TensorOptions(from).device(kGPU));
      for (bool packed : {true, false}) {
        INFO(dtype_name(from), " -> ", dtype_name(c.to), packed ? " packed" : " unaligned");
        const Tensor src = packed ? native::contiguous(native::narrow(base, 0, 1, n)) : native::narrow(base, 0, 1, n);
        const auto got = native::to(src, kGPU, c.to).to_vector<double>();
        REQUIRE(got.size() == c.out.size());
        for (size_t i = 0; i < got.size(); ++i) {
          INFO("element ", i, ": ", c.in[i], " -> ", got[i], ", expected ", c.out[i]);
          if (std::isnan(c.out[i])) {
            CHECK(std::isnan(got[i]));
          } else {
            CHECK(got[i] == c.out[i]);
            CHECK(std::signbit(got[i]) == std::signbit(c.out[i]));
          }
        }
      }
    }
  }
}

TEST_CASE("copy_cuda: float -> u8 wraps negative values as the CPU does (through int64, like PyTorch)") {
  const std::vector<double> in = {-1.5, -3.0, 300.0, 254.5, 0.5, 17.0};  // exact in every float dtype but 254.5 (bf16: a tie, to 254)
  const std::vector<double> want = {255, 253, 44, 254, 0, 17};
  for (DType from : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    INFO(dtype_name(from), " -> u8");
    const Tensor c = from_vector<double>(in, {6}, TensorOptions(from));
    CHECK(native::to(c, kCPU, DType::u8).to_vector<double>() == want);
    CHECK(native::to(to_gpu(c), kGPU, DType::u8).to_vector<double>() == want);
  }
}

TEST_CASE("elementwise kernels on views 16 bytes into their storage (packed path at an offset)") {
  // A kernel that took the storage's start instead of data_ptr(), or packed a misaligned
  // pointer, fails here: the view starts 16 bytes in and the base around it must not change.
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    const int64_t off = 16 / static_cast<int64_t>(dtype_size(dt));
    for (int64_t n : {int64_t{7}, int64_t{1023}, int64_t{4097}}) {
      INFO(dtype_name(dt), " n ", n);
      auto cut = [&](const Tensor& b) { return native::narrow(b, 0, off, n); };
      const Tensor ab = values({n + 2 * off}, dt, -4, 4, 301), bb = values({n + 2 * off}, dt, -4, 4, 302);
      const Tensor ga = to_gpu(ab), gb = to_gpu(bb);
      RG_CHECK_CLOSE(native::binary(BinaryOp::Add, cut(ga), cut(gb)), native::binary(BinaryOp::Add, cut(ab), cut(bb)),
                     test::tol_for(dt));
      RG_CHECK_CLOSE(native::binary(BinaryOp::Lt, cut(ga), cut(gb)), native::binary(BinaryOp::Lt, cut(ab), cut(bb)),
                     test::tol_for(DType::b8));
      RG_CHECK_CLOSE(native::unary(UnaryOp::Sigmoid, cut(ga)), native::unary(UnaryOp::Sigmoid, cut(ab)), test::tol_for(dt));
      RG_CHECK_CLOSE(native::unary_bwd(UnaryOp::Tanh, cut(gb), cut(ga)), native::unary_bwd(UnaryOp::Tanh, cut(bb), cut(ab)),
                     loose(dt, 2));
      // in place, fill and casts into an offset view: only the view changes
      Tensor cs = native::clone(ab), gs = to_gpu(ab);
      native::binary_(BinaryOp::Mul, cut(cs), cut(bb));
      native::binary_(BinaryOp::Mul, cut(gs), cut(gb));
      RG_CHECK_CLOSE(gs, cs, test::tol_for(dt));
      native::unary_(UnaryOp::Relu, cut(cs));
      native::unary_(UnaryOp::Relu, cut(gs));
      RG_CHECK_CLOSE(gs, cs, test::tol_for(dt));
      native::fill_(cut(cs), 2.5);
      native::fill_(cut(gs), 2.5);
      RG_CHECK_CLOSE(gs, cs, test::tol_for(dt));
      const Tensor f32b = values({n + 8}, DType::f32, -4, 4, 303);  // f32 source 16 bytes in
      native::copy_(cut(cs), native::narrow(f32b, 0, 4, n));
      native::copy_(cut(gs), native::narrow(to_gpu(f32b), 0, 4, n));
      RG_CHECK_CLOSE(gs, cs, test::tol_for(dt));
      const Tensor condb = values({n + 32}, DType::b8, 0, 2, 304);
      auto ccut = [&](const Tensor& b) { return native::narrow(b, 0, 16, n); };
      RG_CHECK_CLOSE(native::where(ccut(to_gpu(condb)), cut(ga), cut(gb)), native::where(ccut(condb), cut(ab), cut(bb)),
                     test::tol_for(dt));
    }
  }
}

TEST_CASE("copy_cuda within a large grid-stride range and with 64-bit offsets") {
  // 4,000,037 elements: several grid-stride passes and a ragged tail, f32 -> f16 and same-dtype
  Tensor c = test::uniform({4000037}, -3.0, 3.0, DType::f32, 5);
  Tensor g = to_gpu(c);
  RG_CHECK_CLOSE(native::to(g, kGPU, DType::f16), native::to(c, kCPU, DType::f16), test::tol_for(DType::f16));
  RG_CHECK_CLOSE(native::contiguous(native::slice(g, 0, 1, 4000037, 3)),
                 native::contiguous(native::slice(c, 0, 1, 4000037, 3)), test::tol_for(DType::f32));

  // A view whose elements lie more than 2^31 apart takes the 64-bit offset path (Note [32-bit offsets]).
  const int64_t far = (int64_t{1} << 31) + 64;
  Tensor base = zeros({far + 8}, TensorOptions(DType::u8).device(kGPU));
  Tensor v = native::as_strided(base, {3, 5}, {int64_t{1} << 30, 1}, 0);  // spans 2^31 + 4 elements
  Tensor src = native::view(arange(15.0, TensorOptions(DType::u8).device(kGPU)), {3, 5});
  native::copy_(v, src);
  CHECK(native::contiguous(v).to_vector<double>() == arange(15.0, DType::f64).to_vector<double>());
  Tensor sum = native::binary(BinaryOp::Add, v, v);
  std::vector<double> twice;
  for (int i = 0; i < 15; ++i) twice.push_back(2.0 * i);
  CHECK(sum.to_vector<double>() == twice);
  CHECK(native::unary(UnaryOp::Square, v).to_vector<double>()[14] == 196.0);
}

TEST_CASE("every unary and binary row has a case in the sweeps below") {
  const auto uc = unary_cases();
  for (UnaryOp op : kAllUnaryOps) {
    CHECK_MESSAGE(std::any_of(uc.begin(), uc.end(), [op](const UnaryCase& c) { return c.op == op; }),
                  "no GPU case for unary op ", unary_op_name(op));
  }
  const auto bc = binary_cases();
  for (BinaryOp op : kAllBinaryOps) {
    CHECK_MESSAGE(std::any_of(bc.begin(), bc.end(), [op](const BinaryCase& c) { return c.op == op; }),
                  "no GPU case for binary op ", binary_op_name(op));
  }
}

TEST_CASE("unary_cuda matches the CPU for every op, dtype and view") {
  for (const UnaryCase& c : unary_cases()) {
    for (DType dt : kAllDTypes) {
      if (!is_floating(dt) && !unary_op_keeps_integer(c.op)) continue;
      if (dt == DType::b8 && c.op == UnaryOp::Neg) continue;  // refused on both devices (below)
      for (const Shape& s : shapes()) {
        for (const View& v : views_of(s, true)) {
          INFO(ctx(unary_name(c), dt, s, v.name));
          const Tensor base = values(v.base, dt, is_floating(dt) ? c.lo : -20.0, is_floating(dt) ? c.hi : 20.0, 21);
          Tensor cpu_out, gpu_out;
          CHECK_NOTHROW(cpu_out = native::unary(c.op, v.make(base), c.alpha, c.beta));
          CHECK_NOTHROW(gpu_out = native::unary(c.op, v.make(to_gpu(base)), c.alpha, c.beta));
          if (cpu_out.defined() && gpu_out.defined()) RG_CHECK_CLOSE(gpu_out, cpu_out, test::tol_for(dt));
        }
      }
    }
  }
}

TEST_CASE("unary_cuda in place on strided views leaves the rest of the base alone") {
  for (UnaryOp op : {UnaryOp::Relu, UnaryOp::Affine, UnaryOp::Sigmoid, UnaryOp::Clamp}) {
    for (DType dt : test::float_dtypes()) {
      for (const Shape& s : shapes()) {
        for (const View& v : views_of(s, false)) {
          INFO(ctx(std::string(unary_op_name(op)) + "_", dt, s, v.name));
          Tensor cb = test::uniform(v.base, -3.0, 3.0, dt, 31), gb = to_gpu(cb);
          native::unary_(op, v.make(cb), -0.5, 1.25);
          native::unary_(op, v.make(gb), -0.5, 1.25);
          RG_CHECK_CLOSE(gb, cb, test::tol_for(dt));
        }
      }
    }
  }
}

TEST_CASE("unary_cuda: isfinite, rounding half to even and refusals, checked by hand") {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  for (DType dt : test::float_dtypes()) {
    Tensor x = from_vector<double>({1.0, -inf, inf, nan, -0.0, 3.5}, {6}, TensorOptions(dt).device(kGPU));
    CHECK(native::unary(UnaryOp::IsFinite, x).to_vector<double>() == std::vector<double>{1, 0, 0, 0, 1, 1});
    Tensor r = from_vector<double>({0.5, 1.5, 2.5, -0.5, -1.5, 2.25}, {6}, TensorOptions(dt).device(kGPU));
    CHECK(native::unary(UnaryOp::Round, r).to_vector<double>() == std::vector<double>{0, 2, 2, -0, -2, 2});
    Tensor m = from_vector<double>({nan, -1.0}, {2}, TensorOptions(dt).device(kGPU));
    const auto relu = native::unary(UnaryOp::Relu, m).to_vector<double>();
    CHECK(std::isnan(relu[0]));  // NaN propagates, as torch.relu
    CHECK(relu[1] == 0.0);
  }
  Tensor i = from_vector<int64_t>({-3, 0, 7}, {3}, TensorOptions(DType::i64).device(kGPU));
  CHECK(native::unary(UnaryOp::IsFinite, i).to_vector<double>() == std::vector<double>{1, 1, 1});
  CHECK(native::unary(UnaryOp::Clamp, i, 1.5, 2.5).to_vector<double>() == std::vector<double>{2, 2, 2});
  CHECK(native::unary(UnaryOp::Affine, i, 0.5, 0.0).to_vector<double>() == std::vector<double>{-1, 0, 3});
  Tensor b = from_vector<uint8_t>({0, 1}, {2}, TensorOptions(DType::b8).device(kGPU));
  CHECK_THROWS_AS(native::unary(UnaryOp::Neg, b), rg::Error);
  Tensor f = from_vector<float>({1.0f}, {1}, TensorOptions(DType::f32).device(kGPU));
  CHECK_THROWS_AS(native::unary_bwd(UnaryOp::Sign, f, f), rg::Error);
}

TEST_CASE("unary_bwd_cuda matches the CPU for every differentiable op, dtype and view") {
  for (const UnaryCase& c : unary_cases()) {
    if (!unary_op_has_grad(c.op)) continue;
    for (DType dt : test::float_dtypes()) {
      for (const Shape& s : shapes()) {
        for (const View& v : views_of(s, true)) {
          INFO(ctx(unary_name(c) + " backward", dt, s, v.name));
          const Tensor xb = test::uniform(v.base, c.lo, c.hi, dt, 41);
          const Tensor gb = test::uniform(v.base, -1.0, 1.0, dt, 42);
          // the saved tensor: the output for the ops that save it (computed once, on the CPU)
          const Tensor saved_base = native::unary_bwd_uses_output(c.op)
                                        ? native::contiguous(native::unary(c.op, xb, c.alpha, c.beta))
                                        : xb;
          const Tensor cpu_gx = native::unary_bwd(c.op, v.make(gb), v.make(saved_base), c.alpha, c.beta);
          const Tensor gpu_gx =
              native::unary_bwd(c.op, v.make(to_gpu(gb)), v.make(to_gpu(saved_base)), c.alpha, c.beta);
          RG_CHECK_CLOSE(gpu_gx, cpu_gx, loose(dt, 2));
        }
      }
    }
  }
}

TEST_CASE("binary_cuda matches the CPU for every op, dtype and pair of views") {
  const std::vector<Shape> ss = {{1}, {7}, {1023}, {4097}, {3, 5, 7}, {2, 1, 33}, {33, 65}};
  for (const BinaryCase& c : binary_cases()) {
    for (DType dt : kAllDTypes) {
      // add/sub with a fractional alpha is an error on integers (as in PyTorch)
      if (!is_floating(dt) && (c.op == BinaryOp::Add || c.op == BinaryOp::Sub) && c.alpha != std::trunc(c.alpha)) {
        continue;
      }
      double alo = c.alo, ahi = c.ahi, blo = c.blo, bhi = c.bhi;
      if (!is_floating(dt)) int_ranges(c, &alo, &ahi, &blo, &bhi);
      if (dt == DType::u8 && c.op == BinaryOp::Pow) alo = 0, ahi = 5, blo = 0, bhi = 4;
      for (const Shape& s : ss) {
        const std::vector<View> va = views_of(s, true), vb = views_of(s, true);
        for (size_t i = 0; i < va.size(); ++i) {
          for (size_t j : {size_t{0}, (i + 1) % vb.size(), vb.size() - 1}) {
            INFO(ctx(binary_name(c), dt, s, va[i].name + " op " + vb[j].name));
            const Tensor ab = values(va[i].base, dt, alo, ahi, 51, c.coarse);
            const Tensor bb = values(vb[j].base, dt, blo, bhi, 52, c.coarse);
            Tensor co, go;
            CHECK_NOTHROW(co = native::binary(c.op, va[i].make(ab), vb[j].make(bb), c.alpha, c.beta));
            CHECK_NOTHROW(go = native::binary(c.op, va[i].make(to_gpu(ab)), vb[j].make(to_gpu(bb)), c.alpha, c.beta));
            if (co.defined() && go.defined()) RG_CHECK_CLOSE(go, co, test::tol_for(co.dtype()));
          }
        }
      }
    }
  }
}

TEST_CASE("binary_cuda broadcasts shapes and 0-dim CPU scalars as the CPU does") {
  struct Pair {
    Shape a, b;
  };
  const std::vector<Pair> pairs = {{{3, 5, 7}, {5, 1}}, {{4097}, {}}, {{1}, {2, 1, 33}}, {{2, 1, 33}, {2, 7, 1}},
                                   {{64, 300}, {300}}, {{300, 64}, {300, 1}}};
  for (BinaryOp op : {BinaryOp::Add, BinaryOp::Mul, BinaryOp::Axpby, BinaryOp::Lt, BinaryOp::Maximum}) {
    for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::i64}) {
      for (const Pair& p : pairs) {
        INFO(binary_op_name(op), " ", dtype_name(dt), " ", shape_str(p.a), " with ", shape_str(p.b));
        const bool coarse = op == BinaryOp::Lt;
        const Tensor a = values(p.a, dt, -4, 4, 61, coarse), b = values(p.b, dt, -4, 4, 62, coarse);
        const double al = op == BinaryOp::Add && !is_floating(dt) ? 2.0 : 0.5;  // integral alpha on integers
        const Tensor co = native::binary(op, a, b, al, -2.0);
        RG_CHECK_CLOSE(native::binary(op, to_gpu(a), to_gpu(b), al, -2.0), co, test::tol_for(co.dtype()));
        if (b.dim() == 0) RG_CHECK_CLOSE(native::binary(op, to_gpu(a), b, al, -2.0), co, test::tol_for(co.dtype()));
      }
    }
  }
}

TEST_CASE("binary_cuda in place on a strided self") {
  for (DType dt : {DType::f32, DType::f16, DType::i32}) {
    for (const Shape& s : shapes()) {
      for (const View& v : views_of(s, false)) {
        INFO(ctx("add_", dt, s, v.name));
        Tensor cb = values(v.base, dt, -4, 4, 71), gb = to_gpu(cb);
        const Tensor other = values(s.size() > 1 ? Shape{s.back()} : s, dt, -4, 4, 72);
        native::binary_(BinaryOp::Add, v.make(cb), other, 3.0);
        native::binary_(BinaryOp::Add, v.make(gb), to_gpu(other), 3.0);
        RG_CHECK_CLOSE(gb, cb, test::tol_for(dt));
      }
    }
  }
}

TEST_CASE("binary_cuda: hand-checked values") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor a = from_vector<double>({1.0, nan, 3.0, -2.0}, {4}, TensorOptions(DType::f32).device(kGPU));
  Tensor b = from_vector<double>({2.0, 0.0, nan, -2.0}, {4}, TensorOptions(DType::f32).device(kGPU));
  const auto mx = native::binary(BinaryOp::Maximum, a, b).to_vector<double>();
  CHECK(mx[0] == 2.0);
  CHECK(std::isnan(mx[1]));
  CHECK(std::isnan(mx[2]));
  CHECK(mx[3] == -2.0);
  CHECK(native::binary(BinaryOp::Eq, a, b).to_vector<double>() == std::vector<double>{0, 0, 0, 1});
  CHECK(native::binary(BinaryOp::Axpby, a, b, 2.0, -1.0).to_vector<double>()[0] == 0.0);  // 2*1 - 2
  Tensor i = from_vector<int32_t>({7, -7, 5}, {3}, TensorOptions(DType::i32).device(kGPU));
  Tensor j = from_vector<int32_t>({2, 2, 0}, {3}, TensorOptions(DType::i32).device(kGPU));
  Tensor q = empty_like(i);
  RG_CALL_KERNEL(binary, kGPU, q, i, j, BinaryOp::Div, 1.0, 1.0);  // integer true division, truncated; x/0 = 0
  CHECK(q.to_vector<double>() == std::vector<double>{3, -3, 0});
  Tensor u = from_vector<uint8_t>({250, 3}, {2}, TensorOptions(DType::u8).device(kGPU));
  Tensor v = from_vector<uint8_t>({10, 4}, {2}, TensorOptions(DType::u8).device(kGPU));
  CHECK(native::binary(BinaryOp::Add, u, v).to_vector<double>() == std::vector<double>{4, 7});  // wraps
}

TEST_CASE("elementwise kernels over many grid-stride passes") {
  for (DType dt : {DType::f32, DType::f16}) {
    INFO(dtype_name(dt));
    const Tensor a = test::uniform({4000037}, -3.0, 3.0, dt, 81), b = test::uniform({4000037}, -3.0, 3.0, dt, 82);
    const Tensor ga = to_gpu(a), gb = to_gpu(b);
    RG_CHECK_CLOSE(native::unary(UnaryOp::Relu, ga), native::unary(UnaryOp::Relu, a), test::tol_for(dt));
    RG_CHECK_CLOSE(native::binary(BinaryOp::Add, ga, gb), native::binary(BinaryOp::Add, a, b), test::tol_for(dt));
    RG_CHECK_CLOSE(native::binary(BinaryOp::Axpby, ga, gb, 0.5, 2.0), native::binary(BinaryOp::Axpby, a, b, 0.5, 2.0),
                   test::tol_for(dt));
  }
}

TEST_CASE("where_cuda matches the CPU in every dtype with broadcasting and views") {
  for (DType dt : kAllDTypes) {
    for (const Shape& s : shapes()) {
      const std::vector<View> vs = views_of(s, true);
      for (size_t i = 0; i < vs.size(); ++i) {
        const View& vc = vs[i];
        const View& va = vs[(i + 1) % vs.size()];
        const View& vb = vs[(i + 2) % vs.size()];
        INFO(ctx("where", dt, s, vc.name + " ? " + va.name + " : " + vb.name));
        const Tensor cb = values(vc.base, DType::b8, 0, 2, 91);
        const Tensor ab = values(va.base, dt, -20, 20, 92), bb = values(vb.base, dt, -20, 20, 93);
        const Tensor co = native::where(vc.make(cb), va.make(ab), vb.make(bb));
        const Tensor go = native::where(vc.make(to_gpu(cb)), va.make(to_gpu(ab)), vb.make(to_gpu(bb)));
        RG_CHECK_CLOSE(go, co, test::tol_for(dt));
      }
    }
    INFO("where broadcast ", dtype_name(dt));
    const Tensor c = values({3, 1, 7}, DType::b8, 0, 2, 94), a = values({5, 1}, dt, -9, 9, 95),
                 b = values({3, 5, 7}, dt, -9, 9, 96);
    RG_CHECK_CLOSE(native::where(to_gpu(c), to_gpu(a), to_gpu(b)), native::where(c, a, b), test::tol_for(dt));
  }
}

TEST_CASE("mixing devices names both devices") {
  const Tensor g = zeros({3}, TensorOptions(DType::f32).device(kGPU));
  const Tensor c = zeros({3}, DType::f32);
  for (auto f : std::vector<std::function<void()>>{
           [&] { native::binary(BinaryOp::Add, g, c); },
           [&] { native::binary(BinaryOp::Add, c, g); },
           [&] { native::where(native::binary(BinaryOp::Lt, g, g), g, c); },
       }) {
    try {
      f();
      FAIL("expected an error mixing cpu and cuda:0");
    } catch (const rg::Error& e) {
      const std::string msg = e.what();
      CHECK_MESSAGE(msg.find("cuda:0") != std::string::npos, msg);
      CHECK_MESSAGE(msg.find("cpu") != std::string::npos, msg);
    }
  }
}
