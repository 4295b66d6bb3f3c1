// Helpers for writing a differentiable op: decide whether to record, make the node with edges to
// the inputs, and attach the node to the outputs. Every op in autograd/ops_*.cpp follows:
//   Tensor out = native::op(...);
//   if (auto n = record<OpBackward>({&a, &b})) { n->saved = SavedVariable(a); set_history(out, n); }
#pragma once

#include <initializer_list>
#include <memory>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/saved.h"

namespace rg::autograd {

inline bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor* t : inputs) {
    if (t && t->defined() && t->requires_grad()) return true;
  }
  return false;
}

// Makes node N with one edge per input when any input needs grad; null otherwise.
template <typename N, typename... Args>
std::shared_ptr<N> record(std::initializer_list<const Tensor*> inputs, Args&&... args) {
  if (!needs_grad(inputs)) return nullptr;
  auto n = std::make_shared<N>(std::forward<Args>(args)...);
  n->next_edges.reserve(inputs.size());
  for (const Tensor* t : inputs) n->next_edges.push_back(t ? gradient_edge(*t) : Edge{});
  return n;
}

// Same, for a list of inputs (cat, stack).
template <typename N, typename... Args>
std::shared_ptr<N> record_list(const std::vector<Tensor>& inputs, Args&&... args) {
  bool any = false;
  if (GradMode::is_enabled()) {
    for (const auto& t : inputs) any = any || (t.defined() && t.requires_grad());
  }
  if (!any) return nullptr;
  auto n = std::make_shared<N>(std::forward<Args>(args)...);
  for (const auto& t : inputs) n->next_edges.push_back(gradient_edge(t));
  return n;
}

// Makes `out` the next forward output of n.
void set_history(const Tensor& out, const std::shared_ptr<Node>& n);

// For in-place ops: refuses leaves that require grad and views that need grad; returns the edge
// the tensor had before, for the new node to point at.
void check_inplace(const Tensor& self, const char* op);

}  // namespace rg::autograd
