// Tensor: a cheap shared handle to a TensorImpl (storage, sizes, strides, offset, dtype, device,
// and the autograd fields). Metadata accessors live here in core; the differentiable methods
// (view, sum, backward, ...) are declared here and defined in autograd/ -- see Note [Tensor methods].
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/shape.h"

namespace rg {

namespace autograd {
struct Node;
}

// A block of memory on one device. Views share it; the version counter lives here so that every
// view of the same memory sees an in-place write (Note [Version counter] in autograd/saved.h).
struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  Device device;
  std::function<void(void*)> deleter;  // returns the block to its allocator
  std::atomic<uint32_t> version{0};

  Storage(void* d, size_t n, Device dev, std::function<void(void*)> del)
      : data(d), nbytes(n), device(dev), deleter(std::move(del)) {}
  ~Storage() {
    if (deleter && data) deleter(data);
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

struct TensorOptions {
  DType dtype_ = DType::f32;
  Device device_ = kCPU;
  bool requires_grad_ = false;

  TensorOptions() = default;
  TensorOptions(DType d) : dtype_(d) {}     // NOLINT: implicit, so zeros(s, DType::f16) reads well
  TensorOptions(Device d) : device_(d) {}   // NOLINT
  TensorOptions dtype(DType d) const { auto o = *this; o.dtype_ = d; return o; }
  TensorOptions device(Device d) const { auto o = *this; o.device_ = d; return o; }
  TensorOptions requires_grad(bool r = true) const { auto o = *this; o.requires_grad_ = r; return o; }
};

class Tensor;
using GradHook = std::function<Tensor(const Tensor&)>;  // returns a replacement grad, or undefined to keep it

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape sizes;
  Shape strides;        // in elements
  int64_t offset = 0;   // in elements
  DType dtype = DType::f32;
  bool is_view = false;  // shares storage with a tensor it was derived from

  // autograd (see autograd/): a leaf has no grad_fn; a non-leaf records the node that made it.
  bool requires_grad = false;
  bool retains_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<autograd::Node> grad_fn;
  uint32_t output_nr = 0;
  std::weak_ptr<autograd::Node> grad_accumulator;  // leaves only; made on first use
  std::vector<GradHook> hooks;
};

// Note [Tensor methods]
// Methods that autograd must see (view, reshape, sum, to, backward, ...) are declared in this
// class but defined in autograd/tensor_methods.cpp, because core sits below autograd. Code inside
// core/ and cuda_kernels/ must never call them: it uses the rg::native:: functions instead
// (core/native.h), which do the same work without recording a graph.
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- metadata (core)
  bool defined() const { return impl_ != nullptr; }
  const Shape& sizes() const { return impl_->sizes; }
  const Shape& shape() const { return impl_->sizes; }
  int64_t size(int64_t dim) const;
  const Shape& strides() const { return impl_->strides; }
  int64_t stride(int64_t dim) const;
  int64_t dim() const { return static_cast<int64_t>(impl_->sizes.size()); }
  int64_t numel() const { return shape_numel(impl_->sizes); }
  DType dtype() const { return impl_->dtype; }
  Device device() const { return impl_->storage->device; }
  bool is_cuda() const { return device().is_cuda(); }
  bool is_cpu() const { return device().is_cpu(); }
  bool is_contiguous() const;
  bool is_floating_point() const { return is_floating(dtype()); }
  size_t element_size() const { return dtype_size(dtype()); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * element_size(); }
  int64_t storage_offset() const { return impl_->offset; }
  const std::shared_ptr<Storage>& storage() const { return impl_->storage; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }
  std::string describe() const;  // "float32[2, 3] cuda:0"

  // Pointer to the first element (storage + offset). Typed access checks the dtype.
  void* data_ptr() const;
  template <typename T> T* data() const {
    RG_CHECK(DTypeOf<T>::value == dtype(), "data<T>(): tensor is ", dtype_name(dtype()), ", asked for ",
             dtype_name(DTypeOf<T>::value));
    return static_cast<T*>(data_ptr());
  }

  // ---- values to the host (core): these synchronise with the device.
  double item() const;  // the single element, as double
  template <typename T> T item() const { return static_cast<T>(item()); }
  template <typename T> std::vector<T> to_vector() const;  // any dtype in, converted to T
  std::string str() const;                                 // values, as PyTorch prints small tensors

  // ---- autograd state (core)
  bool requires_grad() const { return impl_->requires_grad; }
  Tensor& set_requires_grad(bool r = true);  // leaves only
  Tensor grad() const { return Tensor(impl_->grad); }
  void set_grad(const Tensor& g) { impl_->grad = g.impl_; }
  const std::shared_ptr<autograd::Node>& grad_fn() const { return impl_->grad_fn; }
  bool is_leaf() const { return impl_->grad_fn == nullptr; }
  uint32_t output_nr() const { return impl_->output_nr; }
  uint32_t version() const { return impl_->storage->version.load(std::memory_order_relaxed); }
  void bump_version() const { impl_->storage->version.fetch_add(1, std::memory_order_relaxed); }

  // ---- differentiable methods (defined in autograd/, Note [Tensor methods])
  Tensor view(const Shape& shape) const;        // shares storage; -1 allowed once
  Tensor reshape(const Shape& shape) const;     // a view when strides allow, else a copy
  Tensor flatten(int64_t start = 0, int64_t end = -1) const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const;                              // 2-D transpose
  Tensor permute(const Shape& dims) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor expand(const Shape& shape) const;
  Tensor expand_as(const Tensor& other) const { return expand(other.sizes()); }
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor detach() const;                         // shares storage, no grad_fn
  Tensor to(Device d) const;
  Tensor to(DType t) const;
  Tensor to(Device d, DType t) const;
  Tensor cpu() const { return to(kCPU); }
  Tensor cuda(int index = 0) const { return to(Device::cuda(index)); }
  Tensor float_() const { return to(DType::f32); }

  Tensor sum() const;
  Tensor sum(const Shape& dims, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(const Shape& dims, bool keepdim = false) const;

  // In-place ops bump the version counter. Autograd records them on non-leaf, non-view tensors
  // and refuses them on leaves that require grad (as PyTorch does).
  Tensor& zero_();
  Tensor& fill_(double value);
  Tensor& copy_(const Tensor& src);  // broadcasts src; any device and dtype
  Tensor& add_(const Tensor& other, double alpha = 1.0);
  Tensor& mul_(const Tensor& other);
  Tensor& mul_(double s);

  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;
  void register_hook(GradHook hook) const;
  void retain_grad() const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

}  // namespace rg
