// SyncBatchNorm (torch.nn.SyncBatchNorm): batch norm whose training statistics span every rank of
// a process group (one allreduce in forward, one in backward), and convert_sync_batchnorm, which
// swaps it in for every BatchNorm2d of a model.
#pragma once

#include <memory>
#include <string>

#include "distributed/process_group.h"
#include "nn/layers.h"

namespace rg::dist {

// Note [SyncBatchNorm]
// Training forward on each rank, x (N_r, C, *) with n_r = N_r * prod(*) values per channel:
//   (mean_r, var_r) = native::batchnorm_stats(x)                    (local, biased variance)
//   pack = [n_r, n_r * mean_r (C), n_r * (var_r + mean_r^2) (C)]     ONE f64 tensor of 1 + 2C
//   allreduce(pack, Sum)                                             -> [n, S1, S2] over all ranks
//   mean = S1 / n, var = S2 / n - mean^2 (biased, clamped at 0), invstd = 1 / sqrt(var + eps)
//   y = native::batchnorm_fwd(x, mean, invstd, weight, bias)
// Ranks may have different batch sizes, a batch of 1, or even none; the global count n must be
// above 1 (else an error naming it). n is read on the host (one device sync per layer, as
// PyTorch's check of the count does). The running statistics take the global mean and the global
// UNBIASED variance var * n / (n - 1), with momentum (or the cumulative average when momentum is
// nullopt); num_batches_tracked counts the batches. Eval mode (with running statistics) uses them
// and communicates nothing; so does a world of 1 or no group at all (the plain batch norm path).
//
// Backward, with dy the gradient of this rank's y:
//   (sum_dy_r, sum_dy_xmu_r) = native::batchnorm_bwd_reduce(dy, x, mean)  (local sums over n_r)
//   dweight_r = sum_dy_xmu_r * invstd, dbias_r = sum_dy_r                  (LOCAL, as PyTorch)
//   pack = [sum_dy_r (C), sum_dy_xmu_r (C)]; allreduce(pack, Sum)          ONE allreduce
//   dx = native::batchnorm_bwd_elemt(dy, x, mean, invstd, weight, sum_dy / n, sum_dy_xmu / n)
// Every rank must take the same path (all or none need the input gradient), since the
// collectives must match. For the same reason it refuses to synchronise inside DataParallel's
// replica threads (as PyTorch, SyncBatchNorm is for one process per device: DDP).
//
// Why local weight/bias gradients and DDP's average give the full-batch gradients: let the
// full-batch loss be L = (1/W) sum_r L_r over W ranks, where L_r is rank r's loss on its B
// samples, each a mean over its own samples (DDP's convention: full batch WB, mean loss). Then
// on rank r, dy_r = dL_r/dy = W * dL/dy restricted to r's samples. The batch norm backward is
// linear in dy, and with the global statistics its formulas are the full-batch ones, so
//   dx_r        = W * (dL/dx restricted to r's samples)      (the allreduced sums carry W too)
//   dweight_r   = sum over r's samples of dy_r * xhat  = W * (r's share of dL/dweight)
//   dbias_r     = sum over r's samples of dy_r         = W * (r's share of dL/dbias)
// Everything upstream of x inherits the factor W on its rank's share. DDP then averages over the
// ranks: (1/W) sum_r W * share_r = sum_r share_r = the full-batch gradient, for the BN weights
// and for every other parameter alike. With summed losses (L = sum_r L_r, dy_r = dL/dy) there is
// no factor: dx_r equals the full-batch gradient rows exactly and the SUM of the ranks' weight
// gradients is the full-batch one (this is how uneven batches compare, where a mean over a
// rank's own samples would weigh samples unequally).
class SyncBatchNorm : public nn::Cloneable<SyncBatchNorm> {
 public:
  // process_group null: the default group when one is initialised at forward time, else none.
  explicit SyncBatchNorm(int64_t num_features, nn::BatchNormOptions options = {},
                         std::shared_ptr<ProcessGroup> process_group = nullptr);
  Tensor forward(const Tensor& x) override;  // (N, C, *), at least 2-D
  // "64, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True"
  std::string extra_repr() const override;
  void reset_running_stats();
  void reset_parameters();

  int64_t num_features() const { return num_features_; }
  const nn::BatchNormOptions& options() const { return options_; }
  const std::shared_ptr<ProcessGroup>& process_group() const { return process_group_; }
  const Tensor& weight() const { return param("weight"); }  // undefined without affine
  const Tensor& bias() const { return param("bias"); }
  const Tensor& running_mean() const { return buffer("running_mean"); }  // undefined without tracking
  const Tensor& running_var() const { return buffer("running_var"); }
  const Tensor& num_batches_tracked() const { return buffer("num_batches_tracked"); }

 private:
  int64_t num_features_;
  nn::BatchNormOptions options_;
  std::shared_ptr<ProcessGroup> process_group_;
};

// The synchronised batch norm function: batch statistics over every rank of `group` (world size
// > 1), running statistics updated in place when given (momentum as nn::functional::batch_norm).
Tensor sync_batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                       const Tensor& bias, double momentum, double eps,
                       const std::shared_ptr<ProcessGroup>& group);

// Replaces every BatchNorm2d in `module` (recursively, the root included) with a SyncBatchNorm
// holding the SAME parameter and buffer tensors, options and training flag; returns the root
// (a new SyncBatchNorm when the root itself was a BatchNorm2d). state_dict keys are unchanged.
std::shared_ptr<nn::Module> convert_sync_batchnorm(std::shared_ptr<nn::Module> module,
                                                   std::shared_ptr<ProcessGroup> process_group = nullptr);

}  // namespace rg::dist
