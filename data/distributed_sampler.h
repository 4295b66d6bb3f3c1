// DistributedSampler: which dataset indices each rank reads in an epoch, with PyTorch's
// torch.utils.data.DistributedSampler semantics (padding, drop_last, rank::world striding).
#pragma once

#include <cstdint>
#include <vector>

namespace rg::data {

// Note [DistributedSampler semantics]
// As torch.utils.data.DistributedSampler, with one documented difference:
// - shuffle: the epoch's order is a permutation keyed by seed + epoch (set_epoch changes it; the
//   same seed and epoch give the same order on every rank). torch draws it with
//   torch.randperm(generator seeded seed + epoch); we cannot reproduce torch's generator bit for
//   bit, so our permutation (a Fisher-Yates shuffle driven by rg::Philox, see shuffled_indices)
//   differs from torch's. Everything below matches torch exactly.
// - num_samples = ceil(n / world), or, with drop_last and n % world != 0, ceil((n - world) / world)
//   (= floor(n / world)); total_size = num_samples * world.
// - without drop_last the list is padded to total_size by repeating its head (the whole list as
//   many times as needed when the padding is longer than it); with drop_last its tail is cut.
// - rank r takes indices[r], indices[r + world], ... (indices[rank:total_size:world]).
// - pad = false (evaluation): no padding and no dropping; rank r takes indices[r::world] of the
//   plain list, so ranks may get different counts and every sample is seen exactly once.
class DistributedSampler {
 public:
  struct Options {
    bool shuffle = true;
    uint64_t seed = 0;
    bool drop_last = false;
    bool pad = true;  // false: evaluation sharding (see the Note); drop_last is then ignored
  };
  // num_replicas and rank are explicit: data/ sits below distributed/ (pass get_world_size(), get_rank()).
  DistributedSampler(int64_t dataset_size, int64_t num_replicas, int64_t rank);
  DistributedSampler(int64_t dataset_size, int64_t num_replicas, int64_t rank, Options opts);

  // This rank's indices for the current epoch, in order.
  std::vector<int64_t> indices() const;
  void set_epoch(int64_t epoch) { epoch_ = epoch; }
  int64_t epoch() const { return epoch_; }
  int64_t num_samples() const;  // len(sampler) on this rank
  int64_t total_size() const;   // num_samples * num_replicas (padding mode); the dataset size otherwise
  int64_t dataset_size() const { return n_; }
  int64_t num_replicas() const { return world_; }
  int64_t rank() const { return rank_; }
  const Options& options() const { return opts_; }

  // For checkpoints: where the sampler is (the permutation follows from these).
  struct State {
    int64_t epoch = 0;
    uint64_t seed = 0;
  };
  State state() const { return {epoch_, opts_.seed}; }
  void load_state(const State& s) {
    epoch_ = s.epoch;
    opts_.seed = s.seed;
  }

 private:
  int64_t n_, world_, rank_;
  Options opts_;
  int64_t epoch_ = 0;
};

// The whole epoch order before padding and striding: 0..n-1, or its permutation keyed by `key`
// (the sampler passes seed + epoch).
std::vector<int64_t> shuffled_indices(int64_t n, uint64_t key);

}  // namespace rg::data
