// Copies, casts and moves between devices: contiguous, clone, to, copy_, fill_.
#include "core/native.h"

namespace rg::native {

void fill_(const Tensor& t, double value) {
  OpScope scope("fill_", {&t});
  if (t.numel() == 0) return;
  RG_CALL_KERNEL(fill, t.device(), t, value);
  t.bump_version();
}

namespace {
// dst and src have the same shape; src is contiguous on the host or the device named.
void cross_device_copy(const Tensor& dst, const Tensor& src) {
  if (src.is_cpu() && dst.is_cuda()) {  // cast on the host, then one H2D copy
    Tensor host = src.dtype() == dst.dtype() && src.is_contiguous() ? src : to(src, kCPU, dst.dtype(), true);
    Tensor stage = dst.is_contiguous() ? dst : empty(dst.sizes(), TensorOptions(dst.dtype()).device(dst.device()));
    {
      cuda::DeviceGuard g(dst.device().index);
      cuda::memcpy(stage.data_ptr(), host.data_ptr(), host.nbytes(), cuda::CopyKind::HostToDevice);
    }
    if (!stage.is_same(dst)) copy_(dst, stage);
    return;
  }
  if (src.is_cuda() && dst.is_cpu()) {  // one D2H copy of the source dtype, then cast on the host
    Tensor dev = contiguous(src);
    Tensor host = empty(src.sizes(), TensorOptions(src.dtype()));
    {
      cuda::DeviceGuard g(src.device().index);
      cuda::memcpy(host.data_ptr(), dev.data_ptr(), dev.nbytes(), cuda::CopyKind::DeviceToHost);
    }
    copy_(dst, host);
    return;
  }
  // cuda:i -> cuda:j
  Tensor s = contiguous(src);
  Tensor stage = empty(src.sizes(), TensorOptions(src.dtype()).device(dst.device()));
  cuda::memcpy_peer(stage.data_ptr(), dst.device().index, s.data_ptr(), src.device().index, s.nbytes());
  copy_(dst, stage);
}
}  // namespace

void copy_(const Tensor& dst, const Tensor& src) {
  OpScope scope("copy_", {&dst, &src});
  RG_CHECK(dst.defined() && src.defined(), "copy_ between undefined tensors");
  if (dst.numel() == 0) return;
  RG_CHECK(src.sizes() == dst.sizes() || broadcast_shapes(dst.sizes(), src.sizes(), "copy_") == dst.sizes(),
           "copy_: source of shape ", shape_str(src.sizes()), " cannot be broadcast to the destination's shape ",
           shape_str(dst.sizes()));
  const Tensor s = src.sizes() == dst.sizes() ? src : expand(src, dst.sizes());
  if (dst.device() == s.device()) {
    if (!(dst.data_ptr() == s.data_ptr() && dst.strides() == s.strides() && dst.dtype() == s.dtype())) {
      RG_CALL_KERNEL(copy, dst.device(), dst, s);
    }
  } else {
    cross_device_copy(dst, s);
  }
  dst.bump_version();
}

Tensor contiguous(const Tensor& x) {
  if (x.is_contiguous()) return x;
  OpScope scope("contiguous", {&x});
  Tensor out = empty(x.sizes(), TensorOptions(x.dtype()).device(x.device()));
  RG_CALL_KERNEL(copy, x.device(), out, x);
  return out;
}

Tensor clone(const Tensor& x) {
  OpScope scope("clone", {&x});
  Tensor out = empty(x.sizes(), TensorOptions(x.dtype()).device(x.device()));
  if (x.numel()) RG_CALL_KERNEL(copy, x.device(), out, x);
  return out;
}

Tensor to(const Tensor& x, Device device, DType dtype, bool force_copy) {
  if (!force_copy && x.device() == device && x.dtype() == dtype) return x;
  OpScope scope("to", {&x});
  Tensor out = empty(x.sizes(), TensorOptions(dtype).device(device));
  copy_(out, x);
  return out;
}

}  // namespace rg::native
