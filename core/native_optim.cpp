// Fused multi-tensor updates without autograd (optimizers, AMP, gradient clipping, EMA): list
// checks (lengths, shapes, dtypes, one device), dense operands, then one kernel call per list.
#include <string>

#include "core/native.h"

namespace rg::native {

namespace {

// Tensors a kernel writes must be dense; a non-contiguous one is replaced by a contiguous copy
// that is copied back after the kernel. Every written tensor's version is bumped.
class InPlaceList {
 public:
  explicit InPlaceList(const std::vector<Tensor>& ts) : orig_(ts) {
    work_.reserve(ts.size());
    for (const Tensor& t : ts) {
      if (t.is_contiguous()) {
        work_.push_back(t);
      } else {
        work_.push_back(contiguous(t));
        back_.emplace_back(work_.size() - 1);
      }
    }
  }
  const std::vector<Tensor>& work() const { return work_; }
  void finish() {
    for (size_t i : back_) copy_(orig_[i], work_[i]);
    for (const Tensor& t : orig_) t.bump_version();
  }

 private:
  std::vector<Tensor> orig_;  // handles (cheap): the caller's list may be a temporary
  std::vector<Tensor> work_;
  std::vector<size_t> back_;
};

// Read-only operands: contiguous, in `dtype`.
std::vector<Tensor> dense_inputs(const std::vector<Tensor>& ts, DType dtype) {
  std::vector<Tensor> out;
  out.reserve(ts.size());
  for (const Tensor& t : ts) out.push_back(contiguous(to(t, t.device(), dtype)));
  return out;
}

// Every tensor of `list` is defined, on `device`, floating, and (when `like` is given) shaped
// like like[i]; with `dtype` set, of that dtype.
void check_list(const std::vector<Tensor>& list, const char* name, Device device, const std::vector<Tensor>* like,
                const DType* dtype) {
  if (like) {
    RG_CHECK(list.size() == like->size(), "expected ", like->size(), " tensors in ", name, ", got ", list.size());
  }
  for (size_t i = 0; i < list.size(); ++i) {
    const Tensor& t = list[i];
    RG_CHECK(t.defined(), name, "[", i, "] is undefined");
    RG_CHECK(t.device() == device, "Expected all tensors to be on the same device, but found at least two devices, ",
             device.str(), " and ", t.device().str(), " (", name, "[", i, "])");
    RG_CHECK(is_floating(t.dtype()), name, "[", i, "] must be floating point, got ", dtype_name(t.dtype()));
    if (dtype) {
      RG_CHECK(t.dtype() == *dtype, name, "[", i, "] has dtype ", dtype_name(t.dtype()), ", expected ",
               dtype_name(*dtype));
    }
    if (like) {
      RG_CHECK(t.sizes() == (*like)[i].sizes(), name, "[", i, "] has shape ", shape_str(t.sizes()),
               " but the matching parameter has ", shape_str((*like)[i].sizes()));
    }
  }
}

// The parameters' common device and dtype (f32 or f64).
std::pair<Device, DType> param_kind(const std::vector<Tensor>& params, const char* op) {
  RG_CHECK(params[0].defined(), "params[0] is undefined");
  const DType dt = params[0].dtype();
  RG_CHECK(dt == DType::f32 || dt == DType::f64, op, ": parameters must be float32 or float64 (master weights), got ",
           dtype_name(dt));
  check_list(params, "params", params[0].device(), nullptr, &dt);
  return {params[0].device(), dt};
}

void check_scalar(const Tensor& t, const char* name, Device device, DType dtype) {
  RG_CHECK(t.defined() && t.numel() == 1, name, " must be a 1-element tensor");
  RG_CHECK(t.device() == device, name, " is on ", t.device().str(), " but the tensors are on ", device.str());
  RG_CHECK(t.dtype() == dtype, name, " must be ", dtype_name(dtype), ", got ", dtype_name(t.dtype()));
}

}  // namespace

void sgd_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& bufs,
               const SgdParams& p) {
  OpScope scope("sgd_step");
  if (params.empty()) return;
  const auto [dev, dt] = param_kind(params, "sgd_step");
  check_list(grads, "grads", dev, &params, nullptr);
  if (p.momentum != 0.0) check_list(bufs, "momentum_buffers", dev, &params, &dt);
  RG_CHECK(!p.nesterov || (p.momentum > 0.0 && p.dampening == 0.0),
           "Nesterov momentum requires a momentum and zero dampening");
  InPlaceList w(params);
  InPlaceList b(p.momentum != 0.0 ? bufs : std::vector<Tensor>{});
  const std::vector<Tensor> g = dense_inputs(grads, dt);
  RG_CALL_KERNEL(sgd_step, dev, w.work(), g, b.work(), p);
  w.finish();
  b.finish();
}

void adam_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                const std::vector<Tensor>& exp_avg, const std::vector<Tensor>& exp_avg_sq,
                const std::vector<Tensor>& max_exp_avg_sq, const AdamParams& p) {
  OpScope scope("adam_step");
  if (params.empty()) return;
  const auto [dev, dt] = param_kind(params, "adam_step");
  check_list(grads, "grads", dev, &params, nullptr);
  check_list(exp_avg, "exp_avg", dev, &params, &dt);
  check_list(exp_avg_sq, "exp_avg_sq", dev, &params, &dt);
  if (p.amsgrad) check_list(max_exp_avg_sq, "max_exp_avg_sq", dev, &params, &dt);
  RG_CHECK(p.step >= 1, "adam_step: step must be >= 1 (the count after incrementing), got ", p.step);
  InPlaceList w(params), m(exp_avg), v(exp_avg_sq);
  InPlaceList vmax(p.amsgrad ? max_exp_avg_sq : std::vector<Tensor>{});
  const std::vector<Tensor> g = dense_inputs(grads, dt);
  RG_CALL_KERNEL(adam_step, dev, w.work(), g, m.work(), v.work(), vmax.work(), p);
  w.finish();
  m.finish();
  v.finish();
  vmax.finish();
}

void amp_unscale_(const std::vector<Tensor>& grads, const Tensor& found_inf, const Tensor& inv_scale) {
  OpScope scope("amp_unscale", {&found_inf, &inv_scale});
  RG_CHECK(found_inf.defined() && inv_scale.defined(), "found_inf and inv_scale are required");
  const Device dev = found_inf.device();
  check_scalar(found_inf, "found_inf", dev, DType::f32);
  check_scalar(inv_scale, "inv_scale", dev, DType::f32);
  if (grads.empty()) return;
  check_list(grads, "grads", dev, nullptr, nullptr);
  InPlaceList g(grads);
  RG_CALL_KERNEL(amp_unscale, dev, g.work(), found_inf, inv_scale);
  g.finish();
  found_inf.bump_version();
}

void amp_update_scale_(const Tensor& scale, const Tensor& growth_tracker, const Tensor& found_inf, double growth,
                       double backoff, int64_t interval) {
  OpScope scope("amp_update_scale", {&scale, &growth_tracker, &found_inf});
  RG_CHECK(scale.defined() && growth_tracker.defined() && found_inf.defined(), "undefined argument");
  const Device dev = scale.device();
  check_scalar(scale, "scale", dev, DType::f32);
  check_scalar(growth_tracker, "growth_tracker", dev, DType::i32);
  check_scalar(found_inf, "found_inf", dev, DType::f32);
  RG_CHECK(interval > 0, "growth_interval must be positive, got ", interval);
  RG_CALL_KERNEL(amp_update_scale, dev, scale, growth_tracker, found_inf, growth, backoff, interval);
  scale.bump_version();
  growth_tracker.bump_version();
}

Tensor multi_sum_squares(const std::vector<Tensor>& xs) {
  OpScope scope("multi_sum_squares");
  if (xs.empty()) return empty({0}, DType::f32);
  const Device dev = xs[0].defined() ? xs[0].device() : kCPU;
  check_list(xs, "tensors", dev, nullptr, nullptr);
  bool all_f64 = true;
  for (const Tensor& x : xs) all_f64 = all_f64 && x.dtype() == DType::f64;
  Tensor out = empty({static_cast<int64_t>(xs.size())}, TensorOptions(all_f64 ? DType::f64 : DType::f32).device(dev));
  std::vector<Tensor> dense;
  dense.reserve(xs.size());
  for (const Tensor& x : xs) dense.push_back(contiguous(x));
  RG_CALL_KERNEL(multi_sum_squares, dev, out, dense);
  return out;
}

void multi_scale_(const std::vector<Tensor>& xs, const Tensor& scale) {
  OpScope scope("multi_scale", {&scale});
  if (xs.empty()) return;
  const Device dev = xs[0].defined() ? xs[0].device() : kCPU;
  check_list(xs, "tensors", dev, nullptr, nullptr);
  RG_CHECK(scale.defined() && scale.numel() == 1 && is_floating(scale.dtype()),
           "multi_scale: scale must be a 1-element floating point tensor");
  const DType st = scale.dtype() == DType::f64 ? DType::f64 : DType::f32;
  const Tensor s = contiguous(to(scale, dev, st));
  InPlaceList x(xs);
  RG_CALL_KERNEL(multi_scale, dev, x.work(), s);
  x.finish();
}

void multi_axpby_(const std::vector<Tensor>& ys, const std::vector<Tensor>& xs, double a, double b) {
  OpScope scope("multi_axpby");
  if (ys.empty()) {
    RG_CHECK(xs.empty(), "multi_axpby: expected ", ys.size(), " tensors in xs, got ", xs.size());
    return;
  }
  const Device dev = ys[0].defined() ? ys[0].device() : kCPU;
  check_list(ys, "ys", dev, nullptr, nullptr);
  check_list(xs, "xs", dev, &ys, nullptr);
  std::vector<Tensor> xd;
  xd.reserve(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) xd.push_back(contiguous(to(xs[i], dev, ys[i].dtype())));
  InPlaceList y(ys);
  RG_CALL_KERNEL(multi_axpby, dev, y.work(), xd, a, b);
  y.finish();
}

}  // namespace rg::native
