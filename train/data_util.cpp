// Data helpers for tasks (train/data_util.h): the --data policy and the samplers of a rank.
#include "train/data_util.h"

#include <filesystem>

#include "core/error.h"
#include "data/distributed_sampler.h"

namespace fs = std::filesystem;

namespace rg::train {

bool should_make_data(const std::string& path, bool present, const std::string& builtin_default,
                      std::optional<bool> make_data, const std::string& expected) {
  if (present) return false;
  if (make_data.has_value()) {
    RG_CHECK(*make_data, "no dataset at '", path, "' (expected ", expected, "), and --no-make-data forbids generating one");
    return true;
  }
  const bool is_default = fs::path(path).lexically_normal() == fs::path(builtin_default).lexically_normal();
  RG_CHECK(is_default, "no dataset at '", path, "' (expected ", expected,
           "); check the path, or pass --make-data to generate the synthetic dataset there");
  return true;
}

std::shared_ptr<const data::Sampler> make_train_sampler(int64_t n, const Context& ctx) {
  if (!ctx.dist.enabled) return std::make_shared<data::RandomSampler>(n, static_cast<uint64_t>(ctx.opts.seed));
  // The loader passes the epoch to the sampler (set_epoch) at every start_epoch.
  data::DistributedSampler::Options so;
  so.shuffle = true;
  so.seed = static_cast<uint64_t>(ctx.opts.seed);
  return std::make_shared<data::DistributedSamplerAdapter>(
      data::DistributedSampler(n, ctx.dist.world, ctx.dist.rank, so));
}

std::shared_ptr<const data::Sampler> make_val_sampler(int64_t n, const Context& ctx) {
  if (!ctx.dist.enabled) return std::make_shared<data::SequentialSampler>(n);
  data::DistributedSampler::Options so;
  so.shuffle = false;
  so.pad = false;  // evaluation: every sample exactly once, ranks may differ by one
  return std::make_shared<data::DistributedSamplerAdapter>(
      data::DistributedSampler(n, ctx.dist.world, ctx.dist.rank, so));
}

}  // namespace rg::train
