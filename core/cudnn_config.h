// Process-wide switches for CUDA convolutions, in the spirit of torch.backends.cudnn: whether
// cuDNN is used at all and whether algorithms are chosen by timing them (benchmark) or by
// cuDNN's heuristics; and the cuDNN version for `ringgrad info`. CUDA-free: every build has them.
#pragma once

#include <string>

namespace rg {

// Note [cuDNN switches]
// - cudnn_enabled() (default true): CUDA convolutions run through cuDNN when the build has it
//   (RINGGRAD_WITH_CUDNN); when false, or without cuDNN, they run as im2col + our gemm_cuda.
// - cudnn_benchmark() (default true, like torch.backends.cudnn.benchmark = True): the first call
//   for each (device, direction, dtype, shapes, params, TF32, alignment) times every algorithm
//   with cudnnFind*AlgorithmEx and caches the fastest; when false, cuDNN's heuristics pick
//   (cudnnGet*Algorithm_v7), also cached. RINGGRAD_CUDNN_BENCHMARK=0 in the environment, read on
//   first use, sets the initial value. f32 convolutions use TF32 only when rg::allow_tf32().
// Both are global (all threads) and read at each call.
void set_cudnn_enabled(bool on);
bool cudnn_enabled();
void set_cudnn_benchmark(bool on);
bool cudnn_benchmark();

// "cuDNN 9.19.0" (the loaded library's version) or "not built".
std::string cudnn_version();

namespace detail {
// For tests and benchmarks: how the last CUDA convolution call on this thread ran ("cudnn",
// "im2col", "" before any call).
const char* last_conv_backend();
void set_last_conv_backend(const char* name);  // a string literal (the pointer is kept)
}  // namespace detail

}  // namespace rg
