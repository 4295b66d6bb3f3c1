// DataParallel (torch.nn.DataParallel): one process, one thread per device. Every forward
// replicates the module from devices[0], scatters the batch, runs the replicas in parallel and
// gathers their outputs; backward reduces the replicas' gradients back onto devices[0].
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nn/module.h"

namespace rg::dist {

struct DataParallelOptions {
  // Synchronise every device in use at each phase boundary (and around the backward's reduction)
  // so that the timings measure device work rather than kernel launches. Off by default: the step
  // then stays asynchronous and the CUDA timings are host-side launch times.
  bool sync_timing = false;
};

// Wall-clock milliseconds of each phase of the latest step (Note [DataParallel step]).
struct DataParallelTimings {
  int64_t step = 0;          // forward calls with more than one device so far
  int replicas = 0;          // replicas the last forward used (fewer than devices for a small batch)
  double replicate_ms = 0;   // module tree check, parameter broadcast, buffer copies, re-binding
  double scatter_ms = 0;     // splitting the input and moving the chunks
  double forward_ms = 0;     // parallel_apply: every replica's forward, on its own thread
  double gather_ms = 0;      // moving the outputs to output_device and concatenating them
  double reduce_ms = -1;     // the Broadcast node's backward (gradient sum onto devices[0]); -1 until run
  double backward_ms = -1;   // gather's backward to the end of the backward, or the caller's report; -1 until known
};

// Note [DataParallel step]
// forward(x), with R = the number of chunks torch.chunk(x, len(devices)) gives (<= devices):
//  1. replicate: replica structures are Module::clone(device)s made once (again only if the
//     master's module tree changes). Each step the master's parameters that require grad go
//     through ONE Broadcast autograd node: replica 0 gets aliases of the master tensors, replica
//     r > 0 copies on devices[r], coalesced per dtype in buckets of at most 10 MiB (PyTorch's
//     broadcast_coalesced). Its backward sums the replicas' gradients onto devices[0], coalesced
//     the same way (ReduceAddCoalesced). Buffers (and parameters that need no grad, or every
//     tensor when grad mode is off) are copied without history; replica 0 uses the master's
//     buffers themselves, so the master's running statistics are those of chunk 0 (as PyTorch).
//     Copies are bound into the replicas with set_parameter/set_buffer (and unbound once the
//     forward is done, so that they live only as long as the graph, as PyTorch's per-step
//     replicas); each replica module's training flag follows its master module's.
//  2. scatter: contiguous chunks along dim 0 with torch.chunk's sizes (ceil(N / devices) each,
//     the last smaller), moved to their devices; differentiable (backward: concatenation).
//  3. parallel_apply: a persistent worker thread per device runs replica r's forward with the
//     caller's grad mode and autocast state; on CUDA it makes the replica's device current and
//     runs on a stream of its own (Note [DataParallel streams]). An exception is rethrown in the
//     caller naming the replica and its device.
//  4. gather: the outputs moved to output_device and concatenated along dim 0 (0-dim outputs
//     become a vector of R values, as PyTorch); differentiable (backward: split and move back).
// With a single device forward(x) is module(x), as in PyTorch.
//
// Note [DataParallel backward]
// The backward is the caller's loss.backward(): our engine runs every node on the calling thread,
// one after the other. On CPU replicas the backward is therefore serial (as PyTorch's CPU engine,
// which also uses one thread for CPU work); on GPUs the nodes only launch kernels, which run
// asynchronously, so the devices still overlap. The gradients flow through gather's backward,
// each replica's graph, scatter's backward, and finally the Broadcast node, whose backward is the
// reduction onto devices[0] (timed: reduce_ms). backward_ms runs from the moment the gradient
// reaches gather's backward to the engine's final callback (autograd::queue_callback) and so
// includes the reduction; report_backward_ms() replaces it with the caller's own figure.
//
// Note [DataParallel streams]
// Replica r runs on its own stream of devices[r] (several replicas may share one GPU: "virtual
// devices", e.g. {cuda:0, cuda:0}). Inputs and parameter copies are made on the caller's current
// streams, so each replica stream first waits for an event recorded there after scatter; after
// the forward, the caller's current stream of every device involved waits for each replica's
// done event. Backward runs on the caller's streams. A block the caching allocator lent to a
// replica stream and freed during backward may be reused by that stream only in a later forward,
// which starts by waiting for the caller's stream again, so no reuse races the backward.
//
// Note [DataParallel threads]
// Graph construction from several threads is safe because the shared state is: node sequence
// numbers (atomic), shared_ptr counts on the Broadcast and Scatter nodes (atomic), and version
// counters (atomic). A leaf's AccumulateGrad is made lazily through a weak pointer, which is
// NOT thread-safe; the master parameters are the only leaves the replicas reach, and only
// through the Broadcast node, which is recorded (creating their accumulators) on the caller's
// thread before any worker starts. Grad mode, autocast, the current device and stream are
// thread-local and set in each worker from the caller's state. Each replica owns its module
// objects; only replica 0 writes the master's buffers.
class DataParallel : public nn::Module {
 public:
  // devices may repeat ({cpu, cpu}: several CPU replicas; {cuda:0, cuda:0}: several streams on
  // one GPU); they must all be CPU or all CUDA. The master module must live on devices[0].
  DataParallel(std::shared_ptr<nn::Module> module, std::vector<Device> devices,
               std::optional<Device> output_device = std::nullopt, DataParallelOptions options = {});
  ~DataParallel() override;
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  Tensor forward(const Tensor& x) override;  // (N, ...) -> gathered (N, ...) on output_device

  std::shared_ptr<nn::Module> module() const { return child("module"); }
  const std::vector<Device>& devices() const;
  Device output_device() const;
  const DataParallelOptions& options() const;

  // The latest step's phase timings (reduce_ms and backward_ms once its backward ran).
  DataParallelTimings timings() const;
  // Sets the latest step's backward_ms to a figure the caller measured.
  void report_backward_ms(double ms);

 protected:
  std::shared_ptr<nn::Module> shallow_copy() const override;  // throws: a DataParallel is not cloned

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// True on a DataParallel worker thread while it runs a replica's forward (SyncBatchNorm refuses
// to communicate there: collectives from several threads of one rank would not match).
bool in_data_parallel_replica();

}  // namespace rg::dist
