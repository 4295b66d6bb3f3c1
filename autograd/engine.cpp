// The backward engine: dependency counting, a ready queue ordered by sequence number, input
// buffers that sum gradients per node, validation of each gradient against its forward tensor.
#include "autograd/engine.h"

#include <functional>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "autograd/anomaly.h"
#include "autograd/grad_mode.h"
#include "core/native.h"

namespace rg::autograd {

namespace {

// Checks a gradient against the forward tensor it belongs to; casts dtype and moves device as
// PyTorch's engine does, and refuses a shape mismatch naming the node.
Tensor validate(const Tensor& g, const TensorMeta& meta, const Node& producer, size_t index) {
  RG_CHECK(g.sizes() == meta.sizes, "Function ", producer.name(), " returned an invalid gradient at index ", index,
           " - got ", shape_str(g.sizes()), " but expected shape compatible with ", shape_str(meta.sizes));
  if (g.dtype() == meta.dtype && g.device() == meta.device) return g;
  return native::to(g, meta.device, meta.dtype);
}

struct ReadyLess {
  bool operator()(const Node* a, const Node* b) const { return a->sequence_nr < b->sequence_nr; }
};

struct GraphTask {
  std::unordered_map<Node*, int> deps;
  std::unordered_map<Node*, TensorList> buffers;
  // For grad(): capture instead of accumulate, keyed by the node feeding a wanted input.
  std::unordered_map<Node*, std::vector<std::pair<uint32_t, size_t>>> captures;
  TensorList captured;
  bool retain_graph = false;
  std::vector<std::function<void()>> final_callbacks;  // queue_callback(), run after the graph drains
};

thread_local GraphTask* t_current_task = nullptr;

// Makes `task` the thread's current one for queue_callback(), restoring the previous on exit.
struct CurrentTask {
  explicit CurrentTask(GraphTask* t) : prev(t_current_task) { t_current_task = t; }
  ~CurrentTask() { t_current_task = prev; }
  GraphTask* prev;
};

// Runs the callbacks queued during the backward, including ones queued by callbacks.
void run_final_callbacks(GraphTask& task) {
  for (size_t i = 0; i < task.final_callbacks.size(); ++i) {
    auto cb = std::move(task.final_callbacks[i]);
    cb();
  }
  task.final_callbacks.clear();
}

void count_dependencies(const std::vector<Node*>& roots, GraphTask& task) {
  // Roots may repeat (two outputs of one node): each node's edges are counted once.
  std::vector<Node*> stack;
  std::unordered_set<Node*> seen;
  for (Node* r : roots) {
    if (seen.insert(r).second) stack.push_back(r);
  }
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next_edges) {
      if (!e.valid()) continue;
      Node* next = e.fn.get();
      ++task.deps[next];
      if (seen.insert(next).second) stack.push_back(next);
    }
  }
}

void add_to_buffer(GraphTask& task, Node* n, uint32_t slot, Tensor g) {
  TensorList& buf = task.buffers[n];
  if (buf.size() < n->output_meta.size()) buf.resize(n->output_meta.size());
  Tensor& dst = buf[slot];
  if (!dst.defined()) {
    dst = std::move(g);
  } else {
    dst = native::binary(BinaryOp::Add, dst, g);
  }
}

void run(GraphTask& task, const std::vector<std::pair<Edge, Tensor>>& starts, bool accumulate_leaves) {
  std::vector<Node*> roots;
  for (const auto& [edge, g] : starts) roots.push_back(edge.fn.get());
  count_dependencies(roots, task);

  std::priority_queue<Node*, std::vector<Node*>, ReadyLess> ready;
  for (const auto& [edge, g] : starts) {
    add_to_buffer(task, edge.fn.get(), edge.input_nr, g);
  }
  for (Node* r : roots) {
    if (task.deps[r] == 0) {
      task.deps[r] = -1;  // queued
      ready.push(r);
    }
  }

  while (!ready.empty()) {
    Node* n = ready.top();
    ready.pop();
    RG_CHECK(!n->released, "Trying to backward through the graph a second time (or directly access saved tensors "
             "after they have already been freed). Specify retain_graph=true if you need to backward through the "
             "graph a second time. (node ", n->name(), ")");
    TensorList grads = std::move(task.buffers[n]);
    task.buffers.erase(n);
    grads.resize(n->output_meta.size());
    for (size_t i = 0; i < grads.size(); ++i) {  // outputs that got no gradient contribute zeros
      if (!grads[i].defined()) {
        const TensorMeta& m = n->output_meta[i];
        grads[i] = zeros(m.sizes, TensorOptions(m.dtype).device(m.device));
      }
    }
    for (auto& [idx, hook] : n->pre_hooks) {
      Tensor replaced = hook(grads[idx]);
      if (replaced.defined()) grads[idx] = validate(replaced, n->output_meta[idx], *n, idx);
    }
    if (auto it = task.captures.find(n); it != task.captures.end()) {
      for (auto [slot, pos] : it->second) task.captured[pos] = grads[slot];
    }

    TensorList outs;
    const bool is_leaf_acc = dynamic_cast<AccumulateGrad*>(n) != nullptr;
    if (!is_leaf_acc || accumulate_leaves) {
      outs = n->apply(std::move(grads));
      if (AnomalyMode::is_enabled()) check_anomaly(*n, outs);  // Note [Anomaly mode]
    }
    if (!task.retain_graph && !is_leaf_acc) {
      n->release_variables();
      n->released = true;
    }
    for (size_t i = 0; i < n->next_edges.size(); ++i) {
      const Edge& e = n->next_edges[i];
      if (!e.valid()) continue;
      Node* next = e.fn.get();
      if (i < outs.size() && outs[i].defined()) {
        add_to_buffer(task, next, e.input_nr, validate(outs[i], next->output_meta[e.input_nr], *n, i));
      }
      if (--task.deps[next] == 0) {
        task.deps[next] = -1;
        ready.push(next);
      }
    }
  }
}

std::vector<std::pair<Edge, Tensor>> make_starts(const TensorList& roots, const TensorList& grad_roots) {
  RG_CHECK(grad_roots.empty() || grad_roots.size() == roots.size(), "backward: got ", grad_roots.size(),
           " gradients for ", roots.size(), " tensors");
  std::vector<std::pair<Edge, Tensor>> starts;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    RG_CHECK(r.defined() && r.requires_grad(), "element ", i,
             " of tensors does not require grad and does not have a grad_fn");
    Tensor g = grad_roots.empty() ? Tensor() : grad_roots[i];
    if (!g.defined()) {
      RG_CHECK(r.numel() == 1, "grad can be implicitly created only for scalar outputs, got ", r.describe());
      g = ones(r.sizes(), TensorOptions(r.dtype()).device(r.device()));
    }
    RG_CHECK(g.sizes() == r.sizes(), "backward: gradient of shape ", shape_str(g.sizes()),
             " does not match the tensor's shape ", shape_str(r.sizes()));
    starts.emplace_back(gradient_edge(r), g);
  }
  return starts;
}

}  // namespace

void backward(const TensorList& roots, const TensorList& grad_roots, bool retain_graph) {
  NoGradGuard ng;  // gradient formulas never record a graph (no double backward)
  GraphTask task;
  task.retain_graph = retain_graph;
  CurrentTask current(&task);
  run(task, make_starts(roots, grad_roots), /*accumulate_leaves=*/true);
  run_final_callbacks(task);
}

void queue_callback(std::function<void()> cb) {
  RG_CHECK(t_current_task, "queue_callback: only allowed while a backward runs on this thread (from a hook)");
  t_current_task->final_callbacks.push_back(std::move(cb));
}

bool in_backward() { return t_current_task != nullptr; }

TensorList grad(const TensorList& roots, const TensorList& inputs, const TensorList& grad_roots, bool retain_graph,
                bool allow_unused) {
  NoGradGuard ng;
  GraphTask task;
  task.retain_graph = retain_graph;
  CurrentTask current(&task);
  task.captured.resize(inputs.size());
  // Holding the edges keeps a leaf's AccumulateGrad alive (it is only weakly owned by the leaf),
  // so that a root that is itself one of the inputs reaches the same node.
  std::vector<Edge> input_edges;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Edge e = gradient_edge(inputs[i]);
    RG_CHECK(e.valid(), "grad: input ", i, " does not require grad");
    task.captures[e.fn.get()].emplace_back(e.input_nr, i);
    input_edges.push_back(e);
  }
  run(task, make_starts(roots, grad_roots), /*accumulate_leaves=*/false);
  run_final_callbacks(task);
  for (size_t i = 0; i < inputs.size(); ++i) {
    RG_CHECK(allow_unused || task.captured[i].defined(), "grad: one of the differentiated Tensors (input ", i,
             ") appears to not have been used in the graph. Set allow_unused=true if this is the desired behavior.");
  }
  return task.captured;
}

}  // namespace rg::autograd
