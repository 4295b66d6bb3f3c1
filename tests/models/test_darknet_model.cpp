// The Darknet module tree: the flat forward layout against the heads, every layer's real output shape,
// ultralytics' state_dict names, activations, darknet's maxpool padding, shortcut and route values,
// gradients, and the nn machinery (clone, train/eval, SyncBN conversion, DataParallel, DDP, autocast).
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <set>

#include "autograd/autocast.h"
#include "autograd/grad_mode.h"
#include "cfg_oracle.h"
#include "distributed/data_parallel.h"
#include "distributed/ddp.h"
#include "distributed/store.h"
#include "distributed/sync_batchnorm.h"
#include "models/darknet.h"
#include "models/yolo_head.h"
#include "nn/functional.h"
#include "nn/optim/sgd.h"
#include "test_util.h"

using namespace rg;
using namespace rg::models;
using rg::test::contains;
using rg::test::error_of;

namespace {

std::shared_ptr<Darknet> tiny(uint64_t seed = 1, DarknetOptions o = {}) {
  manual_seed(seed);
  return darknet_from_cfg("yolov3-tiny.cfg", o);
}

Tensor input(int64_t b, int64_t h, int64_t w, uint64_t seed = 7) {
  return test::uniform({b, 3, h, w}, 0.0, 1.0, DType::f32, seed);
}

double abs_sum(const Tensor& t) { return sum(abs(t)).item(); }

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  REQUIRE(va.size() == vb.size());
  double m = 0;
  for (size_t i = 0; i < va.size(); ++i) m = std::max(m, std::fabs(va[i] - vb[i]));
  return m;
}

std::shared_ptr<Darknet> from_text(const std::string& text, uint64_t seed = 3) {
  manual_seed(seed);
  return std::make_shared<Darknet>(parse_darknet_cfg(text, "test.cfg"));
}

}  // namespace

TEST_CASE("forward: (B, sum A*H*W, 5 + C) rows in head order, each row one cell's raw vector (Note [YOLO forward layout])") {
  auto m = tiny();
  m->eval();
  NoGradGuard ng;
  const Tensor x = input(2, 64, 96);
  const Tensor flat = m->forward(x);
  const std::vector<Tensor> raw = m->forward_heads(x);
  REQUIRE(raw.size() == 2);
  CHECK(raw[0].sizes() == Shape{2, 255, 2, 3});
  CHECK(raw[1].sizes() == Shape{2, 255, 4, 6});
  CHECK(flat.sizes() == Shape{2, 3 * 2 * 3 + 3 * 4 * 6, 85});
  // By index arithmetic: row = head offset + a*H*W + y*W + x, value k = raw[b, a*85 + k, y, x].
  const auto f = flat.to_vector<float>();
  int64_t offset = 0;
  for (size_t i = 0; i < raw.size(); ++i) {
    const auto r = raw[i].contiguous().to_vector<float>();
    const int64_t H = raw[i].size(2), W = raw[i].size(3);
    for (int64_t b = 0; b < 2; ++b) {
      for (int64_t a = 0; a < 3; ++a) {
        for (int64_t k : {0, 4, 5, 84}) {
          const int64_t y = (a + k) % H, xx = (a * 7 + k) % W;
          const float want = r[static_cast<size_t>(((b * 255 + a * 85 + k) * H + y) * W + xx)];
          const float got = f[static_cast<size_t>((b * flat.size(1) + offset + (a * H + y) * W + xx) * 85 + k)];
          CHECK(got == want);
        }
      }
    }
    offset += 3 * H * W;
  }
  // split_heads (models/yolo_head.h) cuts it back into the heads' (B, A, H, W, 5 + C) views.
  const auto parts = split_heads(flat, m->heads(), 64, 96);
  for (size_t i = 0; i < raw.size(); ++i) {
    const Tensor want = raw[i].view({2, 3, 85, raw[i].size(2), raw[i].size(3)}).permute({0, 1, 3, 4, 2});
    CHECK(max_abs_diff(parts[i], want) == 0.0);
  }
  // Inputs must be multiples of the largest stride; channels must match [net].
  CHECK(contains(error_of([&] { m->forward(input(1, 64, 80)); }),
                 "input height and width must be multiples of the network's largest stride 32, got 64x80"));
  CHECK(contains(error_of([&] { m->forward(zeros({1, 1, 64, 64})); }), "expected input (B, 3, H, W)"));
}

TEST_CASE("each layer's real output shape equals the layer table and the tests' formulas (yolov3, -tiny, -spp at 64; tiny at 416)") {
  struct Case {
    const char* name;
    int64_t size;
  };
  for (const Case c : {Case{"yolov3.cfg", 64}, Case{"yolov3-spp.cfg", 64}, Case{"yolov3-tiny.cfg", 64},
                       Case{"yolov3-tiny.cfg", 416}}) {
    CAPTURE(c.name);
    CAPTURE(c.size);
    manual_seed(1);
    auto m = darknet_from_cfg(c.name);
    m->eval();
    NoGradGuard ng;
    std::vector<Shape> seen;
    m->forward_heads(input(1, c.size, c.size), [&](int64_t, const Tensor& out) { seen.push_back(out.sizes()); });
    const auto table = m->layer_table(c.size, c.size);
    const auto oracle = test::oracle::layers(test::oracle::read_text(find_darknet_cfg(c.name)), c.size, c.size);
    REQUIRE(seen.size() == table.size());
    for (size_t i = 0; i < seen.size(); ++i) {
      CAPTURE(i);
      CHECK(seen[i] == Shape{1, table[i].out[0], table[i].out[1], table[i].out[2]});
      CHECK(seen[i] == Shape{1, oracle[i].c, oracle[i].h, oracle[i].w});
    }
  }
}

TEST_CASE("state_dict names are ultralytics/yolov3's (archive): module_list.<i>.Conv2d / .BatchNorm2d; BN momentum 0.03, eps 1e-4") {
  auto m = tiny();
  const auto oracle = test::oracle::layers(test::oracle::read_text(find_darknet_cfg("yolov3-tiny.cfg")), 416, 416);
  // The expected keys, from the cfg text: conv with BN five BN entries, conv without BN a bias.
  std::vector<std::string> want;
  for (size_t i = 0; i < oracle.size(); ++i) {
    if (oracle[i].type != "convolutional") continue;
    const std::string p = "module_list." + std::to_string(i) + ".";
    want.push_back(p + "Conv2d.weight");
    if (oracle[i].bn) {
      for (const char* k : {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}) {
        want.push_back(p + "BatchNorm2d." + k);
      }
    } else {
      want.push_back(p + "Conv2d.bias");
    }
  }
  const nn::StateDict sd = m->state_dict();
  std::vector<std::string> got;
  for (const auto& [k, t] : sd) got.push_back(k);
  CHECK(got == want);
  CHECK(nn::find(sd, "module_list.13.Conv2d.weight")->sizes() == Shape{256, 1024, 1, 1});
  CHECK(nn::find(sd, "module_list.22.Conv2d.bias")->sizes() == Shape{255});
  auto bn = m->layer(0)->child_as<nn::BatchNorm2d>("BatchNorm2d");
  CHECK(bn->options().eps == 1e-4);
  CHECK(bn->options().momentum == 0.03);

  // A checkpoint written under these names (as a converted .pt is) loads strictly, values included.
  nn::StateDict ext;
  uint64_t seed = 100;
  for (const auto& [k, t] : sd) {
    ext.emplace_back(k, t.dtype() == DType::i64 ? full(t.sizes(), 5.0, DType::i64)
                                                : test::uniform(t.sizes(), 0.5, 1.5, t.dtype(), ++seed));
  }
  auto fresh = tiny(9);
  fresh->load_state_dict(ext, /*strict=*/true);
  const nn::StateDict back = fresh->state_dict();
  for (size_t i = 0; i < back.size(); ++i) CHECK(max_abs_diff(back[i].second, ext[i].second) == 0.0);
}

TEST_CASE("the head convolutions start with ultralytics' objectness and class biases") {
  auto m = tiny(1, DarknetOptions{.num_classes = 4});
  auto fresh = [&](bool init) {
    manual_seed(1);
    return darknet_from_cfg("yolov3-tiny.cfg", DarknetOptions{.num_classes = 4, .head_bias_init = init});
  };
  const auto with = fresh(true)->layer(15)->child("Conv2d")->param("bias").to_vector<double>();
  const auto without = fresh(false)->layer(15)->child("Conv2d")->param("bias").to_vector<double>();
  REQUIRE(with.size() == 27);
  for (size_t a = 0; a < 3; ++a) {
    for (size_t k = 0; k < 9; ++k) {
      const double add = k < 4 ? 0.0 : k == 4 ? -4.5 : std::log(0.6 / (4 - 0.99));
      CHECK(with[a * 9 + k] == doctest::Approx(without[a * 9 + k] + add).epsilon(1e-6));
    }
  }
}

TEST_CASE("activations: leaky 0.1, linear, logistic, relu, mish and swish, by their formulas") {
  const std::pair<const char*, double (*)(double)> cases[] = {
      {"leaky", [](double v) { return v > 0 ? v : 0.1 * v; }},
      {"linear", [](double v) { return v; }},
      {"logistic", [](double v) { return 1.0 / (1.0 + std::exp(-v)); }},
      {"relu", [](double v) { return v > 0 ? v : 0.0; }},
      {"mish", [](double v) { return v * std::tanh(std::log1p(std::exp(v))); }},
      {"swish", [](double v) { return v / (1.0 + std::exp(-v)); }},
  };
  for (const auto& [name, fn] : cases) {
    CAPTURE(name);
    auto m = from_text(std::string("[net]\nwidth=4\nheight=4\nchannels=3\n[convolutional]\nfilters=5\nsize=3\npad=1\n"
                                   "activation=") + name + "\n");
    NoGradGuard ng;
    const Tensor x = test::uniform({2, 3, 4, 4}, -2.0, 2.0);
    auto conv = m->layer(0)->child_as<nn::Conv2d>("Conv2d");
    const auto pre = nn::functional::conv2d(x, conv->weight(), conv->bias(), conv->functional_options()).to_vector<double>();
    std::vector<double> want;
    for (double v : pre) want.push_back(fn(v));
    Tensor out;
    m->forward_heads(x, [&](int64_t, const Tensor& o) { out = o; });
    CHECK_VALUES(out.to_vector<double>(), want, 2e-6);
  }
}

TEST_CASE("maxpool as darknet: size 2 stride 1 keeps the size (padding right/bottom ignored, never a 0), SPP sizes, odd inputs") {
  NoGradGuard ng;
  // All negative, so a zero-padded pool (ultralytics' ZeroPad2d) would show zeros on the last row and column.
  const std::vector<double> v = {-5, -3, -8, -1, -6, -2, -9, -4, -7};  // 3 x 3
  const Tensor x = from_vector<float>(std::vector<float>(v.begin(), v.end()), {1, 1, 3, 3});
  DarknetMaxPool keep(2, 1, 1);
  // out[i][j] = max of x over rows i..i+1, cols j..j+1 inside the image.
  CHECK_VALUES(keep.forward(x).to_vector<double>(), (std::vector<double>{-1, -2, -2, -1, -2, -2, -4, -4, -7}), 0.0);
  DarknetMaxPool half(2, 2, 1);  // darknet's default padding size - 1: a 3x3 input gives 2x2
  const Tensor h = half.forward(x);
  CHECK(h.sizes() == Shape{1, 1, 2, 2});
  CHECK_VALUES(h.to_vector<double>(), (std::vector<double>{-1, -2, -4, -7}), 0.0);
  DarknetMaxPool spp(5, 1, 4);
  const Tensor s = spp.forward(x);
  CHECK(s.sizes() == Shape{1, 1, 3, 3});
  CHECK_VALUES(s.to_vector<double>(), std::vector<double>(9, -1.0), 0.0);
  // Gradients pass through the padding to the in-range maxima.
  const Tensor xg = x.detach().set_requires_grad(true);
  {
    EnableGradGuard on;
    keep.forward(xg).sum().backward();
  }
  CHECK_VALUES(xg.grad().to_vector<double>(), (std::vector<double>{0, 0, 0, 2, 0, 4, 0, 2, 1}), 0.0);
}

TEST_CASE("shortcut adds then activates; route concatenates and takes channel groups") {
  auto m = from_text(
      "[net]\nwidth=8\nheight=8\nchannels=3\n"
      "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=linear\n"  // 0
      "[convolutional]\nfilters=4\nsize=1\nactivation=linear\n"         // 1
      "[shortcut]\nfrom=-2\nactivation=leaky\n"                         // 2 = leaky(1 + 0)
      "[route]\nlayers=1, 0\n"                                          // 3 = cat(1, 0)
      "[route]\nlayers=2\ngroups=2\ngroup_id=1\n");                     // 4 = channels 2..3 of 2
  NoGradGuard ng;
  std::vector<Tensor> outs;
  m->forward_heads(test::uniform({2, 3, 8, 8}, -1, 1), [&](int64_t, const Tensor& o) { outs.push_back(o); });
  REQUIRE(outs.size() == 5);
  std::vector<double> want;
  const auto a = outs[1].to_vector<double>(), b = outs[0].to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i) want.push_back(a[i] + b[i] > 0 ? a[i] + b[i] : 0.1 * (a[i] + b[i]));
  CHECK_VALUES(outs[2].to_vector<double>(), want, 1e-6);
  CHECK(max_abs_diff(outs[3], cat({outs[1], outs[0]}, 1)) == 0.0);
  CHECK(outs[4].sizes() == Shape{2, 2, 8, 8});
  CHECK(max_abs_diff(outs[4], outs[2].narrow(1, 2, 2)) == 0.0);
}

TEST_CASE("gradcheck (f64) through conv + BN + every activation, shortcut, route groups, maxpool padding and upsample") {
  auto m = from_text(
      "[net]\nwidth=4\nheight=4\nchannels=2\n"
      "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\npad=1\nactivation=mish\n"  // 0
      "[maxpool]\nsize=2\nstride=1\n"                                                     // 1
      "[convolutional]\nfilters=4\nsize=1\nactivation=swish\n"                            // 2
      "[shortcut]\nfrom=-3\nactivation=leaky\n"                                           // 3
      "[maxpool]\nsize=2\nstride=2\n"                                                     // 4
      "[upsample]\nstride=2\n"                                                            // 5
      "[route]\nlayers=-1, 0\ngroups=2\ngroup_id=0\n"                                     // 6
      "[convolutional]\nfilters=3\nsize=1\nactivation=logistic\n"                         // 7
      "[convolutional]\nfilters=6\nsize=1\nactivation=linear\n"                           // 8
      "[yolo]\nanchors=1,1\nclasses=1\n");                                                // 9
  m->to(DType::f64);
  const Tensor x = test::uniform({2, 2, 4, 4}, -1.0, 1.0, DType::f64, 11).set_requires_grad(true);
  CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return m->forward(in[0]); }, {x});
}

TEST_CASE("backward reaches every parameter; clone, train/eval and to(dtype) behave as for any module") {
  auto m = tiny();
  const Tensor x = input(2, 64, 64);
  const Tensor loss = mul(square(m->forward(x)).mean(), 1e-3);
  loss.backward();
  for (const auto& [name, p] : m->named_parameters()) {
    CAPTURE(name);
    REQUIRE(p.grad().defined());
    CHECK(std::isfinite(abs_sum(p.grad())));
  }
  CHECK(abs_sum(m->layer(0)->child("Conv2d")->param("weight").grad()) > 0);

  m->eval();
  auto c = std::dynamic_pointer_cast<Darknet>(m->clone());
  REQUIRE(c);
  CHECK(!c->is_training());
  NoGradGuard ng;
  CHECK(max_abs_diff(c->forward(x), m->forward(x)) == 0.0);
  Tensor(c->layer(0)->child("Conv2d")->param("weight")).fill_(0.0);
  CHECK(abs_sum(m->layer(0)->child("Conv2d")->param("weight")) > 0);  // deep copy
  // Training mode normalises with batch statistics: a different output than eval's running statistics.
  auto t = tiny();
  const Tensor e = t->forward(x);  // training (the default)
  t->eval();
  CHECK(max_abs_diff(e, t->forward(x)) > 1e-3);
  t->to(DType::f64);
  CHECK(t->forward(x.to(DType::f64)).dtype() == DType::f64);
}

TEST_CASE("convert_sync_batchnorm swaps every BatchNorm2d, keeping names, tensors and outputs") {
  auto m = tiny();
  m->eval();
  NoGradGuard ng;
  const Tensor x = input(1, 64, 64);
  const Tensor before = m->forward(x);
  const nn::StateDict sd0 = m->state_dict();
  int64_t bn = 0;
  for (const auto& [n, mod] : m->named_modules()) bn += dynamic_cast<nn::BatchNorm2d*>(mod.get()) != nullptr;
  CHECK(bn == 11);
  dist::convert_sync_batchnorm(m);
  int64_t left = 0, sync = 0;
  for (const auto& [n, mod] : m->named_modules()) {
    left += dynamic_cast<nn::BatchNorm2d*>(mod.get()) != nullptr;
    sync += dynamic_cast<dist::SyncBatchNorm*>(mod.get()) != nullptr;
  }
  CHECK(left == 0);
  CHECK(sync == 11);
  const nn::StateDict sd1 = m->state_dict();
  REQUIRE(sd1.size() == sd0.size());
  for (size_t i = 0; i < sd0.size(); ++i) {
    CHECK(sd1[i].first == sd0[i].first);
    CHECK(sd1[i].second.is_same(sd0[i].second));
  }
  CHECK(max_abs_diff(m->forward(x), before) == 0.0);
}

TEST_CASE("DataParallel on 2 virtual CPU devices = a plain forward (eval), = per-chunk forwards (training BN)") {
  auto m = tiny();
  const Tensor x = input(4, 64, 64);
  {
    m->eval();
    NoGradGuard ng;
    const Tensor plain = m->forward(x);
    auto dp = std::make_shared<dist::DataParallel>(m, std::vector<Device>{kCPU, kCPU});
    const Tensor out = dp->forward(x);
    CHECK(out.sizes() == plain.sizes());
    CHECK(max_abs_diff(out, plain) <= 1e-5);
  }
  // Training: each replica normalises its own chunk with its own batch statistics, as PyTorch's DP.
  auto a = tiny(), b = std::dynamic_pointer_cast<Darknet>(a->clone()), c = std::dynamic_pointer_cast<Darknet>(a->clone());
  const Tensor want = cat({b->forward(x.narrow(0, 0, 2)), c->forward(x.narrow(0, 2, 2))}, 0);
  auto dp = std::make_shared<dist::DataParallel>(a, std::vector<Device>{kCPU, kCPU});
  const Tensor got = dp->forward(x);
  CHECK(max_abs_diff(got, want) <= 1e-5);
  // And the gradient comes back to the master's parameters.
  mul(square(got).mean(), 1e-3).backward();
  CHECK(a->layer(0)->child("Conv2d")->param("weight").grad().defined());
}

TEST_CASE("DDP (world size 1, ring) with SyncBatchNorm: an SGD step equals the plain model's") {
  auto store = std::make_shared<dist::TCPStore>("127.0.0.1", 0, true, std::chrono::milliseconds(5000));
  auto pg = dist::make_process_group("ring", store, 0, 1, kCPU);
  auto plain = tiny(), wrapped_model = std::dynamic_pointer_cast<Darknet>(plain->clone());
  dist::convert_sync_batchnorm(wrapped_model, pg);
  auto ddp = std::make_shared<dist::DistributedDataParallel>(wrapped_model, dist::DDPOptions{.process_group = pg});
  const Tensor x = input(2, 64, 64);
  optim::SGD o1(plain->parameters(), optim::SGDOptions{.lr = 0.1});
  optim::SGD o2(ddp->parameters(), optim::SGDOptions{.lr = 0.1});
  mul(square(plain->forward(x)).mean(), 1e-3).backward();
  mul(square(ddp->forward(x)).mean(), 1e-3).backward();
  o1.step();
  o2.step();
  const auto p1 = plain->state_dict(), p2 = wrapped_model->state_dict();
  REQUIRE(p1.size() == p2.size());
  double worst = 0;
  for (size_t i = 0; i < p1.size(); ++i) worst = std::max(worst, max_abs_diff(p1[i].second, p2[i].second));
  CHECK(worst <= 1e-6);
  CHECK(ddp->named_parameters().front().first == "module.module_list.0.Conv2d.weight");
}

TEST_CASE("autocast (bf16 on the CPU): the forward runs in bf16 and stays close to f32") {
  auto m = tiny();
  m->eval();
  NoGradGuard ng;
  const Tensor x = input(1, 64, 64);
  const Tensor ref = m->forward(x);
  Tensor low;
  {
    amp::AutocastGuard ac(DType::bf16);
    low = m->forward(x);
  }
  CHECK(low.dtype() == DType::bf16);
  const double scale = max(abs(ref)).item();
  CHECK(max_abs_diff(low.to(DType::f32), ref) <= 0.1 * scale);
}
