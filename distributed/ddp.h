// DistributedDataParallel (torch.nn.parallel.DistributedDataParallel): one process per device, the
// wrapped module's gradients averaged across ranks in buckets whose allreduces overlap backward.
// The bucketing and hooks live in distributed/reducer.cpp (Note [DDP reducer]).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "distributed/process_group.h"
#include "nn/module.h"

namespace rg::amp {
class GradScaler;
}

namespace rg::dist {

namespace detail {
class Reducer;
}

struct DDPOptions {
  std::shared_ptr<ProcessGroup> process_group;  // null: default_group()
  double bucket_cap_mb = 25.0;                  // MiB, as PyTorch
  double first_bucket_cap_mb = 1.0;             // the first bucket is small, so communication starts early
  bool broadcast_buffers = true;                // buffers from rank 0 before every training-mode forward
  bool find_unused_parameters = false;          // parameters without a gradient count as zeros
  bool static_graph = false;                    // rebuild the buckets once, in the order gradients arrived
  bool gradient_as_bucket_view = true;          // param.grad is a view into its bucket (no copy back)
  std::optional<DType> comm_dtype;              // unset: the gradients' dtype; f16/bf16: compressed traffic
  bool overlap = true;                          // false: every allreduce starts after backward has finished
};

// Per bucket, per iteration; times in ms from the start of backward (Note [DDP stats]).
struct DDPBucketStats {
  int64_t bytes = 0;       // bytes communicated (in the communication dtype, padding included)
  int num_params = 0;
  double ready_ms = 0;     // its last gradient arrived
  double launch_ms = 0;    // its allreduce was issued
  double finish_ms = 0;    // its allreduce completed
};

struct DDPStats {
  int64_t iteration = 0;        // synchronised backwards so far (this one included)
  bool overlap = true;
  double backward_end_ms = 0;   // the engine had run every node (DDP's end-of-backward callback began)
  double done_ms = 0;           // every result waited for and in param.grad: backward() returns
  std::vector<DDPBucketStats> buckets;
  double comm_ms = 0;           // time with at least one allreduce in flight (union of [launch, finish])
  double hidden_ms = 0;         // the part of comm_ms before backward_end_ms (overlapped with compute)
  double hidden_fraction = 0;   // hidden_ms / comm_ms (0 when nothing was communicated)
  std::string str() const;      // a short table, for logs and benchmarks
};

class DistributedDataParallel;

// ddp.no_sync(): while alive, backward accumulates gradients locally without communicating; the
// next synchronised backward reduces the accumulated sum (torch's `with ddp.no_sync():`).
class [[nodiscard]] NoSyncGuard {
 public:
  explicit NoSyncGuard(DistributedDataParallel& ddp);
  ~NoSyncGuard();
  NoSyncGuard(NoSyncGuard&& o) noexcept : ddp_(o.ddp_), prev_(o.prev_) { o.ddp_ = nullptr; }
  NoSyncGuard(const NoSyncGuard&) = delete;
  NoSyncGuard& operator=(const NoSyncGuard&) = delete;
  NoSyncGuard& operator=(NoSyncGuard&&) = delete;

 private:
  DistributedDataParallel* ddp_;
  bool prev_;
};

// Note [DDP semantics]
// - Construction: every rank must hold the same parameters and buffers (names, shapes, dtypes,
//   requires_grad), checked through the group's store; a mismatch raises on every rank an error
//   naming the first differing parameter and rank. Parameters and buffers are then broadcast from
//   rank 0, coalesced into a few flat tensors. Move the model to its device BEFORE wrapping it
//   (Module::to remakes the AccumulateGrad nodes DDP hangs its hooks on; DDP checks and refuses).
// - The wrapped module is child "module": named_parameters() and state_dict() say "module.x".
//   Checkpoints should be saved from ddp.module() (no prefix); strip_module_prefix() loads ones
//   that were not.
// - forward(): in training mode with broadcast_buffers, buffers are first broadcast from rank 0.
//   A forward through another signature calls prepare_forward() and then module() directly.
// - backward(): gradients are averaged (ReduceOp::Avg) across ranks before backward() returns;
//   parameters that require no gradient are ignored. Without find_unused_parameters, a parameter
//   that received no gradient raises an error naming it; with it, a locally unused parameter
//   contributes its current .grad (zeros when it has none), and one unused on EVERY rank keeps its
//   .grad untouched (undefined stays undefined), as PyTorch. That option costs one small extra
//   allreduce per iteration (the used-parameter map), plus a device-to-host copy when some
//   parameter was unused here.
// - Every rank must run the same sequence of synchronised backwards: each issues the same
//   collectives in the same order.
class DistributedDataParallel : public nn::Module {
 public:
  explicit DistributedDataParallel(std::shared_ptr<nn::Module> module, DDPOptions options = {});
  ~DistributedDataParallel() override;

  Tensor forward(const Tensor& x) override;
  // What forward() does before running the module: buffer broadcast and the no_sync state of the
  // coming backward. Call it before a forward that goes through module() directly.
  void prepare_forward();

  const std::shared_ptr<nn::Module>& module() const { return module_; }
  template <typename M>
  std::shared_ptr<M> module_as() const {
    auto m = std::dynamic_pointer_cast<M>(module_);
    RG_CHECK(m, "DDP: the wrapped module is a ", module_->type_name(), ", not the expected type");
    return m;
  }

  NoSyncGuard no_sync() { return NoSyncGuard(*this); }
  bool require_backward_grad_sync() const { return require_sync_; }
  void set_require_backward_grad_sync(bool on) { require_sync_ = on; }

  // The names (relative to the wrapped module) of each bucket's parameters, bucket by bucket, in
  // the order they fill: reverse registration order at first, arrival order after a static_graph
  // rebuild.
  std::vector<std::vector<std::string>> bucket_parameter_names() const;
  // The last synchronised backward's timings (Note [DDP stats]). On CUDA this synchronises.
  DDPStats last_stats() const;

  const DDPOptions& options() const { return o_; }
  ProcessGroup& process_group() const { return *pg_; }
  const std::shared_ptr<ProcessGroup>& process_group_ptr() const { return pg_; }

 protected:
  std::shared_ptr<nn::Module> shallow_copy() const override;

 private:
  friend class NoSyncGuard;
  std::shared_ptr<nn::Module> module_;
  DDPOptions o_;
  std::shared_ptr<ProcessGroup> pg_;
  std::shared_ptr<detail::Reducer> reducer_;
  bool require_sync_ = true;
};
using DDP = DistributedDataParallel;

// Broadcasts `tensors` from `root` in place, coalesced: tensors of one device and dtype are
// packed into flat tensors of at most `cap_bytes` each (one collective per flat tensor). bool and
// u8 tensors travel as i32.
void broadcast_coalesced(ProcessGroup& pg, const std::vector<Tensor>& tensors, int root = 0,
                         size_t cap_bytes = size_t{64} << 20);

// Makes GradScaler's skip decision the same on every rank: its found_inf flag is allreduced with
// Max before step() reads it (one rank overflowing makes every rank skip and back off). The
// scaler keeps a weak reference to the group. bf16 autocast needs no scaler.
void sync_grad_scaler(amp::GradScaler& scaler, const std::shared_ptr<ProcessGroup>& pg = nullptr);

// Checkpoint keys: torch.nn.modules.utils.consume_prefix_in_state_dict_if_present removes
// `prefix` from every key that starts with it (in place); strip_module_prefix returns a copy
// without "module." (for checkpoints saved from a wrapped model).
void consume_prefix_in_state_dict_if_present(nn::StateDict& sd, const std::string& prefix);
nn::StateDict strip_module_prefix(const nn::StateDict& sd);

}  // namespace rg::dist
