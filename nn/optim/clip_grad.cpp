// clip_grad_norm_: per (device, dtype) group, one multi_sum_squares launch (norm 2) and one
// multi_scale launch; the total norm and the clip coefficient stay on the device.
#include "nn/optim/clip_grad.h"

#include <cmath>
#include <map>
#include <utility>

#include "autograd/grad_mode.h"
#include "core/native.h"

namespace rg::optim {

Tensor clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type, bool error_if_nonfinite) {
  NoGradGuard ng;
  OpScope scope("clip_grad_norm_");
  RG_CHECK(norm_type > 0.0, "clip_grad_norm_: norm_type must be positive (or inf), got ", norm_type);
  std::map<std::tuple<int, int, int>, std::vector<Tensor>> groups;  // (device type, index, dtype) -> grads
  Device first = kCPU;
  bool any = false, all_f64 = true;
  for (const Tensor& p : params) {
    const Tensor g = p.defined() ? p.grad() : Tensor();
    if (!g.defined()) continue;
    if (!any) first = g.device();
    any = true;
    all_f64 = all_f64 && g.dtype() == DType::f64;
    groups[{static_cast<int>(g.device().type), g.device().index, static_cast<int>(g.dtype())}].push_back(g);
  }
  if (!any) return scalar_tensor(0.0);
  const DType out_t = all_f64 ? DType::f64 : DType::f32;
  const bool inf_norm = std::isinf(norm_type);

  // Per group: the sum of |g|^p over its elements (norm 2, other p), or the max |g| (inf).
  Tensor acc;
  for (auto& [key, grads] : groups) {
    Tensor part;
    if (inf_norm) {
      std::vector<Tensor> maxes;
      for (const Tensor& g : grads) maxes.push_back(native::to(native::reduce(ReduceOp::AbsMax, g, {}, false), g.device(), out_t));
      part = native::reduce(ReduceOp::Max, native::stack(maxes, 0), {}, false);
    } else if (norm_type == 2.0) {
      part = native::sum(native::multi_sum_squares(grads));
    } else {
      std::vector<Tensor> sums;
      for (const Tensor& g : grads) {
        const Tensor a = native::unary(UnaryOp::Abs, native::to(g, g.device(), out_t));
        sums.push_back(native::sum(native::unary(UnaryOp::Pow, a, norm_type)));
      }
      part = native::sum(native::stack(sums, 0));
    }
    part = native::to(part, first, out_t);
    if (!acc.defined()) {
      acc = part;
    } else {
      acc = inf_norm ? native::binary(BinaryOp::Maximum, acc, part) : native::binary(BinaryOp::Add, acc, part);
    }
  }
  Tensor total = inf_norm ? acc
                          : (norm_type == 2.0 ? native::unary(UnaryOp::Sqrt, acc)
                                              : native::unary(UnaryOp::Pow, acc, 1.0 / norm_type));
  if (error_if_nonfinite) {
    RG_CHECK(std::isfinite(total.item()), "The total norm of order ", norm_type, " for gradients from `parameters` "
             "is non-finite, so it cannot be clipped. To disable this error and scale the gradients by the non-finite "
             "norm anyway, set `error_if_nonfinite=False`");
  }
  // clip_coef = min(max_norm / (total + 1e-6), 1)
  const Tensor coef = native::unary(UnaryOp::Clamp,
                                    native::unary(UnaryOp::RDiv, native::unary(UnaryOp::Affine, total, 1.0, 1e-6), max_norm),
                                    -HUGE_VAL, 1.0);
  for (auto& [key, grads] : groups) native::multi_scale_(grads, native::to(coef, grads[0].device(), coef.dtype()));
  return total;
}

}  // namespace rg::optim
