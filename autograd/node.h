// The autograd graph: a Node is the backward of one op; its edges point at the nodes that made
// its inputs. Leaves end in an AccumulateGrad node, whose post-hooks DDP's reducer listens to.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace rg::autograd {

struct Node;
using TensorList = std::vector<Tensor>;

struct Edge {
  std::shared_ptr<Node> fn;
  uint32_t input_nr = 0;  // which of fn's forward outputs this is
  bool valid() const { return fn != nullptr; }
};

// Shape, dtype and device of one forward output: the engine checks and converts incoming grads
// against it, and makes zeros for outputs that got no gradient.
struct TensorMeta {
  Shape sizes;
  DType dtype = DType::f32;
  Device device;
};

uint64_t next_sequence_nr();

struct ForwardTrace;

struct Node : std::enable_shared_from_this<Node> {
  Node();  // records the forward's stack in anomaly mode (Note [Anomaly mode], autograd/anomaly.h)
  virtual ~Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // grads[i] is the gradient of forward output i (never undefined: the engine fills zeros).
  // Returns one gradient per next_edges entry (undefined where an input needs none).
  virtual TensorList apply(TensorList&& grads) = 0;
  virtual std::string name() const = 0;
  // Frees saved tensors after a backward without retain_graph.
  virtual void release_variables() {}

  std::vector<Edge> next_edges;
  std::vector<TensorMeta> output_meta;  // one per forward output
  uint64_t sequence_nr;                 // creation order: later nodes run first among ready ones
  // Hooks on the gradient of forward output `index`, run before apply (Tensor::register_hook).
  std::vector<std::pair<uint32_t, GradHook>> pre_hooks;
  bool released = false;
  std::shared_ptr<const ForwardTrace> forward_trace;  // anomaly mode only: where the forward ran
};

// Note [AccumulateGrad hooks]
// AccumulateGrad adds the incoming gradient into its leaf's .grad (allocating it on first use),
// then runs post_hooks with the leaf, in registration order. DDP hangs one hook per parameter
// here: when it fires, that parameter's gradient for this backward is final.
struct AccumulateGrad : Node {
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> v);
  TensorList apply(TensorList&& grads) override;
  std::string name() const override { return "AccumulateGrad"; }

  std::shared_ptr<TensorImpl> variable;
  std::vector<std::function<void(const Tensor& param)>> post_hooks;
};

// The leaf's AccumulateGrad node, made on first use and shared while the graph holds it.
std::shared_ptr<AccumulateGrad> grad_accumulator(const Tensor& leaf);

// Edge through which a gradient for `t` flows: its grad_fn, its accumulator, or none.
Edge gradient_edge(const Tensor& t);

}  // namespace rg::autograd
