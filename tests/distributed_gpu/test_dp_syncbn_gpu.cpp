// DataParallel and SyncBatchNorm on real GPUs: DP on {cuda:0, cuda:0} (two replica streams on one
// GPU; with and without grad, under f16 autocast) and on every visible GPU against one process;
// SyncBN with 2 ranks sharing one GPU through the CUDA ring backend against BatchNorm2d on the full
// batch (uneven, empty, f16, cumulative momentum); DDP + SyncBN against one process.
// The ranks run this same executable, selecting the skipped test case "dp_syncbn_gpu_worker_entry".
#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>

#include "autograd/autocast.h"
#include "core/cuda_api.h"
#include "distributed/cuda_backends.h"
#include "distributed/dp_syncbn_util.h"

using namespace rg;
using namespace rg::test;
using namespace rg::test::dpsb;

namespace {

const char* kGpuEntry = "dp_syncbn_gpu_worker_entry";
const Device kCuda0 = Device::cuda(0);

std::shared_ptr<nn::Module> on_gpu(std::shared_ptr<nn::Module> m) {
  m->to(kCuda0);
  return m;
}

void expect_ok_gpu(const std::string& scenario) {
  const auto t0 = std::chrono::steady_clock::now();
  const Outcome o = launch_self(2, kGpuEntry, scenario);
  CHECK_MESSAGE(o.code == 0, o.report);
  for (int r = 0; r < 2; ++r) {
    const std::string ok = "OK " + scenario + " on rank " + std::to_string(r);
    CHECK_MESSAGE(o.report.find(ok) != std::string::npos, "no '", ok, "' line:\n", o.report);
  }
  MESSAGE(scenario, ": ", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), " s");
}

}  // namespace

TEST_CASE("DataParallel on {cuda:0, cuda:0} (two streams) = one process on cuda:0, 5 SGD-momentum steps") {
  SUBCASE("conv net, inputs on the GPU") {
    train_and_compare(on_gpu(small_net(false, 31)), {kCuda0, kCuda0}, 8, 5,
                      [](nn::Module& ref, const Tensor& x) { return ref.forward(x); }, kCuda0);
  }
  SUBCASE("conv net, inputs on the host (scatter copies them), uneven batch 7 = 4 + 3") {
    train_and_compare(on_gpu(small_net(false, 32)), {kCuda0, kCuda0}, 7, 5,
                      [](nn::Module& ref, const Tensor& x) { return ref.forward(x); }, kCPU);
  }
  SUBCASE("conv net with BN: per-replica statistics, against the per-chunk computation") {
    train_and_compare(on_gpu(small_net(true, 33)), {kCuda0, kCuda0}, 8, 5,
                      [](nn::Module& ref, const Tensor& x) { return per_chunk_forward(ref, x, {4, 4}); }, kCuda0);
  }
  SUBCASE("three streams, phases synchronised for timing") {
    train_and_compare(on_gpu(small_net(true, 34)), {kCuda0, kCuda0, kCuda0}, 9, 3,
                      [](nn::Module& ref, const Tensor& x) { return per_chunk_forward(ref, x, {3, 3, 3}); }, kCuda0,
                      dist::DataParallelOptions{.sync_timing = true});
  }
}

TEST_CASE("DataParallel on {cuda:0, cuda:0} without grad (every tensor copied without history): train, eval") {
  auto net = on_gpu(small_net(true, 37));
  auto dp = std::make_shared<dist::DataParallel>(net, std::vector<Device>{kCuda0, kCuda0});
  const auto ref = net->clone();
  NoGradGuard ng;
  // Training mode: per-replica batch statistics, the master's running statistics from chunk 0;
  // replica 1's buffer copies are written on its stream and dropped every step.
  for (int s = 0; s < 3; ++s) {
    CAPTURE(s);
    const Tensor x = batch(8, 50 + static_cast<uint64_t>(s), kCuda0);
    const Tensor y = dp->forward(x);
    CHECK_FALSE(y.requires_grad());
    RG_CHECK_CLOSE(y, per_chunk_forward(*ref, x, {4, 4}), kTol);
  }
  check_state_close(*net, *ref, kTol, "DataParallel forwards without grad");
  dp->eval();
  ref->eval();
  const Tensor x = batch(7, 60, kCuda0);  // chunks 4 + 3; eval: DP equals one module on the full batch
  RG_CHECK_CLOSE(dp->forward(x), ref->forward(x), kTol);
}

TEST_CASE("DataParallel on {cuda:0, cuda:0} under f16 autocast: the replica threads autocast, backward too") {
  auto net = on_gpu(small_net(false, 38));
  auto dp = std::make_shared<dist::DataParallel>(net, std::vector<Device>{kCuda0, kCuda0});
  const auto ref = net->clone();
  const Tensor x = batch(8, 70, kCuda0);
  Tensor y, y_ref;
  {
    amp::AutocastGuard ac(DType::f16);
    y = dp->forward(x);
    y_ref = per_chunk_forward(*ref, x, {4, 4});  // the same shapes, hence the same f16 kernels
  }
  CHECK(y_ref.dtype() == DType::f16);
  CHECK(y.dtype() == y_ref.dtype());
  const Tol f16_tol{2e-3, 2e-3};
  RG_CHECK_CLOSE(y, y_ref, f16_tol);
  y.to(DType::f32).sum().backward();
  y_ref.to(DType::f32).sum().backward();
  const auto p = net->named_parameters(), q = ref->named_parameters();
  REQUIRE(p.size() == q.size());
  for (size_t i = 0; i < p.size(); ++i) {
    CAPTURE(p[i].first);
    REQUIRE(p[i].second.grad().defined());
    CHECK(p[i].second.grad().dtype() == DType::f32);
    RG_CHECK_CLOSE(p[i].second.grad(), q[i].second.grad(), f16_tol);
  }
}

TEST_CASE("DataParallel on every visible GPU = one process") {
  RG_SKIP_UNLESS_GPU(2);  // real multi-GPU DataParallel
  const int n = cuda::device_count();
  std::vector<Device> devices;
  for (int i = 0; i < n; ++i) devices.push_back(Device::cuda(i));
  train_and_compare(on_gpu(small_net(false, 35)), devices, 2 * n + 1, 5,
                    [](nn::Module& ref, const Tensor& x) { return ref.forward(x); }, kCPU);
}

TEST_CASE("DataParallel on GPU: an exception in a replica names it; timings with and without sync") {
  auto net = on_gpu(small_net(false, 36));
  auto dp = std::make_shared<dist::DataParallel>(net, std::vector<Device>{kCuda0, kCuda0});
  CHECK_THROWS_WITH_AS(dp->forward(uniform({4, 5, 8, 8}, -1.0, 1.0, DType::f32, 1, kCuda0)),
                       doctest::Contains("replica 0 on device cuda:0"), Error);  // 5 channels, conv wants 3
  const Tensor y = dp->forward(batch(6, 2, kCuda0));
  y.sum().backward();
  const dist::DataParallelTimings t = dp->timings();
  CHECK(t.replicas == 2);
  CHECK(t.forward_ms > 0);
  CHECK(t.reduce_ms >= 0);
  CHECK(t.backward_ms >= t.reduce_ms);
}

TEST_CASE("SyncBatchNorm, 2 ranks on one GPU (CUDA ring) = BatchNorm2d on the full batch") {
  expect_ok_gpu("syncbn");
}

TEST_CASE("DDP + SyncBatchNorm, 2 ranks on one GPU = one process with BN on the double batch") {
  expect_ok_gpu("ddp");
}

TEST_CASE("dp_syncbn_gpu_worker_entry" * doctest::skip()) {
  const std::string scenario = scenario_env();
  REQUIRE_MESSAGE(!scenario.empty(), "the worker entry runs only under launch_self()");
  dist::register_cuda_backends();
  cuda::set_device(0);  // every rank on the same GPU: the ring backend's CUDA IPC path
  dist::InitOptions io;
  io.backend = "ring";
  io.device = kCuda0;
  io.timeout = std::chrono::milliseconds(120000);
  auto pg = dist::init_process_group(io);
  const int rank = pg->rank();
  if (scenario == "syncbn") {
    compare_with_full_batch(pg, {4, 4}, 5, /*mean_loss=*/true, 3, {}, 1, kCuda0);
    compare_with_full_batch(pg, {3, 1}, 4, /*mean_loss=*/false, 2, {}, 4, kCuda0);
    compare_with_full_batch(pg, {1, 2}, 1, false, 2, {}, 6, kCuda0);  // one value per channel on rank 0
    compare_with_full_batch(pg, {3, 0}, 2, false, 2, {}, 7, kCuda0);  // nothing on rank 1
    // 5120 and 6144 values per channel: the statistics kernels combine several partial blocks.
    compare_with_full_batch(pg, {6, 5}, 32, false, 2, {}, 9, kCuda0);
    nn::BatchNormOptions cumulative;  // momentum None: the factor comes from num_batches_tracked (host read)
    cumulative.momentum = std::nullopt;
    compare_with_full_batch(pg, {4, 4}, 5, true, 3, cumulative, 10, kCuda0);
    // f16 activations (autocast's case): f32 statistics, the same f64 pack and collective.
    {
      auto sbn = std::make_shared<dist::SyncBatchNorm>(3, nn::BatchNormOptions{}, pg);
      auto bn = std::make_shared<nn::BatchNorm2d>(3);
      same_affine(*sbn, *bn, 11);
      sbn->to(kCuda0);
      bn->to(kCuda0);
      const Tensor xfull = uniform({4, 3, 5, 5}, -2.0, 3.0, DType::f16, 12, kCuda0);
      const Tensor xr = leaf(rows(xfull, 2 * rank, 2)), xf = leaf(xfull);
      const Tensor yr = sbn->forward(xr), yf = bn->forward(xf);
      CHECK(yr.dtype() == DType::f16);
      RG_CHECK_CLOSE(yr, rows(yf, 2 * rank, 2), tol_for(DType::f16));
      RG_CHECK_CLOSE(sbn->running_mean(), bn->running_mean(), kTol);
      RG_CHECK_CLOSE(sbn->running_var(), bn->running_var(), kTol);
      const Tensor gfull = uniform({4, 3, 5, 5}, -1.0, 1.0, DType::f16, 13, kCuda0);  // dL/dy, not constant
      sum(yr * rows(gfull, 2 * rank, 2)).backward();
      sum(yf * gfull).backward();
      CHECK(xr.grad().dtype() == DType::f16);
      CHECK(sbn->weight().grad().dtype() == DType::f32);
      const Tol f16_grad_tol{2e-3, 2e-3}, f32_sum_tol{1e-3, 1e-3};
      RG_CHECK_CLOSE(xr.grad(), rows(xf.grad(), 2 * rank, 2), f16_grad_tol);
      RG_CHECK_CLOSE(reduced(*pg, sbn->weight().grad(), dist::ReduceOp::Sum), bn->weight().grad(), f32_sum_tol);
      RG_CHECK_CLOSE(reduced(*pg, sbn->bias().grad(), dist::ReduceOp::Sum), bn->bias().grad(), kTol);
    }
    // Eval: no communication.
    auto sbn = std::make_shared<dist::SyncBatchNorm>(3, nn::BatchNormOptions{}, pg);
    sbn->to(kCuda0);
    sbn->eval();
    const uint64_t seq = pg->sequence_number();
    sbn->forward(uniform({2, 3, 4, 4}, -1.0, 1.0, DType::f32, 8, kCuda0));
    CHECK(pg->sequence_number() == seq);
  } else if (scenario == "ddp") {
    ddp_syncbn_vs_one_process(pg, kCuda0);
  } else {
    FAIL("unknown scenario ", scenario);
  }
  pg->barrier()->synchronize();
  pg.reset();
  dist::destroy_process_group();
  std::printf("OK %s on rank %d\n", scenario.c_str(), rank);
  std::fflush(stdout);
}
