// The backward engine: runs the graph from the roots by dependency counts, in reverse creation
// order among ready nodes, accumulating gradients into leaves.
#pragma once

#include <functional>

#include "autograd/node.h"

namespace rg::autograd {

// Backpropagates grad_roots[i] from roots[i] (a missing grad means ones, for a scalar root).
void backward(const TensorList& roots, const TensorList& grad_roots = {}, bool retain_graph = false);

// torch.autograd.grad: gradients of the roots with respect to `inputs`, returned instead of being
// accumulated into .grad. An input the roots do not depend on gets an undefined tensor when
// allow_unused, else an error naming its position.
TensorList grad(const TensorList& roots, const TensorList& inputs, const TensorList& grad_roots = {},
                bool retain_graph = false, bool allow_unused = false);

// Queues a callback to run once the current backward has processed every node (and before
// backward() returns), on the thread running it: PyTorch's Variable._execution_engine.queue_callback.
// DDP's reducer uses it to wait for its last bucket. Only callable while a backward is running.
void queue_callback(std::function<void()> cb);
bool in_backward();  // true inside hooks and nodes of a running backward

}  // namespace rg::autograd
