// SyncBatchNorm: the synchronised batch norm function with its backward node, the module, and
// convert_sync_batchnorm. Note [SyncBatchNorm] in sync_batchnorm.h; the native pieces are those of
// Note [Batch norm pieces] (nn/functional_norm.cpp).
#include "distributed/sync_batchnorm.h"

#include <cmath>
#include <limits>

#include "autograd/function.h"
#include "autograd/grad_mode.h"
#include "distributed/data_parallel.h"

namespace rg::dist {

namespace {

using autograd::Node;
using autograd::SavedVariable;
using autograd::TensorList;

DType stat_dtype(const Tensor& x) { return x.dtype() == DType::f64 ? DType::f64 : DType::f32; }

struct SyncBatchNormBackward : Node {
  double count = 0;  // global values per channel
  SavedVariable x, weight;
  Tensor mean, invstd;  // (C) global statistics used by the forward
  DType weight_dtype = DType::f32, bias_dtype = DType::f32;
  std::shared_ptr<ProcessGroup> group;
  std::string name() const override { return "SyncBatchNormBackward"; }
  void release_variables() override {
    x.reset();
    weight.reset();
    mean = Tensor();
    invstd = Tensor();
  }

  TensorList apply(TensorList&& grads) override {
    const Tensor& gy = grads[0];
    const Tensor xv = x.unpack(this);
    const Tensor wv = weight.unpack(this);
    const bool need_x = next_edges[0].valid(), need_w = next_edges[1].valid(), need_b = next_edges[2].valid();
    const auto [sum_dy, sum_dy_xmu] = native::batchnorm_bwd_reduce(gy, xv, mean);  // local sums
    Tensor gx, gw, gb;
    if (need_w) gw = native::to(native::binary(BinaryOp::Mul, sum_dy_xmu, invstd), gy.device(), weight_dtype);
    if (need_b) gb = native::to(sum_dy, gy.device(), bias_dtype);
    if (need_x) {
      const int64_t C = sum_dy.numel();
      const Tensor pack = native::cat({sum_dy, sum_dy_xmu}, 0);  // (2C)
      group->allreduce(pack, ReduceOp::Sum)->wait();
      const double inv_n = 1.0 / count;
      const Tensor mean_dy = native::unary(UnaryOp::Affine, native::narrow(pack, 0, 0, C), inv_n, 0.0);
      const Tensor mean_dy_xmu = native::unary(UnaryOp::Affine, native::narrow(pack, 0, C, C), inv_n, 0.0);
      gx = native::batchnorm_bwd_elemt(gy, xv, mean, invstd, wv, mean_dy, mean_dy_xmu);
    }
    return {gx, gw, gb};
  }
};

}  // namespace

Tensor sync_batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                       const Tensor& bias, double momentum, double eps,
                       const std::shared_ptr<ProcessGroup>& group) {
  Tensor mean, invstd;
  double count = 0;
  {
    OpScope scope("sync_batch_norm", {&x, &running_mean, &running_var, &weight});
    RG_CHECK(x.defined(), "undefined input");
    RG_CHECK(group != nullptr, "SyncBatchNorm: no process group");
    RG_CHECK(x.dim() >= 2, "SyncBatchNorm: expected at least 2D input (got ", x.dim(), "D input)");
    RG_CHECK(is_floating(x.dtype()), "SyncBatchNorm: expected a floating point input, got ", dtype_name(x.dtype()));
    const int64_t C = x.size(1);
    RG_CHECK(C > 0, "SyncBatchNorm: the input has no channels: ", shape_str(x.sizes()));
    for (const auto* t : {&running_mean, &running_var, &weight, &bias}) {
      if (!t->defined()) continue;
      RG_CHECK(t->dim() == 1 && t->size(0) == C, "SyncBatchNorm: running_mean, running_var, weight and bias must ",
               "have shape [", C, "] to match input ", shape_str(x.sizes()), ", got ", shape_str(t->sizes()));
      RG_CHECK(t->device() == x.device(), "Expected all tensors to be on the same device, but found at least two "
               "devices, ", x.device().str(), " and ", t->device().str(), "!");
    }
    RG_CHECK(running_mean.defined() == running_var.defined(),
             "SyncBatchNorm: running_mean and running_var must both be given or both be undefined");
    const int64_t local = x.numel() / C;
    const TensorOptions f64 = TensorOptions(DType::f64).device(x.device());
    Tensor pack;
    {
      NoGradGuard ng;
      Tensor s1, s2;
      if (local > 0) {
        const auto [m, v] = native::batchnorm_stats(x);
        const Tensor m64 = native::to(m, x.device(), DType::f64), v64 = native::to(v, x.device(), DType::f64);
        const double n = static_cast<double>(local);
        s1 = native::unary(UnaryOp::Affine, m64, n, 0.0);
        s2 = native::binary(BinaryOp::Axpby, v64, native::binary(BinaryOp::Mul, m64, m64), n, n);
      } else {  // an empty batch on this rank still takes part in the collective
        s1 = zeros({C}, f64);
        s2 = zeros({C}, f64);
      }
      pack = native::cat({full({1}, static_cast<double>(local), f64), s1, s2}, 0);  // (1 + 2C)
    }
    group->allreduce(pack, ReduceOp::Sum)->wait();
    count = native::narrow(pack, 0, 0, 1).item();
    RG_CHECK(count > 1, "SyncBatchNorm: expected more than 1 value per channel when training, got a global count "
             "of ", count, " over ", group->size(), " ranks (input size ", shape_str(x.sizes()), " on rank ",
             group->rank(), ")");
    const Tensor mean64 = native::unary(UnaryOp::Affine, native::narrow(pack, 0, 1, C), 1.0 / count, 0.0);
    Tensor var64 = native::binary(BinaryOp::Axpby, native::narrow(pack, 0, 1 + C, C),
                                  native::binary(BinaryOp::Mul, mean64, mean64), 1.0 / count, -1.0);
    var64 = native::unary(UnaryOp::Clamp, var64, 0.0, std::numeric_limits<double>::infinity());
    mean = native::to(mean64, x.device(), stat_dtype(x));
    const Tensor var = native::to(var64, x.device(), stat_dtype(x));
    invstd = native::unary(UnaryOp::Rsqrt, native::unary(UnaryOp::Affine, var, 1.0, eps));
    if (running_mean.defined()) {
      // running = (1 - momentum) * running + momentum * global, with the unbiased variance.
      NoGradGuard ng;
      native::binary_(BinaryOp::Axpby, running_mean, mean, 1.0 - momentum, momentum);
      native::binary_(BinaryOp::Axpby, running_var, var, 1.0 - momentum, momentum * count / (count - 1.0));
    }
  }
  Tensor y = native::batchnorm_fwd(x, mean, invstd, weight, bias);
  if (auto n = autograd::record<SyncBatchNormBackward>({&x, &weight, &bias})) {
    n->count = count;
    n->x = SavedVariable(x);
    n->weight = SavedVariable(weight);
    n->mean = mean;
    n->invstd = invstd;
    n->group = group;
    if (weight.defined()) n->weight_dtype = weight.dtype();
    if (bias.defined()) n->bias_dtype = bias.dtype();
    autograd::set_history(y, n);
  }
  return y;
}

// ---- the module

SyncBatchNorm::SyncBatchNorm(int64_t num_features, nn::BatchNormOptions options,
                             std::shared_ptr<ProcessGroup> process_group)
    : Cloneable("SyncBatchNorm"),
      num_features_(num_features),
      options_(options),
      process_group_(std::move(process_group)) {
  RG_CHECK(num_features > 0, "SyncBatchNorm: num_features must be positive, got ", num_features);
  RG_CHECK(options_.eps > 0.0, "SyncBatchNorm: eps must be positive, got ", options_.eps);
  // The names, shapes and initial values of BatchNorm2d's, so state dicts match (Note [Batch-norm state]).
  nn::register_batch_norm_state(*this, num_features, options_);
}

void SyncBatchNorm::reset_running_stats() { nn::reset_batch_norm_running_stats(*this, options_); }

void SyncBatchNorm::reset_parameters() { nn::reset_batch_norm_parameters(*this, options_); }

Tensor SyncBatchNorm::forward(const Tensor& x) {
  RG_CHECK(x.defined(), "SyncBatchNorm: undefined input");
  RG_CHECK(x.dim() >= 2, "SyncBatchNorm: expected at least 2D input (got ", x.dim(), "D input)");
  RG_CHECK(x.size(1) == num_features_, "SyncBatchNorm: input ", shape_str(x.sizes()), " has ", x.size(1),
           " channels, expected num_features=", num_features_);
  const nn::BatchNormStep s = nn::batch_norm_step(*this, options_);
  // Batch statistics are synchronised only in training mode with more than one rank.
  std::shared_ptr<ProcessGroup> pg = process_group_;
  if (!pg && is_initialized()) pg = default_group();
  const bool sync = s.use_batch_stats && is_training() && pg && pg->size() > 1;
  if (!sync) {
    return nn::functional::batch_norm(x, s.running_mean, s.running_var, weight(), bias(), s.use_batch_stats,
                                      s.momentum, options_.eps);
  }
  RG_CHECK(!in_data_parallel_replica(), "SyncBatchNorm is only supported with DistributedDataParallel (one process "
           "per device), not inside DataParallel replicas");
  return sync_batch_norm(x, s.running_mean, s.running_var, weight(), bias(), s.momentum, options_.eps, pg);
}

std::string SyncBatchNorm::extra_repr() const { return nn::batch_norm_repr(num_features_, options_); }

// ---- convert_sync_batchnorm

namespace {

// A SyncBatchNorm holding bn's own tensors (not copies) and training flag.
std::shared_ptr<SyncBatchNorm> make_sync(const nn::BatchNorm2d& bn, const std::shared_ptr<ProcessGroup>& pg) {
  auto s = std::make_shared<SyncBatchNorm>(bn.num_features(), bn.options(), pg);
  for (const char* k : {"weight", "bias"}) s->set_parameter(k, bn.param(k));
  for (const char* k : {"running_mean", "running_var", "num_batches_tracked"}) s->set_buffer(k, bn.buffer(k));
  s->train(bn.is_training());
  return s;
}

void convert_children(nn::Module& m, const std::shared_ptr<ProcessGroup>& pg) {
  // Copy the list: replace_module rewrites the slots while we walk.
  const auto children = m.named_children();
  for (const auto& [name, c] : children) {
    if (const auto* bn = dynamic_cast<const nn::BatchNorm2d*>(c.get())) {
      m.replace_module(name, make_sync(*bn, pg));
    } else {
      convert_children(*c, pg);
    }
  }
}

}  // namespace

std::shared_ptr<nn::Module> convert_sync_batchnorm(std::shared_ptr<nn::Module> module,
                                                   std::shared_ptr<ProcessGroup> process_group) {
  RG_CHECK(module != nullptr, "convert_sync_batchnorm: module is null");
  if (const auto* bn = dynamic_cast<const nn::BatchNorm2d*>(module.get())) return make_sync(*bn, process_group);
  convert_children(*module, process_group);
  return module;
}

}  // namespace rg::dist
