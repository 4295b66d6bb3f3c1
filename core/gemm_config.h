// Process-wide switches for matrix multiplication on CUDA, in the spirit of torch.backends:
// which GEMM implementation runs (cuBLAS or our own kernels) and whether f32 may use TF32.
// They exist in every build; without CUDA they are simply never consulted.
#pragma once

namespace rg {

// Note [GEMM switches]
// - gemm_backend(): Cublas (default) or Ours (cuda_kernels/gemm.cu's hand-written kernels for f32,
//   f16 and bf16; f64 always goes to cuBLAS). The environment variable RINGGRAD_GEMM=ours|cublas,
//   read once on first use, sets the initial value; set_gemm_backend() overrides it.
// - allow_tf32(): like torch.backends.cuda.matmul.allow_tf32, default false. When true, f32 GEMMs
//   on cuBLAS may round their inputs to TF32 (10-bit mantissa) and run on tensor cores. Our own
//   f32 kernel is plain FP32 either way.
// Both are global (all threads), read at each GEMM call; the guards restore the previous value.
enum class GemmBackend { Cublas, Ours };

const char* gemm_backend_name(GemmBackend b);  // "cublas" / "ours"
void set_gemm_backend(GemmBackend b);
GemmBackend gemm_backend();

void set_allow_tf32(bool allow);
bool allow_tf32();

class GemmBackendGuard {
 public:
  explicit GemmBackendGuard(GemmBackend b) : prev_(gemm_backend()) { set_gemm_backend(b); }
  ~GemmBackendGuard() { set_gemm_backend(prev_); }
  GemmBackendGuard(const GemmBackendGuard&) = delete;
  GemmBackendGuard& operator=(const GemmBackendGuard&) = delete;

 private:
  GemmBackend prev_;
};

class AllowTF32Guard {
 public:
  explicit AllowTF32Guard(bool allow) : prev_(allow_tf32()) { set_allow_tf32(allow); }
  ~AllowTF32Guard() { set_allow_tf32(prev_); }
  AllowTF32Guard(const AllowTF32Guard&) = delete;
  AllowTF32Guard& operator=(const AllowTF32Guard&) = delete;

 private:
  bool prev_;
};

namespace detail {
// For tests and benchmarks: the name of the kernel the last gemm_cuda call on this thread ran
// ("cublas", "ours_simt", "ours_tensor_core", "scale" for K == 0, "" before any call).
const char* last_gemm_kernel();
void set_last_gemm_kernel(const char* name);  // a string literal (the pointer is kept)
}  // namespace detail

}  // namespace rg
