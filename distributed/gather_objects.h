// all_gather_bytes: every rank's byte blob, in rank order, over an existing ProcessGroup (what
// torch.distributed.all_gather_object does for pickles). Detection evaluation gathers its per-image
// records with it (Note [Exact distributed evaluation] in metrics/coco_eval.h).
#pragma once

#include <cstdint>
#include <vector>

#include "distributed/process_group.h"

namespace rg::dist {

// Two collectives: an allgather of the sizes, then of the payloads padded to the largest size. The
// groups move numbers, not bytes, so the payload travels as int64 words (bit copies: nothing is
// reduced). device: where the staging tensors live, the group's kind (CPU for the CPU ring; the
// rank's GPU for nccl or the CUDA ring). Blobs may be empty; sizes may differ across ranks.
std::vector<std::vector<uint8_t>> all_gather_bytes(ProcessGroup& pg, const std::vector<uint8_t>& mine,
                                                   Device device = kCPU);

}  // namespace rg::dist
