// DDP's reducer (internal to distributed/ddp.cpp): gradient buckets, the AccumulateGrad hooks that
// fill them, the bucket allreduces launched in order during backward, and their timings.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "autograd/node.h"
#include "core/cuda_api.h"
#include "distributed/process_group.h"

namespace rg::dist {

struct DDPOptions;
struct DDPStats;

namespace detail {

// Note [DDP reducer]
// - Buckets: parameters are taken in reverse registration order (the order their gradients tend
//   to arrive in backward); each (dtype, device) has an open bucket; a parameter is appended to
//   its bucket, which closes once it holds at least the cap (first_bucket_cap_mb for the key's
//   first bucket, bucket_cap_mb after). Buckets are ordered by their first parameter. A bucket is
//   one flat tensor; each parameter owns a slice at a 16-byte aligned offset (the padding stays
//   zero), so a gradient view into it suits vectorised kernels.
// - Hooks: a post-hook on each parameter's AccumulateGrad (Note [AccumulateGrad hooks]) marks it
//   ready: its .grad is copied into its slice unless it already is that slice (with
//   gradient_as_bucket_view, .grad is then re-pointed at the slice). The reducer holds the
//   AccumulateGrad nodes (a leaf only holds its node weakly); the hooks hold the reducer weakly.
// - The first hook of a backward starts the iteration and queues the end-of-backward callback
//   (autograd::queue_callback). When a bucket's last gradient is ready, buckets are launched in
//   index order up to the first one not ready (every rank issues the same collectives in the same
//   order). The callback launches the rest, waits for every Work (on CUDA: the current stream
//   waits, the host does not), and copies results back into .grad where it is not the slice.
// - Everything runs on the thread running backward; the ring backends complete Works on their
//   own threads, and the reducer only ever touches a bucket before its launch and after its wait.
//   So the reducer takes no lock.
class Reducer : public std::enable_shared_from_this<Reducer> {
 public:
  struct Param {
    std::string name;  // relative to the wrapped module
    Tensor tensor;
  };
  Reducer(std::vector<Param> params, std::shared_ptr<ProcessGroup> pg, const DDPOptions& o, int instance);
  ~Reducer();
  Reducer(const Reducer&) = delete;
  Reducer& operator=(const Reducer&) = delete;

  // Hangs the hooks (needs shared_from_this, so it runs after construction).
  void attach();
  // Before a forward: records whether the coming backward synchronises, and checks that the
  // parameters still have the AccumulateGrad nodes the hooks hang on.
  void prepare_forward(bool sync);
  // The hook DDP registers on a forward output: backward starts.
  void mark_backward_start();

  std::vector<std::vector<std::string>> bucket_parameter_names() const;
  DDPStats stats() const;

 private:
  using HostTime = std::chrono::steady_clock::time_point;
  // A moment of the iteration: a host timestamp, and on CUDA an event on the current stream.
  struct Stamp {
    HostTime host{};
    cuda::Event event{true};
  };
  struct Slot {
    std::string name;
    Tensor tensor;
    std::shared_ptr<autograd::AccumulateGrad> acc;
    size_t bucket = 0;
    int64_t offset = 0;  // elements into the bucket
    Tensor view;         // the slice, shaped as the parameter
  };
  struct Bucket {
    std::vector<size_t> members;  // slot indices, in fill order
    DType dtype = DType::f32;
    Device device;
    Tensor flat;  // (numel) in the gradients' dtype
    Tensor comm;  // (numel) in comm_dtype when it differs, else undefined
    int64_t comm_bytes = 0;  // what its allreduce moves
    size_t pending = 0;
    std::shared_ptr<Work> work;
    Stamp ready, launch;
    HostTime waited{};
  };

  void build_buckets(const std::vector<size_t>& order);
  void mark_ready(size_t i);
  void begin_iteration();
  void launch(size_t b);
  void launch_ready();
  void finalize();
  void finalize_unused(const std::vector<size_t>& unused);
  void wait_launched_quietly();
  void rebuild_from_arrival();
  void stamp(Stamp& s);
  double ms(const Stamp& s) const;  // from backward start

  std::shared_ptr<ProcessGroup> pg_;
  int instance_;
  // Options (copied: DDPOptions is incomplete here).
  int64_t bucket_cap_bytes_, first_cap_bytes_;
  bool find_unused_, static_graph_, as_view_, overlap_;
  bool has_comm_dtype_ = false;
  DType comm_dtype_ = DType::f32;

  std::vector<Slot> slots_;
  std::vector<Bucket> buckets_;
  // After a static_graph rebuild: the previous buckets' timings (tensors released), which the
  // last iteration's stats describe; dropped when the next iteration begins.
  std::vector<Bucket> stats_buckets_;
  bool cuda_ = false;
  int cuda_device_ = -1;

  // Per iteration (backward thread only).
  bool sync_ = true;       // captured by prepare_forward
  bool active_ = false;    // a synchronised backward is running
  bool start_set_ = false;
  std::vector<uint8_t> ready_;
  std::vector<size_t> arrival_;
  size_t next_launch_ = 0;
  std::shared_ptr<Work> used_work_;
  Tensor used_map_;
  bool rebuilt_ = false;

  // Timings of the last finished iteration.
  Stamp start_, end_, done_;
  int64_t iterations_ = 0;
};

}  // namespace detail
}  // namespace rg::dist
