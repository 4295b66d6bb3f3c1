// Node bookkeeping, AccumulateGrad, and SavedVariable.
#include "autograd/node.h"

#include "autograd/anomaly.h"
#include "autograd/grad_mode.h"
#include "autograd/saved.h"
#include "core/native.h"

namespace rg::autograd {

uint64_t next_sequence_nr() {
  static std::atomic<uint64_t> n{0};
  return n.fetch_add(1, std::memory_order_relaxed);
}

Node::Node() : sequence_nr(next_sequence_nr()) {
  if (AnomalyMode::is_enabled()) forward_trace = capture_forward_trace();
}

AccumulateGrad::AccumulateGrad(std::shared_ptr<TensorImpl> v) : variable(std::move(v)) {
  output_meta.push_back({variable->sizes, variable->dtype, variable->storage->device});
  sequence_nr = UINT64_MAX;  // leaves accumulate as soon as they are ready
}

TensorList AccumulateGrad::apply(TensorList&& grads) {
  Tensor param(variable);
  Tensor& g = grads[0];
  NoGradGuard ng;
  if (!variable->grad) {
    // Keep the incoming buffer when nothing else can see it; otherwise take a private copy.
    const bool exclusive = g.impl_ptr().use_count() == 1 && g.is_contiguous() && !g.impl()->is_view &&
                           g.storage().use_count() == 1;
    variable->grad = exclusive ? g.impl_ptr() : native::clone(g).impl_ptr();
  } else {
    Tensor existing(variable->grad);
    native::binary_(BinaryOp::Add, existing, g);
  }
  for (auto& hook : post_hooks) hook(param);
  return {};
}

std::shared_ptr<AccumulateGrad> grad_accumulator(const Tensor& leaf) {
  TensorImpl* impl = leaf.impl();
  if (auto existing = impl->grad_accumulator.lock()) return std::static_pointer_cast<AccumulateGrad>(existing);
  auto acc = std::make_shared<AccumulateGrad>(leaf.impl_ptr());
  for (const GradHook& h : impl->hooks) acc->pre_hooks.emplace_back(0, h);  // Tensor::register_hook on a leaf
  impl->grad_accumulator = acc;
  return acc;
}

Edge gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return {};
  if (t.grad_fn()) return {t.grad_fn(), t.output_nr()};
  return {grad_accumulator(t), 0};
}

SavedVariable::SavedVariable(const Tensor& t) {
  if (!t.defined()) return;
  data_ = native::alias(t);
  version_ = t.version();
  saved_ = true;
}

Tensor SavedVariable::unpack(const Node* owner) const {
  if (!saved_) return Tensor();
  RG_CHECK(data_.defined(), "Trying to backward through the graph a second time (or directly access saved tensors "
           "after they have already been freed). Saved intermediate values of the graph are freed when you call "
           ".backward(). Specify retain_graph=true if you need to backward through the graph a second time.",
           owner ? " (node " + owner->name() + ")" : std::string());
  RG_CHECK(data_.version() == version_, "one of the variables needed for gradient computation has been modified by an "
           "inplace operation: ", data_.describe(), " is at version ", data_.version(), "; expected version ",
           version_, " instead. It was saved by ", owner ? owner->name() : std::string("?"), ".");
  return data_;
}

}  // namespace rg::autograd
