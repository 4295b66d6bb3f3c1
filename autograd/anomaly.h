// Anomaly detection, as torch.autograd.detect_anomaly (Note [Anomaly mode]): nodes remember where
// their forward was called, and the backward stops at the first node whose output gradient holds
// an inf or a nan, naming its op and that place.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace rg::autograd {

struct Node;

// Note [Anomaly mode]
// While AnomalyMode is on (process-wide, as PyTorch's), every Node records the call stack of its
// creation -- its forward -- as raw return addresses (glibc backtrace(), a few microseconds; off:
// one relaxed atomic load per node). The engine then checks each node's outputs right after its
// backward ran (a copy to the host per output: slow, for debugging) and throws rg::Error at the
// first inf or nan: "Function 'LogBackward' returned inf values in its 0th output", then that
// node's forward stack, symbolised when the error is built: the program's functions by name
// through the dynamic symbol table (executables linking rg_autograd get -rdynamic), static ones
// through `addr2line -Cf` when it is installed (with file:line when built with debug
// information), library frames as file+offset. The frames of the autograd machinery itself are
// cut, so the first line is the op's public function (rg::log) and the next ones its caller.
struct AnomalyMode {
  static bool is_enabled();
  static void set_enabled(bool enabled);
};

// torch.autograd.detect_anomaly() as a scope; restores the previous mode.
class DetectAnomalyGuard {
 public:
  DetectAnomalyGuard();
  ~DetectAnomalyGuard();
  DetectAnomalyGuard(const DetectAnomalyGuard&) = delete;
  DetectAnomalyGuard& operator=(const DetectAnomalyGuard&) = delete;

 private:
  bool prev_;
};

// The call stack at a node's creation (raw return addresses).
struct ForwardTrace {
  std::vector<void*> frames;
};
std::shared_ptr<const ForwardTrace> capture_forward_trace();

// "    #0 rg::log(rg::Tensor const&) + 0x3c (test_autograd)\n    #1 ..." -- at most max_frames,
// starting at the first frame outside the autograd machinery, ending after main.
std::string format_forward_trace(const ForwardTrace& t, int max_frames = 16);

// Throws when any defined output of n (its gradients for its inputs) holds an inf or a nan.
void check_anomaly(const Node& n, const std::vector<Tensor>& outputs);

}  // namespace rg::autograd
