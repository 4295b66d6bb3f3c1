// The standard layers: construction with PyTorch's default initialisation, forward through
// nn::functional, and extra_repr in PyTorch's printed form.
#include "nn/layers.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "autograd/grad_mode.h"
#include "nn/init.h"

namespace rg::nn {

std::string Size2::tuple() const { return "(" + std::to_string(h) + ", " + std::to_string(w) + ")"; }
std::string Size2::str() const { return h == w ? std::to_string(h) : tuple(); }

std::string py_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 0.0) return std::signbit(v) ? "-0.0" : "0.0";
  // The shortest scientific form that reads back exactly, as Python's repr picks.
  char buf[40];
  for (int prec = 1; prec <= 17; ++prec) {
    std::snprintf(buf, sizeof(buf), "%.*e", prec - 1, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s(buf);
  std::string sign;
  if (s[0] == '-') {
    sign = "-";
    s = s.substr(1);
  }
  const size_t e = s.find('e');
  const int exp10 = std::atoi(s.c_str() + e + 1);
  std::string digits;
  for (size_t i = 0; i < e; ++i) {
    if (s[i] != '.') digits += s[i];
  }
  if (exp10 < -4 || exp10 >= 16) {
    std::string out = sign + digits.substr(0, 1);
    if (digits.size() > 1) out.append(".").append(digits, 1, std::string::npos);
    const int a = std::abs(exp10);
    out += std::string("e") + (exp10 < 0 ? "-" : "+") + (a < 10 ? "0" : "") + std::to_string(a);
    return out;
  }
  if (exp10 < 0) return sign + "0." + std::string(static_cast<size_t>(-exp10 - 1), '0') + digits;
  const size_t int_len = static_cast<size_t>(exp10) + 1;
  if (digits.size() <= int_len) return sign + digits + std::string(int_len - digits.size(), '0') + ".0";
  return sign + digits.substr(0, int_len) + "." + digits.substr(int_len);
}

namespace {
const char* py_bool(bool b) { return b ? "True" : "False"; }

// PyTorch's reset_parameters for Linear and Conv: kaiming_uniform_(a = sqrt 5) on the weight,
// which is U(+-1/sqrt(fan_in)), and U(+-1/sqrt(fan_in)) on the bias (0 when fan_in is 0).
void reset_weight_and_bias(const Tensor& weight, const Tensor& bias, Generator* gen) {
  init::kaiming_uniform_(weight, std::sqrt(5.0), "fan_in", "leaky_relu", gen);
  if (bias.defined()) {
    const int64_t fan_in = init::calculate_fan_in_and_fan_out(weight).first;
    const double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
    init::uniform_(bias, -bound, bound, gen);
  }
}

void check_4d(const Tensor& x, const char* layer) {
  RG_CHECK(x.defined() && x.dim() == 4, layer, ": expected 4D input (N, C, H, W), got ",
           x.defined() ? std::to_string(x.dim()) + "D input " + shape_str(x.sizes()) : std::string("undefined"));
}
}  // namespace

// ---- Linear
Linear::Linear(int64_t in_features, int64_t out_features, bool bias)
    : Cloneable("Linear"), in_features_(in_features), out_features_(out_features) {
  RG_CHECK(in_features >= 0 && out_features >= 0, "Linear: negative size (", in_features, ", ", out_features, ")");
  register_parameter("weight", empty({out_features, in_features}));
  register_parameter("bias", bias ? empty({out_features}) : Tensor());
  reset_parameters();
}

void Linear::reset_parameters(Generator* gen) { reset_weight_and_bias(weight(), bias(), gen); }

Tensor Linear::forward(const Tensor& x) { return functional::linear(x, weight(), bias()); }

std::string Linear::extra_repr() const {
  return "in_features=" + std::to_string(in_features_) + ", out_features=" + std::to_string(out_features_) +
         ", bias=" + py_bool(bias().defined());
}

// ---- Conv2d
Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, Size2 kernel_size, Conv2dOptions options)
    : Cloneable("Conv2d"),
      in_channels_(in_channels),
      out_channels_(out_channels),
      kernel_size_(kernel_size),
      options_(options) {
  const int64_t g = options_.groups;
  RG_CHECK(g > 0, "Conv2d: groups must be a positive integer, got ", g);
  RG_CHECK(in_channels > 0 && in_channels % g == 0, "Conv2d: in_channels ", in_channels,
           " must be positive and divisible by groups ", g);
  RG_CHECK(out_channels > 0 && out_channels % g == 0, "Conv2d: out_channels ", out_channels,
           " must be positive and divisible by groups ", g);
  RG_CHECK(kernel_size.h > 0 && kernel_size.w > 0, "Conv2d: kernel_size must be positive, got ", kernel_size.tuple());
  RG_CHECK(options_.stride.h > 0 && options_.stride.w > 0, "Conv2d: stride must be positive, got ",
           options_.stride.tuple());
  RG_CHECK(options_.padding.h >= 0 && options_.padding.w >= 0, "Conv2d: negative padding ", options_.padding.tuple());
  RG_CHECK(options_.dilation.h > 0 && options_.dilation.w > 0, "Conv2d: dilation must be positive, got ",
           options_.dilation.tuple());
  register_parameter("weight", empty({out_channels, in_channels / g, kernel_size.h, kernel_size.w}));
  register_parameter("bias", options_.bias ? empty({out_channels}) : Tensor());
  reset_parameters();
}

void Conv2d::reset_parameters(Generator* gen) { reset_weight_and_bias(weight(), bias(), gen); }

functional::Conv2dOptions Conv2d::functional_options() const {
  functional::Conv2dOptions o;
  o.stride = options_.stride.arr();
  o.padding = options_.padding.arr();
  o.dilation = options_.dilation.arr();
  o.groups = options_.groups;
  return o;
}

Tensor Conv2d::forward(const Tensor& x) {
  return functional::conv2d(x, weight(), bias(), functional_options());
}

std::string Conv2d::extra_repr() const {
  std::string s = std::to_string(in_channels_) + ", " + std::to_string(out_channels_) +
                  ", kernel_size=" + kernel_size_.tuple() + ", stride=" + options_.stride.tuple();
  if (options_.padding != Size2(0)) s += ", padding=" + options_.padding.tuple();
  if (options_.dilation != Size2(1)) s += ", dilation=" + options_.dilation.tuple();
  if (options_.groups != 1) s += ", groups=" + std::to_string(options_.groups);
  if (!bias().defined()) s += ", bias=False";
  return s;
}

// ---- BatchNorm2d, and the state it shares with dist::SyncBatchNorm (Note [Batch-norm state])
void register_batch_norm_state(Module& m, int64_t num_features, const BatchNormOptions& o) {
  m.register_parameter("weight", o.affine ? ones({num_features}) : Tensor());
  m.register_parameter("bias", o.affine ? zeros({num_features}) : Tensor());
  const bool t = o.track_running_stats;
  m.register_buffer("running_mean", t ? zeros({num_features}) : Tensor());
  m.register_buffer("running_var", t ? ones({num_features}) : Tensor());
  m.register_buffer("num_batches_tracked", t ? zeros({}, DType::i64) : Tensor());
}

void reset_batch_norm_running_stats(Module& m, const BatchNormOptions& o) {
  if (!o.track_running_stats) return;
  init::zeros_(m.buffer("running_mean"));
  init::ones_(m.buffer("running_var"));
  init::zeros_(m.buffer("num_batches_tracked"));
}

void reset_batch_norm_parameters(Module& m, const BatchNormOptions& o) {
  reset_batch_norm_running_stats(m, o);
  if (o.affine) {
    init::ones_(m.param("weight"));
    init::zeros_(m.param("bias"));
  }
}

BatchNormStep batch_norm_step(Module& m, const BatchNormOptions& o) {
  BatchNormStep s;
  s.momentum = o.momentum.value_or(0.0);
  const bool tracking = o.track_running_stats;
  if (m.is_training() && tracking) {
    NoGradGuard ng;
    const Tensor& count = m.buffer("num_batches_tracked");
    native::unary_(UnaryOp::Affine, count, 1.0, 1.0);  // += 1
    if (!o.momentum) s.momentum = 1.0 / count.item();  // cumulative moving average
  }
  s.use_batch_stats = m.is_training() || !tracking;
  if (!m.is_training() || tracking) {
    s.running_mean = m.buffer("running_mean");
    s.running_var = m.buffer("running_var");
  }
  return s;
}

std::string batch_norm_repr(int64_t num_features, const BatchNormOptions& o) {
  return std::to_string(num_features) + ", eps=" + py_float(o.eps) +
         ", momentum=" + (o.momentum ? py_float(*o.momentum) : std::string("None")) +
         ", affine=" + py_bool(o.affine) + ", track_running_stats=" + py_bool(o.track_running_stats);
}

BatchNorm2d::BatchNorm2d(int64_t num_features, BatchNormOptions options)
    : Cloneable("BatchNorm2d"), num_features_(num_features), options_(options) {
  RG_CHECK(num_features > 0, "BatchNorm2d: num_features must be positive, got ", num_features);
  RG_CHECK(options_.eps > 0.0, "BatchNorm2d: eps must be positive, got ", options_.eps);
  register_batch_norm_state(*this, num_features, options_);
}

void BatchNorm2d::reset_running_stats() { reset_batch_norm_running_stats(*this, options_); }

void BatchNorm2d::reset_parameters() { reset_batch_norm_parameters(*this, options_); }

Tensor BatchNorm2d::forward(const Tensor& x) {
  check_4d(x, "BatchNorm2d");
  RG_CHECK(x.size(1) == num_features_, "BatchNorm2d: input ", shape_str(x.sizes()), " has ", x.size(1),
           " channels, expected num_features=", num_features_);
  const BatchNormStep s = batch_norm_step(*this, options_);
  return functional::batch_norm(x, s.running_mean, s.running_var, weight(), bias(), s.use_batch_stats, s.momentum,
                                options_.eps);
}

std::string BatchNorm2d::extra_repr() const { return batch_norm_repr(num_features_, options_); }

// ---- pooling
namespace {
Size2 resolve_stride(Size2 stride, Size2 kernel) { return stride == Size2(0) ? kernel : stride; }
}  // namespace

MaxPool2d::MaxPool2d(Size2 kernel_size, MaxPool2dOptions options)
    : Cloneable("MaxPool2d"), kernel_size_(kernel_size), options_(options) {
  options_.stride = resolve_stride(options_.stride, kernel_size_);
  RG_CHECK(kernel_size_.h > 0 && kernel_size_.w > 0, "MaxPool2d: kernel_size must be positive, got ",
           kernel_size_.tuple());
  RG_CHECK(options_.stride.h > 0 && options_.stride.w > 0, "MaxPool2d: stride must be positive, got ",
           options_.stride.tuple());
}

functional::Pool2dOptions MaxPool2d::functional_options() const {
  functional::Pool2dOptions o;
  o.kernel = kernel_size_.arr();
  o.stride = options_.stride.arr();
  o.padding = options_.padding.arr();
  o.dilation = options_.dilation.arr();
  o.ceil_mode = options_.ceil_mode;
  return o;
}

Tensor MaxPool2d::forward(const Tensor& x) { return functional::max_pool2d(x, functional_options()); }

std::string MaxPool2d::extra_repr() const {
  return "kernel_size=" + kernel_size_.str() + ", stride=" + options_.stride.str() +
         ", padding=" + options_.padding.str() + ", dilation=" + options_.dilation.str() +
         ", ceil_mode=" + py_bool(options_.ceil_mode);
}

AvgPool2d::AvgPool2d(Size2 kernel_size, AvgPool2dOptions options)
    : Cloneable("AvgPool2d"), kernel_size_(kernel_size), options_(options) {
  options_.stride = resolve_stride(options_.stride, kernel_size_);
  RG_CHECK(kernel_size_.h > 0 && kernel_size_.w > 0, "AvgPool2d: kernel_size must be positive, got ",
           kernel_size_.tuple());
  RG_CHECK(options_.stride.h > 0 && options_.stride.w > 0, "AvgPool2d: stride must be positive, got ",
           options_.stride.tuple());
}

functional::Pool2dOptions AvgPool2d::functional_options() const {
  functional::Pool2dOptions o;
  o.kernel = kernel_size_.arr();
  o.stride = options_.stride.arr();
  o.padding = options_.padding.arr();
  o.ceil_mode = options_.ceil_mode;
  o.count_include_pad = options_.count_include_pad;
  return o;
}

Tensor AvgPool2d::forward(const Tensor& x) { return functional::avg_pool2d(x, functional_options()); }

std::string AvgPool2d::extra_repr() const {
  return "kernel_size=" + kernel_size_.str() + ", stride=" + options_.stride.str() +
         ", padding=" + options_.padding.str();
}

AdaptiveAvgPool2d::AdaptiveAvgPool2d(Size2 output_size) : Cloneable("AdaptiveAvgPool2d"), output_size_(output_size) {
  RG_CHECK(output_size.h > 0 && output_size.w > 0, "AdaptiveAvgPool2d: output_size must be positive, got ",
           output_size.tuple());
}

Tensor AdaptiveAvgPool2d::forward(const Tensor& x) {
  return functional::adaptive_avg_pool2d(x, output_size_.arr());
}

std::string AdaptiveAvgPool2d::extra_repr() const { return "output_size=" + output_size_.tuple(); }

// ---- Upsample
Upsample::Upsample(UpsampleOptions options) : Cloneable("Upsample"), options_(std::move(options)) {
  RG_CHECK(options_.size.has_value() != options_.scale_factor.has_value(),
           "Upsample: give exactly one of size and scale_factor");
  RG_CHECK(options_.mode == "nearest", "Upsample: only mode 'nearest' is supported, got '", options_.mode, "'");
  RG_CHECK(!options_.scale_factor || *options_.scale_factor > 0.0, "Upsample: scale_factor must be positive, got ",
           options_.scale_factor.value_or(0.0));
  RG_CHECK(!options_.size || (options_.size->h > 0 && options_.size->w > 0), "Upsample: size must be positive");
}

Tensor Upsample::forward(const Tensor& x) {
  if (options_.size) return functional::upsample_nearest2d(x, options_.size->arr());
  return functional::upsample_nearest2d(x, *options_.scale_factor);
}

std::string Upsample::extra_repr() const {
  const std::string what =
      options_.scale_factor ? "scale_factor=" + py_float(*options_.scale_factor) : "size=" + options_.size->tuple();
  return what + ", mode='" + options_.mode + "'";
}

// ---- Dropout, Flatten
Dropout::Dropout(double p) : Cloneable("Dropout"), p_(p) {
  RG_CHECK(p >= 0.0 && p <= 1.0, "Dropout: probability has to be between 0 and 1, but got ", p);
}

std::string Flatten::extra_repr() const {
  return "start_dim=" + std::to_string(start_dim_) + ", end_dim=" + std::to_string(end_dim_);
}

}  // namespace rg::nn
