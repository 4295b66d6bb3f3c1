// Darknet networks (YOLOv3, YOLOv3-tiny, YOLOv3-SPP, ...) built from a .cfg as an nn::Module tree whose
// state_dict names are ultralytics/yolov3's (archive branch): module_list.<i>.Conv2d.weight,
// module_list.<i>.BatchNorm2d.running_mean, ... so that its converted checkpoints load strictly.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/darknet_cfg.h"
#include "models/yolo_spec.h"
#include "nn/layers.h"
#include "nn/module.h"

namespace rg::models {

// Note [Darknet batch norm]
// The BatchNorm2d layers use ultralytics/yolov3's archive settings, momentum 0.03 and eps 1e-4,
// because its checkpoints are what users load into this model and it trained with them. Darknet itself
// normalises with eps 1e-5 inside the square root (AlexeyAB's CPU path, and cuDNN in both forks;
// pjreddie's CPU path adds 1e-6 to the square root instead) and keeps running averages with factor
// 0.01 (= momentum 0.01). The difference only shows on channels whose variance is near 1e-4; set
// DarknetOptions::bn_eps = 1e-5 to compare outputs with darknet's own.
struct DarknetOptions {
  std::optional<int64_t> num_classes;  // rewrite the heads for this many classes (set_num_classes)
  double bn_momentum = 0.03;
  double bn_eps = 1e-4;
  // Initialise each head convolution's bias as ultralytics' archive does (objectness -4.5, classes
  // log(0.6 / (C - 0.99))) so that training starts from near-zero confidences. Weights otherwise keep
  // PyTorch's default initialisation (Conv2d: kaiming_uniform_(a = sqrt 5); BN: weight 1, bias 0).
  bool head_bias_init = true;
};

// [convolutional]: children "Conv2d" (bias only without batch norm) and "BatchNorm2d", then the
// activation (no parameters, so not a child).
class DarknetConv : public nn::Cloneable<DarknetConv> {
 public:
  DarknetConv(int64_t in_channels, const DarknetLayer& l, const DarknetOptions& o);
  Tensor forward(const Tensor& x) override;  // (N, Cin, H, W) -> (N, filters, Ho, Wo)
  std::string extra_repr() const override;   // "activation=leaky"
  DarknetActivation activation() const { return activation_; }
  bool has_batch_norm() const { return batch_norm_; }

 private:
  DarknetActivation activation_;
  bool batch_norm_;
};

// [maxpool] with darknet's geometry: output (H + padding - size) / stride + 1, windows starting at
// -padding / 2, out-of-range cells ignored (so size 2 stride 1 keeps the size, padding on the
// right and bottom; size 5/9/13 stride 1 in SPP pad symmetrically).
class DarknetMaxPool : public nn::Cloneable<DarknetMaxPool> {
 public:
  DarknetMaxPool(int64_t size, int64_t stride, int64_t padding);
  Tensor forward(const Tensor& x) override;  // (N, C, H, W)
  std::string extra_repr() const override;   // "size=2, stride=1, padding=1"

 private:
  int64_t size_, stride_, padding_;
};

// [route], [shortcut] and [yolo] hold no tensors; Darknet::forward does their work (they read other
// layers' outputs). They are children so that module_list.<i> lines up with the cfg's layer index.
class DarknetRoute : public nn::Cloneable<DarknetRoute> {
 public:
  DarknetRoute(std::vector<int64_t> layers, int64_t groups, int64_t group_id);
  std::string extra_repr() const override;  // "layers=[79, 61]"

 private:
  std::vector<int64_t> layers_;
  int64_t groups_, group_id_;
};

class DarknetShortcut : public nn::Cloneable<DarknetShortcut> {
 public:
  DarknetShortcut(int64_t from, DarknetActivation activation);
  std::string extra_repr() const override;  // "from=71, activation=linear"

 private:
  int64_t from_;
  DarknetActivation activation_;
};

class YoloLayer : public nn::Cloneable<YoloLayer> {
 public:
  explicit YoloLayer(YoloHeadSpec spec);
  Tensor forward(const Tensor& x) override { return x; }  // raw: decoding belongs to the loss and decoder
  std::string extra_repr() const override;                 // "anchors=[(116, 90), ...], classes=80, stride=32"
  const YoloHeadSpec& spec() const { return spec_; }

 private:
  YoloHeadSpec spec_;
};

// darknet's activation on x (leaky: slope 0.1).
Tensor darknet_activation(const Tensor& x, DarknetActivation a);

class Darknet : public nn::Cloneable<Darknet> {
 public:
  explicit Darknet(DarknetCfg cfg, const DarknetOptions& options = {});

  // Note [YOLO forward layout]: (B, C_in, H, W) -> (B, sum_i A_i * H_i * W_i, 5 + C), raw. H and W
  // must be multiples of max_stride(). All heads must have the same number of classes.
  Tensor forward(const Tensor& x) override;
  // Each head's raw convolution output (B, A * (5 + C), H_i, W_i), in cfg order (Note [YOLO head layout]).
  std::vector<Tensor> forward_heads(const Tensor& x);
  // The same, calling `each_layer(i, output)` after every layer (layer tables, debugging, comparisons).
  using LayerCallback = std::function<void(int64_t index, const Tensor& output)>;
  std::vector<Tensor> forward_heads(const Tensor& x, const LayerCallback& each_layer);

  const DarknetCfg& cfg() const { return cfg_; }
  const std::vector<YoloHeadSpec>& heads() const { return cfg_.heads; }
  const DarknetNetConfig& net() const { return cfg_.net; }  // the training defaults of [net]
  const DarknetOptions& options() const { return options_; }
  int64_t num_layers() const { return static_cast<int64_t>(cfg_.layers.size()); }
  int64_t max_stride() const { return cfg_.max_stride(); }
  std::shared_ptr<nn::Module> layer(int64_t i) const;  // module_list.<i>
  std::vector<DarknetLayerInfo> layer_table(int64_t height, int64_t width) const {
    return darknet_layer_table(cfg_, height, width);
  }
  // Images seen in training, as darknet's .weights header keeps it.
  uint64_t seen() const { return seen_; }
  void set_seen(uint64_t s) { seen_ = s; }
  std::string extra_repr() const override;  // "cfg=yolov3.cfg, layers=107, heads=3, classes=80"

 private:
  void check_input(const Tensor& x) const;

  DarknetCfg cfg_;
  DarknetOptions options_;
  std::vector<bool> keep_;  // layer i's output is read again by a later route or shortcut
  uint64_t seen_ = 0;
};

// A Darknet from a cfg file or a shipped cfg's name ("yolov3-tiny.cfg": find_darknet_cfg).
std::shared_ptr<Darknet> darknet_from_cfg(const std::string& name_or_path, const DarknetOptions& options = {});

}  // namespace rg::models
