// The "ring" process group for CPU tensors: a chunked, pipelined ring (reduce-scatter then
// allgather) over TCP or shared memory, run in call order on a per-group worker thread.
#pragma once

#include <memory>
#include <string>

#include "distributed/process_group.h"

namespace rg::dist {

// Note [CPU ring]
// - Transport: shm when every rank reports the same host identity (hostname + boot id) through the
//   store, else tcp; RINGGRAD_RING_TRANSPORT=tcp|shm forces one (shm across hosts is an error).
// - allreduce splits the tensor into size() chunks (the first numel % size get one more element)
//   and runs size()-1 reduce-scatter steps then size()-1 allgather steps; each step moves its chunk
//   in sub-chunks of 256 KiB, and a sub-chunk is forwarded as soon as it has been received and
//   reduced, so sending, receiving and reducing overlap. Each rank sends 2(N-1)/N of the data.
// - f16/bf16 partial sums travel and accumulate in f32 and are rounded once, by the chunk's owner;
//   avg divides that sum by size() (integers: truncating division, as NCCL).
// - Every chunk is reduced in one fixed ring order and then copied to everyone: results are bitwise
//   identical on all ranks and from run to run.
// - A link that makes no progress for timeout() raises the timeout error of the base class; a peer
//   that closes its connection or dies raises an error naming it. Either breaks the group: later
//   collectives fail at once, naming the first error.
// - Tuning, read when the group is made: RINGGRAD_RING_CHUNK_BYTES, the sub-chunk (256 KiB; rank
//   0's value is used by all); RINGGRAD_SHM_RING_BYTES, the rank's incoming shm ring buffer (4 MiB,
//   rounded up to a power of two).
// - Note [Waiting runs the collective] (ring_cpu.cpp): wait() on a collective the worker has not
//   started runs it on the waiting thread, which saves two thread hand-offs per small collective.
class RingCpuProcessGroup : public ProcessGroup {
 public:
  RingCpuProcessGroup(std::shared_ptr<Store> store, int rank, int size);
  ~RingCpuProcessGroup() override;  // waits for queued collectives; aborts one stuck at the time
  std::string backend() const override { return "ring"; }
  std::optional<DeviceType> device_type() const override { return DeviceType::CPU; }
  std::string transport() const;  // "tcp", "shm", or "none" (world size 1)

  struct Impl;

 protected:
  std::shared_ptr<Work> do_allreduce(const Tensor& t, ReduceOp op, const CollectiveInfo& info) override;
  std::shared_ptr<Work> do_broadcast(const Tensor& t, int root, const CollectiveInfo& info) override;
  std::shared_ptr<Work> do_allgather(const Tensor& out, const Tensor& in, const CollectiveInfo& info) override;
  std::shared_ptr<Work> do_reduce_scatter(const Tensor& out, const Tensor& in, ReduceOp op,
                                          const CollectiveInfo& info) override;
  std::shared_ptr<Work> do_barrier(const CollectiveInfo& info) override;

 private:
  friend struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace rg::dist
