// SampleRng: a small Philox-driven random stream keyed by (seed, epoch, sample index), so that a
// sample's augmentation does not depend on which worker thread made it or on earlier samples:
// Note [Per-sample randomness].
#pragma once

#include <cstdint>

#include "core/random.h"

namespace rg::data {

// Note [Per-sample randomness]
// Every random choice of the data pipeline (augmentation, synthetic images) comes from a
// SampleRng built from (seed, epoch, index): Philox key = mix(seed, epoch), counter blocks
// starting at index * 2^16. The stream of sample i in epoch e is therefore the same whatever
// the worker count, the batch size or whether the run was resumed from a checkpoint, and two
// samples never share counter blocks (each has 2^16 blocks = 2^18 32-bit words to draw).
class SampleRng {
 public:
  SampleRng(uint64_t seed, uint64_t epoch, uint64_t index)
      : key_(mix(seed ^ mix(epoch + 0x632BE59BD9B4E019ull))), counter_(index << 16) {}

  uint32_t next_u32() {
    if (lane_ == 4) {
      Philox::block(key_, counter_++, words_);
      lane_ = 0;
    }
    return words_[lane_++];
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() {
    const uint64_t hi = next_u32(), lo = next_u32();
    return static_cast<double>(((hi << 32) | lo) >> 11) * (1.0 / 9007199254740992.0);
  }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [lo, hi) (hi > lo), by multiply-high on 64 random bits.
  int64_t randint(int64_t lo, int64_t hi) {
    const uint64_t r = (static_cast<uint64_t>(next_u32()) << 32) | next_u32();
    const auto span = static_cast<uint64_t>(hi - lo);
    return lo + static_cast<int64_t>((static_cast<unsigned __int128>(r) * span) >> 64);
  }
  bool bernoulli(double p) { return uniform() < p; }

  // splitmix64's finaliser: a bijective 64-bit mix.
  static uint64_t mix(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

 private:
  uint64_t key_;
  uint64_t counter_;
  uint32_t words_[4] = {0, 0, 0, 0};
  int lane_ = 4;
};

}  // namespace rg::data
