// The op rows: every UnaryOp, BinaryOp and ReduceOp is one X-macro row here, and its enum value,
// printed name and per-op flags are all generated from that row (Note [One row per op]).
#pragma once

#include <cstdint>

// Note [One row per op]
// An elementwise op is one row of RG_UNARY_OPS or RG_BINARY_OPS: _(EnumName, "printed name", flags).
// The rows generate the enum, the names (errors, autograd node names) and the flags that native::,
// the CPU kernels, the CUDA kernels and the tests ask for; nothing else lists the ops. Each row's
// forward and backward formulas live once, in core/elementwise_formulas.h, compiled for the host
// (core/cpu/unary.cpp, binary.cpp) and the device (cuda_kernels/unary.cu, binary.cu); every switch
// over the ops is generated from the rows, so a row without its formulas does not compile.
// Adding an op costs: its row, its formula struct, one autograd wrapper (autograd/ops.h) and its
// test rows (the table-driven tests in tests/core/test_elementwise.cpp and
// tests/kernels/test_elementwise_gpu.cpp fail for a row they have no case for).
//
// Flags (op_flags::):
//   kKeepsInt  integer inputs compute as integers (in int64, cast back wrapping); without it,
//              native:: promotes them to f32. A unary op with it has an integer formula (ifwd).
//   kGradX     has a gradient formula (bwd) that reads the saved input x;
//   kGradY     ... that reads the saved output y instead (autograd saves y).
//   kBoolOut   the result is bool (comparisons, isfinite); no in-place form.

// alpha and beta are the op's scalar parameters where it has them.
#define RG_UNARY_OPS(_)                                                                    \
  _(Neg, "neg", kKeepsInt | kGradX)                                                        \
  _(Abs, "abs", kKeepsInt | kGradX)                                                        \
  _(Exp, "exp", kGradY)                                                                    \
  _(Log, "log", kGradX)                                                                    \
  _(Sqrt, "sqrt", kGradY)                                                                  \
  _(Rsqrt, "rsqrt", kGradY)                                                                \
  _(Sigmoid, "sigmoid", kGradY)                                                            \
  _(Tanh, "tanh", kGradY)                                                                  \
  _(Relu, "relu", kKeepsInt | kGradY)                                                      \
  _(LeakyRelu, "leaky_relu", kGradX)            /* alpha = negative slope */               \
  _(Silu, "silu", kGradX)                                                                  \
  _(Pow, "pow", kGradX)                         /* x ^ alpha */                            \
  _(Clamp, "clamp", kKeepsInt | kGradX)         /* min(max(x, alpha), beta); +-inf: open */ \
  _(Affine, "affine", kKeepsInt | kGradX)       /* alpha * x + beta (scalar add, mul, rsub) */ \
  _(Reciprocal, "reciprocal", kGradY)                                                      \
  _(Sign, "sign", kKeepsInt)                                                               \
  _(Square, "square", kKeepsInt | kGradX)                                                  \
  _(Softplus, "softplus", kGradX)               /* beta 1, threshold 20 */                 \
  _(Log1p, "log1p", kGradX)                                                                \
  _(Expm1, "expm1", kGradY)                                                                \
  _(Floor, "floor", kKeepsInt)                                                             \
  _(Round, "round", kKeepsInt)                  /* half to even */                         \
  _(RDiv, "rdiv", kGradX)                       /* alpha / x */                            \
  _(IsFinite, "isfinite", kKeepsInt | kBoolOut)                                            \
  _(Gelu, "gelu", kGradX)                       /* exact: 0.5 x (1 + erf(x / sqrt 2)) */   \
  _(Hardswish, "hardswish", kGradX)                                                        \
  _(Mish, "mish", kGradX)

// Binary ops on same-shaped (already broadcast) operands.
#define RG_BINARY_OPS(_)                                                  \
  _(Add, "add", kKeepsInt)                 /* a + alpha * b */            \
  _(Sub, "sub", kKeepsInt)                 /* a - alpha * b */            \
  _(Mul, "mul", kKeepsInt)                                                \
  _(Div, "div", 0)                         /* true division */            \
  _(Maximum, "maximum", kKeepsInt)         /* NaN-propagating */          \
  _(Minimum, "minimum", kKeepsInt)                                        \
  _(Pow, "pow", kKeepsInt)                 /* a ^ b */                    \
  _(Axpby, "axpby", kKeepsInt)             /* alpha * a + beta * b */     \
  _(Eq, "eq", kKeepsInt | kBoolOut)                                       \
  _(Ne, "ne", kKeepsInt | kBoolOut)                                       \
  _(Lt, "lt", kKeepsInt | kBoolOut)                                       \
  _(Le, "le", kKeepsInt | kBoolOut)                                       \
  _(Gt, "gt", kKeepsInt | kBoolOut)                                       \
  _(Ge, "ge", kKeepsInt | kBoolOut)                                       \
  _(LogicalAnd, "logical_and", kKeepsInt | kBoolOut)                      \
  _(LogicalOr, "logical_or", kKeepsInt | kBoolOut)                        \
  _(Atan2, "atan2", 0)

#define RG_REDUCE_OPS(_) \
  _(Sum, "sum")          \
  _(Mean, "mean")        \
  _(Max, "max")          \
  _(Min, "min")          \
  _(Argmax, "argmax")    \
  _(Argmin, "argmin")    \
  _(Var, "var")          \
  _(Prod, "prod")        \
  _(AbsMax, "amax_abs")

namespace rg {

namespace op_flags {
inline constexpr uint32_t kKeepsInt = 1, kGradX = 2, kGradY = 4, kBoolOut = 8;
}  // namespace op_flags

#define RG_OP_ENUM_(NAME, ...) NAME,
enum class UnaryOp : uint8_t { RG_UNARY_OPS(RG_OP_ENUM_) };
enum class BinaryOp : uint8_t { RG_BINARY_OPS(RG_OP_ENUM_) };
enum class ReduceOp : uint8_t { RG_REDUCE_OPS(RG_OP_ENUM_) };
#undef RG_OP_ENUM_

// Every op, in row order (tests iterate these, so that a new row is tested automatically).
#define RG_OP_LIST_(NAME, ...) UnaryOp::NAME,
inline constexpr UnaryOp kAllUnaryOps[] = {RG_UNARY_OPS(RG_OP_LIST_)};
#undef RG_OP_LIST_
#define RG_OP_LIST_(NAME, ...) BinaryOp::NAME,
inline constexpr BinaryOp kAllBinaryOps[] = {RG_BINARY_OPS(RG_OP_LIST_)};
#undef RG_OP_LIST_
#define RG_OP_LIST_(NAME, ...) ReduceOp::NAME,
inline constexpr ReduceOp kAllReduceOps[] = {RG_REDUCE_OPS(RG_OP_LIST_)};
#undef RG_OP_LIST_

// Names and flags: generated switches (one case per row, no default), so every op has both.
constexpr const char* unary_op_name(UnaryOp op) {
  switch (op) {
#define RG_CASE_(NAME, STR, ...) case UnaryOp::NAME: return STR;
    RG_UNARY_OPS(RG_CASE_)
#undef RG_CASE_
  }
  return "unary?";  // not reached for a valid op
}
constexpr const char* binary_op_name(BinaryOp op) {
  switch (op) {
#define RG_CASE_(NAME, STR, ...) case BinaryOp::NAME: return STR;
    RG_BINARY_OPS(RG_CASE_)
#undef RG_CASE_
  }
  return "binary?";
}
constexpr const char* reduce_op_name(ReduceOp op) {
  switch (op) {
#define RG_CASE_(NAME, STR) case ReduceOp::NAME: return STR;
    RG_REDUCE_OPS(RG_CASE_)
#undef RG_CASE_
  }
  return "reduce?";
}

constexpr uint32_t unary_op_flags(UnaryOp op) {
  using namespace op_flags;
  switch (op) {
#define RG_CASE_(NAME, STR, FLAGS) case UnaryOp::NAME: return FLAGS;
    RG_UNARY_OPS(RG_CASE_)
#undef RG_CASE_
  }
  return 0;
}
constexpr uint32_t binary_op_flags(BinaryOp op) {
  using namespace op_flags;
  switch (op) {
#define RG_CASE_(NAME, STR, FLAGS) case BinaryOp::NAME: return FLAGS;
    RG_BINARY_OPS(RG_CASE_)
#undef RG_CASE_
  }
  return 0;
}

constexpr bool unary_op_keeps_integer(UnaryOp op) { return unary_op_flags(op) & op_flags::kKeepsInt; }
constexpr bool unary_op_has_grad(UnaryOp op) { return unary_op_flags(op) & (op_flags::kGradX | op_flags::kGradY); }
constexpr bool unary_op_grad_uses_output(UnaryOp op) { return unary_op_flags(op) & op_flags::kGradY; }
constexpr bool unary_op_bool_out(UnaryOp op) { return unary_op_flags(op) & op_flags::kBoolOut; }
constexpr bool binary_op_keeps_integer(BinaryOp op) { return binary_op_flags(op) & op_flags::kKeepsInt; }
constexpr bool binary_op_is_comparison(BinaryOp op) { return binary_op_flags(op) & op_flags::kBoolOut; }

// Both gradient flags on one row would be a contradiction.
#define RG_CHECK_ROW_(NAME, STR, FLAGS)                                                           \
  static_assert((unary_op_flags(UnaryOp::NAME) & (op_flags::kGradX | op_flags::kGradY)) !=      \
                    (op_flags::kGradX | op_flags::kGradY),                                       \
                "unary op " STR ": kGradX and kGradY exclude each other");
RG_UNARY_OPS(RG_CHECK_ROW_)
#undef RG_CHECK_ROW_

}  // namespace rg
