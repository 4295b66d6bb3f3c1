// Launchers of the elementwise kernels the CUDA ring backend runs between its IPC buffers
// (cuda_kernels/comm.cu). No CUDA types here: streams travel as void* (a cudaStream_t).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace rg::cuda {

// Sum and Max; the ring does Avg as Sum with a divisor on its last reduction step.
enum class CommOp : uint8_t { Sum, Max };

// Note [Ring reduction arithmetic]
// One reduction step computes y = op(a, b) elementwise, then y = y / divisor when divisor > 1.
//  - f32, f64: in their own type. f16, bf16: both operands widened to f32, op and division in
//    f32, one rounding to nearest even on the store. i32, i64: two's complement wrap-around on
//    overflow; the division truncates toward zero (C++ integer division).
//  - The division is a real division by the integer divisor (not a multiply by its reciprocal).
//  - max: NaN wins (either operand); max(+0, -0) is +0 whatever the order; otherwise the larger.
// sum of floats is commutative in IEEE arithmetic, so op(a, b) == op(b, a) bit for bit; only the
// order of the fold over ranks matters, and the ring fixes it (Note [CUDA ring reduction order]).

// dst = op(dst, src), n elements of dtype t. Pointers may be device or IPC-mapped peer memory.
void ring_reduce_cuda(void* dst, const void* src, int64_t n, DType t, CommOp op, void* stream);

// y1 = op(a, b) / divisor, and y2 = the same values when y2 != nullptr (a fused forward to the
// next rank's buffer). y1 may alias a or b exactly (in place); y2 must not overlap any of them.
void ring_reduce_out_cuda(void* y1, void* y2, const void* a, const void* b, int64_t n, DType t, CommOp op,
                          int divisor, void* stream);

// y1 = src, and y2 = src when y2 != nullptr; nbytes bytes of any dtype. y1 may equal src.
void ring_copy_cuda(void* y1, void* y2, const void* src, int64_t nbytes, void* stream);

}  // namespace rg::cuda
