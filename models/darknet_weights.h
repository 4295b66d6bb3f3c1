// Darknet .weights files: reading (whole or the first N layers, as darknet53.conv.74) into a Darknet
// model, and writing exactly what darknet's save_weights writes (version 0.2.5, 64-bit `seen`).
#pragma once

#include <cstdint>
#include <string>

#include "models/darknet.h"

namespace rg::models {

// Note [Darknet weights format]
// Little-endian throughout. Header: int32 major, minor, revision; then `seen` (images trained on) as
// uint64 when major * 10 + minor >= 2 and major, minor < 1000 (darknet's test), else uint32. Then,
// for each [convolutional] layer in order (other layers hold nothing): `filters` float32 biases (the
// BN bias with batch_normalize=1, else the conv bias); with batch_normalize=1, `filters` BN scales
// (weight), rolling means and rolling variances; then the weights, (filters, in / groups, size, size).
// num_batches_tracked is not stored (loads leave it as it was).
struct DarknetWeightsHeader {
  int32_t major = 0, minor = 2, revision = 5;
  uint64_t seen = 0;
  // In 64 bits: a file's major * 10 may not fit an int32 (darknet's own test overflows there).
  constexpr bool seen_u64() const { return int64_t{major} * 10 + minor >= 2 && major < 1000 && minor < 1000; }
  constexpr int64_t bytes() const { return 12 + (seen_u64() ? 8 : 4); }
};

// Bytes of the tensor data of layers [0, cutoff) (cutoff < 0: every layer).
int64_t darknet_weights_payload_bytes(const Darknet& model, int64_t cutoff = -1);

// Loads layers [0, cutoff) (cutoff < 0: all); sets model.seen(). The file must be exactly the header
// plus those layers' bytes: otherwise the error names both byte counts (and the cutoff that a shorter
// file matches, if any), and the model is left untouched: everything is read and checked into
// temporaries before the first tensor is written. Works for a model on any device and dtype.
DarknetWeightsHeader load_darknet_weights(Darknet& model, const std::string& path, int64_t cutoff = -1);

// Writes layers [0, cutoff) (cutoff < 0: all) with header 0.2.5 and model.seen() as uint64, as
// darknet's save_weights / `darknet partial` do, to a temporary file renamed into place.
void save_darknet_weights(const Darknet& model, const std::string& path, int64_t cutoff = -1);

}  // namespace rg::models
