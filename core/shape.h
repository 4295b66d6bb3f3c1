// Shape arithmetic shared by every op: numel, contiguous strides, dim wrapping, broadcasting,
// and the text form "[2, 3]" used in error messages.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace rg {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& sizes);
std::string shape_str(const Shape& s);  // "[2, 3]"
// Wrap a possibly negative dim into [0, ndim); throws naming the op when out of range.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op = nullptr);
// Broadcast two shapes as numpy/PyTorch do; throws naming both shapes and the op.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op = nullptr);

}  // namespace rg
