// The backward engine: runs the graph from the roots by dependency counts, in reverse creation
// order among ready nodes, accumulating gradients into leaves.
#pragma once

#include "autograd/node.h"

namespace rg::autograd {

// Backpropagates grad_roots[i] from roots[i] (a missing grad means ones, for a scalar root).
void backward(const TensorList& roots, const TensorList& grad_roots = {}, bool retain_graph = false);

// torch.autograd.grad: gradients of the roots with respect to `inputs`, returned instead of being
// accumulated into .grad. An input the roots do not depend on gets an undefined tensor when
// allow_unused, else an error naming its position.
TensorList grad(const TensorList& roots, const TensorList& inputs, const TensorList& grad_roots = {},
                bool retain_graph = false, bool allow_unused = false);

}  // namespace rg::autograd
