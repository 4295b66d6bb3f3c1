// DistributedSampler (Note [DistributedSampler semantics] in distributed_sampler.h) and the
// Philox-driven permutation behind its shuffle.
#include "data/distributed_sampler.h"

#include <numeric>

#include "core/error.h"
#include "core/random.h"

namespace rg::data {

// Fisher-Yates from the top: step i swaps position i with j uniform in [0, i]. Draw i uses Philox
// counter block i (key = seed + epoch), its first two words as a 64-bit number, mapped to [0, i]
// by multiply-high (bias below 2^-32 for any dataset size that fits in memory).
std::vector<int64_t> shuffled_indices(int64_t n, uint64_t key) {
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), int64_t{0});
  for (int64_t i = n - 1; i > 0; --i) {
    uint32_t w[4];
    Philox::block(key, static_cast<uint64_t>(i), w);
    const uint64_t r = (static_cast<uint64_t>(w[0]) << 32) | w[1];
    const auto j = static_cast<int64_t>((static_cast<unsigned __int128>(r) * static_cast<uint64_t>(i + 1)) >> 64);
    std::swap(idx[static_cast<size_t>(i)], idx[static_cast<size_t>(j)]);
  }
  return idx;
}

DistributedSampler::DistributedSampler(int64_t dataset_size, int64_t num_replicas, int64_t rank)
    : DistributedSampler(dataset_size, num_replicas, rank, Options{}) {}

DistributedSampler::DistributedSampler(int64_t dataset_size, int64_t num_replicas, int64_t rank, Options opts)
    : n_(dataset_size), world_(num_replicas), rank_(rank), opts_(opts) {
  RG_CHECK(dataset_size >= 0, "DistributedSampler: dataset size must be >= 0, got ", dataset_size);
  RG_CHECK(num_replicas >= 1, "DistributedSampler: num_replicas must be >= 1, got ", num_replicas);
  RG_CHECK(rank >= 0 && rank < num_replicas, "DistributedSampler: invalid rank ", rank,
           ", rank should be in the interval [0, ", num_replicas - 1, "]");
}

int64_t DistributedSampler::num_samples() const {
  if (!opts_.pad) return rank_ < n_ ? (n_ - rank_ + world_ - 1) / world_ : 0;
  if (opts_.drop_last && n_ % world_ != 0) return n_ / world_;  // torch: ceil((n - world) / world)
  return (n_ + world_ - 1) / world_;
}

int64_t DistributedSampler::total_size() const {
  if (!opts_.pad) return n_;
  return num_samples() * world_;
}

std::vector<int64_t> DistributedSampler::indices() const {
  std::vector<int64_t> all;
  if (opts_.shuffle) {
    all = shuffled_indices(n_, opts_.seed + static_cast<uint64_t>(epoch_));
  } else {
    all.resize(static_cast<size_t>(n_));
    std::iota(all.begin(), all.end(), int64_t{0});
  }
  std::vector<int64_t> mine;
  if (!opts_.pad) {
    for (int64_t i = rank_; i < n_; i += world_) mine.push_back(all[static_cast<size_t>(i)]);
    return mine;
  }
  const int64_t total = total_size();
  if (static_cast<int64_t>(all.size()) < total && !all.empty()) {
    const size_t base = all.size();  // repeat the head, cycling through the list as often as needed
    for (size_t k = 0; static_cast<int64_t>(all.size()) < total; ++k) all.push_back(all[k % base]);
  } else {
    all.resize(static_cast<size_t>(total));  // drop_last: cut the tail
  }
  mine.reserve(static_cast<size_t>(num_samples()));
  for (int64_t i = rank_; i < total; i += world_) mine.push_back(all[static_cast<size_t>(i)]);
  return mine;
}

}  // namespace rg::data
