// ModelEMA: the averaging formula over parameters (constant and ramped decay), buffers copied,
// the average's own settings (eval mode, no gradients), and a state_dict round trip.
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "autograd/grad_mode.h"
#include "nn/checkpoint.h"
#include "nn/optim/ema.h"
#include "nn_util.h"

using namespace rg;
using namespace rg::nntest;

namespace {

class Tiny : public nn::Cloneable<Tiny> {
 public:
  Tiny() : Cloneable("Tiny") {
    register_parameter("w", from_vector<double>({1.0, 2.0, 3.0}, {3}, DType::f32));
    register_parameter("v", from_vector<double>({-1.0}, {1}, DType::f64));
    register_buffer("running", from_vector<double>({0.5, 0.5}, {2}, DType::f32));
    register_buffer("count", zeros({}, DType::i64));
  }
};

void set(const Tensor& t, const std::vector<double>& v) {
  NoGradGuard ng;
  native::copy_(t, from_vector<double>(v, t.sizes()));
}

}  // namespace

TEST_CASE("ModelEMA: constant decay averages parameters and copies buffers") {
  Tiny model;
  optim::ModelEMA ema(model, optim::EMAOptions{.decay = 0.75, .tau = 0.0});
  const auto m = ema.module();
  CHECK(!m->is_training());
  CHECK(!m->param("w").requires_grad());
  CHECK(!m->param("w").is_same(model.param("w")));  // a deep copy
  std::vector<double> ew = {1.0, 2.0, 3.0}, ev = {-1.0};
  const std::vector<std::vector<double>> ws = {{2.0, 2.0, 2.0}, {0.0, 4.0, -4.0}, {1.0, 1.0, 1.0}};
  for (size_t k = 0; k < ws.size(); ++k) {
    set(model.param("w"), ws[k]);
    set(model.param("v"), {static_cast<double>(k)});
    set(model.buffer("running"), {static_cast<double>(k), -static_cast<double>(k)});
    set(model.buffer("count"), {static_cast<double>(k + 10)});
    ema.update(model);
    for (size_t i = 0; i < 3; ++i) ew[i] = 0.75 * ew[i] + 0.25 * ws[k][i];
    ev[0] = 0.75 * ev[0] + 0.25 * static_cast<double>(k);
    CHECK_VALUES(vals(m->param("w")), ew, 1e-6);
    CHECK_VALUES(vals(m->param("v")), ev, 1e-14);
    CHECK_VALUES(vals(m->buffer("running")), (std::vector<double>{static_cast<double>(k), -static_cast<double>(k)}), 0.0);
    CHECK(m->buffer("count").item() == static_cast<double>(k + 10));
  }
  CHECK(ema.updates() == 3);
}

TEST_CASE("ModelEMA: ramped decay d(u) = decay (1 - exp(-u / tau))") {
  Tiny model;
  optim::ModelEMA ema(model, optim::EMAOptions{.decay = 0.9999, .tau = 2000.0});
  CHECK(ema.decay_at(1) == doctest::Approx(0.9999 * (1 - std::exp(-1.0 / 2000))));
  CHECK(ema.decay_at(100000) == doctest::Approx(0.9999 * (1 - std::exp(-50.0))));
  double e = 1.0;
  for (int u = 1; u <= 3; ++u) {
    set(model.param("w"), {5.0, 5.0, 5.0});
    ema.update(model);
    const double d = 0.9999 * (1 - std::exp(-static_cast<double>(u) / 2000));
    e = d * e + (1 - d) * 5.0;
  }
  CHECK(vals(ema.module()->param("w"))[0] == doctest::Approx(e).epsilon(1e-6));
}

TEST_CASE("ModelEMA state_dict round trip through a checkpoint") {
  Tiny model;
  optim::ModelEMA ema(model, optim::EMAOptions{.decay = 0.5, .tau = 10.0});
  set(model.param("w"), {4.0, 4.0, 4.0});
  ema.update(model);
  ema.update(model);
  nn::StateDict tensors;
  nn::Metadata md;
  nn::put_train_state(tensors, md, "ema", ema.state_dict());
  CHECK(nn::find(tensors, "ema.module.w") != nullptr);
  CHECK(nn::find(tensors, "ema.module.running") != nullptr);
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("rg_test_ema-" + std::to_string(::getpid()) + ".safetensors")).string();
  nn::save_safetensors(path, tensors, md);
  const nn::SafeTensors ck = nn::load_safetensors(path);
  std::filesystem::remove(path);

  Tiny other;
  optim::ModelEMA ema2(other, optim::EMAOptions{.decay = 0.1, .tau = 0.0});
  ema2.load_state_dict(nn::get_train_state(ck, "ema"));
  CHECK(ema2.updates() == 2);
  CHECK(ema2.decay_at(3) == ema.decay_at(3));
  CHECK_VALUES(vals(ema2.module()->param("w")), vals(ema.module()->param("w")), 0.0);
  set(model.param("w"), {1.0, 0.0, -1.0});
  ema.update(model);
  ema2.update(model);
  CHECK_VALUES(vals(ema2.module()->param("w")), vals(ema.module()->param("w")), 0.0);
}
