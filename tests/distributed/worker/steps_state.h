// The "steps" worker's arithmetic (tests/distributed/worker/fault_scenarios.cpp), shared with the
// tests that compute what an uninterrupted run ends with: per step, every rank contributes four
// integers, they are summed across ranks (an allreduce), and the sums are folded into one state.
#pragma once

#include <cstdint>

namespace rg::test {

inline constexpr int kStepValues = 4;

// Rank r's j-th value at step s: below 2^32, so a sum over any world size fits an int64.
inline int64_t step_value(int rank, int step, int j) {
  uint64_t h = (static_cast<uint64_t>(rank) + 1) * 0x9E3779B97F4A7C15ull ^ (static_cast<uint64_t>(step) + 7) * 0xC2B2AE3D27D4EB4Full ^
               (static_cast<uint64_t>(j) + 3) * 0x165667B19E3779F9ull;
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 32;
  return static_cast<int64_t>(h & 0xFFFFFFFFull);
}

inline constexpr uint64_t kStepsSeed = 0x243F6A8885A308D3ull;

// The state after a step whose allreduced sums are sums[0..kStepValues).
inline uint64_t fold_step(uint64_t state, const int64_t* sums) {
  for (int j = 0; j < kStepValues; ++j) {
    state = state * 6364136223846793005ull + static_cast<uint64_t>(sums[j]) + 1442695040888963407ull;
  }
  return state;
}

// What `steps` total steps on `world` ranks end with, without any interruption.
inline uint64_t steps_expected(int world, int steps) {
  uint64_t state = kStepsSeed;
  for (int s = 0; s < steps; ++s) {
    int64_t sums[kStepValues] = {0, 0, 0, 0};
    for (int r = 0; r < world; ++r) {
      for (int j = 0; j < kStepValues; ++j) sums[j] += step_value(r, s, j);
    }
    state = fold_step(state, sums);
  }
  return state;
}

}  // namespace rg::test
