// SavedVariable: a tensor a backward needs, stored with the version it had when saved.
#pragma once

#include "core/tensor.h"

namespace rg::autograd {

struct Node;

// Note [Version counter]
// Every in-place write bumps the version counter of the written storage (shared by all views of
// it). A saved tensor remembers the version at save time; unpacking it after an in-place change
// raises an error naming the node, instead of silently giving a wrong gradient.
class SavedVariable {
 public:
  SavedVariable() = default;
  explicit SavedVariable(const Tensor& t);
  // The saved data (no autograd history); throws if it was modified in place or released.
  Tensor unpack(const Node* owner) const;
  bool defined() const { return saved_ || data_.defined(); }
  void reset() { data_ = Tensor(); }

 private:
  Tensor data_;
  uint32_t version_ = 0;
  bool saved_ = false;
};

}  // namespace rg::autograd
