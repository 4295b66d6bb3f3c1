// Shared by tests/distributed/test_ddp.cpp and tests/distributed_gpu/test_ddp_gpu.cpp: a small conv
// net and small linear modules, deterministic per-step data, the single-process reference training
// (batch world * B) and the DDP training loop (batch B per rank), the static_graph rebuild check,
// on any device; ranks as processes.
#pragma once

#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "core/random.h"
#include "distributed/ddp.h"
#include "launch_util.h"
#include "nn/functional.h"
#include "nn/layers.h"
#include "nn/optim/sgd.h"
#include "test_util.h"

namespace rg::test::ddp {

using dist::DDPOptions;
using dist::DistributedDataParallel;

constexpr int64_t kClasses = 5;

// Bytes as MiB (the unit of DDPOptions' bucket caps).
inline double mb(double bytes) { return bytes / (1024.0 * 1024.0); }

// conv(3 -> 6, 3x3, pad 1) + relu + maxpool 2 + flatten + linear(96 -> 5), on (N, 3, 8, 8) inputs.
// Parameter names: 0.weight, 0.bias, 4.weight, 4.bias.
inline std::shared_ptr<nn::Sequential> make_convnet(uint64_t seed, Device dev) {
  manual_seed(seed);
  auto net = std::make_shared<nn::Sequential>();
  net->push_back(std::make_shared<nn::Conv2d>(3, 6, 3, nn::Conv2dOptions{.padding = 1}));
  net->push_back(std::make_shared<nn::ReLU>());
  net->push_back(std::make_shared<nn::MaxPool2d>(2));
  net->push_back(std::make_shared<nn::Flatten>());
  net->push_back(std::make_shared<nn::Linear>(6 * 4 * 4, kClasses));
  net->to(dev);
  return net;
}

struct Batch {
  Tensor x;  // (n, 3, 8, 8)
  Tensor y;  // (n) int64 class indices
};

// The global batch of `step`: the same on every rank; rank r uses rows [r * B, (r + 1) * B).
inline Batch global_batch(int step, int64_t n, Device dev) {
  Batch b;
  b.x = uniform({n, 3, 8, 8}, -1.0, 1.0, DType::f32, 700 + static_cast<uint64_t>(step), dev);
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < n; ++i) labels.push_back((i * 3 + step) % kClasses);
  b.y = native::to(from_vector<int64_t>(labels, {n}), dev, DType::i64);
  return b;
}

inline Batch rows(const Batch& b, int64_t start, int64_t len) {
  return {native::contiguous(native::narrow(b.x, 0, start, len)), native::contiguous(native::narrow(b.y, 0, start, len))};
}

inline Tensor loss_of(nn::Module& m, const Batch& b) { return nn::functional::cross_entropy(m.forward(b.x), b.y); }

// The (n, in) inputs and (n, out) targets of `step` for the linear test modules, uniform in [-1, 1).
inline Batch vec_batch(int step, int64_t n, int64_t in, int64_t out, Device dev = kCPU) {
  return {uniform({n, in}, -1.0, 1.0, DType::f32, 300 + static_cast<uint64_t>(step), dev),
          uniform({n, out}, -1.0, 1.0, DType::f32, 400 + static_cast<uint64_t>(step), dev)};
}

inline Tensor mse(nn::Module& m, const Batch& b) { return nn::functional::mse_loss(m.forward(b.x), b.y); }

// ---- test modules (Note [Module registry]: children and tensors are registered, not fields)

// fc1 always feeds the output; fc2 only when use_fc2.
class TwoHeads : public nn::Cloneable<TwoHeads> {
 public:
  explicit TwoHeads(bool use_fc2) : Cloneable("TwoHeads"), use_fc2_(use_fc2) {
    register_module("fc1", std::make_shared<nn::Linear>(4, 3));
    register_module("fc2", std::make_shared<nn::Linear>(4, 3));
  }
  Tensor forward(const Tensor& x) override {  // (N, 4) -> (N, 3)
    Tensor y = child("fc1")->forward(x);
    if (use_fc2_) y = y + child("fc2")->forward(x);
    return y;
  }

 private:
  bool use_fc2_;
};

// One parameter, and f32, i64 (0-dim) and bool buffers whose values depend on the rank.
class WithBuffers : public nn::Cloneable<WithBuffers> {
 public:
  explicit WithBuffers(int rank) : Cloneable("WithBuffers") {
    register_parameter("w", full({3}, 0.5 + rank));
    register_buffer("stat", full({3}, 1.0 + rank));
    register_buffer("count", scalar_tensor(7.0 + 10 * rank, DType::i64));
    register_buffer("flag", native::to(from_vector<float>({rank == 0 ? 1.0f : 0.0f, rank == 0 ? 0.0f : 1.0f}),
                                       kCPU, DType::b8));
  }
  Tensor forward(const Tensor& x) override { return x * param("w"); }  // (N, 3)
};

struct TrainConfig {
  int steps = 5;
  int64_t per_rank = 4;   // B
  bool no_sync = false;   // each step: half of B under no_sync, then the other half synchronised
  bool set_to_none = true;
  double lr = 0.05;
  double momentum = 0.9;
};

inline std::vector<std::pair<std::string, Tensor>> cpu_params(const nn::Module& m) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& [k, t] : m.named_parameters()) out.emplace_back(k, native::to(t, kCPU, t.dtype(), true));
  return out;
}

// One process, batch world * B, SGD with momentum; starts from make_convnet(seed).
inline std::vector<std::pair<std::string, Tensor>> reference_train(uint64_t seed, int world, const TrainConfig& c,
                                                                    Device dev) {
  auto net = make_convnet(seed, dev);
  optim::SGD opt(net->parameters(), optim::SGDOptions{.lr = c.lr, .momentum = c.momentum});
  for (int s = 0; s < c.steps; ++s) {
    const Batch b = global_batch(s, world * c.per_rank, dev);
    opt.zero_grad();
    loss_of(*net, b).backward();
    opt.step();
  }
  return cpu_params(*net);
}

struct DDPRun {
  std::vector<std::pair<std::string, Tensor>> params;  // the wrapped module's, on the CPU
  dist::DDPStats stats;
  std::vector<std::vector<std::string>> buckets;
  bool grads_share_storage = false;  // after the last backward: every .grad in one storage
};

// Each rank starts from make_convnet(seed + rank): DDP's broadcast must make them rank 0's.
inline DDPRun ddp_train(uint64_t seed, const DDPOptions& o, const TrainConfig& c, Device dev) {
  const int rank = dist::get_rank(), world = dist::get_world_size();
  auto net = make_convnet(seed + static_cast<uint64_t>(rank), dev);
  DistributedDataParallel ddp(net, o);
  optim::SGD opt(ddp.parameters(), optim::SGDOptions{.lr = c.lr, .momentum = c.momentum});
  DDPRun run;
  for (int s = 0; s < c.steps; ++s) {
    const Batch mine = rows(global_batch(s, world * c.per_rank, dev), rank * c.per_rank, c.per_rank);
    opt.zero_grad(c.set_to_none);
    if (c.no_sync) {
      const int64_t h = c.per_rank / 2;
      {
        auto guard = ddp.no_sync();
        (loss_of(ddp, rows(mine, 0, h)) * 0.5).backward();
      }
      (loss_of(ddp, rows(mine, h, c.per_rank - h)) * 0.5).backward();
    } else {
      loss_of(ddp, mine).backward();
    }
    if (s == c.steps - 1) {
      run.grads_share_storage = true;
      const auto ps = net->parameters();
      for (const Tensor& p : ps) {
        run.grads_share_storage = run.grads_share_storage && p.grad().defined() &&
                                  p.grad().storage() == ps[0].grad().storage();
      }
    }
    opt.step();
  }
  run.params = cpu_params(*net);
  run.stats = ddp.last_stats();
  run.buckets = ddp.bucket_parameter_names();
  return run;
}

// "" when every parameter matches within atol + rtol * |ref|, else what differs.
inline std::string compare_params(const std::vector<std::pair<std::string, Tensor>>& got,
                                  const std::vector<std::pair<std::string, Tensor>>& want, Tol tol) {
  if (got.size() != want.size()) return "parameter counts differ";
  std::string out;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i].first != want[i].first) return "names differ: " + got[i].first + " vs " + want[i].first;
    const std::string m = compare(got[i].second, want[i].second, tol);
    if (!m.empty()) out += got[i].first + ": " + m + "\n";
  }
  return out;
}

// Two DDP variants that must still equal the one-process reference `ref` (trained with config c):
// no bucket views, with zero_grad keeping the same .grad tensors (they then share no storage); and
// no_sync accumulation of half of each rank's batch, with and without views (one synchronised
// backward per step).
inline void check_no_views_and_no_sync(const TrainConfig& c, const std::vector<std::pair<std::string, Tensor>>& ref,
                                       Device dev, Tol tol) {
  DDPOptions noview;
  noview.gradient_as_bucket_view = false;
  TrainConfig keep = c;
  keep.set_to_none = false;
  const DDPRun nv = ddp_train(1000, noview, keep, dev);
  CHECK_MESSAGE(compare_params(nv.params, ref, tol).empty(), compare_params(nv.params, ref, tol));
  CHECK_FALSE(nv.grads_share_storage);

  TrainConfig acc = c;
  acc.no_sync = true;
  for (bool view : {true, false}) {
    CAPTURE(view);
    DDPOptions o;
    o.gradient_as_bucket_view = view;
    const DDPRun ns = ddp_train(1000, o, acc, dev);
    CHECK_MESSAGE(compare_params(ns.params, ref, tol).empty(), compare_params(ns.params, ref, tol));
    CHECK(ns.stats.iteration == c.steps);
  }
}

inline double max_abs_diff(const std::vector<std::pair<std::string, Tensor>>& a,
                           const std::vector<std::pair<std::string, Tensor>>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const auto x = a[i].second.to_vector<double>();
    const auto y = b[i].second.to_vector<double>();
    for (size_t j = 0; j < x.size() && j < y.size(); ++j) d = std::max(d, std::fabs(x[j] - y[j]));
  }
  return d;
}

// The documented bucket rule (Note [DDP reducer]) for parameters of one dtype and device, taken
// in `order`: append, close once the bucket holds >= its cap (first_cap for the first bucket).
inline std::vector<std::vector<std::string>> expected_buckets(
    const std::vector<std::pair<std::string, int64_t>>& order_and_bytes, int64_t first_cap, int64_t cap) {
  std::vector<std::vector<std::string>> out;
  std::vector<std::string> cur;
  int64_t bytes = 0;
  for (const auto& [name, n] : order_and_bytes) {
    cur.push_back(name);
    bytes += n;
    if (bytes >= (out.empty() ? first_cap : cap)) {
      out.push_back(cur);
      cur.clear();
      bytes = 0;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

inline std::string join(const std::vector<std::vector<std::string>>& bs) {
  std::string s;
  for (const auto& b : bs) {
    s += "[";
    for (size_t i = 0; i < b.size(); ++i) s += (i ? " " : "") + b[i];
    s += "]";
  }
  return s;
}

// (name, bytes) of m's parameters in registration order, or reversed (the reducer's initial order).
inline std::vector<std::pair<std::string, int64_t>> names_and_bytes(const nn::Module& m, bool reverse) {
  std::vector<std::pair<std::string, int64_t>> v;
  for (const auto& [k, t] : m.named_parameters()) v.emplace_back(k, static_cast<int64_t>(t.nbytes()));
  if (reverse) std::reverse(v.begin(), v.end());
  return v;
}

// Registered c, a, b; applied a, b, c: gradients arrive c, b, a, unlike the registration order.
class Shuffled : public nn::Cloneable<Shuffled> {
 public:
  Shuffled() : Cloneable("Shuffled") {
    register_module("c", std::make_shared<nn::Linear>(5, 4));
    register_module("a", std::make_shared<nn::Linear>(8, 6));
    register_module("b", std::make_shared<nn::Linear>(6, 5));
  }
  Tensor forward(const Tensor& x) override {  // (N, 8) -> (N, 4)
    Tensor h = relu(child("a")->forward(x));
    h = relu(child("b")->forward(h));
    return child("c")->forward(h);
  }
};

inline std::shared_ptr<Shuffled> make_shuffled(Device dev) {
  manual_seed(77);
  auto m = std::make_shared<Shuffled>();
  m->to(dev);
  return m;
}

// The order AccumulateGrad nodes of a fresh Shuffled fire in, recorded with hooks of our own.
inline std::vector<std::pair<std::string, int64_t>> shuffled_arrival(const Batch& b, Device dev) {
  auto m = make_shuffled(dev);
  std::vector<std::pair<std::string, int64_t>> order;
  std::vector<std::shared_ptr<autograd::AccumulateGrad>> keep;
  for (const auto& [k, p] : m->named_parameters()) {
    auto acc = autograd::grad_accumulator(p);
    const int64_t bytes = static_cast<int64_t>(p.nbytes());
    acc->post_hooks.emplace_back([&order, k, bytes](const Tensor&) { order.emplace_back(k, bytes); });
    keep.push_back(acc);
  }
  mse(*m, b).backward();
  return order;
}

// static_graph on every rank of the default group, on `dev`: the buckets start in reverse
// registration order and are rebuilt after the first backward in gradient arrival order (worked out
// by hand below); the stats follow the buckets each iteration ran with, and 3 SGD-momentum steps
// (zero_grad with and without set_to_none, bucket views or not) equal one process on the whole batch.
inline void check_static_graph_rebuild(Device dev, Tol tol) {
  const int rank = dist::get_rank(), world = dist::get_world_size();
  const int64_t B = 3;
  const int64_t first = 100, cap = 150;
  const auto arrival = shuffled_arrival(vec_batch(0, world * B, 8, 4, dev), dev);
  REQUIRE(arrival.size() == 6);
  CHECK(arrival[0].first.rfind("c.", 0) == 0);  // the last layer applied is the first to get gradients

  const auto initial = expected_buckets(names_and_bytes(*make_shuffled(dev), true), first, cap);
  const auto rebuilt = expected_buckets(arrival, first, cap);
  // By hand: b.bias + b.weight = 140 >= 100; a.bias + a.weight = 216 >= 150; c.bias + c.weight.
  CHECK(initial == std::vector<std::vector<std::string>>{{"b.bias", "b.weight"}, {"a.bias", "a.weight"},
                                                         {"c.bias", "c.weight"}});
  CHECK(rebuilt != initial);

  for (bool view : {true, false}) {
    CAPTURE(view);
    auto model = make_shuffled(dev);
    auto refm = make_shuffled(dev);
    DDPOptions o;
    o.static_graph = true;
    o.first_bucket_cap_mb = mb(first);
    o.bucket_cap_mb = mb(cap);
    o.gradient_as_bucket_view = view;
    DistributedDataParallel ddp(model, o);
    CHECK_MESSAGE(ddp.bucket_parameter_names() == initial, join(ddp.bucket_parameter_names()));
    optim::SGD opt(ddp.parameters(), optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
    optim::SGD ref_opt(refm->parameters(), optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
    for (int s = 0; s < 3; ++s) {
      opt.zero_grad(s % 2 == 0);
      mse(ddp, rows(vec_batch(s, world * B, 8, 4, dev), rank * B, B)).backward();
      if (s == 0) {
        CHECK_MESSAGE(ddp.bucket_parameter_names() == rebuilt, join(ddp.bucket_parameter_names()), " vs ",
                      join(rebuilt));
      }
      // The stats describe the buckets the iteration ran with: the initial ones, then the rebuilt.
      CHECK(ddp.last_stats().buckets.size() == (s == 0 ? initial : rebuilt).size());
      CHECK(ddp.last_stats().buckets[0].num_params == static_cast<int>((s == 0 ? initial : rebuilt)[0].size()));
      opt.step();
      ref_opt.zero_grad();
      mse(*refm, vec_batch(s, world * B, 8, 4, dev)).backward();
      ref_opt.step();
    }
    CHECK(ddp.bucket_parameter_names() == rebuilt);
    CHECK_MESSAGE(compare_params(cpu_params(*model), cpu_params(*refm), tol).empty(),
                  compare_params(cpu_params(*model), cpu_params(*refm), tol));
  }
}

// ---- ranks as processes: copies of this executable running one doctest case

struct Outcome {
  int code = -1;
  std::string report;  // the launcher's message and every rank's log
  std::vector<std::string> logs;
};

// Starts `nproc` copies of this executable running the skipped test case `entry` with
// RG_DDP_WORKER=scenario (OMP_NUM_THREADS=1 in the ranks); Note [Ranks as copies of the test executable].
inline Outcome launch_ranks(int nproc, const std::string& entry, const std::string& scenario,
                            std::vector<std::pair<std::string, std::string>> env = {},
                            std::chrono::milliseconds job_timeout = std::chrono::milliseconds(180000)) {
  char tmpl[] = "/tmp/rg_ddp_XXXXXX";
  const char* dir = mkdtemp(tmpl);
  REQUIRE(dir != nullptr);
  env.emplace_back("RG_DDP_WORKER", scenario);
  env.emplace_back("OMP_NUM_THREADS", "1");
  const SelfLaunch r = launch_copies({.nproc = nproc, .entry = entry, .env = env, .job_timeout = job_timeout, .log_dir = dir});
  Outcome out;
  out.code = r.result.exit_code;
  out.logs = r.logs;
  out.report = r.report(scenario, [](std::string log) {  // first failures first
    if (log.size() > 12000) log = log.substr(0, 8000) + "\n...\n" + log.substr(log.size() - 4000);
    return log;
  });
  return out;
}

inline int count_in_logs(const Outcome& o, const std::string& needle) {
  int n = 0;
  for (const auto& l : o.logs) n += l.find(needle) != std::string::npos;
  return n;
}

}  // namespace rg::test::ddp
