// Printable names of the unary, binary and reduce ops (used in errors and node names).
#include "core/kernels.h"

namespace rg {

const char* unary_op_name(UnaryOp op) {
  static const char* names[] = {"neg", "abs", "exp", "log", "sqrt", "rsqrt", "sigmoid", "tanh", "relu",
                                "leaky_relu", "silu", "pow", "clamp", "affine", "reciprocal", "sign", "square",
                                "softplus", "log1p", "expm1", "floor", "round", "rdiv", "isfinite", "gelu",
                                "hardswish", "mish"};
  const auto i = static_cast<size_t>(op);
  return i < sizeof(names) / sizeof(names[0]) ? names[i] : "unary?";
}

const char* binary_op_name(BinaryOp op) {
  static const char* names[] = {"add", "sub", "mul", "div", "maximum", "minimum", "pow", "axpby", "eq", "ne",
                                "lt", "le", "gt", "ge", "logical_and", "logical_or", "atan2"};
  const auto i = static_cast<size_t>(op);
  return i < sizeof(names) / sizeof(names[0]) ? names[i] : "binary?";
}

const char* reduce_op_name(ReduceOp op) {
  static const char* names[] = {"sum", "mean", "max", "min", "argmax", "argmin", "var", "prod", "amax_abs"};
  const auto i = static_cast<size_t>(op);
  return i < sizeof(names) / sizeof(names[0]) ? names[i] : "reduce?";
}

}  // namespace rg
