// set_history and the in-place checks.
#include "autograd/function.h"

namespace rg::autograd {

void set_history(const Tensor& out, const std::shared_ptr<Node>& n) {
  TensorImpl* impl = out.impl();
  impl->grad_fn = n;
  impl->output_nr = static_cast<uint32_t>(n->output_meta.size());
  impl->requires_grad = true;
  n->output_meta.push_back({out.sizes(), out.dtype(), out.device()});
}

void check_inplace(const Tensor& self, const char* op) {
  if (!GradMode::is_enabled() || !self.requires_grad()) return;
  RG_CHECK(!self.is_leaf(), op, ": a leaf Variable that requires grad is being used in an in-place operation.");
  RG_CHECK(!self.impl()->is_view, op, ": in-place operation on a view of a tensor that requires grad is not "
           "supported; apply it to the base tensor or use the out-of-place op");
}

}  // namespace rg::autograd
