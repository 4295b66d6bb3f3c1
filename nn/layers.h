// The standard layers (torch.nn): Linear, Conv2d, BatchNorm2d, activations, pooling, Upsample,
// Dropout, Flatten, Identity, with PyTorch's parameter and buffer names, constructor defaults,
// default initialisation and printed form. They keep only configuration: Note [Module registry].
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "nn/functional.h"
#include "nn/module.h"

namespace rg::nn {

// A (height, width) pair given as one int for both, or as {h, w}: PyTorch's _pair.
struct Size2 {
  int64_t h = 0, w = 0;
  Size2() = default;
  Size2(int64_t v) : h(v), w(v) {}  // NOLINT: implicit, so `.stride = 2` reads as in PyTorch
  Size2(int64_t h_, int64_t w_) : h(h_), w(w_) {}
  std::array<int64_t, 2> arr() const { return {h, w}; }
  bool operator==(const Size2&) const = default;
  std::string tuple() const;  // "(3, 3)"
  std::string str() const;    // "3" when h == w, else "(3, 5)"
};

// Python's repr of a float ("1e-05", "0.1", "2.0"), for extra_repr.
std::string py_float(double v);

// ---- Linear: y = x W^T + b. weight (out, in), bias (out).
// Init (PyTorch): weight kaiming_uniform_(a = sqrt 5), i.e. U(+-1/sqrt(in)); bias U(+-1/sqrt(in)).
class Linear : public Cloneable<Linear> {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  Tensor forward(const Tensor& x) override;  // (..., in) -> (..., out)
  std::string extra_repr() const override;   // "in_features=4, out_features=3, bias=True"
  void reset_parameters(Generator* gen = nullptr);

  const Tensor& weight() const { return param("weight"); }
  const Tensor& bias() const { return param("bias"); }  // undefined without bias
  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }

 private:
  int64_t in_features_, out_features_;
};

// ---- Conv2d. weight (out, in / groups, kh, kw), bias (out). Same default init as Linear, with
// fan_in = in / groups * kh * kw.
struct Conv2dOptions {
  Size2 stride = 1;
  Size2 padding = 0;
  Size2 dilation = 1;
  int64_t groups = 1;
  bool bias = true;
};

class Conv2d : public Cloneable<Conv2d> {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, Size2 kernel_size, Conv2dOptions options = {});
  Tensor forward(const Tensor& x) override;  // (N, Cin, H, W) -> (N, Cout, Ho, Wo)
  // "3, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False"
  std::string extra_repr() const override;
  void reset_parameters(Generator* gen = nullptr);

  const Tensor& weight() const { return param("weight"); }
  const Tensor& bias() const { return param("bias"); }  // undefined without bias
  int64_t in_channels() const { return in_channels_; }
  int64_t out_channels() const { return out_channels_; }
  Size2 kernel_size() const { return kernel_size_; }
  const Conv2dOptions& options() const { return options_; }
  functional::Conv2dOptions functional_options() const;

 private:
  int64_t in_channels_, out_channels_;
  Size2 kernel_size_;
  Conv2dOptions options_;
};

// ---- BatchNorm2d. Parameters weight (C) = 1, bias (C) = 0 when affine; buffers running_mean (C)
// = 0, running_var (C) = 1, num_batches_tracked (0-dim int64) = 0 when track_running_stats.
// Training forward uses batch statistics and updates the running ones (momentum, unbiased
// variance) and counts batches; momentum nullopt is PyTorch's momentum=None (cumulative average).
struct BatchNormOptions {
  double eps = 1e-5;
  std::optional<double> momentum = 0.1;
  bool affine = true;
  bool track_running_stats = true;
};

// Note [Batch-norm state]
// BatchNorm2d and dist::SyncBatchNorm hold the same state under the same names and update it the
// same way (PyTorch's _BatchNorm base); these pieces are that shared part, applied to the module.
// register_batch_norm_state: the parameters and buffers above (undefined where the option is off).
void register_batch_norm_state(Module& m, int64_t num_features, const BatchNormOptions& o);
void reset_batch_norm_running_stats(Module& m, const BatchNormOptions& o);  // 0, 1, 0; no-op untracked
void reset_batch_norm_parameters(Module& m, const BatchNormOptions& o);     // and weight 1, bias 0
// What one forward hands to the functional batch norm. In training with tracking it first counts the
// batch (num_batches_tracked += 1), which momentum=None's cumulative average reads.
struct BatchNormStep {
  bool use_batch_stats;  // training, or no running statistics to use (PyTorch's bn_training)
  double momentum;       // the factor for this step's running-stat update
  Tensor running_mean, running_var;  // (C), undefined when the batch statistics are not tracked
};
BatchNormStep batch_norm_step(Module& m, const BatchNormOptions& o);
// "64, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True"
std::string batch_norm_repr(int64_t num_features, const BatchNormOptions& o);

class BatchNorm2d : public Cloneable<BatchNorm2d> {
 public:
  explicit BatchNorm2d(int64_t num_features, BatchNormOptions options = {});
  Tensor forward(const Tensor& x) override;  // (N, C, H, W)
  // "64, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True"
  std::string extra_repr() const override;
  void reset_running_stats();
  void reset_parameters();  // running stats reset, weight 1, bias 0

  int64_t num_features() const { return num_features_; }
  const BatchNormOptions& options() const { return options_; }
  const Tensor& weight() const { return param("weight"); }  // undefined without affine
  const Tensor& bias() const { return param("bias"); }
  const Tensor& running_mean() const { return buffer("running_mean"); }  // undefined without tracking
  const Tensor& running_var() const { return buffer("running_var"); }
  const Tensor& num_batches_tracked() const { return buffer("num_batches_tracked"); }

 private:
  int64_t num_features_;
  BatchNormOptions options_;
};

// ---- activations
class ReLU : public Cloneable<ReLU> {
 public:
  ReLU() : Cloneable("ReLU") {}
  Tensor forward(const Tensor& x) override { return relu(x); }
};

class LeakyReLU : public Cloneable<LeakyReLU> {
 public:
  explicit LeakyReLU(double negative_slope = 0.01) : Cloneable("LeakyReLU"), negative_slope_(negative_slope) {}
  Tensor forward(const Tensor& x) override { return leaky_relu(x, negative_slope_); }
  std::string extra_repr() const override { return "negative_slope=" + py_float(negative_slope_); }
  double negative_slope() const { return negative_slope_; }

 private:
  double negative_slope_;
};

class SiLU : public Cloneable<SiLU> {
 public:
  SiLU() : Cloneable("SiLU") {}
  Tensor forward(const Tensor& x) override { return silu(x); }
};

class Sigmoid : public Cloneable<Sigmoid> {
 public:
  Sigmoid() : Cloneable("Sigmoid") {}
  Tensor forward(const Tensor& x) override { return sigmoid(x); }
};

class Mish : public Cloneable<Mish> {  // x * tanh(softplus(x))
 public:
  Mish() : Cloneable("Mish") {}
  Tensor forward(const Tensor& x) override { return mish(x); }
};

class Hardswish : public Cloneable<Hardswish> {  // x * relu6(x + 3) / 6
 public:
  Hardswish() : Cloneable("Hardswish") {}
  Tensor forward(const Tensor& x) override { return hardswish(x); }
};

// ---- pooling. stride 0 means "the kernel size" (PyTorch's stride=None).
struct MaxPool2dOptions {
  Size2 stride = 0;
  Size2 padding = 0;
  Size2 dilation = 1;
  bool ceil_mode = false;
};

class MaxPool2d : public Cloneable<MaxPool2d> {
 public:
  explicit MaxPool2d(Size2 kernel_size, MaxPool2dOptions options = {});
  Tensor forward(const Tensor& x) override;  // (N, C, H, W)
  // "kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False"
  std::string extra_repr() const override;
  functional::Pool2dOptions functional_options() const;

 private:
  Size2 kernel_size_;
  MaxPool2dOptions options_;
};

struct AvgPool2dOptions {
  Size2 stride = 0;
  Size2 padding = 0;
  bool ceil_mode = false;
  bool count_include_pad = true;
};

class AvgPool2d : public Cloneable<AvgPool2d> {
 public:
  explicit AvgPool2d(Size2 kernel_size, AvgPool2dOptions options = {});
  Tensor forward(const Tensor& x) override;  // (N, C, H, W)
  std::string extra_repr() const override;   // "kernel_size=2, stride=2, padding=0"
  functional::Pool2dOptions functional_options() const;

 private:
  Size2 kernel_size_;
  AvgPool2dOptions options_;
};

class AdaptiveAvgPool2d : public Cloneable<AdaptiveAvgPool2d> {
 public:
  explicit AdaptiveAvgPool2d(Size2 output_size);
  Tensor forward(const Tensor& x) override;  // (N, C, H, W) -> (N, C, oh, ow)
  std::string extra_repr() const override;   // "output_size=(1, 1)"
  Size2 output_size() const { return output_size_; }

 private:
  Size2 output_size_;
};

// ---- Upsample: mode "nearest" only; exactly one of size and scale_factor.
struct UpsampleOptions {
  std::optional<Size2> size;
  std::optional<double> scale_factor;
  std::string mode = "nearest";
};

class Upsample : public Cloneable<Upsample> {
 public:
  explicit Upsample(UpsampleOptions options);
  Tensor forward(const Tensor& x) override;  // (N, C, H, W)
  std::string extra_repr() const override;   // "scale_factor=2.0, mode='nearest'"
  const UpsampleOptions& options() const { return options_; }

 private:
  UpsampleOptions options_;
};

// ---- Dropout: inverted dropout in training, identity in eval.
class Dropout : public Cloneable<Dropout> {
 public:
  explicit Dropout(double p = 0.5);
  Tensor forward(const Tensor& x) override { return functional::dropout(x, p_, is_training()); }
  std::string extra_repr() const override { return "p=" + py_float(p_) + ", inplace=False"; }
  double p() const { return p_; }

 private:
  double p_;
};

// ---- Flatten: flattens dims start_dim..end_dim.
class Flatten : public Cloneable<Flatten> {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1)
      : Cloneable("Flatten"), start_dim_(start_dim), end_dim_(end_dim) {}
  Tensor forward(const Tensor& x) override { return x.flatten(start_dim_, end_dim_); }
  std::string extra_repr() const override;  // "start_dim=1, end_dim=-1"

 private:
  int64_t start_dim_, end_dim_;
};

class Identity : public Cloneable<Identity> {
 public:
  Identity() : Cloneable("Identity") {}
  Tensor forward(const Tensor& x) override { return x; }
};

}  // namespace rg::nn
