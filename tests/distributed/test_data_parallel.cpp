// DataParallel on virtual CPU devices ({cpu, cpu}, ...) against one plain process: the same
// weights after SGD-momentum steps (without BN; with BN against the per-chunk computation PyTorch's
// DataParallel performs), torch.chunk's uneven chunk sizes, worker threads with the caller's grad
// mode and autocast, training flags, phase timings, and errors naming the replica.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>

#include "autograd/autocast.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "distributed/data_parallel.h"
#include "dp_syncbn_util.h"
#include "nn/functional.h"
#include "nn/optim/sgd.h"

using namespace rg;
using namespace rg::test;
using namespace rg::test::dpsb;
namespace F = rg::nn::functional;

namespace {

struct Call {
  int64_t rows;
  std::thread::id thread;
  bool grad_enabled;
  bool autocast;
  DType autocast_dtype;
  bool training;
};
struct CallLog {
  std::mutex mu;
  std::vector<Call> calls;
  std::vector<Call> take() {
    std::lock_guard<std::mutex> g(mu);
    return std::exchange(calls, {});
  }
};

// Identity that records who called it with what; throws on a chunk of `throw_rows` rows. Its
// clones (the replicas) share the log.
class Recorder : public nn::Cloneable<Recorder> {
 public:
  explicit Recorder(std::shared_ptr<CallLog> log, int64_t throw_rows = -1)
      : Cloneable("Recorder"), log_(std::move(log)), throw_rows_(throw_rows) {}
  Tensor forward(const Tensor& x) override {
    {
      std::lock_guard<std::mutex> g(log_->mu);
      log_->calls.push_back({x.size(0), std::this_thread::get_id(), GradMode::is_enabled(),
                             amp::is_autocast_enabled(), amp::autocast_dtype(), is_training()});
    }
    RG_CHECK(x.size(0) != throw_rows_, "boom: this test module refuses chunks of ", throw_rows_, " rows");
    return x;
  }

 private:
  std::shared_ptr<CallLog> log_;
  int64_t throw_rows_;
};

std::shared_ptr<nn::Sequential> recorded(std::shared_ptr<CallLog> log, std::shared_ptr<nn::Module> net,
                                         int64_t throw_rows = -1) {
  auto seq = std::make_shared<nn::Sequential>();
  seq->push_back(std::make_shared<Recorder>(std::move(log), throw_rows));
  seq->push_back(std::move(net));
  return seq;
}

}  // namespace

TEST_CASE("DataParallel on 2 CPU replicas = one process after 5 SGD-momentum steps (conv net, no BN)") {
  auto net = small_net(false, 11);
  train_and_compare(net, {kCPU, kCPU}, 8, 5, [](nn::Module& ref, const Tensor& x) { return ref.forward(x); });
}

TEST_CASE("DataParallel with batch norm: per-replica statistics, the master's running stats from chunk 0") {
  auto net = small_net(true, 12);
  SUBCASE("batch 8 on 2 replicas: chunks 4 + 4") {
    train_and_compare(net, {kCPU, kCPU}, 8, 5,
                      [](nn::Module& ref, const Tensor& x) { return per_chunk_forward(ref, x, {4, 4}); });
  }
  SUBCASE("batch 8 on 3 replicas: chunks 3 + 3 + 2") {
    train_and_compare(net, {kCPU, kCPU, kCPU}, 8, 3,
                      [](nn::Module& ref, const Tensor& x) { return per_chunk_forward(ref, x, {3, 3, 2}); });
  }
  // The per-chunk reference is not the full-batch computation: the comparison can tell them apart.
  auto a = small_net(true, 12);
  auto dp = std::make_shared<dist::DataParallel>(a->clone(), std::vector<Device>{kCPU, kCPU});
  const Tensor x = batch(8, 5);
  const std::string msg = compare(dp->forward(x), a->forward(x), kTol);
  CHECK_MESSAGE(!msg.empty(), "per-replica batch norm gave the full-batch output");
}

TEST_CASE("DataParallel: uneven chunks as torch.chunk (5 rows on 2 devices: 3 + 2; on 4: 2 + 2 + 1)") {
  auto log = std::make_shared<CallLog>();
  SUBCASE("2 devices, batch 5, 3 steps against one process") {
    auto master = recorded(log, small_net(false, 13));
    const std::thread::id me = std::this_thread::get_id();
    auto check_log = [&] {
      const std::vector<Call> calls = log->take();
      std::multiset<int64_t> rows;
      std::set<std::thread::id> threads;
      for (const Call& c : calls) {
        rows.insert(c.rows);
        threads.insert(c.thread);
      }
      // The DP calls (3 + 2, on two worker threads) and the reference's one call (5, on this thread).
      CHECK(rows == std::multiset<int64_t>{2, 3, 5});
      CHECK(threads.size() == 3);
      CHECK(threads.count(me) == 1);
    };
    auto dp_master = master;
    const std::shared_ptr<nn::Module> ref = master->clone();
    auto dp = std::make_shared<dist::DataParallel>(dp_master, std::vector<Device>{kCPU, kCPU});
    optim::SGD opt_dp(dp->parameters(), sgd_options()), opt_ref(ref->parameters(), sgd_options());
    for (int s = 0; s < 3; ++s) {
      const Tensor x = batch(5, 300 + static_cast<uint64_t>(s)), t = targets(5, 400 + static_cast<uint64_t>(s));
      const Tensor y = dp->forward(x), yr = ref->forward(x);
      CHECK(dp->timings().replicas == 2);
      RG_CHECK_CLOSE(y, yr, kTol);
      opt_dp.zero_grad();
      F::mse_loss(y, t).backward();
      opt_dp.step();
      opt_ref.zero_grad();
      F::mse_loss(yr, t).backward();
      opt_ref.step();
      check_log();
    }
    check_state_close(*dp_master, *ref, kTol, "batch 5 on 2 devices");
  }
  SUBCASE("4 devices, batch 5: three chunks, three replicas; batch 1: one replica") {
    auto dp = std::make_shared<dist::DataParallel>(recorded(log, small_net(false, 14)),
                                                   std::vector<Device>{kCPU, kCPU, kCPU, kCPU});
    Tensor y = dp->forward(batch(5, 1));
    CHECK(y.sizes() == Shape{5, 5});
    CHECK(dp->timings().replicas == 3);
    std::multiset<int64_t> rows;
    for (const Call& c : log->take()) rows.insert(c.rows);
    CHECK(rows == std::multiset<int64_t>{1, 2, 2});
    y = dp->forward(batch(1, 2));
    CHECK(y.sizes() == Shape{1, 5});
    CHECK(dp->timings().replicas == 1);
    CHECK(log->take().size() == 1);
  }
}

TEST_CASE("DataParallel: workers run with the caller's grad mode and autocast state") {
  auto log = std::make_shared<CallLog>();
  auto dp = std::make_shared<dist::DataParallel>(recorded(log, small_net(false, 15)), std::vector<Device>{kCPU, kCPU});
  const Tensor x = batch(4, 3);
  {
    NoGradGuard ng;
    const Tensor y = dp->forward(x);
    CHECK_FALSE(y.requires_grad());
    for (const Call& c : log->take()) CHECK_FALSE(c.grad_enabled);
  }
  {
    const Tensor y = dp->forward(x);
    CHECK(y.requires_grad());
    for (const Call& c : log->take()) {
      CHECK(c.grad_enabled);
      CHECK_FALSE(c.autocast);
    }
  }
  {
    amp::AutocastGuard ac(DType::bf16);
    const Tensor y = dp->forward(x);
    const std::vector<Call> calls = log->take();
    CHECK(calls.size() == 2);
    for (const Call& c : calls) {
      CHECK(c.autocast);
      CHECK(c.autocast_dtype == DType::bf16);
    }
    const Tensor y1 = dp->module()->forward(x);  // the same module in one thread, same autocast
    CHECK(y.dtype() == y1.dtype());
  }
}

TEST_CASE("DataParallel: replicas follow the master's training flags, per submodule") {
  auto net = small_net(true, 16);
  auto dp = std::make_shared<dist::DataParallel>(net, std::vector<Device>{kCPU, kCPU});
  const auto ref = net->clone();
  const Tensor x = batch(6, 4);
  {  // a training step first so that the running statistics are not the initial ones
    NoGradGuard ng;
    dp->forward(x);
    per_chunk_forward(*ref, x, {3, 3});
  }
  dp->eval();
  ref->eval();
  CHECK_FALSE(net->is_training());
  {  // eval: running statistics everywhere, so DP equals the full batch through one module
    NoGradGuard ng;
    RG_CHECK_CLOSE(dp->forward(x), ref->forward(x), kTol);
  }
  // Mixed: the first BN (child "1") in eval, the rest training.
  dp->train();
  ref->train();
  net->child("1")->eval();
  ref->child("1")->eval();
  NoGradGuard ng;
  RG_CHECK_CLOSE(dp->forward(x), per_chunk_forward(*ref, x, {3, 3}), kTol);
  check_state_close(*net, *ref, kTol, "mixed training flags");
  // Uniform again: every replica submodule back in training.
  dp->train();
  ref->train();
  RG_CHECK_CLOSE(dp->forward(x), per_chunk_forward(*ref, x, {3, 3}), kTol);
  check_state_close(*net, *ref, kTol, "training after mixed flags");
}

TEST_CASE("DataParallel: phase timings") {
  auto dp = std::make_shared<dist::DataParallel>(small_net(true, 17), std::vector<Device>{kCPU, kCPU},
                                                 std::nullopt, dist::DataParallelOptions{.sync_timing = true});
  CHECK(dp->timings().step == 0);
  for (int s = 1; s <= 2; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    const Tensor y = dp->forward(batch(8, 6));
    const double wall = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    dist::DataParallelTimings t = dp->timings();
    CHECK(t.step == s);
    CHECK(t.replicas == 2);
    CHECK(t.replicate_ms > 0);
    CHECK(t.scatter_ms >= 0);
    CHECK(t.forward_ms > 0);
    CHECK(t.gather_ms >= 0);
    CHECK(t.replicate_ms + t.scatter_ms + t.forward_ms + t.gather_ms <= wall);
    CHECK(t.reduce_ms == -1);  // not yet: the backward fills it
    CHECK(t.backward_ms == -1);
    y.sum().backward();
    t = dp->timings();
    CHECK(t.reduce_ms >= 0);
    CHECK(t.backward_ms >= t.reduce_ms);  // the backward includes the reduction
  }
  dp->report_backward_ms(12.5);
  CHECK(dp->timings().backward_ms == 12.5);
}

TEST_CASE("DataParallel: an exception in a replica's forward names the replica; DP stays usable") {
  auto log = std::make_shared<CallLog>();
  auto dp = std::make_shared<dist::DataParallel>(recorded(log, small_net(false, 18), /*throw_rows=*/2),
                                                 std::vector<Device>{kCPU, kCPU});
  // 5 rows: chunks of 3 (replica 0) and 2 (replica 1, which throws).
  CHECK_THROWS_WITH_AS(dp->forward(batch(5, 7)), doctest::Contains("replica 1 on device cpu"), Error);
  CHECK_THROWS_WITH_AS(dp->forward(batch(5, 7)), doctest::Contains("boom"), Error);
  const Tensor y = dp->forward(batch(6, 8));
  CHECK(y.sizes() == Shape{6, 5});
  y.sum().backward();
}

TEST_CASE("DataParallel: construction and input checks, names, a single device") {
  auto net = small_net(false, 19);
  CHECK_THROWS_WITH_AS(dist::DataParallel(net, {}), doctest::Contains("at least one device"), Error);
  if (cuda::device_count() == 0) {
    CHECK_THROWS_WITH_AS(dist::DataParallel(net, {Device::cuda(0)}), doctest::Contains("not available"), Error);
  }
  auto dp = std::make_shared<dist::DataParallel>(net, std::vector<Device>{kCPU, kCPU});
  CHECK(dp->state_dict().front().first == "module.0.weight");
  CHECK(dp->named_parameters().size() == net->named_parameters().size());
  CHECK_THROWS_WITH_AS(dp->forward(zeros({0, 3, 8, 8})), doctest::Contains("at least one"), Error);
  CHECK_THROWS_WITH_AS(dp->clone(), doctest::Contains("cannot be cloned"), Error);
  // One device: the module itself.
  auto single = std::make_shared<dist::DataParallel>(net, std::vector<Device>{kCPU});
  const Tensor x = batch(3, 9);
  RG_CHECK_CLOSE(single->forward(x), net->forward(x), (Tol{0, 0}));
}

TEST_CASE("gradcheck through DataParallel on 3 CPU replicas: the Broadcast, Scatter and Gather backward nodes") {
  // f64 on virtual CPU devices: 5 rows scatter as chunks of 2, 2 and 1; the master's parameters go
  // to the replicas through Broadcast (replica 0 aliases them, the others get copies), whose
  // backward sums the replicas' gradients; gradcheck perturbs the master's parameters in place,
  // which every forward broadcasts again.
  manual_seed(23);
  auto net = std::make_shared<nn::Sequential>();
  net->push_back(std::make_shared<nn::Linear>(4, 3));
  net->push_back(std::make_shared<nn::Sigmoid>());
  net->push_back(std::make_shared<nn::Linear>(3, 2));
  net->to(DType::f64);
  auto dp = std::make_shared<dist::DataParallel>(net, std::vector<Device>{kCPU, kCPU, kCPU});
  const Tensor x = leaf(uniform({5, 4}, -1.0, 1.0, DType::f64, 31));
  std::vector<Tensor> inputs{x};
  for (const auto& [k, p] : net->named_parameters()) inputs.push_back(p);
  REQUIRE(inputs.size() == 5);
  auto through_dp = [&](const std::vector<Tensor>& in) { return dp->forward(in[0]); };
  CHECK_GRADCHECK(through_dp, inputs);
  // The input alone (Scatter and Gather; Broadcast still runs for the parameters' sake), and the
  // parameters alone (no Scatter node: the input needs no gradient).
  CHECK_GRADCHECK(through_dp, std::vector<Tensor>{x});
  const Tensor xc = uniform({5, 4}, -1.0, 1.0, DType::f64, 32);
  CHECK_GRADCHECK([&](const std::vector<Tensor>&) { return dp->forward(xc); },
                  std::vector<Tensor>(inputs.begin() + 1, inputs.end()));
  // The graph really holds the three nodes.
  const Tensor y = dp->forward(x);
  REQUIRE(y.grad_fn() != nullptr);
  CHECK(y.grad_fn()->name() == "Gather");
}

TEST_CASE("DataParallel: frozen parameters are copied without history and get no gradient") {
  auto net = small_net(false, 20);
  Tensor frozen = net->child_as<nn::Conv2d>("0")->weight();
  frozen.set_requires_grad(false);
  train_and_compare(net, {kCPU, kCPU}, 6, 3, [](nn::Module& ref, const Tensor& x) { return ref.forward(x); });
  CHECK_FALSE(frozen.grad().defined());
}
