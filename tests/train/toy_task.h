// A tiny regression task for the engine's tests: in-memory data (x -> a fixed linear function),
// a two-layer MLP without batch norm (so that accumulation and data parallelism are exactly the
// big batch up to rounding), MSE, and -MSE as its fitness. It uses nothing of apps/ or models/:
// the engine's interface is all a task needs.
#pragma once

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/native.h"
#include "nn/checkpoint.h"
#include "nn/functional.h"
#include "nn/layers.h"
#include "train/data_util.h"
#include "train/options.h"
#include "train/task.h"
#include "train/trainer.h"

// clang-format off
#define RG_TOY_OPTIONS(X) \
  X(samples, Int, 32, ::rg::train::at_least(2), Saved, "data", "N", "training samples") \
  X(hidden, Int, 8, ::rg::train::at_least(1), Saved, "model", "N", "hidden units")
// clang-format on

namespace rg::test {

RG_DECLARE_OPTIONS(ToyOptions, RG_TOY_OPTIONS);

struct ToyConfig : train::TrainOptions, ToyOptions {
  ToyConfig() {
    optimizer = "sgd";
    momentum = 0.0;
    scheduler = "none";
    workers = 0;
    verbosity = 0;
  }
  train::Options bind() {
    train::Options o;
    o.add(ToyOptions::specs(), static_cast<ToyOptions*>(this));
    o.add(train::TrainOptions::specs(), static_cast<train::TrainOptions*>(this));
    return o;
  }
  static ToyConfig from_checkpoint(const std::string& path) {
    const nn::SafeTensors ck = nn::load_safetensors(path);
    ToyConfig c;
    c.bind().from_json(Json::parse(*ck.meta("trainer"))["config"], path);
    return c;
  }
};

constexpr int64_t kToyDim = 4;

// Sample i: x[d] = sin(0.7 i + 1.3 d), y = 0.5 x0 - x1 + 0.25 x2 + 2 x3 + 0.1 cos(i).
inline void toy_sample(int64_t i, float* x, float* y) {
  const double w[kToyDim] = {0.5, -1.0, 0.25, 2.0};
  double t = 0.1 * std::cos(static_cast<double>(i));
  for (int64_t d = 0; d < kToyDim; ++d) {
    x[d] = static_cast<float>(std::sin(0.7 * static_cast<double>(i) + 1.3 * static_cast<double>(d)));
    t += w[d] * x[d];
  }
  *y = static_cast<float>(t);
}

struct ToyBatch {
  Tensor x;  // (B, D) f32
  Tensor y;  // (B, 1) f32
  int64_t index = 0;
};

// Batch b of epoch e: samples sampler.indices(e)[b*B, (b+1)*B), whatever came before.
class ToyLoader {
 public:
  ToyLoader(std::shared_ptr<const data::Sampler> s, int64_t batch) : sampler_(std::move(s)), batch_(batch) {}
  int64_t num_batches() const { return (sampler_->size() + batch_ - 1) / batch_; }
  void start_epoch(int64_t epoch, int64_t start_batch) {
    order_ = sampler_->indices(epoch);
    next_ = start_batch;
  }
  bool next(ToyBatch* out) {
    if (next_ >= num_batches()) return false;
    const int64_t lo = next_ * batch_, hi = std::min<int64_t>(lo + batch_, static_cast<int64_t>(order_.size()));
    std::vector<float> x(static_cast<size_t>((hi - lo) * kToyDim)), y(static_cast<size_t>(hi - lo));
    for (int64_t k = lo; k < hi; ++k) {
      toy_sample(order_[static_cast<size_t>(k)], &x[static_cast<size_t>((k - lo) * kToyDim)], &y[static_cast<size_t>(k - lo)]);
    }
    out->x = from_vector<float>(x, {hi - lo, kToyDim});
    out->y = from_vector<float>(y, {hi - lo, 1});
    out->index = next_++;
    return true;
  }

 private:
  std::shared_ptr<const data::Sampler> sampler_;
  int64_t batch_;
  std::vector<int64_t> order_;
  int64_t next_ = 0;
};

class ToyTask : public train::Task {
 public:
  explicit ToyTask(const ToyConfig& c) : cfg_(c) {}
  int epoch_end_calls = 0;

  train::TaskInfo info() const override {
    train::TaskInfo i;
    i.command = "toy";
    i.format = "toy-1";
    i.terms = {{"loss", 0, 5}};
    i.metrics = {{"mse", 0, 6}};
    i.fitness_key = "score";
    return i;
  }
  Json options_json() const override {
    ToyOptions own = cfg_;
    train::Options o;
    o.add(ToyOptions::specs(), &own);
    return o.to_json();
  }
  double default_lr(const std::string&) const override { return 0.05; }
  double default_weight_decay(const std::string&) const override { return 0.0; }
  train::TaskData build_data(const train::Context& ctx) override {
    using L = train::LoaderOf<ToyLoader, ToyBatch>;
    auto size = [](const ToyBatch& b) { return b.x.size(0); };
    train::TaskData d;
    d.train = std::make_unique<L>(std::make_unique<ToyLoader>(train::make_train_sampler(cfg_.samples, ctx), ctx.batch), size);
    d.val = std::make_unique<L>(std::make_unique<ToyLoader>(train::make_val_sampler(cfg_.samples, ctx), 5), size);
    d.train_size = d.val_size = cfg_.samples;
    return d;
  }
  std::string describe() const override { return "toy MLP"; }
  std::shared_ptr<nn::Module> build_model(const train::Context&) override {
    return std::make_shared<nn::Sequential>(std::vector<std::shared_ptr<nn::Module>>{
        std::make_shared<nn::Linear>(kToyDim, cfg_.hidden), std::make_shared<nn::ReLU>(),
        std::make_shared<nn::Linear>(cfg_.hidden, 1)});
  }
  train::StepLoss loss(nn::Module& net, const train::Batch& b, const train::Context& ctx) override {
    const ToyBatch& tb = train::batch_value<ToyBatch>(b);
    const Tensor x = native::to(tb.x, ctx.device, DType::f32), y = native::to(tb.y, ctx.device, DType::f32);
    train::StepLoss out;
    out.loss = nn::functional::mse_loss(net.forward(x), y);
    out.sums = {out.loss.detach() * static_cast<double>(x.size(0))};
    out.count = static_cast<double>(x.size(0));
    return out;
  }
  train::Figures evaluate(nn::Module& model, train::Loader& val, const train::Context& ctx) override {
    double se = 0, n = 0;
    val.start_epoch(0, 0);
    while (auto b = val.next()) {
      const ToyBatch& tb = train::batch_value<ToyBatch>(*b);
      const Tensor l = nn::functional::mse_loss(model.forward(native::to(tb.x, ctx.device, DType::f32)),
                                                native::to(tb.y, ctx.device, DType::f32), "sum");
      se += l.item();
      n += static_cast<double>(tb.x.size(0));
    }
    const std::vector<double> s = ctx.dist.sum({se, n});
    return {{"mse", s[0] / s[1], 6}};
  }
  double fitness(const train::Figures& m) const override { return -train::figure(m, "mse"); }
  Json metadata() const override {
    Json j = Json::object();
    j.set("toy_samples", cfg_.samples);
    return j;
  }
  void on_epoch_end(const train::EpochEnd& e, const train::Context&) override {
    ++epoch_end_calls;
    std::ofstream(std::filesystem::path(e.out) / ("picture_" + std::to_string(e.epoch) + ".txt"))
        << (e.metrics ? train::format_figures(*e.metrics) : "none");
  }

 private:
  ToyConfig cfg_;
};

inline train::RunResult train_toy(const ToyConfig& c, train::TrainerHooks hooks = {}) {
  ToyTask t(c);
  return train::train(c, t, std::move(hooks));
}

}  // namespace rg::test
