// gemm_cuda (label gpu): cuBLAS and our own kernels against an f64 reference computed in this file,
// on odd shapes, transposed / misaligned / padded views, broadcast batches, alpha and beta, NaN in c
// with beta == 0, TF32 on and off, every float dtype; plus matmul on CUDA against the CPU matmul.
#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "core/cuda_api.h"
#include "core/gemm_config.h"
#include "kernel_test_util.h"
#include "test_util.h"

using namespace rg;
using namespace rg::ktest;

namespace {

// How an operand's (rows, cols) matrix sits in memory, beyond row- or column-major.
enum class Layout {
  Tight,     // contiguous
  Misalign,  // leading dim = contiguous extent + 1 and offset by one element (no aligned vectors)
  Padded,    // leading dim = contiguous extent rounded up to 8, plus 8; offset 0 (aligned rows, ragged end)
};

struct GemmCase {
  int64_t B, M, N, K;
  Layout storage = Layout::Tight;
  bool bcast_a = false, bcast_b = false;  // batch stride 0
  double alpha = 1.0, beta = 0.0;
  bool nan_c = false;  // c starts as NaN (only with beta == 0: c must not be read)
};

std::string case_str(const GemmCase& g, bool ta, bool tb, DType dt, const char* backend) {
  std::ostringstream os;
  os << backend << " " << dtype_name(dt) << " B=" << g.B << " M=" << g.M << " N=" << g.N << " K=" << g.K
     << (ta ? " a^T" : " a") << (tb ? " b^T" : " b")
     << (g.storage == Layout::Misalign ? " misaligned" : g.storage == Layout::Padded ? " padded" : "")
     << (g.bcast_a ? " a-broadcast" : "") << (g.bcast_b ? " b-broadcast" : "") << " alpha=" << g.alpha
     << " beta=" << g.beta << (g.nan_c ? " c=NaN" : "");
  return os.str();
}

int64_t round_up8(int64_t v) { return (v + 7) / 8 * 8; }

// A (B, R, C) operand on the GPU with random values in [-1, 1). `trans`: stored column-major per
// batch (made as a (B, C, R) tensor, transposed). `bcast`: one batch expanded to B.
Tensor make_operand(int64_t B, int64_t R, int64_t C, bool trans, bool bcast, Layout st, DType dt, uint64_t seed) {
  const int64_t nb = bcast ? 1 : B;
  const int64_t outer = trans ? C : R, inner = trans ? R : C;  // inner = contiguous extent
  int64_t ld = inner, off = 0;
  if (st == Layout::Misalign) ld = inner + 1, off = 1;
  if (st == Layout::Padded) ld = round_up8(inner) + 8;
  Tensor x;
  if (nb * outer * inner == 0) {
    x = empty({nb, outer, inner}, TensorOptions(dt).device(kGPU));
  } else {
    Tensor base = test::uniform({nb, outer, ld}, -1.0, 1.0, dt, seed, kGPU);
    x = native::narrow(base, 2, off, inner);
  }
  if (trans) x = native::transpose(x, 1, 2);
  if (bcast) x = native::expand(x, {B, R, C});
  return x;
}

std::vector<double> host_values(const Tensor& t) { return native::to(t, kCPU, DType::f64).to_vector<double>(); }

// The reference: out = alpha * a @ b + beta * c0 in f64 from the operands' actual (rounded) values,
// and the error scale |alpha| * sum_k |a_mk b_kn| + |beta c0| every rounding error is bounded by.
struct Reference {
  std::vector<double> out, scale;
};
Reference reference(const GemmCase& g, const std::vector<double>& a, const std::vector<double>& b,
                    const std::vector<double>& c0) {
  const int64_t B = g.B, M = g.M, N = g.N, K = g.K;
  Reference r;
  r.out.assign(B * M * N, 0.0);
  r.scale.assign(B * M * N, 0.0);
  std::vector<double> s(N), sa(N);
  for (int64_t bi = 0; bi < B; ++bi) {
    for (int64_t m = 0; m < M; ++m) {
      std::fill(s.begin(), s.end(), 0.0);
      std::fill(sa.begin(), sa.end(), 0.0);
      for (int64_t k = 0; k < K; ++k) {
        const double av = a[(bi * M + m) * K + k];
        const double* brow = &b[(bi * K + k) * N];
        for (int64_t n = 0; n < N; ++n) {
          s[n] += av * brow[n];
          sa[n] += std::fabs(av * brow[n]);
        }
      }
      for (int64_t n = 0; n < N; ++n) {
        const int64_t i = (bi * M + m) * N + n;
        const double cb = g.beta != 0.0 ? g.beta * c0[i] : 0.0;
        r.out[i] = g.alpha * s[n] + cb;
        r.scale[i] = std::fabs(g.alpha) * sa[n] + std::fabs(cb);
      }
    }
  }
  return r;
}

// |got - ref| <= rel * |ref| + acc * scale + atol. `rel` covers rounding the result to the output
// dtype, `acc` the f32 (f64) accumulation of K products (any summation order: <= (K + 4) u), and
// with TF32 the rounding of the inputs.
struct GemmTol {
  double rel, acc, atol;
};
GemmTol gemm_tol(DType dt, int64_t K, bool tf32) {
  const double u32 = std::ldexp(1.0, -24), u64 = std::ldexp(1.0, -53);
  const double acc32 = 2.0 * static_cast<double>(K + 4) * u32;
  switch (dt) {
    case DType::f64: return {4 * u64, 2.0 * static_cast<double>(K + 4) * u64, 0.0};
    case DType::f32: return {4 * u32, acc32 + (tf32 ? std::ldexp(1.0, -9) : 0.0), 0.0};
    case DType::f16: return {std::ldexp(1.0, -10), acc32, std::ldexp(1.0, -24)};
    case DType::bf16: return {std::ldexp(1.0, -7), acc32, 0.0};
    default: return {0, 0, 0};
  }
}

std::string check_against(const std::vector<double>& got, const Reference& ref, GemmTol tol) {
  std::ostringstream os;
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = ref.out[i];
    const double bound = tol.rel * std::fabs(e) + tol.acc * ref.scale[i] + tol.atol;
    if (!(std::fabs(got[i] - e) <= bound)) {  // NaN fails
      if (bad < 5) os << "  [" << i << "] got " << got[i] << ", expected " << e << " (bound " << bound << ")\n";
      ++bad;
    }
  }
  if (bad == 0) return "";
  std::ostringstream head;
  head << bad << " of " << got.size() << " elements out of tolerance:\n";
  return head.str() + os.str();
}

// Which of our kernels should run (Note [GEMM switches], tensor-core requirements in gemm.cu):
// f32 -> simt; f16/bf16 -> tensor cores when both operands have 8-element-aligned base, leading
// dims and batch strides, else simt; f64 -> cuBLAS. Worked out here from the case's own layout,
// for shapes with M, N, K >= 2 (size-1 dims may be given any leading dim).
const char* expected_ours_kernel(const GemmCase& g, bool ta, bool tb, DType dt) {
  if (g.K == 0) return "scale";
  if (dt == DType::f64) return "cublas";
  if (dt == DType::f32) return "ours_simt";
  if (g.storage == Layout::Misalign) return "ours_simt";
  auto ld_of = [&](int64_t inner) { return g.storage == Layout::Padded ? round_up8(inner) + 8 : inner; };
  const int64_t lda = ld_of(ta ? g.M : g.K), ldb = ld_of(tb ? g.K : g.N);
  const bool batch_ok = g.B == 1 || ((g.bcast_a || (lda * (ta ? g.K : g.M)) % 8 == 0) &&
                                     (g.bcast_b || (ldb * (tb ? g.N : g.K)) % 8 == 0));
  return lda % 8 == 0 && ldb % 8 == 0 && batch_ok ? "ours_tensor_core" : "ours_simt";
}

void run_gemm(const Tensor& c, const Tensor& a, const Tensor& b, double alpha, double beta) {
  RG_CALL_KERNEL(gemm, c.device(), c, a, b, alpha, beta);
}

// Runs one case in every layout on cuBLAS (TF32 off and, for f32, on) and ours, each against the
// same reference.
void run_case(const GemmCase& g, DType dt, uint64_t seed) {
  for (int layout = 0; layout < 4; ++layout) {
    const bool ta = layout & 1, tb = layout & 2;
    const Tensor a = make_operand(g.B, g.M, g.K, ta, g.bcast_a, g.storage, dt, seed + 11 * layout);
    const Tensor b = make_operand(g.B, g.K, g.N, tb, g.bcast_b, g.storage, dt, seed + 11 * layout + 5);
    const Tensor c_init = g.nan_c ? full({g.B, g.M, g.N}, std::nan(""), TensorOptions(dt).device(kGPU))
                                  : test::uniform({g.B, g.M, g.N}, -1.0, 1.0, dt, seed + 7, kGPU);
    const std::vector<double> c0 = host_values(c_init);
    const Reference ref = reference(g, host_values(a), host_values(b), c0);

    struct Run {
      GemmBackend backend;
      bool tf32;
      const char* name;
    };
    std::vector<Run> runs = {{GemmBackend::Cublas, false, "cublas"}, {GemmBackend::Ours, false, "ours"}};
    if (dt == DType::f32) {
      runs.push_back({GemmBackend::Cublas, true, "cublas+tf32"});
      runs.push_back({GemmBackend::Ours, true, "ours (tf32 allowed)"});  // ours stays FP32: strict tolerance
    }
    for (const Run& run : runs) {
      GemmBackendGuard bg(run.backend);
      AllowTF32Guard tg(run.tf32);
      const Tensor c = native::clone(c_init);
      run_gemm(c, a, b, g.alpha, g.beta);
      const std::string label = case_str(g, ta, tb, dt, run.name);
      const bool tf32_math = run.tf32 && run.backend == GemmBackend::Cublas;
      const std::string msg = check_against(host_values(c), ref, gemm_tol(dt, g.K, tf32_math));
      CHECK_MESSAGE(msg.empty(), label << "\n" << msg);
      if (run.backend == GemmBackend::Ours && g.M > 1 && g.N > 1 && g.K > 1) {
        CHECK_MESSAGE(std::string(detail::last_gemm_kernel()) == expected_ours_kernel(g, ta, tb, dt),
                      label << ": ran " << detail::last_gemm_kernel() << ", expected "
                            << expected_ours_kernel(g, ta, tb, dt));
      }
    }
  }
}

std::vector<GemmCase> shape_cases() {
  std::vector<GemmCase> v = {
      {1, 1, 1, 1},
      {1, 7, 13, 5},
      {1, 33, 65, 17},
      {1, 129, 257, 65},
      {1, 255, 129, 1023},   // K odd: f16/bf16 fall back to the SIMT kernel
      {1, 129, 264, 72},     // tensor cores when a is row-major (lda = 72); a^T has lda = 129
      {1, 136, 264, 40},     // tensor cores in every layout; a ragged 128 x 256 edge
      {1, 257, 520, 1000},   // several block tiles, 32 K-slices with a partial last one
      {2, 600, 700, 256},    // many tiles: exercises the grouped block order
      {1, 33, 40, 8},        // one K-slice: the pipeline prologue is mostly empty
      {1, 1096, 264, 64},    // 9 tile rows: a full group of 8 in the block order, then a group of 1
  };
  GemmCase padded{1, 100, 70, 13};  // aligned rows, ragged ends: partial 16-byte chunks
  padded.storage = Layout::Padded;
  v.push_back(padded);
  GemmCase padded2{2, 45, 131, 67};
  padded2.storage = Layout::Padded;
  v.push_back(padded2);
  GemmCase mis{1, 37, 45, 29};
  mis.storage = Layout::Misalign;
  v.push_back(mis);
  GemmCase mis2{2, 64, 128, 32};  // tile-sized but misaligned
  mis2.storage = Layout::Misalign;
  v.push_back(mis2);
  return v;
}

std::vector<GemmCase> batch_and_scalar_cases() {
  std::vector<GemmCase> v;
  GemmCase g{3, 40, 24, 16};
  g.bcast_a = true;
  v.push_back(g);
  g = {2, 33, 17, 9};
  g.bcast_b = true;
  v.push_back(g);
  g = {4, 65, 72, 48};
  v.push_back(g);
  g = {3, 19, 23, 31};
  g.bcast_a = true, g.bcast_b = true;
  v.push_back(g);
  g = {1, 64, 128, 32};
  g.alpha = 1.5, g.beta = -0.5;
  v.push_back(g);
  g = {2, 77, 91, 35};
  g.alpha = 1.5, g.beta = -0.5;
  v.push_back(g);
  g = {2, 136, 264, 40};
  g.alpha = -0.25, g.beta = 1.0;
  v.push_back(g);
  g = {1, 48, 56, 24};
  g.alpha = 0.75, g.nan_c = true;
  v.push_back(g);
  g = {1, 31, 29, 23};
  g.nan_c = true;
  v.push_back(g);
  g = {65537, 2, 8, 8};  // more batches than grid y takes (65535): launched in two chunks
  v.push_back(g);
  g = {2, 5, 6, 0};  // K == 0: c = beta * c
  g.beta = 0.5;
  v.push_back(g);
  g = {1, 5, 6, 0};
  g.nan_c = true;  // K == 0, beta == 0: zeros
  v.push_back(g);
  return v;
}

}  // namespace

TEST_CASE("gemm switches: defaults, setters and guards") {
  const GemmBackend start = gemm_backend();
  {
    GemmBackendGuard g(GemmBackend::Ours);
    CHECK(gemm_backend() == GemmBackend::Ours);
    {
      GemmBackendGuard g2(GemmBackend::Cublas);
      CHECK(gemm_backend() == GemmBackend::Cublas);
    }
    CHECK(gemm_backend() == GemmBackend::Ours);
  }
  CHECK(gemm_backend() == start);
  CHECK(std::string(gemm_backend_name(GemmBackend::Ours)) == "ours");
  CHECK(std::string(gemm_backend_name(GemmBackend::Cublas)) == "cublas");
  CHECK_FALSE(allow_tf32());  // torch's default
  {
    AllowTF32Guard g(true);
    CHECK(allow_tf32());
  }
  CHECK_FALSE(allow_tf32());
}

TEST_CASE("gemm_cuda on odd shapes and layouts, every dtype, cuBLAS and ours") {
  uint64_t seed = 100;
  for (DType dt : test::float_dtypes()) {
    for (const GemmCase& g : shape_cases()) run_case(g, dt, seed += 31);
  }
}

TEST_CASE("gemm_cuda batched with broadcast operands, alpha and beta, NaN in c, K == 0") {
  uint64_t seed = 5000;
  for (DType dt : test::float_dtypes()) {
    for (const GemmCase& g : batch_and_scalar_cases()) run_case(g, dt, seed += 17);
  }
}

TEST_CASE("gemm_cuda writes non-contiguous c views and runs on the current stream") {
  for (GemmBackend be : {GemmBackend::Cublas, GemmBackend::Ours}) {
    GemmBackendGuard bg(be);
    for (DType dt : test::float_dtypes()) {
      GemmCase g{2, 20, 30, 16};
      g.alpha = 2.0, g.beta = 0.5;
      const Tensor a = make_operand(2, 20, 16, false, false, Layout::Tight, dt, 1);
      const Tensor b = make_operand(2, 16, 30, true, false, Layout::Tight, dt, 2);
      const std::string tag = std::string(gemm_backend_name(be)) + " " + dtype_name(dt);

      // c column-major: a transposed view of a (2, 30, 20) tensor.
      const Tensor c_store = test::uniform({2, 30, 20}, -1.0, 1.0, dt, 3, kGPU);
      const Tensor c = native::transpose(c_store, 1, 2);
      const Reference ref = reference(g, host_values(a), host_values(b), host_values(c));
      run_gemm(c, a, b, g.alpha, g.beta);
      std::string msg = check_against(host_values(c), ref, gemm_tol(dt, g.K, false));
      CHECK_MESSAGE(msg.empty(), "column-major c, " << tag << "\n" << msg);

      // c row-major with ldc = 37 and offset 3 inside a (2, 20, 37) tensor; the columns outside
      // the view must keep their values.
      const Tensor wide = test::uniform({2, 20, 37}, -1.0, 1.0, dt, 5, kGPU);
      const std::vector<double> wide0 = host_values(wide);
      const Tensor cr = native::narrow(wide, 2, 3, 30);
      const Reference ref_r = reference(g, host_values(a), host_values(b), host_values(cr));
      run_gemm(cr, a, b, g.alpha, g.beta);
      msg = check_against(host_values(cr), ref_r, gemm_tol(dt, g.K, false));
      CHECK_MESSAGE(msg.empty(), "strided row-major c, " << tag << "\n" << msg);
      const std::vector<double> wide1 = host_values(wide);
      int touched = 0;
      for (size_t i = 0; i < wide0.size(); ++i) {
        const int64_t col = static_cast<int64_t>(i % 37);
        if ((col < 3 || col >= 33) && !(wide1[i] == wide0[i])) ++touched;
      }
      CHECK_MESSAGE(touched == 0, tag << ": " << touched << " elements outside the c view were written");

      // The same product on a fresh non-default stream: the result is there after syncing that stream.
      const cuda::Stream s = cuda::new_stream(0);
      const Tensor c2 = test::uniform({2, 20, 30}, -1.0, 1.0, dt, 4, kGPU);
      const Reference ref2 = reference(g, host_values(a), host_values(b), host_values(c2));
      cuda::synchronize(0);
      {
        cuda::StreamGuard sg(s);
        run_gemm(c2, a, b, g.alpha, g.beta);
      }
      cuda::stream_synchronize(s);
      msg = check_against(host_values(c2), ref2, gemm_tol(dt, g.K, false));
      CHECK_MESSAGE(msg.empty(), "side stream, " << tag << "\n" << msg);
    }
  }
}

TEST_CASE("gemm_cuda rejects bad arguments") {
  const Tensor a = zeros({1, 3, 4}, TensorOptions(DType::f32).device(kGPU));
  const Tensor b = zeros({1, 5, 6}, TensorOptions(DType::f32).device(kGPU));
  const Tensor c = zeros({1, 3, 6}, TensorOptions(DType::f32).device(kGPU));
  CHECK_THROWS_AS(run_gemm(c, a, b, 1.0, 0.0), rg::Error);  // K mismatch
  const Tensor bh = zeros({1, 4, 6}, TensorOptions(DType::f16).device(kGPU));
  CHECK_THROWS_AS(run_gemm(c, a, bh, 1.0, 0.0), rg::Error);  // dtype mismatch
  const Tensor ai = zeros({1, 3, 4}, TensorOptions(DType::i32).device(kGPU));
  const Tensor bi = zeros({1, 4, 6}, TensorOptions(DType::i32).device(kGPU));
  const Tensor ci = zeros({1, 3, 6}, TensorOptions(DType::i32).device(kGPU));
  CHECK_THROWS_AS(run_gemm(ci, ai, bi, 1.0, 0.0), rg::Error);  // no integer GEMM
}

// matmul on CUDA (native layer + gemm_cuda) against matmul on the CPU (native layer + gemm_cpu).
TEST_CASE("matmul on CUDA matches the CPU matmul") {
  struct Shapes {
    Shape a, b;
  };
  const std::vector<Shapes> shapes = {{{7, 5}, {5, 13}},      {{3, 33, 17}, {3, 17, 65}}, {{2, 1, 40, 24}, {3, 24, 16}},
                                      {{65}, {65, 129}},      {{255, 129}, {129}},        {{136, 40}, {40, 264}}};
  for (GemmBackend be : {GemmBackend::Cublas, GemmBackend::Ours}) {
    GemmBackendGuard bg(be);
    for (DType dt : test::float_dtypes()) {
      uint64_t seed = 900;
      for (const Shapes& s : shapes) {
        const Tensor a = test::uniform(s.a, -1.0, 1.0, dt, ++seed);
        const Tensor b = test::uniform(s.b, -1.0, 1.0, dt, ++seed);
        const Tensor expected = native::matmul(a, b);
        const Tensor got = native::matmul(native::to(a, kGPU, dt), native::to(b, kGPU, dt));
        CHECK(got.is_cuda());
        // Both round once to the output dtype; the CPU may accumulate in another order.
        const int64_t K = s.a.back();
        test::Tol tol = test::tol_for(dt);
        tol.atol = std::max(tol.atol, 4.0 * static_cast<double>(K) *
                                          (dt == DType::f64 ? std::ldexp(1.0, -53) : std::ldexp(1.0, -24)));
        if (is_reduced_float(dt)) tol.rtol *= 2, tol.atol += tol.rtol;  // two independent roundings
        INFO(gemm_backend_name(be), " ", dtype_name(dt), " ", shape_str(s.a), " @ ", shape_str(s.b));
        RG_CHECK_CLOSE(native::to(got, kCPU, dt), expected, tol);
      }
    }
  }
}
