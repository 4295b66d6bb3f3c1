// Shared by the DataParallel and SyncBatchNorm tests (CPU here, GPU in tests/distributed_gpu): a
// small conv net, parameter/buffer comparison, and ranks started as copies of the running test
// executable through the launcher, each running one doctest case that normal runs skip.
#pragma once

#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "core/random.h"
#include "distributed/data_parallel.h"
#include "distributed/ddp.h"
#include "distributed/sync_batchnorm.h"
#include "launch_util.h"
#include "nn/functional.h"
#include "nn/layers.h"
#include "nn/optim/sgd.h"
#include "test_util.h"

namespace rg::test::dpsb {

// ---- ranks as copies of this executable

struct Outcome {
  int code = -1;
  std::string report;  // the launcher's message and every rank's log
};

// Starts nproc copies of this executable that run only the doctest case `entry` (declared with
// doctest::skip(), so normal runs skip it), with RG_DPSB_SCENARIO=scenario; OMP_NUM_THREADS=1.
// Note [Ranks as copies of the test executable].
inline Outcome launch_self(int nproc, const std::string& entry, const std::string& scenario,
                           std::vector<std::pair<std::string, std::string>> env = {},
                           std::chrono::milliseconds job_timeout = std::chrono::milliseconds(180000)) {
  char tmpl[] = "/tmp/rg_dpsb_XXXXXX";
  const char* dir = ::mkdtemp(tmpl);
  Outcome out;
  if (!dir) {
    out.report = "mkdtemp failed";
    return out;
  }
  env.emplace_back("RG_DPSB_SCENARIO", scenario);
  env.emplace_back("OMP_NUM_THREADS", "1");
  const SelfLaunch r =
      launch_copies({.nproc = nproc, .entry = entry, .env = env, .job_timeout = job_timeout, .log_dir = dir});
  out.code = r.result.exit_code;
  out.report = r.report(scenario, [](std::string log) {
    if (log.size() > 8000) log = "..." + log.substr(log.size() - 8000);
    return log;
  });
  return out;
}

inline std::string scenario_env() { return env_str("RG_DPSB_SCENARIO"); }

// ---- models and comparisons

// conv3x3(3 -> w) [BN] ReLU conv3x3/2(w -> w) [BN] ReLU avgpool flatten linear(w -> 5); the same
// values for the same seed. BN weights and biases are set away from 1 and 0 so they matter.
inline std::shared_ptr<nn::Sequential> small_net(bool bn, uint64_t seed, int64_t width = 8) {
  manual_seed(seed);
  auto net = std::make_shared<nn::Sequential>();
  net->push_back(std::make_shared<nn::Conv2d>(3, width, 3, nn::Conv2dOptions{.padding = 1}));
  if (bn) net->push_back(std::make_shared<nn::BatchNorm2d>(width));
  net->push_back(std::make_shared<nn::ReLU>());
  net->push_back(std::make_shared<nn::Conv2d>(width, width, 3, nn::Conv2dOptions{.stride = 2, .padding = 1}));
  if (bn) net->push_back(std::make_shared<nn::BatchNorm2d>(width));
  net->push_back(std::make_shared<nn::ReLU>());
  net->push_back(std::make_shared<nn::AdaptiveAvgPool2d>(1));
  net->push_back(std::make_shared<nn::Flatten>());
  net->push_back(std::make_shared<nn::Linear>(width, 5));
  NoGradGuard ng;
  uint64_t s = seed * 31 + 7;
  for (auto& [k, m] : net->named_modules()) {
    if (auto* b = dynamic_cast<nn::BatchNorm2d*>(m.get())) {
      native::copy_(b->weight(), uniform(b->weight().sizes(), 0.5, 1.5, DType::f32, ++s));
      native::copy_(b->bias(), uniform(b->bias().sizes(), -0.5, 0.5, DType::f32, ++s));
    }
  }
  return net;
}

// Every state_dict entry of `actual` close to `expected`'s (same keys, in order), naming the key.
inline void check_state_close(const nn::Module& actual, const nn::Module& expected, Tol tol, const std::string& what) {
  const nn::StateDict a = actual.state_dict(), e = expected.state_dict();
  REQUIRE_MESSAGE(a.size() == e.size(), what, ": ", a.size(), " entries vs ", e.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK_MESSAGE(a[i].first == e[i].first, what, ": key ", a[i].first, " vs ", e[i].first);
    const std::string msg = compare(a[i].second, e[i].second, tol);
    CHECK_MESSAGE(msg.empty(), what, ": ", a[i].first, ": ", msg);
  }
}

// Largest |a - b| over two modules' parameters (to show that training moved them).
inline double max_param_diff(const nn::Module& a, const nn::Module& b) {
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  double m = 0;
  for (size_t i = 0; i < pa.size() && i < pb.size(); ++i) {
    const auto va = pa[i].second.to_vector<double>(), vb = pb[i].second.to_vector<double>();
    for (size_t j = 0; j < va.size() && j < vb.size(); ++j) m = std::max(m, std::abs(va[j] - vb[j]));
  }
  return m;
}

// ---- DataParallel against one module

inline const Tol kTol{2e-5, 2e-4};  // f32, after a few steps whose sums run in different orders

inline optim::SGDOptions sgd_options() { return optim::SGDOptions{.lr = 0.1, .momentum = 0.9}; }

inline Tensor batch(int64_t n, uint64_t seed, Device d = kCPU) {
  return uniform({n, 3, 8, 8}, -1.0, 1.0, DType::f32, seed, d);
}
inline Tensor targets(int64_t n, uint64_t seed, Device d = kCPU) {
  return uniform({n, 5}, -1.0, 1.0, DType::f32, seed, d);
}

// The reference for DataParallel with batch norm: each chunk through the SAME module in training
// mode (per-chunk batch statistics, as each replica computes), outputs concatenated; the running
// statistics kept as after chunk 0 (DataParallel's replica 0 owns the master's buffers; the
// other replicas update copies that are dropped). `rows` are the chunk sizes, given by the test.
inline Tensor per_chunk_forward(nn::Module& ref, const Tensor& x, const std::vector<int64_t>& rows) {
  std::vector<Tensor> outs;
  std::vector<Tensor> after_chunk0;
  int64_t off = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    outs.push_back(ref.forward(x.narrow(0, off, rows[i])));
    off += rows[i];
    if (i == 0) {
      for (const Tensor& b : ref.buffers()) after_chunk0.push_back(native::clone(b));
    }
  }
  const std::vector<Tensor> bufs = ref.buffers();
  for (size_t i = 0; i < bufs.size(); ++i) native::copy_(bufs[i], after_chunk0[i]);
  return cat(outs, 0);
}

// Trains `master` (on devices[0]) through DataParallel(devices) and a clone through
// `ref_forward` on the same batches (made on `input_device`; the reference gets them on
// devices[0]), SGD with momentum, `steps` steps; checks outputs every step, state at the end.
template <typename RefForward>
void train_and_compare(const std::shared_ptr<nn::Module>& master, const std::vector<Device>& devices, int64_t n,
                       int steps, RefForward ref_forward, Device input_device = kCPU,
                       dist::DataParallelOptions options = {}) {
  const std::shared_ptr<nn::Module> ref = master->clone();
  const std::shared_ptr<nn::Module> initial = master->clone();
  auto dp = std::make_shared<dist::DataParallel>(master, devices, std::nullopt, options);
  optim::SGD opt_dp(dp->parameters(), sgd_options());
  optim::SGD opt_ref(ref->parameters(), sgd_options());
  const Device d0 = devices[0];
  for (int s = 0; s < steps; ++s) {
    CAPTURE(s);
    const Tensor x = batch(n, 100 + static_cast<uint64_t>(s), input_device);
    const Tensor t = targets(n, 200 + static_cast<uint64_t>(s), d0);
    const Tensor y_dp = dp->forward(x);
    REQUIRE(y_dp.grad_fn() != nullptr);
    CHECK(y_dp.grad_fn()->name() == "Gather");
    CHECK(y_dp.device() == d0);
    const Tensor y_ref = ref_forward(*ref, x.to(d0));
    RG_CHECK_CLOSE(y_dp, y_ref, kTol);
    opt_dp.zero_grad();
    nn::functional::mse_loss(y_dp, t).backward();
    opt_dp.step();
    opt_ref.zero_grad();
    nn::functional::mse_loss(y_ref, t).backward();
    opt_ref.step();
    const dist::DataParallelTimings tm = dp->timings();
    CHECK(tm.step == s + 1);
    CHECK(tm.reduce_ms >= 0);
  }
  check_state_close(*master, *ref, kTol, "DataParallel vs one process");
  CHECK_MESSAGE(max_param_diff(*master, *initial) > 1e-3, "training did not move the parameters");
}

// ---- SyncBatchNorm against BatchNorm2d on the full batch (run on every rank of `pg`)

// A fresh leaf holding a copy of t.
inline Tensor leaf(const Tensor& t) {
  Tensor c = native::clone(t);
  c.set_requires_grad(true);
  return c;
}
inline Tensor rows(const Tensor& t, int64_t begin, int64_t n) {
  return native::contiguous(native::narrow(t, 0, begin, n));
}
inline Tensor scaled(const Tensor& t, double s) { return native::unary(UnaryOp::Affine, t, s, 0.0); }

// This rank's copy of a gradient reduced over the group.
inline Tensor reduced(dist::ProcessGroup& pg, const Tensor& g, dist::ReduceOp op) {
  Tensor c = native::clone(g);
  pg.allreduce(c, op)->wait();
  return c;
}

// Both modules get the same random weight and bias.
template <typename A, typename B>
void same_affine(A& a, B& b, uint64_t seed) {
  NoGradGuard ng;
  const Tensor w = uniform(a.weight().sizes(), 0.5, 1.5, DType::f32, seed);
  const Tensor bias = uniform(a.bias().sizes(), -0.5, 0.5, DType::f32, seed + 1);
  native::copy_(a.weight(), w);
  native::copy_(b.weight(), w);
  native::copy_(a.bias(), bias);
  native::copy_(b.bias(), bias);
}

// Rank r holds rows [begin_r, begin_r + sizes[r]) of a full batch of sum(sizes) images of
// side x side; SyncBatchNorm on the ranks against BatchNorm2d on the full batch, `steps` steps,
// both on `device`. Note [SyncBatchNorm] gives the scaling: with mean_loss each rank's loss is a
// mean over its own rows and the full loss a mean over all rows (equal sizes only), so
// dx_r = W * dx_full rows and the AVERAGE of the ranks' dweight/dbias is the full one; otherwise
// the losses are sums, dx_r = dx_full rows and the SUM of dweight/dbias is the full one.
inline void compare_with_full_batch(const std::shared_ptr<dist::ProcessGroup>& pg, const std::vector<int64_t>& sizes,
                                    int64_t side, bool mean_loss, int steps, nn::BatchNormOptions opts,
                                    uint64_t seed, Device device = kCPU) {
  const int W = pg->size(), r = pg->rank();
  REQUIRE(static_cast<int>(sizes.size()) == W);
  int64_t total = 0, begin = 0;
  for (int q = 0; q < W; ++q) {
    if (q < r) begin += sizes[static_cast<size_t>(q)];
    total += sizes[static_cast<size_t>(q)];
  }
  const int64_t mine = sizes[static_cast<size_t>(r)], C = 3;
  auto sbn = std::make_shared<dist::SyncBatchNorm>(C, opts, pg);
  auto bn = std::make_shared<nn::BatchNorm2d>(C, opts);
  same_affine(*sbn, *bn, seed);
  sbn->to(device);
  bn->to(device);
  for (int s = 0; s < steps; ++s) {
    CAPTURE(s);
    const uint64_t k = seed * 100 + static_cast<uint64_t>(s);
    const Tensor xfull = uniform({total, C, side, side}, -2.0, 3.0, DType::f32, k, device);
    const Tensor gfull = uniform({total, C, side, side}, -1.0, 1.0, DType::f32, k + 50, device);
    const Tensor xf = leaf(xfull), xr = leaf(rows(xfull, begin, mine));
    const Tensor yr = sbn->forward(xr), yf = bn->forward(xf);
    RG_CHECK_CLOSE(yr, rows(yf, begin, mine), kTol);
    Tensor loss_r = sum(yr * rows(gfull, begin, mine)), loss_f = sum(yf * gfull);
    if (mean_loss) {
      loss_r = loss_r * (1.0 / static_cast<double>(mine));
      loss_f = loss_f * (1.0 / static_cast<double>(total));
    }
    sbn->zero_grad();
    bn->zero_grad();
    loss_r.backward();
    loss_f.backward();
    const double factor = mean_loss ? static_cast<double>(W) : 1.0;
    RG_CHECK_CLOSE(xr.grad(), scaled(rows(xf.grad(), begin, mine), factor), kTol);
    const dist::ReduceOp op = mean_loss ? dist::ReduceOp::Avg : dist::ReduceOp::Sum;
    RG_CHECK_CLOSE(reduced(*pg, sbn->weight().grad(), op), bn->weight().grad(), kTol);
    RG_CHECK_CLOSE(reduced(*pg, sbn->bias().grad(), op), bn->bias().grad(), kTol);
    RG_CHECK_CLOSE(sbn->running_mean(), bn->running_mean(), kTol);
    RG_CHECK_CLOSE(sbn->running_var(), bn->running_var(), kTol);
    CHECK(sbn->num_batches_tracked().item() == s + 1);
  }
}

// The whole stack on every rank of `pg`: DDP over a SyncBN model with batch B per rank against
// one module with BatchNorm2d and batch W * B (computed on each rank), 5 SGD-momentum steps.
inline void ddp_syncbn_vs_one_process(const std::shared_ptr<dist::ProcessGroup>& pg, Device device = kCPU) {
  const int r = pg->rank(), W = pg->size();
  const int64_t B = 4;
  const std::shared_ptr<nn::Module> ref = small_net(true, 21);
  ref->to(device);
  const std::shared_ptr<nn::Module> initial = ref->clone();
  const std::shared_ptr<nn::Module> model = dist::convert_sync_batchnorm(ref->clone(), pg);
  dist::DDPOptions o;
  o.process_group = pg;
  auto ddp = std::make_shared<dist::DistributedDataParallel>(model, o);
  optim::SGD opt(ddp->parameters(), sgd_options()), opt_ref(ref->parameters(), sgd_options());
  for (int s = 0; s < 5; ++s) {
    CAPTURE(s);
    const Tensor xfull = batch(W * B, 30 + static_cast<uint64_t>(s), device);
    const Tensor tfull = targets(W * B, 40 + static_cast<uint64_t>(s), device);
    const Tensor y = ddp->forward(rows(xfull, B * r, B));
    const Tensor yf = ref->forward(xfull);
    RG_CHECK_CLOSE(y, rows(yf, B * r, B), kTol);
    opt.zero_grad();
    nn::functional::mse_loss(y, rows(tfull, B * r, B)).backward();
    opt.step();
    opt_ref.zero_grad();
    nn::functional::mse_loss(yf, tfull).backward();
    opt_ref.step();
  }
  check_state_close(*model, *ref, kTol, "DDP + SyncBN on 2 ranks vs one process with BN");
  CHECK_MESSAGE(max_param_diff(*ref, *initial) > 1e-3, "training did not move the parameters");
}

}  // namespace rg::test::dpsb
