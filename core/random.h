// Generator and the Philox4x32-10 counter-based RNG. The same (seed, offset) gives the same
// numbers on CPU and CUDA: Note [Philox streams].
#pragma once

#include <cstdint>
#include <mutex>

#if defined(__CUDACC__)
#define RG_PHILOX_HD __host__ __device__ __forceinline__
#else
#define RG_PHILOX_HD inline
#endif

namespace rg {

// Note [Philox streams]
// A random op on n elements with generator state (seed, offset) gives element i the 32-bit word
// philox(key = seed, counter = offset + i / 4)[i % 4], then advances offset by ceil(n / 4).
// Uniforms are (word >> 8) * 2^-24 in [0, 1); normals pair lanes (0,1) and (2,3) by Box-Muller,
// computed in double and rounded, so CPU and CUDA agree. Element order is the tensor's logical
// (row-major) order, whatever its strides.
struct Philox {
  static constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  static constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;

  RG_PHILOX_HD static void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
    const uint64_t p = static_cast<uint64_t>(a) * b;
    hi = static_cast<uint32_t>(p >> 32);
    lo = static_cast<uint32_t>(p);
  }
  // Returns the 4 words for one counter block.
  RG_PHILOX_HD static void block(uint64_t seed, uint64_t counter, uint32_t out[4]) {
    uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int r = 0; r < 10; ++r) {
      uint32_t hi0, lo0, hi1, lo1;
      mulhilo(kM0, c0, hi0, lo0);
      mulhilo(kM1, c2, hi1, lo1);
      const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
      c0 = n0; c1 = n1; c2 = n2; c3 = n3;
      k0 += kW0;
      k1 += kW1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
  }
  RG_PHILOX_HD static float to_uniform(uint32_t w) { return static_cast<float>(w >> 8) * (1.0f / 16777216.0f); }
};

class Generator {
 public:
  explicit Generator(uint64_t seed = 67280421310721ull) : seed_(seed) {}
  void manual_seed(uint64_t seed) {
    std::lock_guard<std::mutex> g(mu_);
    seed_ = seed;
    offset_ = 0;
  }
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) {
    std::lock_guard<std::mutex> g(mu_);
    seed_ = seed;
    offset_ = offset;
  }
  // Reserves ceil(n / 4) counter blocks and returns the first.
  uint64_t advance(int64_t n) {
    std::lock_guard<std::mutex> g(mu_);
    const uint64_t o = offset_;
    offset_ += static_cast<uint64_t>((n + 3) / 4);
    return o;
  }

 private:
  std::mutex mu_;
  uint64_t seed_;
  uint64_t offset_ = 0;
};

Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace rg
