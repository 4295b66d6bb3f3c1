// ResNet as torchvision builds it: BasicBlock/Bottleneck residual blocks in four stages, the
// same registration order and names, and torchvision's weight initialisation.
#include "models/resnet.h"

#include "nn/init.h"

namespace rg::models {

using nn::BatchNorm2d;
using nn::Conv2d;
using nn::Conv2dOptions;

namespace {
std::shared_ptr<Conv2d> conv3x3(int64_t in, int64_t out, int64_t stride = 1, int64_t groups = 1) {
  return std::make_shared<Conv2d>(in, out, 3,
                                  Conv2dOptions{.stride = stride, .padding = 1, .groups = groups, .bias = false});
}
std::shared_ptr<Conv2d> conv1x1(int64_t in, int64_t out, int64_t stride = 1) {
  return std::make_shared<Conv2d>(in, out, 1, Conv2dOptions{.stride = stride, .bias = false});
}
// The block's "downsample" child, or null when the shortcut is the identity.
nn::Module* find_downsample(const nn::Module& block) {
  for (const auto& [name, m] : block.named_children()) {
    if (name == "downsample") return m.get();
  }
  return nullptr;
}
}  // namespace

// ---- BasicBlock
BasicBlock::BasicBlock(int64_t inplanes, int64_t planes, int64_t stride, std::shared_ptr<nn::Module> downsample,
                       int64_t groups, int64_t base_width)
    : Cloneable("BasicBlock") {
  RG_CHECK(groups == 1 && base_width == 64, "BasicBlock only supports groups=1 and base_width=64, got groups=",
           groups, " base_width=", base_width);
  register_module("conv1", conv3x3(inplanes, planes, stride));
  register_module("bn1", std::make_shared<BatchNorm2d>(planes));
  register_module("relu", std::make_shared<nn::ReLU>());
  register_module("conv2", conv3x3(planes, planes));
  register_module("bn2", std::make_shared<BatchNorm2d>(planes));
  if (downsample) register_module("downsample", std::move(downsample));
}

Tensor BasicBlock::forward(const Tensor& x) {
  Tensor out = child("conv1")->forward(x);
  out = child("bn1")->forward(out);
  out = relu(out);
  out = child("conv2")->forward(out);
  out = child("bn2")->forward(out);
  nn::Module* ds = find_downsample(*this);
  const Tensor identity = ds ? ds->forward(x) : x;
  return relu(add(out, identity));
}

// ---- Bottleneck
Bottleneck::Bottleneck(int64_t inplanes, int64_t planes, int64_t stride, std::shared_ptr<nn::Module> downsample,
                       int64_t groups, int64_t base_width)
    : Cloneable("Bottleneck") {
  const int64_t width = static_cast<int64_t>(static_cast<double>(planes) * (static_cast<double>(base_width) / 64.0)) *
                        groups;
  register_module("conv1", conv1x1(inplanes, width));
  register_module("bn1", std::make_shared<BatchNorm2d>(width));
  register_module("conv2", conv3x3(width, width, stride, groups));
  register_module("bn2", std::make_shared<BatchNorm2d>(width));
  register_module("conv3", conv1x1(width, planes * kExpansion));
  register_module("bn3", std::make_shared<BatchNorm2d>(planes * kExpansion));
  register_module("relu", std::make_shared<nn::ReLU>());
  if (downsample) register_module("downsample", std::move(downsample));
}

Tensor Bottleneck::forward(const Tensor& x) {
  Tensor out = relu(child("bn1")->forward(child("conv1")->forward(x)));
  out = relu(child("bn2")->forward(child("conv2")->forward(out)));
  out = child("bn3")->forward(child("conv3")->forward(out));
  nn::Module* ds = find_downsample(*this);
  const Tensor identity = ds ? ds->forward(x) : x;
  return relu(add(out, identity));
}

// ---- ResNet
ResNet::ResNet(ResNetBlock block, std::array<int64_t, 4> layers, const ResNetOptions& options)
    : Cloneable("ResNet"), block_(block), options_(options) {
  const ResNetOptions& o = options_;
  RG_CHECK(o.num_classes > 0 && o.in_channels > 0 && o.base_planes > 0, "ResNet: num_classes (", o.num_classes,
           "), in_channels (", o.in_channels, ") and base_planes (", o.base_planes, ") must be positive");
  for (int64_t n : layers) RG_CHECK(n > 0, "ResNet: every stage needs at least one block");
  inplanes_ = o.base_planes;
  if (o.small_input) {
    register_module("conv1", std::make_shared<Conv2d>(o.in_channels, inplanes_, 3,
                                                      Conv2dOptions{.stride = 1, .padding = 1, .bias = false}));
  } else {
    register_module("conv1", std::make_shared<Conv2d>(o.in_channels, inplanes_, 7,
                                                      Conv2dOptions{.stride = 2, .padding = 3, .bias = false}));
  }
  register_module("bn1", std::make_shared<BatchNorm2d>(inplanes_));
  register_module("relu", std::make_shared<nn::ReLU>());
  if (o.small_input) {
    register_module("maxpool", std::make_shared<nn::Identity>());
  } else {
    register_module("maxpool", std::make_shared<nn::MaxPool2d>(3, nn::MaxPool2dOptions{.stride = 2, .padding = 1}));
  }
  register_module("layer1", make_layer(o.base_planes, layers[0], 1));
  register_module("layer2", make_layer(o.base_planes * 2, layers[1], 2));
  register_module("layer3", make_layer(o.base_planes * 4, layers[2], 2));
  register_module("layer4", make_layer(o.base_planes * 8, layers[3], 2));
  register_module("avgpool", std::make_shared<nn::AdaptiveAvgPool2d>(nn::Size2(1, 1)));
  feature_dim_ = inplanes_;
  register_module("fc", std::make_shared<nn::Linear>(feature_dim_, o.num_classes));

  // torchvision's initialisation: convs kaiming_normal_(fan_out, relu); BN weight 1, bias 0
  // (their defaults); fc keeps Linear's default. (apply, not named_modules: no shared_from_this
  // inside a constructor.)
  apply([](nn::Module& m) {
    if (auto* conv = dynamic_cast<Conv2d*>(&m)) {
      nn::init::kaiming_normal_(conv->weight(), 0.0, "fan_out", "relu");
    } else if (auto* bn = dynamic_cast<BatchNorm2d*>(&m)) {
      nn::init::ones_(bn->weight());
      nn::init::zeros_(bn->bias());
    }
  });
  if (o.zero_init_residual) {
    apply([](nn::Module& m) {
      if (dynamic_cast<Bottleneck*>(&m)) {
        nn::init::zeros_(m.child_as<BatchNorm2d>("bn3")->weight());
      } else if (dynamic_cast<BasicBlock*>(&m)) {
        nn::init::zeros_(m.child_as<BatchNorm2d>("bn2")->weight());
      }
    });
  }
}

std::shared_ptr<nn::Sequential> ResNet::make_layer(int64_t planes, int64_t blocks, int64_t stride) {
  const int64_t expansion = block_ == ResNetBlock::Basic ? BasicBlock::kExpansion : Bottleneck::kExpansion;
  auto make_block = [&](int64_t inplanes, int64_t s, std::shared_ptr<nn::Module> ds) -> std::shared_ptr<nn::Module> {
    if (block_ == ResNetBlock::Basic) {
      return std::make_shared<BasicBlock>(inplanes, planes, s, std::move(ds), options_.groups,
                                          options_.width_per_group);
    }
    return std::make_shared<Bottleneck>(inplanes, planes, s, std::move(ds), options_.groups,
                                        options_.width_per_group);
  };
  std::shared_ptr<nn::Module> downsample;
  if (stride != 1 || inplanes_ != planes * expansion) {
    auto ds = std::make_shared<nn::Sequential>();
    ds->push_back(conv1x1(inplanes_, planes * expansion, stride));
    ds->push_back(std::make_shared<BatchNorm2d>(planes * expansion));
    downsample = ds;
  }
  auto layer = std::make_shared<nn::Sequential>();
  layer->push_back(make_block(inplanes_, stride, downsample));
  inplanes_ = planes * expansion;
  for (int64_t i = 1; i < blocks; ++i) layer->push_back(make_block(inplanes_, 1, nullptr));
  return layer;
}

Tensor ResNet::features(const Tensor& x) {
  Tensor h = child("conv1")->forward(x);
  h = child("bn1")->forward(h);
  h = relu(h);
  h = child("maxpool")->forward(h);
  for (const char* name : {"layer1", "layer2", "layer3", "layer4"}) h = child(name)->forward(h);
  h = child("avgpool")->forward(h);
  return h.flatten(1);
}

Tensor ResNet::forward(const Tensor& x) { return child("fc")->forward(features(x)); }

std::shared_ptr<ResNet> resnet18(const ResNetOptions& o) {
  return std::make_shared<ResNet>(ResNetBlock::Basic, std::array<int64_t, 4>{2, 2, 2, 2}, o);
}
std::shared_ptr<ResNet> resnet34(const ResNetOptions& o) {
  return std::make_shared<ResNet>(ResNetBlock::Basic, std::array<int64_t, 4>{3, 4, 6, 3}, o);
}
std::shared_ptr<ResNet> resnet50(const ResNetOptions& o) {
  return std::make_shared<ResNet>(ResNetBlock::Bottleneck, std::array<int64_t, 4>{3, 4, 6, 3}, o);
}
std::shared_ptr<ResNet> resnet101(const ResNetOptions& o) {
  return std::make_shared<ResNet>(ResNetBlock::Bottleneck, std::array<int64_t, 4>{3, 4, 23, 3}, o);
}
std::shared_ptr<ResNet> resnet152(const ResNetOptions& o) {
  return std::make_shared<ResNet>(ResNetBlock::Bottleneck, std::array<int64_t, 4>{3, 8, 36, 3}, o);
}

}  // namespace rg::models
