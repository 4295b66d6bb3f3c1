// Unary, unary backward, binary and where kernels on CPU, every dtype, odd and strided shapes,
// broadcasting, against reference formulas evaluated in double in this file. The sweeps iterate
// the op rows (core/elementwise_ops.h): a new row fails here until it has a reference and cases.
#include <algorithm>
#include <cmath>
#include <functional>

#include "test_util.h"

using namespace rg;

namespace {

Tensor ref(const std::vector<double>& v, const Shape& s) { return from_vector<double>(v, s, DType::f64); }

test::Tol loose(DType t, double k) {
  const test::Tol b = test::tol_for(t);
  return {b.atol * k, b.rtol * k};
}

double round_half_even(double x) {
  const double f = std::floor(x), d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return std::fmod(f, 2.0) == 0.0 ? f : f + 1;
}

double sig(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double softplus(double x) { return std::log(1.0 + std::exp(x)); }

// f(x) for every UnaryOp, straight from the definitions.
double ref_fwd(UnaryOp op, double x, double a, double b) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Abs: return std::fabs(x);
    case UnaryOp::Exp: return std::exp(x);
    case UnaryOp::Log: return std::log(x);
    case UnaryOp::Sqrt: return std::sqrt(x);
    case UnaryOp::Rsqrt: return 1.0 / std::sqrt(x);
    case UnaryOp::Sigmoid: return sig(x);
    case UnaryOp::Tanh: return std::tanh(x);
    case UnaryOp::Relu: return x > 0 ? x : 0.0;
    case UnaryOp::LeakyRelu: return x > 0 ? x : a * x;
    case UnaryOp::Silu: return x * sig(x);
    case UnaryOp::Pow: return std::pow(x, a);
    case UnaryOp::Clamp: return std::min(std::max(x, a), b);
    case UnaryOp::Affine: return a * x + b;
    case UnaryOp::Reciprocal: return 1.0 / x;
    case UnaryOp::Sign: return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0);
    case UnaryOp::Square: return x * x;
    case UnaryOp::Softplus: return softplus(x);
    case UnaryOp::Log1p: return std::log(1.0 + x);
    case UnaryOp::Expm1: return std::exp(x) - 1.0;
    case UnaryOp::Floor: return std::floor(x);
    case UnaryOp::Round: return round_half_even(x);
    case UnaryOp::RDiv: return a / x;
    case UnaryOp::IsFinite: return std::isfinite(x) ? 1.0 : 0.0;
    case UnaryOp::Gelu: return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
    case UnaryOp::Hardswish: return x * std::min(std::max(x + 3.0, 0.0), 6.0) / 6.0;
    case UnaryOp::Mish: return x * std::tanh(softplus(x));
  }
  return NAN;
}

// df/dx, worked out by hand (checked against central differences below).
double ref_grad(UnaryOp op, double x, double a, double b) {
  const double pi = 3.14159265358979323846;
  switch (op) {
    case UnaryOp::Neg: return -1;
    case UnaryOp::Abs: return x > 0 ? 1 : (x < 0 ? -1 : 0);
    case UnaryOp::Exp: return std::exp(x);
    case UnaryOp::Log: return 1 / x;
    case UnaryOp::Sqrt: return 0.5 / std::sqrt(x);
    case UnaryOp::Rsqrt: return -0.5 * std::pow(x, -1.5);
    case UnaryOp::Sigmoid: return sig(x) * (1 - sig(x));
    case UnaryOp::Tanh: return 1 - std::tanh(x) * std::tanh(x);
    case UnaryOp::Relu: return x > 0 ? 1 : 0;
    case UnaryOp::LeakyRelu: return x > 0 ? 1 : a;
    case UnaryOp::Silu: return sig(x) + x * sig(x) * (1 - sig(x));
    case UnaryOp::Pow: return a == 0 ? 0 : a * std::pow(x, a - 1);
    case UnaryOp::Clamp: return (x >= a && x <= b) ? 1 : 0;
    case UnaryOp::Affine: return a;
    case UnaryOp::Reciprocal: return -1 / (x * x);
    case UnaryOp::Square: return 2 * x;
    case UnaryOp::Softplus: return sig(x);
    case UnaryOp::Log1p: return 1 / (1 + x);
    case UnaryOp::Expm1: return std::exp(x);
    case UnaryOp::RDiv: return -a / (x * x);
    case UnaryOp::Gelu: return 0.5 * (1 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-x * x / 2) / std::sqrt(2 * pi);
    case UnaryOp::Hardswish: return x < -3 ? 0 : (x <= 3 ? (2 * x + 3) / 6 : 1);
    case UnaryOp::Mish: {
      const double t = std::tanh(softplus(x));
      return t + x * (1 - t * t) * sig(x);
    }
    default: return NAN;
  }
}

struct UCase {
  UnaryOp op;
  double lo, hi, a, b;
};

std::vector<UCase> float_cases() {
  return {
      {UnaryOp::Neg, -4, 4, 0, 0},        {UnaryOp::Abs, -4, 4, 0, 0},       {UnaryOp::Exp, -4, 4, 0, 0},
      {UnaryOp::Log, 0.1, 3, 0, 0},       {UnaryOp::Sqrt, 0.1, 3, 0, 0},     {UnaryOp::Rsqrt, 0.1, 3, 0, 0},
      {UnaryOp::Sigmoid, -4, 4, 0, 0},    {UnaryOp::Tanh, -4, 4, 0, 0},      {UnaryOp::Relu, -4, 4, 0, 0},
      {UnaryOp::LeakyRelu, -4, 4, 0.1, 0}, {UnaryOp::Silu, -4, 4, 0, 0},     {UnaryOp::Pow, 0.1, 3, 2.5, 0},
      {UnaryOp::Pow, -3, 3, 2, 0},        {UnaryOp::Pow, 0.1, 3, -1.5, 0},   {UnaryOp::Pow, 0.1, 3, 0.5, 0},
      {UnaryOp::Pow, -3, 3, 3, 0},        {UnaryOp::Pow, 0.1, 3, 0, 0},      {UnaryOp::Clamp, -4, 4, -1, 2},
      {UnaryOp::Clamp, -4, 4, -INFINITY, 0.5}, {UnaryOp::Clamp, -4, 4, -0.5, INFINITY},
      {UnaryOp::Affine, -4, 4, 2.5, -1},  {UnaryOp::Reciprocal, 0.1, 3, 0, 0}, {UnaryOp::Sign, -4, 4, 0, 0},
      {UnaryOp::Square, -4, 4, 0, 0},     {UnaryOp::Softplus, -4, 4, 0, 0},  {UnaryOp::Log1p, -0.5, 3, 0, 0},
      {UnaryOp::Expm1, -4, 4, 0, 0},      {UnaryOp::Floor, -4, 4, 0, 0},     {UnaryOp::Round, -4, 4, 0, 0},
      {UnaryOp::RDiv, 0.1, 3, 3, 0},      {UnaryOp::Gelu, -4, 4, 0, 0},      {UnaryOp::Hardswish, -5, 5, 0, 0},
      {UnaryOp::Mish, -4, 4, 0, 0},       {UnaryOp::IsFinite, -4, 4, 0, 0},
  };
}

// The integer forms (rows with kKeepsInt), with the scalars each takes.
struct ICase {
  UnaryOp op;
  double a, b;
};

std::vector<ICase> int_cases() {
  return {
      {UnaryOp::Neg, 0, 0},          {UnaryOp::Abs, 0, 0},          {UnaryOp::Relu, 0, 0},
      {UnaryOp::Clamp, -2, 3},       {UnaryOp::Clamp, -INFINITY, 0}, {UnaryOp::Clamp, 1.5, 2.5},
      {UnaryOp::Affine, 3, -1},      {UnaryOp::Affine, 0.5, 0},     {UnaryOp::Affine, -2, 7},
      {UnaryOp::Sign, 0, 0},         {UnaryOp::Square, 0, 0},       {UnaryOp::Floor, 0, 0},
      {UnaryOp::Round, 0, 0},        {UnaryOp::IsFinite, 0, 0},
  };
}

// An integer form from the definition: the real result, converted as a cast converts (to bool:
// nonzero; otherwise truncated toward zero and wrapped to the dtype). Clamp keeps the integers
// within [lo, hi].
double ref_int(UnaryOp op, double x, double a, double b, DType dt) {
  const double w = op == UnaryOp::Clamp ? std::min(std::max(x, std::ceil(a)), std::floor(b)) : ref_fwd(op, x, a, b);
  if (dt == DType::b8 || unary_op_bool_out(op)) return w != 0 ? 1 : 0;
  const auto t = static_cast<int64_t>(std::trunc(w));
  if (dt == DType::i32) return static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(t)));
  if (dt == DType::u8) return static_cast<uint8_t>(static_cast<uint64_t>(t));
  return static_cast<double>(t);
}

template <typename Case>
bool has_case(const std::vector<Case>& cases, UnaryOp op) {
  return std::any_of(cases.begin(), cases.end(), [op](const Case& c) { return c.op == op; });
}

std::vector<double> map_vals(const std::vector<double>& v, const std::function<double(double)>& f) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = f(v[i]);
  return out;
}

}  // namespace

TEST_CASE("every unary row has a reference and cases here, and its flags match the references") {
  for (UnaryOp op : kAllUnaryOps) {
    const std::string op_name = unary_op_name(op);
    CAPTURE(op_name);
    CHECK_MESSAGE(has_case(float_cases(), op), "no float case for this row");
    CHECK_MESSAGE(has_case(int_cases(), op) == unary_op_keeps_integer(op), "integer cases and kKeepsInt disagree");
    CHECK_MESSAGE(std::isfinite(ref_fwd(op, 0.75, 2, 3)), "no reference value");
    CHECK_MESSAGE(std::isfinite(ref_grad(op, 0.75, 2, 3)) == unary_op_has_grad(op),
                  "reference gradient and kGradX / kGradY disagree");
  }
}

TEST_CASE("reference gradients in this file agree with central differences") {
  for (const UCase& c : float_cases()) {
    if (!unary_op_has_grad(c.op)) continue;
    for (int k = 0; k < 20; ++k) {
      const double x = c.lo + (c.hi - c.lo) * (k + 0.37) / 20.0;
      const double h = 1e-6;
      const double fd = (ref_fwd(c.op, x + h, c.a, c.b) - ref_fwd(c.op, x - h, c.a, c.b)) / (2 * h);
      const double an = ref_grad(c.op, x, c.a, c.b);
      CHECK_MESSAGE(std::fabs(fd - an) <= 1e-5 * (1 + std::fabs(an)), unary_op_name(c.op), " at ", x);
    }
  }
}

TEST_CASE("unary ops match their definitions in every float dtype and odd shape") {
  for (const UCase& c : float_cases()) {
    for (DType dt : test::float_dtypes()) {
      for (const Shape& s : test::odd_shapes()) {
        const Tensor x = test::uniform(s, c.lo, c.hi, dt, 17);
        const auto xv = x.to_vector<double>();
        const Tensor y = native::unary(c.op, x, c.a, c.b);
        CHECK(y.dtype() == (unary_op_bool_out(c.op) ? DType::b8 : dt));
        const std::string op_name = unary_op_name(c.op);
        CAPTURE(op_name);
        const std::string dt_name = dtype_name(dt);
        CAPTURE(dt_name);
        RG_CHECK_CLOSE(y, ref(map_vals(xv, [&](double v) { return ref_fwd(c.op, v, c.a, c.b); }), s), test::tol_for(dt));
      }
    }
  }
}

TEST_CASE("unary ops on transposed inputs and in place on strided views") {
  for (const UCase& c : float_cases()) {
    for (DType dt : {DType::f32, DType::bf16}) {
      const std::string op_name = unary_op_name(c.op);
      CAPTURE(op_name);
      const Tensor base = test::uniform({33, 65}, c.lo, c.hi, dt, 5);
      const Tensor xt = native::transpose(base, 0, 1);  // (65, 33), strides (1, 65)
      const auto xv = xt.to_vector<double>();
      RG_CHECK_CLOSE(native::unary(c.op, xt, c.a, c.b),
                     ref(map_vals(xv, [&](double v) { return ref_fwd(c.op, v, c.a, c.b); }), {65, 33}), test::tol_for(dt));
      // in place on every other column: the others stay as they were
      const Tensor y = native::clone(base);
      const Tensor view = native::slice(y, 1, 0, 65, 2);  // (33, 33), strides (65, 2)
      if (unary_op_bool_out(c.op)) {  // no in-place form
        CHECK_THROWS_AS(native::unary_(c.op, view, c.a, c.b), rg::Error);
        continue;
      }
      const auto before = y.to_vector<double>();
      native::unary_(c.op, view, c.a, c.b);
      const auto after = y.to_vector<double>();
      std::vector<double> want = before;
      for (int64_t i = 0; i < 33; ++i) {
        for (int64_t j = 0; j < 65; j += 2) want[i * 65 + j] = ref_fwd(c.op, before[i * 65 + j], c.a, c.b);
      }
      RG_CHECK_CLOSE(y, ref(want, {33, 65}), test::tol_for(dt));
    }
  }
}

TEST_CASE("unary special values: NaN, infinities, ties, saturation") {
  const Tensor x = from_vector<double>({NAN, INFINITY, -INFINITY, 0.5, 1.5, 2.5, -0.5, -2.5, 30.0, -100.0, 100.0});
  auto run = [&](UnaryOp op, double a = 0, double b = 0) { return native::unary(op, x, a, b).to_vector<double>(); };
  const auto relu = run(UnaryOp::Relu);
  CHECK(std::isnan(relu[0]));
  CHECK(relu[1] == INFINITY);
  CHECK(relu[2] == 0.0);
  const auto clamp = run(UnaryOp::Clamp, -1, 1);
  CHECK(std::isnan(clamp[0]));
  CHECK(clamp[1] == 1.0);
  CHECK(clamp[2] == -1.0);
  CHECK(run(UnaryOp::Clamp, 2, 1)[3] == 1.0);  // min > max gives max, as torch.clamp
  const auto sign = run(UnaryOp::Sign);
  CHECK(sign[0] == 0.0);  // torch.sign(nan) is 0
  CHECK(sign[2] == -1.0);
  const auto rnd = run(UnaryOp::Round);
  CHECK(rnd[3] == 0.0);
  CHECK(rnd[4] == 2.0);
  CHECK(rnd[5] == 2.0);
  CHECK(rnd[6] == 0.0);
  CHECK(rnd[7] == -2.0);
  const auto sp = run(UnaryOp::Softplus);
  CHECK(sp[8] == 30.0);
  CHECK(sp[9] == doctest::Approx(std::exp(-100.0)).epsilon(1e-9));
  const auto sg = run(UnaryOp::Sigmoid);
  CHECK(sg[9] == doctest::Approx(std::exp(-100.0)).epsilon(1e-9));
  CHECK(sg[10] == 1.0);
  CHECK(sg[1] == 1.0);
  CHECK(sg[2] == 0.0);
  const auto fin = native::unary(UnaryOp::IsFinite, x);
  CHECK(fin.dtype() == DType::b8);
  CHECK(fin.to_vector<int64_t>() == std::vector<int64_t>{0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1});
  for (DType dt : test::float_dtypes()) {
    const Tensor xd = native::to(x, kCPU, dt);
    CHECK(native::unary(UnaryOp::IsFinite, xd).to_vector<int64_t>() ==
          std::vector<int64_t>{0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1});
  }
  const Tensor f = from_vector<float>({0.0f, -1e-30f});  // mish/gelu/hardswish at 0 and tiny negative
  CHECK(native::unary(UnaryOp::Mish, f).to_vector<double>()[0] == 0.0);
  CHECK(native::unary(UnaryOp::Hardswish, f).to_vector<double>()[0] == 0.0);
}

TEST_CASE("unary integer forms match their definitions in every integer dtype") {
  for (const ICase& c : int_cases()) {
    for (DType dt : {DType::i32, DType::i64, DType::u8, DType::b8}) {
      const std::string op_name = unary_op_name(c.op);
      CAPTURE(op_name);
      const std::string dt_name = dtype_name(dt);
      CAPTURE(dt_name);
      CAPTURE(c.a);
      const double lo = dt == DType::i32 || dt == DType::i64 ? -20 : 0;
      const double hi = dt == DType::b8 ? 2 : (dt == DType::u8 ? 256 : 21);
      for (const Shape& s : {Shape{7}, Shape{1023}, Shape{3, 5, 7}}) {
        const Tensor x = native::to(test::uniform(s, lo, hi, DType::i64, 31), kCPU, dt);
        if (c.op == UnaryOp::Neg && dt == DType::b8) {
          CHECK_THROWS_AS(native::unary(c.op, x), rg::Error);
          continue;
        }
        const Tensor y = native::unary(c.op, x, c.a, c.b);
        CHECK(y.dtype() == (unary_op_bool_out(c.op) ? DType::b8 : dt));
        const auto xv = x.to_vector<double>();
        std::vector<double> want(xv.size());
        for (size_t i = 0; i < xv.size(); ++i) want[i] = ref_int(c.op, xv[i], c.a, c.b, dt);
        CHECK(y.to_vector<double>() == want);
      }
    }
  }
}

TEST_CASE("unary ops on integer dtypes keep the dtype") {
  const std::vector<int64_t> v = {-7, -2, -1, 0, 1, 3, 100};
  for (DType dt : {DType::i32, DType::i64}) {
    const std::string dt_name = dtype_name(dt);
    CAPTURE(dt_name);
    const Tensor x = from_vector<int64_t>(v, {7}, dt);
    auto run = [&](UnaryOp op, double a = 0, double b = 0) {
      const Tensor y = native::unary(op, x, a, b);
      CHECK(y.dtype() == dt);
      return y.to_vector<int64_t>();
    };
    CHECK(run(UnaryOp::Neg) == std::vector<int64_t>{7, 2, 1, 0, -1, -3, -100});
    CHECK(run(UnaryOp::Abs) == std::vector<int64_t>{7, 2, 1, 0, 1, 3, 100});
    CHECK(run(UnaryOp::Relu) == std::vector<int64_t>{0, 0, 0, 0, 1, 3, 100});
    CHECK(run(UnaryOp::Clamp, -2, 3) == std::vector<int64_t>{-2, -2, -1, 0, 1, 3, 3});
    CHECK(run(UnaryOp::Clamp, -INFINITY, 0) == std::vector<int64_t>{-7, -2, -1, 0, 0, 0, 0});
    CHECK(run(UnaryOp::Sign) == std::vector<int64_t>{-1, -1, -1, 0, 1, 1, 1});
    CHECK(run(UnaryOp::Square) == std::vector<int64_t>{49, 4, 1, 0, 1, 9, 10000});
    CHECK(run(UnaryOp::Floor) == v);
    CHECK(run(UnaryOp::Round) == v);
    CHECK(run(UnaryOp::Affine, 3, -1) == std::vector<int64_t>{-22, -7, -4, -1, 2, 8, 299});
    CHECK(run(UnaryOp::Affine, 0.5, 0) == std::vector<int64_t>{-3, -1, 0, 0, 0, 1, 50});  // truncated
    CHECK(native::unary(UnaryOp::IsFinite, x).to_vector<int64_t>() == std::vector<int64_t>(7, 1));
  }
  const Tensor u = from_vector<uint8_t>({0, 1, 200, 255});
  CHECK(native::unary(UnaryOp::Neg, u).to_vector<int64_t>() == std::vector<int64_t>{0, 255, 56, 1});  // wraps
  CHECK(native::unary(UnaryOp::Affine, u, 2, 0).to_vector<int64_t>() == std::vector<int64_t>{0, 2, 144, 254});
  CHECK(native::unary(UnaryOp::Clamp, u, 2, 250).to_vector<int64_t>() == std::vector<int64_t>{2, 2, 200, 250});
  const Tensor big = from_vector<int64_t>({(int64_t{1} << 60) + 1});
  CHECK(native::unary(UnaryOp::Affine, big, 1, 1).data<int64_t>()[0] == (int64_t{1} << 60) + 2);  // exact
  // ops without an integer form compute in float32
  const Tensor e = native::unary(UnaryOp::Exp, from_vector<int32_t>({0, 1}));
  CHECK(e.dtype() == DType::f32);
  CHECK(e.to_vector<double>()[1] == doctest::Approx(std::exp(1.0)).epsilon(1e-6));
  const Tensor bools = native::to(from_vector<uint8_t>({0, 1}), kCPU, DType::b8);
  CHECK_THROWS_AS(native::unary(UnaryOp::Neg, bools), rg::Error);
  CHECK(native::unary(UnaryOp::Abs, bools).to_vector<int64_t>() == std::vector<int64_t>{0, 1});
}

TEST_CASE("unary on 0-dim and empty tensors") {
  const Tensor s = scalar_tensor(-2.0);
  const Tensor y = native::unary(UnaryOp::Abs, s);
  CHECK(y.dim() == 0);
  CHECK(y.item() == 2.0);
  const Tensor e = native::unary(UnaryOp::Exp, empty({0, 3}));
  CHECK(e.sizes() == Shape{0, 3});
}

TEST_CASE("unary_bwd matches the hand-derived gradients in every float dtype") {
  for (const UCase& c : float_cases()) {
    if (!unary_op_has_grad(c.op)) continue;
    const bool uses_y = native::unary_bwd_uses_output(c.op);
    for (DType dt : test::float_dtypes()) {
      for (const Shape& s : {Shape{7}, Shape{1023}, Shape{3, 5, 7}}) {
        const std::string op_name = unary_op_name(c.op);
        CAPTURE(op_name);
        const std::string dt_name = dtype_name(dt);
        CAPTURE(dt_name);
        const Tensor x = test::uniform(s, c.lo, c.hi, dt, 23);
        const Tensor g = test::uniform(s, -1, 1, dt, 29);
        const auto xv = x.to_vector<double>(), gv = g.to_vector<double>();
        Tensor xy = x;
        if (uses_y) {  // the saved output, rounded to the dtype as the forward would store it
          xy = native::to(ref(map_vals(xv, [&](double v) { return ref_fwd(c.op, v, c.a, c.b); }), s), kCPU, dt);
        }
        std::vector<double> want(xv.size());
        for (size_t i = 0; i < xv.size(); ++i) want[i] = gv[i] * ref_grad(c.op, xv[i], c.a, c.b);
        const Tensor gx = native::unary_bwd(c.op, g, xy, c.a, c.b);
        CHECK(gx.dtype() == dt);
        RG_CHECK_CLOSE(gx, ref(want, s), uses_y ? loose(dt, 4) : test::tol_for(dt));
      }
    }
  }
}

TEST_CASE("unary_bwd on strided operands; ops without a gradient raise") {
  const Tensor x = native::transpose(test::uniform({9, 13}, -2, 2, DType::f64, 3), 0, 1);
  const Tensor g = native::slice(test::uniform({13, 18}, -1, 1, DType::f64, 4), 1, 0, 18, 2);
  const auto xv = x.to_vector<double>(), gv = g.to_vector<double>();
  std::vector<double> want(xv.size());
  for (size_t i = 0; i < xv.size(); ++i) want[i] = gv[i] * ref_grad(UnaryOp::Gelu, xv[i], 0, 0);
  RG_CHECK_CLOSE(native::unary_bwd(UnaryOp::Gelu, g, x), ref(want, {13, 9}), test::tol_for(DType::f64));
  for (UnaryOp op : kAllUnaryOps) {
    if (!unary_op_has_grad(op)) CHECK_THROWS_AS(native::unary_bwd(op, g, x), rg::Error);
  }
  CHECK_THROWS_AS(native::unary_bwd(UnaryOp::Floor, g, x), rg::Error);
  CHECK_THROWS_AS(native::unary_bwd(UnaryOp::Sign, g, x), rg::Error);
}

// ---- binary

namespace {

double ref_bin(BinaryOp op, double a, double b, double al, double be) {
  switch (op) {
    case BinaryOp::Add: return a + al * b;
    case BinaryOp::Sub: return a - al * b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
    case BinaryOp::Maximum: return (std::isnan(a) || std::isnan(b)) ? NAN : std::max(a, b);
    case BinaryOp::Minimum: return (std::isnan(a) || std::isnan(b)) ? NAN : std::min(a, b);
    case BinaryOp::Pow: return std::pow(a, b);
    case BinaryOp::Axpby: return al * a + be * b;
    case BinaryOp::Eq: return a == b;
    case BinaryOp::Ne: return a != b;
    case BinaryOp::Lt: return a < b;
    case BinaryOp::Le: return a <= b;
    case BinaryOp::Gt: return a > b;
    case BinaryOp::Ge: return a >= b;
    case BinaryOp::LogicalAnd: return a != 0 && b != 0;
    case BinaryOp::LogicalOr: return a != 0 || b != 0;
    case BinaryOp::Atan2: return std::atan2(a, b);
  }
  return NAN;
}


// Two operands of `dt` where a quarter of b's elements equal a's (so comparisons see ties).
std::pair<Tensor, Tensor> operands(const Shape& s, DType dt, uint64_t seed) {
  const bool fl = is_floating(dt);
  const double lo = dt == DType::u8 ? 0 : (dt == DType::b8 ? 0 : -5), hi = dt == DType::b8 ? 2 : 6;
  Tensor a = test::uniform(s, fl ? 0.5 : lo, fl ? 3 : hi, DType::f64, seed);
  Tensor b = test::uniform(s, fl ? -2 : lo, fl ? 2 : hi, DType::f64, seed + 1);
  if (!fl) {
    native::unary_(UnaryOp::Floor, a);
    native::unary_(UnaryOp::Floor, b);
  }
  auto av = a.to_vector<double>(), bv = b.to_vector<double>();
  for (size_t i = 0; i < bv.size(); i += 4) bv[i] = av[i];
  return {native::to(ref(av, s), kCPU, dt), native::to(ref(bv, s), kCPU, dt)};
}

}  // namespace

TEST_CASE("every binary row has a reference here") {  // the sweeps below iterate kAllBinaryOps
  for (BinaryOp op : kAllBinaryOps) {
    const std::string op_name = binary_op_name(op);
    CAPTURE(op_name);
    CHECK_MESSAGE(std::isfinite(ref_bin(op, 1.5, 0.5, 2, 3)), "no reference value");
  }
}

TEST_CASE("binary float ops match their definitions in every float dtype") {
  for (BinaryOp op : kAllBinaryOps) {
    for (DType dt : test::float_dtypes()) {
      for (const Shape& s : test::odd_shapes()) {
        const std::string op_name = binary_op_name(op);
        CAPTURE(op_name);
        const std::string dt_name = dtype_name(dt);
        CAPTURE(dt_name);
        auto [a, b] = operands(s, dt, 40);
        if (op == BinaryOp::Div) b = native::unary(UnaryOp::Affine, native::unary(UnaryOp::Abs, b), 1, 0.25);
        const double al = op == BinaryOp::Axpby ? 0.5 : (op == BinaryOp::Add || op == BinaryOp::Sub ? 2.5 : 1);
        const double be = -2;
        const auto av = a.to_vector<double>(), bv = b.to_vector<double>();
        std::vector<double> want(av.size());
        for (size_t i = 0; i < av.size(); ++i) want[i] = ref_bin(op, av[i], bv[i], al, be);
        const Tensor y = native::binary(op, a, b, al, be);
        CHECK(y.dtype() == (binary_op_is_comparison(op) ? DType::b8 : dt));
        RG_CHECK_CLOSE(y, ref(want, s), test::tol_for(dt));
        if (op == BinaryOp::Add) {  // alpha == 1 takes its own loop
          for (size_t i = 0; i < av.size(); ++i) want[i] = av[i] + bv[i];
          RG_CHECK_CLOSE(native::binary(op, a, b), ref(want, s), test::tol_for(dt));
        }
      }
    }
  }
}

TEST_CASE("binary integer and bool ops in int64 arithmetic") {
  for (DType dt : {DType::i32, DType::i64, DType::u8, DType::b8}) {
    for (BinaryOp op : kAllBinaryOps) {
      // div and atan2 promote to float in native::binary (checked below), and pow's random
      // exponents would overflow: their integer kernels are checked by hand below
      if (!binary_op_keeps_integer(op) || op == BinaryOp::Pow) continue;
      const std::string op_name = binary_op_name(op);
      CAPTURE(op_name);
      const std::string dt_name = dtype_name(dt);
      CAPTURE(dt_name);
      auto [a, b] = operands({3, 37}, dt, 50);
      const double al = op == BinaryOp::Axpby ? 3 : (dt == DType::b8 ? 1 : 2);
      const double be = op == BinaryOp::Axpby ? -1 : 1;
      const auto av = a.to_vector<double>(), bv = b.to_vector<double>();
      std::vector<double> want(av.size());
      for (size_t i = 0; i < av.size(); ++i) {
        double w = ref_bin(op, av[i], bv[i], al, be);
        if (!binary_op_is_comparison(op)) {
          if (dt == DType::b8) w = w != 0;
          if (dt == DType::u8) w = static_cast<double>(static_cast<uint8_t>(static_cast<int64_t>(w)));
        }
        want[i] = w;
      }
      const Tensor y = native::binary(op, a, b, al, be);
      CHECK(y.dtype() == (binary_op_is_comparison(op) ? DType::b8 : dt));
      CHECK(y.to_vector<double>() == want);
    }
  }
  // integer division and atan2 promote to float32
  const Tensor q = native::binary(BinaryOp::Div, from_vector<int32_t>({7, -7, 1}), from_vector<int32_t>({2, 2, 3}));
  CHECK(q.dtype() == DType::f32);
  CHECK(q.to_vector<double>() == std::vector<double>{3.5, -3.5, static_cast<double>(1.0f / 3.0f)});
  // wrapping as the narrow type does
  CHECK(native::binary(BinaryOp::Add, from_vector<uint8_t>({200}), from_vector<uint8_t>({100})).to_vector<int64_t>() ==
        std::vector<int64_t>{44});
  CHECK(native::binary(BinaryOp::Add, from_vector<int32_t>({2147483647}), from_vector<int32_t>({1}))
            .to_vector<int64_t>() == std::vector<int64_t>{-2147483648LL});
  CHECK(native::binary(BinaryOp::Mul, from_vector<int64_t>({int64_t{1} << 40}), from_vector<int64_t>({1 << 20}))
            .to_vector<int64_t>() == std::vector<int64_t>{int64_t{1} << 60});
  // integer kernels of pow (in place keeps the integer dtype), and of div and atan2, which only the
  // kernel contract reaches (native::binary_ refuses a float result in an integer tensor, below)
  const Tensor pw = from_vector<int64_t>({3, 2, -2, 5, 7, 1, -1, 2});
  native::binary_(BinaryOp::Pow, pw, from_vector<int64_t>({4, 61, 3, 0, 1, -3, -3, -1}));
  const int64_t* pwp = pw.data<int64_t>();
  const std::vector<int64_t> pw_want = {81, int64_t{1} << 61, -8, 1, 7, 1, -1, 0};  // 2^-1 truncates to 0
  for (size_t i = 0; i < pw_want.size(); ++i) CHECK(pwp[i] == pw_want[i]);
  const Tensor dv = from_vector<int32_t>({7, -7, 9, 5});
  binary_cpu(dv, dv, from_vector<int32_t>({2, 2, -4, 0}), BinaryOp::Div, 1.0, 1.0);
  CHECK(dv.to_vector<int64_t>() == std::vector<int64_t>{3, -3, -2, 0});  // truncated; x / 0 gives 0
  const Tensor at = from_vector<int32_t>({1, -1});
  binary_cpu(at, at, from_vector<int32_t>({0, 0}), BinaryOp::Atan2, 1.0, 1.0);
  CHECK(at.to_vector<int64_t>() == std::vector<int64_t>{1, -1});  // +-pi/2 truncated
  // exact int64 comparisons beyond 2^53
  const int64_t big = (int64_t{1} << 60) + 1;
  CHECK(native::binary(BinaryOp::Gt, from_vector<int64_t>({big}), from_vector<int64_t>({big - 1})).item() == 1.0);
  CHECK(native::binary(BinaryOp::Eq, from_vector<int64_t>({big}), from_vector<int64_t>({big - 1})).item() == 0.0);
  CHECK(native::binary(BinaryOp::Sub, from_vector<int64_t>({big}), from_vector<int64_t>({1})).data<int64_t>()[0] ==
        big - 1);
}

TEST_CASE("in-place results PyTorch cannot cast, and fractional alpha on integers, are errors") {
  using test::contains;
  using test::error_of;
  const Tensor i = from_vector<int64_t>({7, 3});
  const std::string m = error_of([&] { native::binary_(BinaryOp::Div, i, from_vector<int64_t>({2, 0})); });
  CHECK(contains(m, "result type float32 can't be cast to the desired output type int64"));
  CHECK(contains(m, "div"));
  CHECK(i.to_vector<int64_t>() == std::vector<int64_t>{7, 3});  // untouched
  CHECK(contains(error_of([&] { native::binary_(BinaryOp::Add, i, from_vector<double>({0.5, 0.5})); }),
                 "can't be cast to the desired output type int64"));
  CHECK(contains(error_of([&] { native::binary_(BinaryOp::Mul, i, scalar_tensor(1.5)); }), "can't be cast"));
  const Tensor b = native::to(from_vector<uint8_t>({1, 0}), kCPU, DType::b8);
  CHECK(contains(error_of([&] { native::binary_(BinaryOp::Add, b, from_vector<int32_t>({1, 1})); }),
                 "can't be cast to the desired output type bool"));
  CHECK(contains(error_of([&] { native::binary(BinaryOp::Add, i, i, 0.5); }), "alpha must not be a floating point"));
  CHECK(contains(error_of([&] { native::binary_(BinaryOp::Sub, i, i, 1.5); }), "alpha must not be a floating point"));
  // what PyTorch allows: an integer other into a float self, a narrower float, integral alpha
  const Tensor f = from_vector<float>({1.0f, 2.0f});
  native::binary_(BinaryOp::Add, f, from_vector<int64_t>({1, 2}), 2.0);
  CHECK(f.to_vector<double>() == std::vector<double>{3.0, 6.0});
  native::binary_(BinaryOp::Mul, f, from_vector<double>({0.5, 0.5}));
  CHECK(f.to_vector<double>() == std::vector<double>{1.5, 3.0});
  native::binary_(BinaryOp::Add, i, from_vector<int32_t>({1, 1}), -3.0);
  CHECK(i.to_vector<int64_t>() == std::vector<int64_t>{4, 0});
}

TEST_CASE("maximum and minimum propagate NaN; comparisons with NaN are false") {
  const Tensor a = from_vector<float>({NAN, 1.0f, NAN, -1.0f, 2.0f});
  const Tensor b = from_vector<float>({1.0f, NAN, NAN, -2.0f, 2.0f});
  const auto mx = native::binary(BinaryOp::Maximum, a, b).to_vector<double>();
  const auto mn = native::binary(BinaryOp::Minimum, a, b).to_vector<double>();
  CHECK(std::isnan(mx[0]));
  CHECK(std::isnan(mx[1]));
  CHECK(std::isnan(mx[2]));
  CHECK(mx[3] == -1.0);
  CHECK(std::isnan(mn[0]));
  CHECK(std::isnan(mn[1]));
  CHECK(mn[3] == -2.0);
  CHECK(native::binary(BinaryOp::Eq, a, b).to_vector<int64_t>() == std::vector<int64_t>{0, 0, 0, 0, 1});
  CHECK(native::binary(BinaryOp::Ne, a, b).to_vector<int64_t>() == std::vector<int64_t>{1, 1, 1, 1, 0});
  CHECK(native::binary(BinaryOp::LogicalAnd, a, b).to_vector<int64_t>() == std::vector<int64_t>{1, 1, 1, 1, 1});
  for (DType dt : {DType::f16, DType::bf16, DType::f64}) {
    const auto m = native::binary(BinaryOp::Maximum, native::to(a, kCPU, dt), native::to(b, kCPU, dt)).to_vector<double>();
    CHECK(std::isnan(m[0]));
    CHECK(std::isnan(m[1]));
    CHECK(m[4] == 2.0);
  }
}

TEST_CASE("binary broadcasting, scalars, strided operands and in-place") {
  // (3, 1, 5) op (4, 1) -> (3, 4, 5)
  const Tensor a = test::uniform({3, 1, 5}, -2, 2, DType::f32, 61);
  const Tensor b = test::uniform({4, 1}, -2, 2, DType::f32, 62);
  const auto av = a.to_vector<double>(), bv = b.to_vector<double>();
  std::vector<double> want(60);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j)
      for (int k = 0; k < 5; ++k) want[(i * 4 + j) * 5 + k] = av[i * 5 + k] * bv[j];
  RG_CHECK_CLOSE(native::binary(BinaryOp::Mul, a, b), ref(want, {3, 4, 5}), test::tol_for(DType::f32));

  // a 0-dim tensor keeps a dimensioned operand's dtype of the same category
  const Tensor h = test::uniform({1023}, -2, 2, DType::f16, 63);
  const Tensor y = native::binary(BinaryOp::Mul, h, scalar_tensor(2.5, DType::f64));
  CHECK(y.dtype() == DType::f16);
  const auto hv = h.to_vector<double>();
  RG_CHECK_CLOSE(y, ref(map_vals(hv, [](double v) { return v * 2.5; }), {1023}), test::tol_for(DType::f16));
  const Tensor yl = native::binary(BinaryOp::Sub, scalar_tensor(1.0), h);  // stride-0 first operand
  RG_CHECK_CLOSE(yl, ref(map_vals(hv, [](double v) { return 1.0 - v; }), {1023}), test::tol_for(DType::f16));
  // a long scalar-broadcast run (split across threads)
  const Tensor big = test::uniform({70001}, -1, 1, DType::f32, 64);
  const auto bigv = big.to_vector<double>();
  RG_CHECK_CLOSE(native::binary(BinaryOp::Add, big, scalar_tensor(3.0, DType::f32)),
                 ref(map_vals(bigv, [](double v) { return v + 3.0; }), {70001}), test::tol_for(DType::f32));
  // int tensor with a float tensor promotes
  const Tensor p = native::binary(BinaryOp::Add, from_vector<int32_t>({1, 2}), from_vector<float>({0.5f, 0.25f}));
  CHECK(p.dtype() == DType::f32);
  CHECK(p.to_vector<double>() == std::vector<double>{1.5, 2.25});

  // transposed and step-sliced operands
  const Tensor at = native::transpose(test::uniform({5, 7}, -2, 2, DType::f64, 65), 0, 1);     // (7, 5)
  const Tensor bs = native::slice(test::uniform({7, 10}, -2, 2, DType::f64, 66), 1, 0, 10, 2);  // (7, 5)
  const auto atv = at.to_vector<double>(), bsv = bs.to_vector<double>();
  std::vector<double> w2(35);
  for (size_t i = 0; i < 35; ++i) w2[i] = atv[i] - 0.5 * bsv[i];
  RG_CHECK_CLOSE(native::binary(BinaryOp::Sub, at, bs, 0.5), ref(w2, {7, 5}), test::tol_for(DType::f64));

  // in place: every other column of self gets other (1, 5) broadcast, alpha 2
  const Tensor self = test::uniform({4, 10}, -2, 2, DType::f32, 67);
  const auto before = self.to_vector<double>();
  const Tensor view = native::slice(self, 1, 0, 10, 2);
  const Tensor other = from_vector<float>({1, 2, 3, 4, 5}, {1, 5});
  native::binary_(BinaryOp::Add, view, other, 2.0);
  std::vector<double> w3 = before;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 5; ++j) w3[i * 10 + 2 * j] = before[i * 10 + 2 * j] + 2.0 * (j + 1);
  RG_CHECK_CLOSE(self, ref(w3, {4, 10}), test::tol_for(DType::f32));
}

TEST_CASE("binary on 0-dim and empty tensors; errors name the op and shapes") {
  const Tensor s = native::binary(BinaryOp::Add, scalar_tensor(2.0), scalar_tensor(3.0));
  CHECK(s.dim() == 0);
  CHECK(s.item() == 5.0);
  CHECK(native::binary(BinaryOp::Mul, empty({0, 4}), empty({1, 4})).sizes() == Shape{0, 4});
  try {
    native::binary(BinaryOp::Add, zeros({2, 3}), zeros({4}));
    FAIL("expected an error");
  } catch (const rg::Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("add") != std::string::npos);
    CHECK(msg.find("[2, 3]") != std::string::npos);
    CHECK(msg.find("[4]") != std::string::npos);
  }
  try {
    native::binary_(BinaryOp::Mul, zeros({3}), zeros({2, 3}));
    FAIL("expected an error");
  } catch (const rg::Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("mul") != std::string::npos);
    CHECK(msg.find("[2, 3]") != std::string::npos);
  }
}

TEST_CASE("where picks per element with broadcasting, promotion and every dtype") {
  const Tensor cond = native::binary(BinaryOp::Gt, test::uniform({3, 1, 5}, -1, 1, DType::f32, 71), zeros({}));
  const auto cv = cond.to_vector<double>();
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8, DType::b8}) {
    const std::string dt_name = dtype_name(dt);
    CAPTURE(dt_name);
    const Tensor a = native::to(test::uniform({4, 5}, 0, 2, DType::f64, 72), kCPU, dt);
    const Tensor b = native::to(test::uniform({3, 4, 1}, 0, 2, DType::f64, 73), kCPU, dt);
    const auto av = a.to_vector<double>(), bv = b.to_vector<double>();
    std::vector<double> want(60);
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 4; ++j)
        for (int k = 0; k < 5; ++k) want[(i * 4 + j) * 5 + k] = cv[i * 5 + k] != 0 ? av[j * 5 + k] : bv[i * 4 + j];
    const Tensor y = native::where(cond, a, b);
    CHECK(y.dtype() == dt);
    CHECK(y.to_vector<double>() == want);
  }
  // contiguous fast path, promotion of i32 with f32, and a 0-dim other
  const Tensor c2 = native::to(from_vector<uint8_t>({1, 0, 1, 0}), kCPU, DType::b8);
  const Tensor y2 = native::where(c2, from_vector<int32_t>({1, 2, 3, 4}), from_vector<float>({0.5f, 0.5f, 0.5f, 0.5f}));
  CHECK(y2.dtype() == DType::f32);
  CHECK(y2.to_vector<double>() == std::vector<double>{1, 0.5, 3, 0.5});
  CHECK(native::where(c2, from_vector<float>({1, 2, 3, 4}), scalar_tensor(-1.0)).to_vector<double>() ==
        std::vector<double>{1, -1, 3, -1});
  CHECK_THROWS_AS(native::where(from_vector<float>({1.0f}), zeros({1}), zeros({1})), rg::Error);
}
