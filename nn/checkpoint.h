// Checkpoints in the safetensors format (8-byte little-endian header length, a JSON header, raw
// little-endian data), written atomically, validated fully before anything is used.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "nn/module.h"

namespace rg::nn {

using Metadata = std::vector<std::pair<std::string, std::string>>;  // the header's "__metadata__"

struct SafeTensors {
  StateDict tensors;  // CPU tensors, in file order
  Metadata metadata;
  const std::string* meta(const std::string& key) const;
};

// Note [Atomic checkpoint writes]
// A checkpoint is written to "<path>.tmp-<pid>" in the same directory, fsynced, renamed over
// <path>, and the directory fsynced: a crash at any point leaves either the old file or the new
// one, never a torn mix. Tensors on any device and of any dtype are copied to the host first.
void save_safetensors(const std::string& path, const StateDict& tensors, const Metadata& metadata = {});

// Reads and validates: the header length against the file size, the JSON, every dtype, shape and
// data_offsets (in range, matching numel * element size, no overlaps or holes). Any problem raises
// rg::Error "checkpoint '<path>' is corrupt: <what>" (or "... is truncated ..."), and nothing is
// returned partially.
SafeTensors load_safetensors(const std::string& path);

// Writes `bytes` to `path` atomically as above (also used for sidecar JSON files).
void atomic_write_file(const std::string& path, const std::string& bytes);

}  // namespace rg::nn
