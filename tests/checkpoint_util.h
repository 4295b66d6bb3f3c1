// Checkpoint comparisons shared by the training tests: how many tensors of two checkpoints differ
// in any byte, and the trainer's metadata (counters, config, figures) of a checkpoint.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "core/json.h"
#include "nn/checkpoint.h"

namespace rg::test {

// How many tensors of `a` differ from the same-named tensor of `b` in any byte; the key sets, and
// each pair's shape and dtype, must match. Names each differing tensor in a MESSAGE.
inline int64_t bitwise_differences(const nn::SafeTensors& a, const nn::SafeTensors& b) {
  REQUIRE(a.tensors.size() == b.tensors.size());
  int64_t differing = 0;
  for (const auto& [k, ta] : a.tensors) {
    const Tensor* tb = nn::find(b.tensors, k);
    REQUIRE_MESSAGE(tb != nullptr, k);
    REQUIRE_MESSAGE(ta.sizes() == tb->sizes(), k);
    REQUIRE_MESSAGE(ta.dtype() == tb->dtype(), k);
    if (std::memcmp(ta.contiguous().data_ptr(), tb->contiguous().data_ptr(), ta.nbytes()) != 0) {
      ++differing;
      MESSAGE("differs: ", k);
    }
  }
  return differing;
}
inline int64_t bitwise_differences(const std::string& a_path, const std::string& b_path) {
  return bitwise_differences(nn::load_safetensors(a_path), nn::load_safetensors(b_path));
}

// The "trainer" metadata the training engine writes into every checkpoint.
inline Json trainer_meta(const nn::SafeTensors& ck) {
  REQUIRE(ck.meta("trainer") != nullptr);
  return Json::parse(*ck.meta("trainer"));
}
inline Json trainer_of(const std::string& path) { return trainer_meta(nn::load_safetensors(path)); }

}  // namespace rg::test
