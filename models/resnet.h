// ResNet-18/34/50 (and 101/152) with torchvision's structure, module names and initialisation,
// so state dicts are interchangeable with torchvision's; plus a small-input stem for 32x32 data.
#pragma once

#include <array>
#include <cstdint>
#include <memory>

#include "nn/layers.h"
#include "nn/module.h"

namespace rg::models {

struct ResNetOptions {
  int64_t num_classes = 1000;
  int64_t in_channels = 3;
  // torchvision's zero_init_residual: the last BN of each block starts at weight 0, so every
  // residual branch starts as the identity.
  bool zero_init_residual = false;
  int64_t groups = 1;            // ResNeXt-style grouped 3x3 convs in Bottleneck (torchvision's groups)
  int64_t width_per_group = 64;  // torchvision's width_per_group (Bottleneck width = planes * this / 64 * groups)
  // Deviations from torchvision, for small data and CPU tests (names are unchanged):
  // small_input: conv1 is 3x3 stride 1 padding 1 and maxpool is an Identity, for 32x32 images.
  bool small_input = false;
  // Planes of layer1 (doubling in each later stage); torchvision's is 64. Smaller values make tiny
  // ResNets for tests.
  int64_t base_planes = 64;
};

// BasicBlock (expansion 1): conv1 (3x3, stride), bn1, relu, conv2 (3x3), bn2, [downsample].
class BasicBlock : public nn::Cloneable<BasicBlock> {
 public:
  static constexpr int64_t kExpansion = 1;
  BasicBlock(int64_t inplanes, int64_t planes, int64_t stride, std::shared_ptr<nn::Module> downsample,
             int64_t groups = 1, int64_t base_width = 64);
  Tensor forward(const Tensor& x) override;  // (N, inplanes, H, W) -> (N, planes, H/stride, W/stride)
};

// Bottleneck (expansion 4, torchvision's v1.5: the stride is on conv2): conv1 (1x1), bn1,
// conv2 (3x3, stride, groups), bn2, conv3 (1x1), bn3, relu, [downsample].
class Bottleneck : public nn::Cloneable<Bottleneck> {
 public:
  static constexpr int64_t kExpansion = 4;
  Bottleneck(int64_t inplanes, int64_t planes, int64_t stride, std::shared_ptr<nn::Module> downsample,
             int64_t groups = 1, int64_t base_width = 64);
  Tensor forward(const Tensor& x) override;  // (N, inplanes, H, W) -> (N, 4 planes, H/stride, W/stride)
};

enum class ResNetBlock { Basic, Bottleneck };

// conv1, bn1, relu, maxpool, layer1..layer4 (Sequentials of blocks "0", "1", ...), avgpool, fc.
class ResNet : public nn::Cloneable<ResNet> {
 public:
  ResNet(ResNetBlock block, std::array<int64_t, 4> layers, const ResNetOptions& options = {});
  Tensor forward(const Tensor& x) override;  // (N, in_channels, H, W) -> (N, num_classes) logits
  // Everything up to and including avgpool, flattened: (N, in_channels, H, W) -> (N, feature_dim).
  Tensor features(const Tensor& x);
  int64_t feature_dim() const { return feature_dim_; }
  const ResNetOptions& options() const { return options_; }

 private:
  std::shared_ptr<nn::Sequential> make_layer(int64_t planes, int64_t blocks, int64_t stride);

  ResNetBlock block_;
  ResNetOptions options_;
  int64_t inplanes_ = 0;  // only used while building
  int64_t feature_dim_ = 0;
};

std::shared_ptr<ResNet> resnet18(const ResNetOptions& options = {});   // BasicBlock [2, 2, 2, 2]
std::shared_ptr<ResNet> resnet34(const ResNetOptions& options = {});   // BasicBlock [3, 4, 6, 3]
std::shared_ptr<ResNet> resnet50(const ResNetOptions& options = {});   // Bottleneck [3, 4, 6, 3]
std::shared_ptr<ResNet> resnet101(const ResNetOptions& options = {});  // Bottleneck [3, 4, 23, 3]
std::shared_ptr<ResNet> resnet152(const ResNetOptions& options = {});  // Bottleneck [3, 8, 36, 3]

}  // namespace rg::models
