// ResNet: torchvision's exact parameter and buffer names, parameter counts and shapes, its
// initialisation, output shapes, and a tiny ResNet whose loss falls under plain SGD.
#include <set>

#include "autograd/grad_mode.h"
#include "models/resnet.h"
#include "nn/functional.h"
#include "nn_util.h"

using namespace rg;
using namespace rg::models;
using namespace rg::nntest;

namespace {

int64_t count_params(const nn::Module& m) {
  int64_t n = 0;
  for (const auto& [k, p] : m.named_parameters()) n += p.numel();
  return n;
}

Shape shape_of(const nn::StateDict& sd, const std::string& key) {
  const Tensor* t = nn::find(sd, key);
  REQUIRE_MESSAGE(t != nullptr, "missing key ", key);
  return t->sizes();
}

}  // namespace

TEST_CASE("resnet18: torchvision's names, order, shapes and 11,689,512 parameters") {
  auto m = resnet18();
  CHECK(count_params(*m) == 11689512);
  const auto sd = m->state_dict();
  CHECK(sd.size() == 122);  // 62 parameters + 20 BN layers x 3 buffers
  CHECK(m->named_parameters().size() == 62);
  // the first and last entries, in torchvision's order
  const std::vector<std::string> head{"conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                                      "bn1.running_var", "bn1.num_batches_tracked", "layer1.0.conv1.weight",
                                      "layer1.0.bn1.weight"};
  for (size_t i = 0; i < head.size(); ++i) CHECK(sd[i].first == head[i]);
  CHECK(sd[sd.size() - 2].first == "fc.weight");
  CHECK(sd.back().first == "fc.bias");
  CHECK(shape_of(sd, "conv1.weight") == Shape{64, 3, 7, 7});
  CHECK(shape_of(sd, "layer1.0.conv1.weight") == Shape{64, 64, 3, 3});
  CHECK(shape_of(sd, "layer1.1.bn2.running_var") == Shape{64});
  CHECK(shape_of(sd, "layer2.0.conv1.weight") == Shape{128, 64, 3, 3});
  CHECK(shape_of(sd, "layer2.0.downsample.0.weight") == Shape{128, 64, 1, 1});
  CHECK(shape_of(sd, "layer2.0.downsample.1.running_var") == Shape{128});
  CHECK(shape_of(sd, "layer4.1.conv2.weight") == Shape{512, 512, 3, 3});
  CHECK(shape_of(sd, "fc.weight") == Shape{1000, 512});
  CHECK(shape_of(sd, "fc.bias") == Shape{1000});
  CHECK(shape_of(sd, "layer3.0.downsample.1.num_batches_tracked") == Shape{});
  CHECK(nn::find(sd, "layer1.0.downsample.0.weight") == nullptr);  // 64 -> 64, stride 1: no downsample
  CHECK(nn::find(sd, "layer1.0.conv3.weight") == nullptr);

  // torchvision's block layout
  auto block = m->child("layer2")->child_as<BasicBlock>("0");
  std::vector<std::string> names;
  for (auto& [k, c] : block->named_children()) names.push_back(k);
  CHECK(names == std::vector<std::string>{"conv1", "bn1", "relu", "conv2", "bn2", "downsample"});
  CHECK(block->child_as<nn::Conv2d>("conv1")->options().stride == nn::Size2(2));
  CHECK(m->child_as<nn::Conv2d>("conv1")->extra_repr() ==
        "3, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False");
  CHECK(m->child("maxpool")->extra_repr() == "kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False");
  CHECK(m->child("avgpool")->extra_repr() == "output_size=(1, 1)");
  names.clear();
  for (auto& [k, c] : m->named_children()) names.push_back(k);
  CHECK(names == std::vector<std::string>{"conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4",
                                          "avgpool", "fc"});
}

TEST_CASE("resnet34 and resnet50: parameter counts; Bottleneck v1.5 names and strides") {
  CHECK(count_params(*resnet34()) == 21797672);
  auto m = resnet50();
  CHECK(count_params(*m) == 25557032);
  const auto sd = m->state_dict();
  CHECK(m->named_parameters().size() == 161);
  CHECK(sd.size() == 320);  // 161 parameters + 53 BN layers x 3 buffers
  CHECK(shape_of(sd, "layer1.0.conv1.weight") == Shape{64, 64, 1, 1});
  CHECK(shape_of(sd, "layer1.0.conv2.weight") == Shape{64, 64, 3, 3});
  CHECK(shape_of(sd, "layer1.0.conv3.weight") == Shape{256, 64, 1, 1});
  CHECK(shape_of(sd, "layer1.0.bn3.running_mean") == Shape{256});
  CHECK(shape_of(sd, "layer1.0.downsample.0.weight") == Shape{256, 64, 1, 1});
  CHECK(shape_of(sd, "layer2.0.conv1.weight") == Shape{128, 256, 1, 1});
  CHECK(shape_of(sd, "layer2.0.downsample.1.running_var") == Shape{512});
  CHECK(shape_of(sd, "layer3.5.conv3.weight") == Shape{1024, 256, 1, 1});
  CHECK(shape_of(sd, "layer4.2.bn3.bias") == Shape{2048});
  CHECK(shape_of(sd, "fc.weight") == Shape{1000, 2048});
  CHECK(nn::find(sd, "layer1.1.downsample.0.weight") == nullptr);
  CHECK(nn::find(sd, "layer3.6.conv1.weight") == nullptr);  // [3, 4, 6, 3]: layer3 has 0..5

  auto block = m->child("layer3")->child_as<Bottleneck>("0");
  std::vector<std::string> names;
  for (auto& [k, c] : block->named_children()) names.push_back(k);
  CHECK(names == std::vector<std::string>{"conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "relu", "downsample"});
  // v1.5: the stride is on the 3x3 conv2, not on conv1
  CHECK(block->child_as<nn::Conv2d>("conv1")->options().stride == nn::Size2(1));
  CHECK(block->child_as<nn::Conv2d>("conv2")->options().stride == nn::Size2(2));
  CHECK(block->child("downsample")->child_as<nn::Conv2d>("0")->options().stride == nn::Size2(2));
}

TEST_CASE("ResNet options: num_classes, in_channels, small_input, and torchvision's initialisation") {
  auto m = resnet18({.num_classes = 10, .in_channels = 1, .zero_init_residual = true});
  const auto sd = m->state_dict();
  CHECK(shape_of(sd, "conv1.weight") == Shape{64, 1, 7, 7});
  CHECK(shape_of(sd, "fc.weight") == Shape{10, 512});
  // convs: kaiming_normal_(fan_out, relu); layer4.0.conv2: fan_out = 512 * 9
  auto [mean, sd4] = mean_std(*nn::find(sd, "layer4.0.conv2.weight"));
  CHECK(std::fabs(mean) < 1e-3);
  CHECK(sd4 == doctest::Approx(std::sqrt(2.0 / (512 * 9))).epsilon(0.02));
  auto [m1, s1] = mean_std(*nn::find(sd, "layer1.0.conv1.weight"));  // fan_out = 64 * 9
  CHECK(s1 == doctest::Approx(std::sqrt(2.0 / (64 * 9))).epsilon(0.03));
  // BN weight 1 and bias 0, except the zero-initialised last BN of each block
  CHECK(vals(*nn::find(sd, "bn1.weight")) == std::vector<double>(64, 1.0));
  CHECK(vals(*nn::find(sd, "layer1.0.bn1.weight")) == std::vector<double>(64, 1.0));
  CHECK(vals(*nn::find(sd, "layer1.0.bn2.weight")) == std::vector<double>(64, 0.0));
  CHECK(vals(*nn::find(sd, "layer3.1.bn2.weight")) == std::vector<double>(256, 0.0));
  CHECK(vals(*nn::find(sd, "layer2.0.downsample.1.weight")) == std::vector<double>(128, 1.0));
  CHECK(vals(*nn::find(sd, "layer2.0.bn2.bias")) == std::vector<double>(128, 0.0));
  // fc keeps Linear's default: U(+-1/sqrt(512))
  for (double v : vals(*nn::find(sd, "fc.weight"))) REQUIRE(std::fabs(v) <= 1.0 / std::sqrt(512.0));

  auto r50 = resnet50({.num_classes = 7, .zero_init_residual = true});
  CHECK(vals(r50->child("layer2")->child("1")->child_as<nn::BatchNorm2d>("bn3")->weight()) ==
        std::vector<double>(512, 0.0));
  CHECK(vals(r50->child("layer2")->child("1")->child_as<nn::BatchNorm2d>("bn2")->weight()) ==
        std::vector<double>(128, 1.0));

  auto small = resnet18({.num_classes = 10, .small_input = true});
  CHECK(small->child_as<nn::Conv2d>("conv1")->extra_repr() ==
        "3, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False");
  CHECK(small->child("maxpool")->type_name() == "Identity");
  CHECK(count_params(*small) == 11689512 - 64 * 3 * 49 + 64 * 3 * 9 - 990 * 513);
  CHECK_THROWS_AS(ResNet(ResNetBlock::Basic, {2, 0, 2, 2}), Error);
}

TEST_CASE("ResNet forward: output shapes for ImageNet-style and small inputs") {
  manual_seed(5);
  auto m = resnet18({.num_classes = 10});
  m->eval();
  Tensor x = values({2, 3, 64, 64}, -1, 1, 7);
  Tensor y = (*m)(x);
  CHECK(y.sizes() == Shape{2, 10});
  CHECK(m->features(x).sizes() == Shape{2, 512});
  for (double v : vals(y)) REQUIRE(std::isfinite(v));

  auto r50 = resnet50({.num_classes = 5});
  r50->eval();
  Tensor y50 = (*r50)(values({1, 3, 64, 64}, -1, 1, 8));
  CHECK(y50.sizes() == Shape{1, 5});
  CHECK(r50->feature_dim() == 2048);

  auto small = resnet18({.num_classes = 10, .in_channels = 1, .small_input = true, .base_planes = 8});
  small->train();
  Tensor ys = (*small)(values({3, 1, 32, 32}, -1, 1, 9));
  CHECK(ys.sizes() == Shape{3, 10});
  CHECK(small->feature_dim() == 64);
  // a deep copy computes the same function
  small->eval();
  auto copy = small->clone();
  Tensor xs = values({2, 1, 32, 32}, -1, 1, 10);
  CHECK(vals((*copy)(xs)) == vals((*small)(xs)));
}

TEST_CASE("a tiny ResNet trained with plain SGD on random data: the loss falls") {
  manual_seed(123);
  auto m = std::make_shared<ResNet>(ResNetBlock::Basic, std::array<int64_t, 4>{1, 1, 1, 1},
                                    ResNetOptions{.num_classes = 4, .small_input = true, .base_planes = 8});
  m->train();
  Tensor x = values({8, 3, 16, 16}, -1, 1, 11);
  Tensor target = from_vector<int64_t>({0, 1, 2, 3, 3, 2, 1, 0});
  const auto params = m->parameters();
  std::vector<double> losses;
  for (int step = 0; step < 12; ++step) {
    m->zero_grad();
    Tensor loss = nn::functional::cross_entropy((*m)(x), target);
    losses.push_back(loss.item());
    loss.backward();
    NoGradGuard ng;
    for (const Tensor& p : params) {
      REQUIRE(p.grad().defined());
      native::binary_(BinaryOp::Add, p, p.grad(), -0.05);  // p += -0.05 grad
    }
  }
  std::string trace;
  for (double l : losses) trace += std::to_string(l) + " ";
  CAPTURE(trace);
  CHECK(losses.front() == doctest::Approx(std::log(4.0)).epsilon(0.5));
  CHECK(losses.back() < 0.5 * losses.front());
  for (double l : losses) CHECK(std::isfinite(l));
  // the running statistics moved and were counted
  auto bn = m->child_as<nn::BatchNorm2d>("bn1");
  CHECK(bn->num_batches_tracked().item() == 12);
}
