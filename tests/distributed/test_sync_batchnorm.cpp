// SyncBatchNorm in real processes (2 ranks, the CPU ring) against BatchNorm2d on the full batch:
// forward, running statistics, input and weight gradients (Note [SyncBatchNorm] for the scaling),
// uneven and tiny batches, eval mode without communication, convert_sync_batchnorm on ResNet-18,
// and the whole stack: DDP + SyncBN on 2 ranks = one process with BN on the double batch.
// The ranks run this same executable, selecting the skipped test case "dp_syncbn_worker_entry".
#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <map>

#include "autograd/function.h"
#include "distributed/ddp.h"
#include "distributed/store.h"
#include "distributed/sync_batchnorm.h"
#include "dp_syncbn_util.h"
#include "models/resnet.h"
#include "nn/functional.h"
#include "nn/optim/sgd.h"

using namespace rg;
using namespace rg::test;
using namespace rg::test::dpsb;
namespace F = rg::nn::functional;

namespace {

const char* kEntry = "dp_syncbn_worker_entry";

// Runs `scenario` on 2 ranks; each must finish it (the "OK" line) without a failed check.
void expect_ok(const std::string& scenario) {
  const auto t0 = std::chrono::steady_clock::now();
  const Outcome o = launch_self(2, kEntry, scenario);
  CHECK_MESSAGE(o.code == 0, o.report);
  for (int r = 0; r < 2; ++r) {
    const std::string ok = "OK " + scenario + " on rank " + std::to_string(r);
    CHECK_MESSAGE(o.report.find(ok) != std::string::npos, "no '", ok, "' line:\n", o.report);
  }
  MESSAGE(scenario, ": ", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), " s");
}

std::shared_ptr<dist::ProcessGroup> init_rank() {
  dist::InitOptions io;
  io.backend = "ring";
  io.device = kCPU;
  io.timeout = std::chrono::milliseconds(60000);  // a failed check must not hang for 5 minutes
  return dist::init_process_group(io);
}

// ---- scenarios (each rank runs one)

// bf16 activations (autocast's case): f32 statistics, the same pack and collective. The reference
// is batch norm in f64 on the whole batch of the very same bf16 values, with a random dL/dy (a
// constant one makes dx and dweight exactly zero in training, hiding any wrong formula).
void scenario_bf16(const std::shared_ptr<dist::ProcessGroup>& pg) {
  const int r = pg->rank();
  auto sbn = std::make_shared<dist::SyncBatchNorm>(3, nn::BatchNormOptions{}, pg);
  auto bn = std::make_shared<nn::BatchNorm2d>(3);
  same_affine(*sbn, *bn, 4);
  const Tensor xfull = uniform({4, 3, 5, 5}, -2.0, 3.0, DType::bf16, 15);
  const Tensor gfull = uniform({4, 3, 5, 5}, -1.0, 1.0, DType::bf16, 16);
  const Tensor xr = leaf(rows(xfull, 2 * r, 2));
  const Tensor yr = sbn->forward(xr);
  bn->forward(xfull);  // the running statistics of the full batch
  CHECK(yr.dtype() == DType::bf16);
  RG_CHECK_CLOSE(sbn->running_var(), bn->running_var(), kTol);
  yr.backward(rows(gfull, 2 * r, 2));
  CHECK(xr.grad().dtype() == DType::bf16);
  CHECK(sbn->weight().grad().dtype() == DType::f32);

  const Tensor x64 = leaf(native::to(xfull, kCPU, DType::f64));
  const Tensor w64 = leaf(native::to(sbn->weight(), kCPU, DType::f64)), b64 = leaf(native::to(sbn->bias(), kCPU, DType::f64));
  const Tensor y64 = F::batch_norm(x64, Tensor(), Tensor(), w64, b64, true, 0.1, 1e-5);
  y64.backward(native::to(gfull, kCPU, DType::f64));
  // y and dx: f32 arithmetic (relative error ~1e-7 on terms <= 10) rounded once to bf16, so
  // |got - ref| <= 2^-8 |ref| + 1e-5 (half a bf16 ulp plus the f32 part).
  const Tol bf16_tol{1e-5, std::ldexp(1.0, -8)};
  RG_CHECK_CLOSE(yr, rows(y64, 2 * r, 2), bf16_tol);
  RG_CHECK_CLOSE(xr.grad(), rows(x64.grad(), 2 * r, 2), bf16_tol);
  // dweight and dbias are each rank's local sums (DDP averages them): their sum over the ranks is
  // the full batch's, summed in f32 over 50 values of |dy (x - mean)| <= 3 per rank: at worst
  // 50 * 2^-24 * 150 = 4.5e-4 from the order; a wrong formula is off by > 1e-2.
  RG_CHECK_CLOSE(reduced(*pg, sbn->weight().grad(), dist::ReduceOp::Sum), w64.grad(), (Tol{5e-4, 1e-5}));
  RG_CHECK_CLOSE(reduced(*pg, sbn->bias().grad(), dist::ReduceOp::Sum), b64.grad(), (Tol{5e-4, 1e-5}));
}

void scenario_equal(const std::shared_ptr<dist::ProcessGroup>& pg) {
  compare_with_full_batch(pg, {4, 4}, 5, /*mean_loss=*/true, 3, {}, 1);
  nn::BatchNormOptions cumulative;
  cumulative.momentum = std::nullopt;
  compare_with_full_batch(pg, {4, 4}, 5, true, 3, cumulative, 2);
  nn::BatchNormOptions other;
  other.eps = 1e-3;
  other.momentum = 0.3;
  compare_with_full_batch(pg, {2, 2}, 3, /*mean_loss=*/false, 2, other, 3);
  scenario_bf16(pg);
}

// Note [Distributed gradcheck]
// SyncBatchNormBackward only runs with two ranks or more, and its input gradient is the gradient of
// the GLOBAL loss (every rank's output depends on every rank's input through the statistics), so
// gradcheck on one rank's own output would difference the wrong function. Instead every rank runs
// gradcheck on the same global function of the same global inputs (the whole batch X, weight and
// bias, equal on every rank):
//   X, w, b -> sum_grad_over_ranks -> X's rows of this rank -> sync_batch_norm -> this rank's rows
//   of a zero tensor of the whole output's shape -> sum_over_ranks = the whole output Y
// sum_over_ranks (forward: allreduce; backward: identity) puts the same global Y on every rank;
// sum_grad_over_ranks (forward: identity; backward: allreduce) sums what each rank's backward
// reached (its own rows of X, its local dweight and dbias) into the global gradient. gradcheck's
// loop is the same on every rank (same values, same fixed-seed cotangents), so the ranks perturb
// the same element in the same call, and their collectives pair up in lock step; each rank then
// compares the analytical gradient of <v, Y> with central differences of <v, Y>.
struct SumOverRanksBackward : autograd::Node {
  std::string name() const override { return "SumOverRanksBackward"; }
  autograd::TensorList apply(autograd::TensorList&& g) override { return {g[0]}; }
};
struct SumGradOverRanksBackward : autograd::Node {
  std::shared_ptr<dist::ProcessGroup> pg;
  std::string name() const override { return "SumGradOverRanksBackward"; }
  autograd::TensorList apply(autograd::TensorList&& g) override {
    Tensor s = native::clone(g[0]);
    pg->allreduce(s, dist::ReduceOp::Sum)->wait();
    return {s};
  }
};
Tensor sum_over_ranks(const Tensor& t, const std::shared_ptr<dist::ProcessGroup>& pg) {
  Tensor out = native::clone(t);
  pg->allreduce(out, dist::ReduceOp::Sum)->wait();
  if (auto n = autograd::record<SumOverRanksBackward>({&t})) autograd::set_history(out, n);
  return out;
}
Tensor sum_grad_over_ranks(const Tensor& t, const std::shared_ptr<dist::ProcessGroup>& pg) {
  Tensor out = native::clone(t);
  if (auto n = autograd::record<SumGradOverRanksBackward>({&t})) {
    n->pg = pg;
    autograd::set_history(out, n);
  }
  return out;
}

// gradcheck of SyncBatchNormBackward (Note [Distributed gradcheck]): rows {3, 1} of a batch of 4,
// so the ranks hold uneven parts; x, weight and bias all require grad.
void scenario_gradcheck(const std::shared_ptr<dist::ProcessGroup>& pg) {
  REQUIRE(pg->size() == 2);
  const int r = pg->rank();
  const int64_t begin = r == 0 ? 0 : 3, mine = r == 0 ? 3 : 1, total = 4;
  const Tensor x = leaf(uniform({total, 2, 2, 3}, -2.0, 2.0, DType::f64, 17));
  const Tensor w = leaf(uniform({2}, 0.5, 1.5, DType::f64, 18)), b = leaf(uniform({2}, -0.5, 0.5, DType::f64, 19));
  auto global_output = [&](const std::vector<Tensor>& in) {
    const Tensor xs = sum_grad_over_ranks(in[0], pg), ws = sum_grad_over_ranks(in[1], pg),
                 bs = sum_grad_over_ranks(in[2], pg);
    const Tensor yr = dist::sync_batch_norm(xs.narrow(0, begin, mine), Tensor(), Tensor(), ws, bs, 0.1, 1e-5, pg);
    const TensorOptions o(DType::f64);
    const Tensor placed = cat({zeros({begin, 2, 2, 3}, o), yr, zeros({total - begin - mine, 2, 2, 3}, o)}, 0);
    return sum_over_ranks(placed, pg);  // (4, 2, 2, 3) on every rank
  };
  const uint64_t seq = pg->sequence_number();
  CHECK_GRADCHECK(global_output, std::vector<Tensor>{x, w, b});
  CHECK(pg->sequence_number() > seq + 100);  // collectives ran in every evaluation (both ranks alike)
}

void scenario_uneven(const std::shared_ptr<dist::ProcessGroup>& pg) {
  compare_with_full_batch(pg, {3, 1}, 4, /*mean_loss=*/false, 3, {}, 4);
  compare_with_full_batch(pg, {1, 6}, 2, false, 2, {}, 5);
}

void scenario_tiny(const std::shared_ptr<dist::ProcessGroup>& pg) {
  // A batch of one 1x1 image on rank 0: one value per channel there, three in all.
  compare_with_full_batch(pg, {1, 2}, 1, false, 2, {}, 6);
  // Nothing at all on rank 1: it still takes part in both collectives.
  compare_with_full_batch(pg, {3, 0}, 2, false, 2, {}, 7);
  // One value per channel in the whole group: refused on every rank, naming the count.
  auto sbn = std::make_shared<dist::SyncBatchNorm>(3, nn::BatchNormOptions{}, pg);
  const Tensor x = zeros({pg->rank() == 0 ? 1 : 0, 3, 1, 1});
  CHECK_THROWS_WITH_AS(sbn->forward(x), doctest::Contains("global count of 1"), Error);
}

void scenario_eval(const std::shared_ptr<dist::ProcessGroup>& pg) {
  const int r = pg->rank();
  auto sbn = std::make_shared<dist::SyncBatchNorm>(3, nn::BatchNormOptions{}, pg);
  auto bn = std::make_shared<nn::BatchNorm2d>(3);
  same_affine(*sbn, *bn, 8);
  const Tensor xfull = uniform({6, 3, 4, 4}, -1.0, 2.0, DType::f32, 9);
  {  // one training step so that the running statistics are not the initial ones
    sbn->forward(rows(xfull, 3 * r, 3));
    bn->forward(xfull);
  }
  // Training: exactly one collective in forward and one in backward.
  uint64_t seq = pg->sequence_number();
  Tensor xr = leaf(rows(xfull, 3 * r, 3));
  Tensor y = sbn->forward(xr);
  CHECK(pg->sequence_number() == seq + 1);
  y.sum().backward();
  CHECK(pg->sequence_number() == seq + 2);
  // No input gradient wanted: the backward needs no collective (the same on every rank).
  seq = pg->sequence_number();
  y = sbn->forward(rows(xfull, 3 * r, 3));
  y.sum().backward();
  CHECK(pg->sequence_number() == seq + 1);
  for (int i = 0; i < 2; ++i) bn->forward(xfull);  // the reference sees the same training forwards
  // Eval: running statistics, no communication at all.
  sbn->eval();
  bn->eval();
  seq = pg->sequence_number();
  xr = leaf(rows(xfull, 3 * r, 3));
  y = sbn->forward(xr);
  const Tensor xf = leaf(xfull);
  const Tensor yf = bn->forward(xf);
  RG_CHECK_CLOSE(y, rows(yf, 3 * r, 3), kTol);
  y.sum().backward();
  yf.sum().backward();
  RG_CHECK_CLOSE(xr.grad(), rows(xf.grad(), 3 * r, 3), kTol);
  CHECK(pg->sequence_number() == seq);
  // Eval without running statistics: local batch statistics (PyTorch), still no communication.
  nn::BatchNormOptions untracked;
  untracked.track_running_stats = false;
  auto sbn2 = std::make_shared<dist::SyncBatchNorm>(3, untracked, pg);
  auto bn2 = std::make_shared<nn::BatchNorm2d>(3, untracked);
  sbn2->eval();
  bn2->eval();
  const Tensor mine = rows(xfull, 3 * r, 3);
  RG_CHECK_CLOSE(sbn2->forward(mine), bn2->forward(mine), kTol);
  CHECK(pg->sequence_number() == seq);
  // Inside DataParallel replicas (threads of one rank) it refuses to communicate.
  auto dp = std::make_shared<dist::DataParallel>(std::make_shared<dist::SyncBatchNorm>(3, nn::BatchNormOptions{}, pg),
                                                 std::vector<Device>{kCPU, kCPU});
  CHECK_THROWS_WITH_AS(dp->forward(mine), doctest::Contains("not inside DataParallel"), Error);
  CHECK(pg->sequence_number() == seq);
}

void scenario_resnet(const std::shared_ptr<dist::ProcessGroup>& pg) {
  const int r = pg->rank();
  manual_seed(5);
  auto net = models::resnet18({.num_classes = 10, .small_input = true, .base_planes = 4});
  const std::shared_ptr<nn::Module> ref = net->clone();
  const std::shared_ptr<nn::Module> conv = dist::convert_sync_batchnorm(net, pg);
  const Tensor xfull = uniform({4, 3, 16, 16}, -1.0, 1.0, DType::f32, 10);
  const Tensor gfull = uniform({4, 10}, -1.0, 1.0, DType::f32, 11);
  const Tensor y = conv->forward(rows(xfull, 2 * r, 2)), yf = ref->forward(xfull);
  const Tol tol{1e-4, 1e-3};  // twenty normalisations deep
  RG_CHECK_CLOSE(y, rows(yf, 2 * r, 2), tol);
  sum(y * rows(gfull, 2 * r, 2)).backward();
  sum(yf * gfull).backward();
  const auto pc = conv->named_parameters(), pr = ref->named_parameters();
  REQUIRE(pc.size() == pr.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    CAPTURE(pc[i].first);
    RG_CHECK_CLOSE(reduced(*pg, pc[i].second.grad(), dist::ReduceOp::Sum), pr[i].second.grad(), tol);
  }
  check_state_close(*conv, *ref, tol, "converted ResNet-18 on 2 ranks vs ResNet-18 on the full batch");
}

void scenario_ddp(const std::shared_ptr<dist::ProcessGroup>& pg) { ddp_syncbn_vs_one_process(pg); }

}  // namespace

TEST_CASE("SyncBatchNorm, 2 ranks of batch B = BatchNorm2d on 2B: output, running stats, gradients") {
  expect_ok("equal");
}

TEST_CASE("SyncBatchNorm: uneven batches (3 and 1, 1 and 6)") { expect_ok("uneven"); }

TEST_CASE("gradcheck SyncBatchNormBackward on 2 ranks: x, weight, bias against the global loss") {
  expect_ok("gradcheck");
}

TEST_CASE("SyncBatchNorm: one value per channel on a rank, an empty rank, and a global count of 1") {
  expect_ok("tiny");
}

TEST_CASE("SyncBatchNorm: one collective per forward and backward; none in eval mode") { expect_ok("eval"); }

TEST_CASE("SyncBatchNorm: a converted ResNet-18 on 2 ranks = ResNet-18 on the full batch") { expect_ok("resnet"); }

TEST_CASE("DDP + SyncBatchNorm on 2 ranks = one process with BN on the double batch, 5 SGD-momentum steps") {
  expect_ok("ddp");
}

TEST_CASE("convert_sync_batchnorm: every BatchNorm2d of ResNet-18 swapped, same tensors, keys and flags") {
  manual_seed(3);
  auto net = models::resnet18({.num_classes = 10, .small_input = true, .base_planes = 4});
  net->child("layer1")->eval();  // flags must survive the swap
  const nn::StateDict before = net->state_dict();
  int bns = 0;
  for (const auto& [k, m] : net->named_modules()) bns += dynamic_cast<nn::BatchNorm2d*>(m.get()) != nullptr;
  CHECK(bns == 20);
  const Tensor x = uniform({2, 3, 16, 16}, -1.0, 1.0, DType::f32, 12);
  const Tensor y_before = net->forward(x);
  const auto converted = dist::convert_sync_batchnorm(net);
  CHECK(converted.get() == net.get());
  int syncs = 0, left = 0;
  for (const auto& [k, m] : converted->named_modules()) {
    left += dynamic_cast<nn::BatchNorm2d*>(m.get()) != nullptr;
    if (auto* s = dynamic_cast<dist::SyncBatchNorm*>(m.get())) {
      ++syncs;
      CHECK_MESSAGE(s->is_training() == (k.rfind("layer1", 0) != 0), k);
    }
  }
  CHECK(syncs == 20);
  CHECK(left == 0);
  const nn::StateDict after = converted->state_dict();
  REQUIRE(after.size() == before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    CHECK(after[i].first == before[i].first);
    CHECK_MESSAGE(after[i].second.is_same(before[i].second), after[i].first, " is not the same tensor");
  }
  CHECK(converted->child("layer1")->child("0")->child("bn1")->repr() ==
        "SyncBatchNorm(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");
  // No process group: the plain batch norm path, the same output as before (the running stats
  // were updated twice by now, which training-mode outputs do not depend on).
  RG_CHECK_CLOSE(converted->forward(x), y_before, (Tol{0, 0}));
  // A BatchNorm2d root becomes a new SyncBatchNorm holding its tensors.
  auto bn = std::make_shared<nn::BatchNorm2d>(5);
  bn->eval();
  const auto root = dist::convert_sync_batchnorm(bn);
  auto* s = dynamic_cast<dist::SyncBatchNorm*>(root.get());
  REQUIRE(s != nullptr);
  CHECK(s->weight().is_same(bn->weight()));
  CHECK(s->running_var().is_same(bn->running_var()));
  CHECK_FALSE(s->is_training());
  // clone keeps the type.
  CHECK(dynamic_cast<dist::SyncBatchNorm*>(root->clone().get()) != nullptr);
}

TEST_CASE("SyncBatchNorm: a group of one rank takes the plain path and communicates nothing") {
  auto store = std::make_shared<dist::TCPStore>("127.0.0.1", 0, true, std::chrono::milliseconds(10000));
  auto pg = dist::make_process_group("ring", store, 0, 1, kCPU);
  auto sbn = std::make_shared<dist::SyncBatchNorm>(3, nn::BatchNormOptions{}, pg);
  auto bn = std::make_shared<nn::BatchNorm2d>(3);
  same_affine(*sbn, *bn, 13);
  const Tensor x = uniform({4, 3, 3, 3}, -1.0, 1.0, DType::f32, 14);
  const Tensor xs = leaf(x), xb = leaf(x);
  const Tensor ys = sbn->forward(xs), yb = bn->forward(xb);
  RG_CHECK_CLOSE(ys, yb, (Tol{0, 0}));
  ys.sum().backward();
  yb.sum().backward();
  RG_CHECK_CLOSE(xs.grad(), xb.grad(), (Tol{0, 0}));
  RG_CHECK_CLOSE(sbn->running_var(), bn->running_var(), (Tol{0, 0}));
  CHECK(pg->sequence_number() == 0);
  CHECK_THROWS_WITH_AS(sbn->forward(zeros({4})), doctest::Contains("at least 2D"), Error);
  CHECK_THROWS_WITH_AS(sbn->forward(zeros({4, 2, 3})), doctest::Contains("num_features=3"), Error);
}

TEST_CASE("dp_syncbn_worker_entry" * doctest::skip()) {
  const std::string scenario = scenario_env();
  REQUIRE_MESSAGE(!scenario.empty(), "the worker entry runs only under launch_self()");
  auto pg = init_rank();
  const int rank = pg->rank();
  const std::map<std::string, std::function<void(const std::shared_ptr<dist::ProcessGroup>&)>> scenarios = {
      {"equal", scenario_equal}, {"uneven", scenario_uneven}, {"tiny", scenario_tiny},
      {"eval", scenario_eval},   {"resnet", scenario_resnet}, {"ddp", scenario_ddp},
      {"gradcheck", scenario_gradcheck}};
  const auto it = scenarios.find(scenario);
  REQUIRE_MESSAGE(it != scenarios.end(), "unknown scenario ", scenario);
  it->second(pg);
  pg->barrier()->wait();  // rank 0 serves the store: keep it up until everyone is done
  pg.reset();
  dist::destroy_process_group();
  std::printf("OK %s on rank %d\n", scenario.c_str(), rank);
  std::fflush(stdout);
}
