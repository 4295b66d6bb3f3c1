// Data helpers for tasks: the --data policy (Note [Synthetic data policy]), this rank's samplers,
// and an adapter that turns any loader with start_epoch/next/num_batches into an engine Loader.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "data/dataloader.h"
#include "train/task.h"

namespace rg::train {

// Note [Synthetic data policy]
// A dataset path that does not exist is an error naming it -- a typo must never train on
// something else. The synthetic dataset is generated only at the task's built-in default
// location (data_gen/...; compared after lexical normalisation, relative to the working
// directory), or wherever --make-data asks for it; --no-make-data never generates. An existing
// dataset is always used as it is.
// Returns true when the synthetic set must be generated at `path`; `present` says whether the
// dataset is there (e.g. DIR/train exists); `expected` describes what was looked for.
bool should_make_data(const std::string& path, bool present, const std::string& builtin_default,
                      std::optional<bool> make_data, const std::string& expected);

// The training sampler of this rank: a RandomSampler keyed by the seed (one process), or a
// DistributedSampler shard (shuffled by seed + epoch, padded to a multiple of the world).
std::shared_ptr<const data::Sampler> make_train_sampler(int64_t n, const Context& ctx);
// The validation sampler: every sample once, sharded without padding when distributed.
std::shared_ptr<const data::Sampler> make_val_sampler(int64_t n, const Context& ctx);

// A task's batch of type B behind the engine's Batch.
template <class B>
struct BatchOf : Batch {
  B value;
  int64_t samples = 0;
  int64_t size() const override { return samples; }
};

// Any loader L with num_batches(), start_epoch(epoch, start_batch) and bool next(B*) as a Loader.
template <class L, class B>
class LoaderOf : public Loader {
 public:
  LoaderOf(std::unique_ptr<L> loader, std::function<int64_t(const B&)> samples)
      : loader_(std::move(loader)), samples_(std::move(samples)) {}
  int64_t num_batches() const override { return loader_->num_batches(); }
  void start_epoch(int64_t epoch, int64_t start_batch) override { loader_->start_epoch(epoch, start_batch); }
  std::unique_ptr<Batch> next() override {
    auto b = std::make_unique<BatchOf<B>>();
    if (!loader_->next(&b->value)) return nullptr;
    b->samples = samples_(b->value);
    return b;
  }
  std::vector<std::string> take_corrupt() override {
    std::vector<std::string> out;
    if constexpr (requires(L& l) { l.take_corrupt(); }) {
      for (const auto& c : loader_->take_corrupt()) out.push_back(c.path + "\t" + c.error);
    }
    return out;
  }
  L& loader() { return *loader_; }

 private:
  std::unique_ptr<L> loader_;
  std::function<int64_t(const B&)> samples_;
};

// The task's batch inside an engine Batch (a task reads back what its loader made).
template <class B>
const B& batch_value(const Batch& b) {
  return static_cast<const BatchOf<B>&>(b).value;
}

}  // namespace rg::train
