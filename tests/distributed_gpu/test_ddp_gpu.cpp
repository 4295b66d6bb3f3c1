// DDP on CUDA through the CUDA ring backend: 2 and 3 ranks on ONE GPU, as processes (copies of this
// executable running the skipped case "ddp_gpu_worker_entry"). The checks of
// tests/distributed/test_ddp.cpp on cuda:0: equivalence with one process on the whole batch (bucket
// views or not, small buckets launched before backward ends, no overlap, static_graph, no_sync,
// f16/bf16 communication), the static_graph bucket rebuild in arrival order, unused parameters,
// buffers, and GradScaler's found_inf shared across ranks.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>

#include "core/cuda_api.h"
#include "distributed/ddp_test_util.h"
#include "nn/amp/grad_scaler.h"

using namespace rg;
using namespace rg::test;
using namespace rg::test::ddp;

namespace {

// cuDNN may pick different algorithms for batch B and batch world * B: still f32 arithmetic.
constexpr Tol kGpuF32Tol{2e-5, 2e-4};
constexpr Tol kF16CommTol{1e-4, 1e-3};
constexpr Tol kBF16CommTol{1e-3, 1e-2};

const Device kDev = Device::cuda(0);

void check_stats(const dist::DDPStats& st, size_t nbuckets) {
  REQUIRE(st.buckets.size() == nbuckets);
  for (size_t k = 0; k < st.buckets.size(); ++k) {
    const auto& b = st.buckets[k];
    CHECK(b.bytes > 0);
    CHECK(b.launch_ms >= b.ready_ms - 1e-3);  // events on one stream: ordered (elapsed has ~0.5 us resolution)
    CHECK(b.finish_ms >= b.launch_ms);
  }
  CHECK(st.done_ms >= st.backward_end_ms - 1e-3);
  CHECK(st.hidden_fraction >= 0.0);
  CHECK(st.hidden_fraction <= 1.0);
}

void worker_equivalence() {
  const int world = dist::get_world_size();
  const TrainConfig c;
  const auto ref = reference_train(1000, world, c, kDev);

  const DDPRun a = ddp_train(1000, DDPOptions{}, c, kDev);
  CHECK_MESSAGE(compare_params(a.params, ref, kGpuF32Tol).empty(), compare_params(a.params, ref, kGpuF32Tol));
  CHECK(a.grads_share_storage);
  CHECK(a.stats.iteration == c.steps);
  check_stats(a.stats, 1);
  std::printf("%s", a.stats.str().c_str());

  DDPOptions small;
  small.first_bucket_cap_mb = mb(16);
  small.bucket_cap_mb = mb(1000);
  const DDPRun s = ddp_train(1000, small, c, kDev);
  CHECK_MESSAGE(compare_params(s.params, ref, kGpuF32Tol).empty(), compare_params(s.params, ref, kGpuF32Tol));
  CHECK(s.buckets == std::vector<std::vector<std::string>>{{"4.bias"}, {"4.weight"}, {"0.bias", "0.weight"}});
  check_stats(s.stats, 3);
  // The first bucket (the last layer's bias) is launched from its hook, before backward ends: both
  // moments are events on the compute stream, with the other layers' backward kernels between them.
  CHECK(s.stats.buckets[0].launch_ms < s.stats.backward_end_ms);
  std::printf("%s", s.stats.str().c_str());

  DDPOptions late = small;
  late.overlap = false;
  const DDPRun l = ddp_train(1000, late, c, kDev);
  CHECK_MESSAGE(compare_params(l.params, ref, kGpuF32Tol).empty(), compare_params(l.params, ref, kGpuF32Tol));
  check_stats(l.stats, 3);
  for (const auto& b : l.stats.buckets) CHECK(b.launch_ms >= l.stats.backward_end_ms - 1e-3);

  // static_graph: after the first backward the buckets are remade on the GPU in arrival order
  // (new flat tensors, .grad re-pointed into them); later steps reduce through the new ones.
  DDPOptions sg = small;
  sg.static_graph = true;
  const DDPRun g = ddp_train(1000, sg, c, kDev);
  CHECK_MESSAGE(compare_params(g.params, ref, kGpuF32Tol).empty(), compare_params(g.params, ref, kGpuF32Tol));
  size_t in_buckets = 0;
  for (const auto& b : g.buckets) in_buckets += b.size();
  CHECK(in_buckets == 4);
  check_stats(g.stats, g.buckets.size());

  check_no_views_and_no_sync(c, ref, kDev, kGpuF32Tol);

  DDPOptions half;
  half.comm_dtype = DType::f16;
  const DDPRun h = ddp_train(1000, half, c, kDev);
  CHECK_MESSAGE(compare_params(h.params, ref, kF16CommTol).empty(), compare_params(h.params, ref, kF16CommTol));
  CHECK(max_abs_diff(h.params, a.params) > 0.0);
  REQUIRE(h.stats.buckets.size() == 1);
  CHECK(h.stats.buckets[0].bytes * 2 == a.stats.buckets[0].bytes);

  DDPOptions bhalf;
  bhalf.comm_dtype = DType::bf16;
  const DDPRun bh = ddp_train(1000, bhalf, c, kDev);
  CHECK_MESSAGE(compare_params(bh.params, ref, kBF16CommTol).empty(), compare_params(bh.params, ref, kBF16CommTol));
}

void worker_unused() {
  const int rank = dist::get_rank(), world = dist::get_world_size();
  const int64_t B = 4;
  auto make = [](bool use_fc2) {
    manual_seed(55);
    auto m = std::make_shared<TwoHeads>(use_fc2);
    m->to(kDev);
    return m;
  };
  auto my_rows = [&](int step) { return rows(vec_batch(step, world * B, 4, 3, kDev), rank * B, B); };
  {
    DistributedDataParallel ddp(make(false));
    std::string err;
    try {
      mse(ddp, my_rows(0)).backward();
    } catch (const std::exception& e) {
      err = e.what();
    }
    CHECK_MESSAGE(err.find("DDP: these parameters received no gradient in this iteration: fc2.weight, fc2.bias.") !=
                      std::string::npos,
                  err);
  }
  // fc2 used on rank 1 only: every rank gets (0 + g1) / world for it; fc1 gets the average.
  for (bool view : {true, false}) {
    CAPTURE(view);
    std::vector<std::pair<std::string, Tensor>> expected;
    for (int q = 0; q < world; ++q) {
      auto m = make(q == 1);
      mse(*m, rows(vec_batch(0, world * B, 4, 3, kDev), q * B, B)).backward();
      size_t j = 0;
      for (const auto& [k, p] : m->named_parameters()) {
        const Tensor g = native::to(p.grad().defined() ? p.grad() : zeros_like(p), kCPU, DType::f32);
        if (q == 0) expected.emplace_back(k, g * (1.0 / world));
        else expected[j].second = expected[j].second + g * (1.0 / world);
        ++j;
      }
    }
    DDPOptions o;
    o.find_unused_parameters = true;
    o.gradient_as_bucket_view = view;
    auto model = make(rank == 1);
    DistributedDataParallel ddp(model, o);
    mse(ddp, my_rows(0)).backward();
    std::vector<std::pair<std::string, Tensor>> got;
    for (const auto& [k, p] : model->named_parameters()) {
      REQUIRE_MESSAGE(p.grad().defined(), k);
      got.emplace_back(k, native::to(p.grad(), kCPU, DType::f32, true));
    }
    CHECK_MESSAGE(compare_params(got, expected, kGpuF32Tol).empty(), compare_params(got, expected, kGpuF32Tol));
  }
  // Unused everywhere: .grad stays undefined.
  DDPOptions o;
  o.find_unused_parameters = true;
  auto model = make(false);
  DistributedDataParallel ddp(model, o);
  mse(ddp, my_rows(1)).backward();
  for (const auto& [k, p] : model->named_parameters()) CHECK_MESSAGE(p.grad().defined() == (k.rfind("fc1.", 0) == 0), k);
}

void worker_buffers_and_scaler() {
  const int rank = dist::get_rank(), world = dist::get_world_size();
  {
    auto m = std::make_shared<WithBuffers>(rank);
    m->to(kDev);
    DistributedDataParallel ddp(m);
    CHECK(m->param("w").to_vector<float>() == std::vector<float>{0.5f, 0.5f, 0.5f});
    CHECK(m->buffer("count").item<int64_t>() == 7);
    CHECK(m->buffer("flag").to_vector<float>() == std::vector<float>{1.0f, 0.0f});
    native::fill_(m->buffer("stat"), 5.0 + rank);
    ddp.forward(ones({2, 3}, TensorOptions().device(kDev)));
    CHECK(m->buffer("stat").to_vector<float>() == std::vector<float>{5.0f, 5.0f, 5.0f});
  }
  manual_seed(3);
  auto model = std::make_shared<nn::Linear>(4, 3);
  model->to(kDev);
  DistributedDataParallel ddp(model);
  optim::SGD opt(ddp.parameters(), optim::SGDOptions{.lr = 0.1});
  amp::GradScaler scaler;
  dist::sync_grad_scaler(scaler);
  const Batch b = rows(vec_batch(0, world * 2, 4, 3, kDev), rank * 2, 2);
  const Tensor w0 = native::to(model->weight(), kCPU, DType::f32, true);
  scaler.scale(mse(ddp, b)).backward();
  if (rank == 0) native::fill_(native::narrow(native::flatten(model->weight().grad()), 0, 0, 1), INFINITY);
  CHECK_FALSE(scaler.step(opt));
  scaler.update();
  CHECK(scaler.skipped_steps() == 1);
  CHECK(scaler.get_scale() == 32768.0);
  CHECK(compare(native::to(model->weight(), kCPU, DType::f32, true), w0, Tol{0, 0}).empty());
  opt.zero_grad();
  scaler.scale(mse(ddp, b)).backward();
  CHECK(scaler.step(opt));
  scaler.update();
}

}  // namespace

TEST_CASE("ddp_gpu_worker_entry" * doctest::skip()) {
  const std::string scenario = env_str("RG_DDP_WORKER");
  REQUIRE_MESSAGE(!scenario.empty(), "the worker entry runs only under launch_ranks()");
  cuda::set_device(0);
  dist::InitOptions io;
  io.backend = "ring";
  io.device = kDev;
  io.timeout = std::chrono::milliseconds(120000);
  dist::init_process_group(io);
  struct Destroy {
    ~Destroy() { dist::destroy_process_group(); }
  } destroy;
  if (scenario == "equivalence") worker_equivalence();
  else if (scenario == "unused") worker_unused();
  else if (scenario == "buffers-scaler") worker_buffers_and_scaler();
  else if (scenario == "static") check_static_graph_rebuild(kDev, kGpuF32Tol);
  else FAIL("unknown scenario ", scenario);
  cuda::synchronize();
  std::printf("OK %s rank %d\n", scenario.c_str(), dist::get_rank());
  std::fflush(stdout);
}

#define CHECK_GPU_RANKS(nproc, scenario)                                                    \
  do {                                                                                      \
    const Outcome out_ = launch_ranks((nproc), "ddp_gpu_worker_entry", (scenario));         \
    CHECK_MESSAGE(out_.code == 0, out_.report);                                             \
    CHECK_MESSAGE(count_in_logs(out_, std::string("OK ") + (scenario) + " rank") == (nproc), out_.report); \
  } while (0)

TEST_CASE("DDP on one GPU (cuda ring): 2 and 3 ranks x batch B equal 1 process x batch world*B") {
  for (int world : {2, 3}) {
    CAPTURE(world);
    CHECK_GPU_RANKS(world, "equivalence");
  }
}

TEST_CASE("DDP on one GPU (cuda ring): unused parameters") {
  CHECK_GPU_RANKS(2, "unused");
}

TEST_CASE("DDP on one GPU (cuda ring): buffers from rank 0; GradScaler skips on every rank") {
  CHECK_GPU_RANKS(2, "buffers-scaler");
}

TEST_CASE("DDP on one GPU (cuda ring): static_graph rebuilds the buckets in gradient arrival order") {
  CHECK_GPU_RANKS(2, "static");
}
