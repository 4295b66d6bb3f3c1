// Test helpers (see test_util.h).
#include "test_util.h"

#include <cmath>
#include <cstdlib>
#include <sstream>
#include <utility>

#include "core/cuda_api.h"

namespace rg::test {

Tol tol_for(DType t) {
  switch (t) {
    case DType::f64: return {1e-10, 1e-10};
    case DType::f32: return {1e-5, 1e-5};
    case DType::f16: return {2e-3, 2e-3};
    case DType::bf16: return {2e-2, 2e-2};
    default: return {0, 0};
  }
}

std::string compare(const Tensor& actual, const Tensor& expected, Tol tol) {
  std::ostringstream os;
  if (actual.sizes() != expected.sizes()) {
    os << "shape " << shape_str(actual.sizes()) << " != expected " << shape_str(expected.sizes());
    return os.str();
  }
  const auto a = actual.to_vector<double>();
  const auto e = expected.to_vector<double>();
  int bad = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const bool both_nan = std::isnan(a[i]) && std::isnan(e[i]);
    const bool same_inf = std::isinf(a[i]) && a[i] == e[i];
    if (both_nan || same_inf) continue;
    if (!(std::fabs(a[i] - e[i]) <= tol.atol + tol.rtol * std::fabs(e[i]))) {
      if (bad < 5) os << "  [" << i << "] got " << a[i] << ", expected " << e[i] << "\n";
      ++bad;
    }
  }
  if (bad) {
    std::ostringstream head;
    head << bad << " of " << a.size() << " elements differ (atol " << tol.atol << ", rtol " << tol.rtol << ") for "
         << actual.describe() << " vs " << expected.describe() << ":\n";
    return head.str() + os.str();
  }
  return "";
}

Tensor uniform(const Shape& shape, double lo, double hi, DType dtype, uint64_t seed, Device device) {
  Generator g(seed);
  Tensor t = rand(shape, DType::f64, &g);
  native::unary_(UnaryOp::Affine, t, hi - lo, lo);
  return native::to(t, device, dtype);
}

std::vector<Shape> odd_shapes() { return {{1}, {7}, {1023}, {4097}, {3, 5, 7}, {2, 1, 33}}; }

std::vector<DType> float_dtypes() { return {DType::f32, DType::f64, DType::f16, DType::bf16}; }

std::vector<DType> all_dtypes() {
  return {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8, DType::b8};
}

int required_gpus() {
  const char* v = std::getenv("RINGGRAD_REQUIRE_GPU");
  if (v == nullptr || *v == '\0' || std::string(v) == "0") return 0;
  const int n = std::atoi(v);
  return n > 0 ? n : 1;
}

std::string missing_gpus(int n) {
  const int have = cuda::device_count();
  if (have >= n) return "";
  std::ostringstream os;
  os << "needs " << n << " CUDA device" << (n == 1 ? "" : "s") << ", " << have << " visible";
  const std::string err = cuda::device_count_error();
  if (!err.empty()) os << " (" << err << ")";
  const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES");
  if (cvd) os << " with CUDA_VISIBLE_DEVICES='" << cvd << "'";
  return os.str();
}

namespace {
bool g_case_skipped = false;
}  // namespace

bool skip_case(const std::string& why, bool must_run) {
  if (why.empty()) return false;
  if (must_run) {
    const char* v = std::getenv("RINGGRAD_REQUIRE_GPU");
    FAIL_CHECK("RINGGRAD_REQUIRE_GPU=", std::string(v ? v : ""), " but this test case cannot run: ", why);
    return true;
  }
  MESSAGE("skipped: ", why);
  g_case_skipped = true;
  return true;
}

bool take_case_skipped() { return std::exchange(g_case_skipped, false); }

}  // namespace rg::test
