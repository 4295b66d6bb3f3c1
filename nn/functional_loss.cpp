// The losses of nn::functional (mse, binary cross entropy with logits, cross entropy with label
// smoothing and ignore_index), composed from differentiable rg ops; f32 under autocast.
#include <string>

#include "autograd/autocast.h"
#include "nn/functional.h"

namespace rg::nn::functional {

namespace {
// Under autocast, losses compute in f32 (Note [Autocast policy]).
Tensor loss_input(const Tensor& x) { return amp::autocast_f32(x); }

Tensor reduce(const Tensor& loss, const std::string& reduction) {
  if (reduction == "none") return loss;
  if (reduction == "sum") return sum(loss);
  if (reduction == "mean") return mean(loss);
  RG_THROW("reduction must be 'none', 'mean' or 'sum', got '", reduction, "'");
}

void check_reduction(const std::string& reduction) {
  RG_CHECK(reduction == "none" || reduction == "sum" || reduction == "mean",
           "reduction must be 'none', 'mean' or 'sum', got '", reduction, "'");
}
}  // namespace

Tensor mse_loss(const Tensor& input, const Tensor& target, const std::string& reduction) {
  OpScope scope("mse_loss", {&input, &target});
  check_reduction(reduction);
  RG_CHECK(input.is_floating_point() && target.is_floating_point(), "mse_loss: needs floating point input and target");
  const Tensor x = loss_input(input), y = loss_input(target);
  return reduce(square(sub(x, y)), reduction);  // broadcasts as PyTorch does
}

// loss = (1 - y) x + w_pos * softplus(-x), w_pos = 1 + (pos_weight - 1) y. softplus(-x) is
// -log sigmoid(x) = log1p(exp(-|x|)) + max(-x, 0), evaluated stably (exp never overflows), and
// its gradient -sigmoid(-x) is right everywhere, x = 0 included. Without pos_weight this is the
// usual max(x, 0) - x y + log1p(exp(-|x|)).
Tensor binary_cross_entropy_with_logits(const Tensor& input, const Tensor& target, const Tensor& pos_weight,
                                        const std::string& reduction) {
  OpScope scope("binary_cross_entropy_with_logits", {&input, &target, &pos_weight});
  check_reduction(reduction);
  RG_CHECK(input.sizes() == target.sizes(), "binary_cross_entropy_with_logits: target size ",
           shape_str(target.sizes()), " must be the same as input size ", shape_str(input.sizes()));
  RG_CHECK(input.is_floating_point() && target.is_floating_point(),
           "binary_cross_entropy_with_logits: needs floating point input and target");
  const Tensor x = loss_input(input);
  Tensor y = loss_input(target);
  if (y.dtype() != x.dtype()) y = y.to(x.dtype());
  const Tensor neg_log_sig = softplus(neg(x));
  Tensor loss;
  if (pos_weight.defined()) {
    RG_CHECK(pos_weight.is_floating_point(), "binary_cross_entropy_with_logits: pos_weight must be floating point");
    Tensor pw = loss_input(pos_weight);
    if (pw.dtype() != x.dtype()) pw = pw.to(x.dtype());
    const Tensor log_weight = mul(pw - 1.0, y) + 1.0;  // broadcasts over the last dim
    loss = add(mul(1.0 - y, x), mul(log_weight, neg_log_sig));
  } else {
    loss = add(mul(1.0 - y, x), neg_log_sig);
  }
  return reduce(loss, reduction);
}

Tensor cross_entropy(const Tensor& input, const Tensor& target, double label_smoothing, const std::string& reduction,
                     int64_t ignore_index) {
  OpScope scope("cross_entropy", {&input, &target});
  check_reduction(reduction);
  RG_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0,
           "cross_entropy: label_smoothing must be between 0.0 and 1.0, got ", label_smoothing);
  RG_CHECK(input.is_floating_point(), "cross_entropy: input must be floating point logits, got ", input.describe());
  RG_CHECK(target.dtype() == DType::i64 || target.dtype() == DType::i32,
           "cross_entropy: target must hold int64 (or int32) class indices, got ", target.describe());
  // A single sample (C) with a 0-dim target is handled as a batch of one.
  if (input.dim() == 1) {
    RG_CHECK(target.dim() == 0, "cross_entropy: input (C) needs a 0-dim target, got ", shape_str(target.sizes()));
    const Tensor l = cross_entropy(input.unsqueeze(0), target.unsqueeze(0), label_smoothing, reduction, ignore_index);
    return reduction == "none" ? l.squeeze(0) : l;
  }
  RG_CHECK(input.dim() >= 2, "cross_entropy: input must be (N, C) or (N, C, d...), got ", shape_str(input.sizes()));
  Shape expected{input.size(0)};
  for (int64_t d = 2; d < input.dim(); ++d) expected.push_back(input.size(d));
  RG_CHECK(target.sizes() == expected, "cross_entropy: expected target of shape ", shape_str(expected),
           " for input ", shape_str(input.sizes()), ", got ", shape_str(target.sizes()));
  const int64_t classes = input.size(1);

  const Tensor logp = log_softmax(loss_input(input), 1);  // (N, C, d...)
  // Ignored entries pick class 0 (any valid index) and are then masked out.
  const Tensor ignored = eq(target, static_cast<double>(ignore_index));             // (N, d...) bool
  const Tensor safe_target = where(ignored, zeros_like(target), target);             // (N, d...)
  const Tensor valid = 1.0 - ignored.to(logp.dtype());                          // (N, d...) 1 = counted
  Tensor picked;
  try {
    picked = gather(logp, 1, safe_target.unsqueeze(1)).squeeze(1);  // log p[target], (N, d...)
  } catch (const Error& e) {
    RG_THROW("cross_entropy: a target is outside [0, ", classes, ") and is not ignore_index=", ignore_index, ": ",
             e.what());
  }
  Tensor loss = mul(neg(picked), valid);  // nll, (N, d...)
  if (label_smoothing > 0.0) {
    // PyTorch: (1 - eps) * nll + eps / C * sum_c -log p_c, both masked the same way.
    const Tensor smooth = mul(neg(sum(logp, {1})), valid);
    loss = axpby(1.0 - label_smoothing, loss, label_smoothing / static_cast<double>(classes), smooth);
  }
  if (reduction == "none") return loss;
  if (reduction == "sum") return sum(loss);
  // mean over the entries that count (0/0 = nan when all are ignored, as PyTorch)
  return div(sum(loss), sum(valid));
}

}  // namespace rg::nn::functional
