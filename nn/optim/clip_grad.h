// Gradient clipping by total norm (torch.nn.utils.clip_grad_norm_), fused over all gradients and
// free of host synchronisation.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace rg::optim {

// Total norm of the gradients of `params` (those that have one), as if all were concatenated
// into one vector: a 0-dim tensor on the first gradient's device (f32, or f64 when every gradient
// is f64; a CPU 0 when there are no gradients). Every gradient is then multiplied by
// clip_coef = min(max_norm / (total + 1e-6), 1), on the device (no host sync; as PyTorch, always
// multiplies, by 1 when under the limit). norm_type: 2 (one fused sum-of-squares launch per
// device and dtype), inf (max |g|), or any p > 0. error_if_nonfinite = true checks the total on
// the host (one sync) and throws when it is inf or nan.
Tensor clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);

}  // namespace rg::optim

namespace rg::nn::utils {
using optim::clip_grad_norm_;  // PyTorch's spelling: torch.nn.utils.clip_grad_norm_
}
