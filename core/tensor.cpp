// Tensor metadata, host read-back (item, to_vector, str) and leaf requires_grad.
#include "core/tensor.h"

#include <cmath>
#include <cstdio>
#include <type_traits>

#include "core/native.h"

namespace rg {

int64_t Tensor::size(int64_t d) const { return impl_->sizes[wrap_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return impl_->strides[wrap_dim(d, dim(), "stride")]; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = impl_->sizes.size(); i-- > 0;) {
    const int64_t sz = impl_->sizes[i];
    if (sz == 1) continue;
    if (sz == 0) return true;
    if (impl_->strides[i] != expected) return false;
    expected *= sz;
  }
  return true;
}

void* Tensor::data_ptr() const {
  auto* base = static_cast<char*>(impl_->storage->data);
  return base ? base + impl_->offset * static_cast<int64_t>(element_size()) : nullptr;
}

std::string Tensor::describe() const {
  if (!impl_) return "undefined";
  return std::string(dtype_name(dtype())) + shape_str(sizes()) + " " + device().str();
}

namespace {
// Reads element i of a contiguous CPU tensor as double.
double read_as_double(const Tensor& c, int64_t i) {
  double v = 0;
  RG_DISPATCH_ALL(c.dtype(), "item", [&] { v = static_cast<double>(static_cast<const scalar_t*>(c.data_ptr())[i]); });
  return v;
}
}  // namespace

double Tensor::item() const {
  OpScope scope("item", {this});
  RG_CHECK(defined(), "item() on an undefined tensor");
  RG_CHECK(numel() == 1, "a Tensor with ", numel(), " elements cannot be converted to Scalar");
  const Tensor c = native::to(*this, kCPU, dtype());
  return read_as_double(native::contiguous(c), 0);
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  RG_CHECK(defined(), "to_vector() on an undefined tensor");
  const Tensor c = native::contiguous(native::to(*this, kCPU, dtype()));
  std::vector<T> out(static_cast<size_t>(c.numel()));
  RG_DISPATCH_ALL(c.dtype(), "to_vector", [&] {
    const auto* p = static_cast<const scalar_t*>(c.data_ptr());
    for (size_t i = 0; i < out.size(); ++i) {
      if constexpr (std::is_integral_v<T> && std::is_integral_v<scalar_t>) {
        out[i] = static_cast<T>(p[i]);  // exact for int64 beyond 2^53
      } else {
        out[i] = static_cast<T>(static_cast<double>(p[i]));
      }
    }
  });
  return out;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;

std::string Tensor::str() const {
  if (!impl_) return "tensor(undefined)";
  const Tensor c = native::contiguous(native::to(*this, kCPU, dtype()));
  std::string out = "tensor(";
  const int64_t n = c.numel();
  const int64_t shown = n > 64 ? 64 : n;
  const Shape st = contiguous_strides(c.sizes());
  for (int64_t i = 0; i < shown; ++i) {
    for (int64_t d = 0; d + 1 < c.dim(); ++d) {  // open brackets at the start of each row
      if (i % (st[d] * c.sizes()[d]) == 0) out += "[";
    }
    if (c.dim() > 0 && i % c.sizes().back() == 0) out += "[";
    char buf[32];
    const double v = read_as_double(c, i);
    if (is_floating(c.dtype())) {
      std::snprintf(buf, sizeof buf, "%.4g", v);
    } else {
      std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
    }
    out += buf;
    int closes = 0;
    for (int64_t d = c.dim() - 1; d >= 0; --d) {
      if ((i + 1) % (st[d] * c.sizes()[d]) == 0) ++closes;
    }
    out += std::string(static_cast<size_t>(closes), ']');
    if (i + 1 < shown) out += closes ? ",\n" : ", ";
  }
  if (shown < n) out += ", ...";
  out += std::string(") ") + dtype_name(c.dtype()) + shape_str(sizes()) + " " + device().str();
  return out;
}

Tensor& Tensor::set_requires_grad(bool r) {
  RG_CHECK(defined(), "set_requires_grad on an undefined tensor");
  RG_CHECK(!r || is_floating_point(), "only floating point tensors can require gradients, got ", dtype_name(dtype()));
  RG_CHECK(is_leaf() || r, "you can only change requires_grad flags of leaf variables");
  impl_->requires_grad = r;
  return *this;
}

}  // namespace rg
