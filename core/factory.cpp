// Tensor factories: empty, zeros, ones, full, arange, rand, randn, randint, from_vector, from_blob.
#include <cmath>

#include "core/allocator.h"
#include "core/native.h"
#include "core/random.h"

namespace rg {

namespace {
Tensor finish(Tensor t, const TensorOptions& o) {
  if (o.requires_grad_) t.set_requires_grad(true);
  return t;
}
}  // namespace

Tensor empty_strided(const Shape& shape, const Shape& strides, TensorOptions o) {
  for (int64_t d : shape) RG_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
  RG_CHECK(shape.size() == strides.size(), "empty_strided: shape ", shape_str(shape), " and strides ",
           shape_str(strides), " differ in length");
  int64_t span = shape_numel(shape) == 0 ? 0 : 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] > 0) span += (shape[i] - 1) * strides[i];
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = allocate_storage(static_cast<size_t>(span) * dtype_size(o.dtype_), o.device_);
  impl->sizes = shape;
  impl->strides = strides;
  impl->dtype = o.dtype_;
  return finish(Tensor(std::move(impl)), o);
}

Tensor empty(const Shape& shape, TensorOptions o) { return empty_strided(shape, contiguous_strides(shape), o); }

Tensor full(const Shape& shape, double value, TensorOptions o) {
  const bool rg = o.requires_grad_;
  Tensor t = empty(shape, o.requires_grad(false));
  native::fill_(t, value);
  return finish(t, o.requires_grad(rg));
}
Tensor zeros(const Shape& shape, TensorOptions o) { return full(shape, 0.0, o); }
Tensor ones(const Shape& shape, TensorOptions o) { return full(shape, 1.0, o); }
Tensor scalar_tensor(double value, TensorOptions o) { return full(Shape{}, value, o); }

Tensor arange(double end, TensorOptions o) { return arange(0.0, end, 1.0, o); }
Tensor arange(double start, double end, double step, TensorOptions o) {
  OpScope scope("arange");
  RG_CHECK(step != 0.0, "arange: step must be nonzero");
  RG_CHECK((end - start) / step >= 0, "arange: upper bound and larger bound inconsistent with step sign");
  const auto n = static_cast<int64_t>(std::ceil((end - start) / step));
  const bool rg = o.requires_grad_;
  Tensor t = empty({n}, o.requires_grad(false));
  if (n > 0) {
    RG_CALL_KERNEL(arange, t.device(), t, start, step);
  }
  return finish(t, o.requires_grad(rg));
}

Tensor rand(const Shape& shape, TensorOptions o, Generator* gen) {
  const bool rg = o.requires_grad_;
  Tensor t = empty(shape, o.requires_grad(false));
  native::random_(t, RandomKind::Uniform, 0.0, 1.0, gen);
  return finish(t, o.requires_grad(rg));
}
Tensor randn(const Shape& shape, TensorOptions o, Generator* gen) {
  const bool rg = o.requires_grad_;
  Tensor t = empty(shape, o.requires_grad(false));
  native::random_(t, RandomKind::Normal, 0.0, 1.0, gen);
  return finish(t, o.requires_grad(rg));
}
Tensor randint(int64_t low, int64_t high, const Shape& shape, TensorOptions o, Generator* gen) {
  OpScope scope("randint");
  RG_CHECK(high > low, "randint: expected low < high, got ", low, " and ", high);
  // floor(U[low, high)) in double; the clamp guards the last ulp for huge ranges.
  Tensor u = empty(shape, TensorOptions(DType::f64).device(o.device_));
  native::random_(u, RandomKind::Uniform, static_cast<double>(low), static_cast<double>(high), gen);
  native::unary_(UnaryOp::Floor, u);
  native::unary_(UnaryOp::Clamp, u, static_cast<double>(low), static_cast<double>(high - 1));
  return native::to(u, o.device_, o.dtype_);
}

template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, TensorOptions o) {
  OpScope scope("from_vector");
  RG_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_vector: ", values.size(),
           " values do not fill shape ", shape_str(shape));
  Tensor host = empty(shape, TensorOptions(DTypeOf<T>::value));
  if (!values.empty()) std::memcpy(host.data_ptr(), values.data(), values.size() * sizeof(T));
  Tensor out = native::to(host, o.device_, o.dtype_);
  return finish(out, o);
}
template Tensor from_vector<float>(const std::vector<float>&, const Shape&, TensorOptions);
template Tensor from_vector<double>(const std::vector<double>&, const Shape&, TensorOptions);
template Tensor from_vector<int32_t>(const std::vector<int32_t>&, const Shape&, TensorOptions);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, const Shape&, TensorOptions);
template Tensor from_vector<uint8_t>(const std::vector<uint8_t>&, const Shape&, TensorOptions);
template Tensor from_vector<Half>(const std::vector<Half>&, const Shape&, TensorOptions);
template Tensor from_vector<BFloat16>(const std::vector<BFloat16>&, const Shape&, TensorOptions);

Tensor empty_like(const Tensor& t, TensorOptions o) { return empty(t.sizes(), o); }
Tensor empty_like(const Tensor& t) { return empty(t.sizes(), TensorOptions(t.dtype()).device(t.device())); }
Tensor zeros_like(const Tensor& t) { return zeros(t.sizes(), TensorOptions(t.dtype()).device(t.device())); }
Tensor ones_like(const Tensor& t) { return ones(t.sizes(), TensorOptions(t.dtype()).device(t.device())); }

Tensor from_blob(void* data, const Shape& shape, TensorOptions o, std::function<void(void*)> deleter) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(data, static_cast<size_t>(shape_numel(shape)) * dtype_size(o.dtype_),
                                            o.device_, std::move(deleter));
  impl->sizes = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = o.dtype_;
  return finish(Tensor(std::move(impl)), o);
}

}  // namespace rg
