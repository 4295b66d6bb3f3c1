// gradcheck: compares the analytical vector-Jacobian product of a function with central finite
// differences, in f64 on the CPU, for a few fixed-seed random cotangents.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace rg::autograd {

struct GradcheckOptions {
  double eps = 1e-6;         // central difference step
  double atol = 1e-5;        // |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-3;
  int num_cotangents = 2;    // random projections of the outputs
  uint64_t seed = 0x5eed;    // for the cotangents
  double nondet_tol = 0.0;   // allowed difference between two evaluations (forward and backward)
};

struct GradcheckResult {
  bool ok = true;
  std::string message;  // empty when ok; otherwise names the input, the element and both values
  explicit operator bool() const { return ok; }
};

using GradcheckFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;
using GradcheckFn1 = std::function<Tensor(const std::vector<Tensor>&)>;

// `inputs`: the function's arguments. Floating ones that require grad must be f64 CPU leaves;
// others (index tensors, constants) are passed through unchanged. Checks, for each cotangent v:
// d<v, fn(x)>/dx from autograd::grad equals the central difference, element by element; inputs
// that do not require grad get no .grad from backward(); two runs give the same outputs and
// gradients. Leaves the inputs' values and .grad as they were.
GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, const GradcheckOptions& opts = {});
GradcheckResult gradcheck(const GradcheckFn1& fn, const std::vector<Tensor>& inputs, const GradcheckOptions& opts = {});

}  // namespace rg::autograd
