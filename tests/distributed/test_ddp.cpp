// DistributedDataParallel on the CPU ring, ranks as real processes (copies of this executable
// running the skipped case "ddp_worker_entry"): equivalence with one process on the whole batch,
// no_sync, unused parameters, bucket order and the static_graph rebuild, the cross-rank checks,
// buffer broadcast, f16 communication, GradScaler; plus in-process checks at world size 1.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>

#include "autograd/node.h"
#include "distributed/ddp_test_util.h"
#include "nn/amp/grad_scaler.h"

using namespace rg;
using namespace rg::test;
using namespace rg::test::ddp;

namespace {

constexpr Tol kF32Tol{1e-6, 1e-5};   // the same arithmetic summed in another order
constexpr Tol kF16CommTol{1e-4, 1e-3};

// ---- test modules (Note [Module registry]: children and tensors are registered, not fields)

class Holder : public nn::Cloneable<Holder> {
 public:
  explicit Holder(int64_t in) : Cloneable("Holder") { register_module("fc", std::make_shared<nn::Linear>(in, 10)); }
  Tensor forward(const Tensor& x) override { return child("fc")->forward(x); }
};

// Mixed dtypes: a, c f32 and b, d f64, 100 elements each.
class Mixed : public nn::Cloneable<Mixed> {
 public:
  Mixed() : Cloneable("Mixed") {
    register_parameter("a", zeros({100}));
    register_parameter("b", zeros({100}, DType::f64));
    register_parameter("c", zeros({100}));
    register_parameter("d", zeros({100}, DType::f64));
  }
  Tensor forward(const Tensor& x) override {
    return x * (param("a") + param("c")).sum() + x * (param("b") + param("d")).sum().to(DType::f32);
  }
};

Tensor named_param(const nn::Module& m, const std::string& name) {
  for (const auto& [k, t] : m.named_parameters()) {
    if (k == name) return t;
  }
  FAIL("no parameter ", name);
  return Tensor();
}

// ---- worker scenarios (each rank runs one; every check is a doctest CHECK in the rank)

void check_stats_sane(const dist::DDPStats& st, size_t nbuckets, int64_t min_bytes) {
  REQUIRE(st.buckets.size() == nbuckets);
  int64_t bytes = 0;
  for (size_t k = 0; k < st.buckets.size(); ++k) {
    const auto& b = st.buckets[k];
    bytes += b.bytes;
    CHECK(b.ready_ms >= 0);
    CHECK(b.launch_ms >= b.ready_ms);
    CHECK(b.finish_ms >= b.launch_ms);
    if (k) CHECK(b.launch_ms >= st.buckets[k - 1].launch_ms);  // launched in bucket order
  }
  CHECK(bytes >= min_bytes);
  CHECK(st.done_ms >= st.backward_end_ms);
  CHECK(st.hidden_ms <= st.comm_ms + 1e-9);
  CHECK(st.hidden_fraction >= 0.0);
  CHECK(st.hidden_fraction <= 1.0);
}

void worker_equivalence(bool short_run) {
  const int world = dist::get_world_size();
  const TrainConfig c;
  const auto ref = reference_train(1000, world, c, kCPU);
  int64_t param_bytes = 0;
  for (const auto& [k, t] : ref) param_bytes += static_cast<int64_t>(t.nbytes());

  // 1. Defaults: one bucket (the net is 10 KB), .grad views into it.
  const DDPRun a = ddp_train(1000, DDPOptions{}, c, kCPU);
  CHECK_MESSAGE(compare_params(a.params, ref, kF32Tol).empty(), compare_params(a.params, ref, kF32Tol));
  CHECK(a.buckets == std::vector<std::vector<std::string>>{{"4.bias", "4.weight", "0.bias", "0.weight"}});
  CHECK(a.grads_share_storage);
  CHECK(a.stats.iteration == c.steps);
  check_stats_sane(a.stats, 1, param_bytes);

  // 2. Small caps: first bucket 16 bytes, then 1000 bytes (worked out by hand in reverse
  // registration order: 4.bias 20 B closes the first; 4.weight 1920 B alone; 0.bias + 0.weight).
  DDPOptions small;
  small.first_bucket_cap_mb = mb(16);
  small.bucket_cap_mb = mb(1000);
  const DDPRun s = ddp_train(1000, small, c, kCPU);
  CHECK_MESSAGE(compare_params(s.params, ref, kF32Tol).empty(), compare_params(s.params, ref, kF32Tol));
  const std::vector<std::vector<std::string>> by_hand{{"4.bias"}, {"4.weight"}, {"0.bias", "0.weight"}};
  CHECK_MESSAGE(s.buckets == by_hand, join(s.buckets));
  CHECK(expected_buckets(names_and_bytes(*make_convnet(1, kCPU), true), 16, 1000) == by_hand);
  check_stats_sane(s.stats, 3, param_bytes);
  // The first bucket (the last layer's bias) is launched from its hook, before backward ends.
  CHECK(s.stats.buckets[0].launch_ms < s.stats.backward_end_ms);
  std::printf("%s", s.stats.str().c_str());
  if (short_run) return;

  // 3. Not overlapped: every allreduce starts after backward.
  DDPOptions late = small;
  late.overlap = false;
  const DDPRun l = ddp_train(1000, late, c, kCPU);
  CHECK_MESSAGE(compare_params(l.params, ref, kF32Tol).empty(), compare_params(l.params, ref, kF32Tol));
  check_stats_sane(l.stats, 3, param_bytes);
  for (const auto& b : l.stats.buckets) CHECK(b.launch_ms >= l.stats.backward_end_ms);
  CHECK(l.stats.hidden_ms == 0.0);
  CHECK_FALSE(l.stats.overlap);

  // 4. No bucket views (zero_grad(set_to_none = false) keeps the same .grad tensors), and 5. no_sync:
  // half of each rank's batch accumulated locally, the other half synchronised.
  check_no_views_and_no_sync(c, ref, kCPU, kF32Tol);

  // 6. f16 communication: within f16 tolerance, not bitwise the f32 result, half the bytes.
  DDPOptions half;
  half.comm_dtype = DType::f16;
  const DDPRun h = ddp_train(1000, half, c, kCPU);
  CHECK_MESSAGE(compare_params(h.params, ref, kF16CommTol).empty(), compare_params(h.params, ref, kF16CommTol));
  CHECK(max_abs_diff(h.params, a.params) > 0.0);
  REQUIRE(h.stats.buckets.size() == 1);
  CHECK(h.stats.buckets[0].bytes * 2 == a.stats.buckets[0].bytes);
}

void worker_unused() {
  const int rank = dist::get_rank(), world = dist::get_world_size();
  const int64_t B = 4;
  auto make = [](bool use_fc2) {
    manual_seed(55);
    return std::make_shared<TwoHeads>(use_fc2);
  };
  auto my_rows = [&](int step) { return rows(vec_batch(step, world * B, 4, 3), rank * B, B); };

  // (a) Without find_unused_parameters: the error names fc2's parameters, on every rank.
  {
    DistributedDataParallel ddp(make(false));
    std::string err;
    try {
      mse(ddp, my_rows(0)).backward();
    } catch (const std::exception& e) {
      err = e.what();
    }
    CHECK_MESSAGE(err.find("DDP: these parameters received no gradient in this iteration: fc2.weight, fc2.bias. "
                           "Use find_unused_parameters=true if this is intended, or make sure all forward outputs "
                           "participate in the loss.") != std::string::npos,
                  err);
  }

  // (b) With it, unused everywhere: training proceeds, fc2's .grad stays undefined, fc1 matches.
  for (bool view : {true, false}) {
    CAPTURE(view);
    DDPOptions o;
    o.find_unused_parameters = true;
    o.gradient_as_bucket_view = view;
    auto model = make(false);
    DistributedDataParallel ddp(model, o);
    optim::SGD opt(ddp.parameters(), optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
    auto ref = make(false);
    optim::SGD ref_opt(ref->parameters(), optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
    const Tensor fc2_before = native::clone(named_param(*model, "fc2.weight"));
    for (int s = 0; s < 3; ++s) {
      opt.zero_grad();
      mse(ddp, my_rows(s)).backward();
      CHECK_FALSE(named_param(*model, "fc2.weight").grad().defined());
      CHECK_FALSE(named_param(*model, "fc2.bias").grad().defined());
      CHECK(named_param(*model, "fc1.weight").grad().defined());
      opt.step();
      ref_opt.zero_grad();
      mse(*ref, vec_batch(s, world * B, 4, 3)).backward();
      ref_opt.step();
    }
    CHECK_MESSAGE(compare_params(cpu_params(*model), cpu_params(*ref), kF32Tol).empty(),
                  compare_params(cpu_params(*model), cpu_params(*ref), kF32Tol));
    CHECK(compare(named_param(*model, "fc2.weight"), fc2_before, Tol{0, 0}).empty());
  }

  // (c) fc2 used on rank 1 only: globally used, so every rank gets (0 + g1) / 2 for it.
  for (bool view : {true, false}) {
    CAPTURE(view);
    std::vector<std::pair<std::string, Tensor>> expected;
    for (int q = 0; q < world; ++q) {
      auto m = make(q == 1);
      mse(*m, rows(vec_batch(0, world * B, 4, 3), q * B, B)).backward();
      size_t j = 0;
      for (const auto& [k, p] : m->named_parameters()) {
        const Tensor g = p.grad().defined() ? p.grad() : zeros_like(p);
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
      got.emplace_back(k, native::clone(p.grad()));
    }
    CHECK_MESSAGE(compare_params(got, expected, kF32Tol).empty(), compare_params(got, expected, kF32Tol));
  }
}

void worker_static() { check_static_graph_rebuild(kCPU, kF32Tol); }

void worker_mismatch() {
  const int rank = dist::get_rank();
  {
    std::string err;
    try {
      DistributedDataParallel ddp(std::make_shared<Holder>(rank == 0 ? 32 : 64));
    } catch (const std::exception& e) {
      err = e.what();
    }
    CHECK_MESSAGE(err.find("DDP: rank 1 has parameter 'fc.weight' of shape [10, 64] but rank 0 has [10, 32]") !=
                      std::string::npos,
                  err);
  }
  {
    std::string err;
    try {
      std::shared_ptr<nn::Module> m = rank == 0 ? std::static_pointer_cast<nn::Module>(std::make_shared<Holder>(8))
                                                : std::make_shared<WithBuffers>(rank);
      DistributedDataParallel ddp(m);
    } catch (const std::exception& e) {
      err = e.what();
    }
    CHECK_MESSAGE(err.find("DDP: rank 1 has parameter 'w' at position 0 but rank 0 has parameter 'fc.weight'") !=
                      std::string::npos,
                  err);
  }
  // Buffers (and parameters) come from rank 0 at construction, and before training forwards.
  auto m = std::make_shared<WithBuffers>(rank);
  DistributedDataParallel ddp(m);
  CHECK(m->param("w").to_vector<float>() == std::vector<float>{0.5f, 0.5f, 0.5f});
  CHECK(m->buffer("stat").to_vector<float>() == std::vector<float>{1.0f, 1.0f, 1.0f});
  CHECK(m->buffer("count").item<int64_t>() == 7);
  CHECK(m->buffer("flag").to_vector<float>() == std::vector<float>{1.0f, 0.0f});
  native::fill_(m->buffer("stat"), 5.0 + rank);
  native::fill_(m->buffer("count"), 20.0 + rank);
  ddp.forward(ones({2, 3}));
  CHECK(m->buffer("stat").to_vector<float>() == std::vector<float>{5.0f, 5.0f, 5.0f});
  CHECK(m->buffer("count").item<int64_t>() == 20);
  ddp.eval();
  native::fill_(m->buffer("stat"), 7.0 + rank);
  ddp.forward(ones({2, 3}));
  CHECK(m->buffer("stat").to_vector<float>()[0] == doctest::Approx(7.0 + rank));  // eval: not broadcast
  DDPOptions no_bcast;
  no_bcast.broadcast_buffers = false;
  auto m2 = std::make_shared<WithBuffers>(rank);
  DistributedDataParallel ddp2(m2, no_bcast);
  native::fill_(m2->buffer("stat"), 3.0 + rank);
  ddp2.forward(ones({2, 3}));
  CHECK(m2->buffer("stat").to_vector<float>()[0] == doctest::Approx(3.0 + rank));
}

void worker_scaler() {
  const int rank = dist::get_rank(), world = dist::get_world_size();
  manual_seed(3);
  auto model = std::make_shared<nn::Linear>(4, 3);
  DistributedDataParallel ddp(model);
  optim::SGD opt(ddp.parameters(), optim::SGDOptions{.lr = 0.1});
  amp::GradScaler scaler;
  dist::sync_grad_scaler(scaler);
  const Batch b = rows(vec_batch(0, world * 2, 4, 3), rank * 2, 2);
  // Iteration 1: rank 0 alone sees an inf; every rank must skip and back off.
  const Tensor w0 = native::clone(model->weight());
  scaler.scale(mse(ddp, b)).backward();
  if (rank == 0) model->weight().grad().data<float>()[0] = INFINITY;
  CHECK_FALSE(scaler.step(opt));
  scaler.update();
  CHECK(scaler.skipped_steps() == 1);
  CHECK(scaler.get_scale() == 32768.0);
  CHECK(compare(model->weight(), w0, Tol{0, 0}).empty());
  // Iteration 2: clean; every rank steps.
  opt.zero_grad();
  scaler.scale(mse(ddp, b)).backward();
  CHECK(scaler.step(opt));
  scaler.update();
  CHECK(scaler.skipped_steps() == 1);
  CHECK(max_abs_diff({{"w", model->weight()}}, {{"w", w0}}) > 0.0);
}

}  // namespace

TEST_CASE("ddp_worker_entry" * doctest::skip()) {
  const std::string scenario = env_str("RG_DDP_WORKER");
  REQUIRE_MESSAGE(!scenario.empty(), "the worker entry runs only under launch_ranks()");
  dist::InitOptions io;
  io.timeout = std::chrono::milliseconds(60000);
  dist::init_process_group(io);
  struct Destroy {
    ~Destroy() { dist::destroy_process_group(); }
  } destroy;
  if (scenario == "equivalence") worker_equivalence(false);
  else if (scenario == "equivalence-short") worker_equivalence(true);
  else if (scenario == "unused") worker_unused();
  else if (scenario == "static") worker_static();
  else if (scenario == "mismatch") worker_mismatch();
  else if (scenario == "scaler") worker_scaler();
  else FAIL("unknown scenario ", scenario);
  std::printf("OK %s rank %d\n", scenario.c_str(), dist::get_rank());
  std::fflush(stdout);
}

#define CHECK_RANKS(nproc, scenario)                                        \
  do {                                                                      \
    const Outcome out_ = launch_ranks((nproc), "ddp_worker_entry", (scenario)); \
    CHECK_MESSAGE(out_.code == 0, out_.report);                             \
    CHECK_MESSAGE(count_in_logs(out_, std::string("OK ") + (scenario) + " rank") == (nproc), out_.report); \
  } while (0)

TEST_CASE("DDP: 2 ranks x batch B equal 1 process x batch 2B (conv net, SGD momentum, 5 steps): bucket views, "
          "small buckets, no overlap, no_sync, f16 communication") {
  CHECK_RANKS(2, "equivalence");
}

TEST_CASE("DDP: 3 ranks x batch B equal 1 process x batch 3B") { CHECK_RANKS(3, "equivalence-short"); }

TEST_CASE("DDP: unused parameters are named without find_unused_parameters; with it .grad stays undefined") {
  CHECK_RANKS(2, "unused");
}

TEST_CASE("DDP: static_graph rebuilds the buckets in gradient arrival order") { CHECK_RANKS(2, "static"); }

TEST_CASE("DDP: mismatched models are refused on every rank; buffers come from rank 0") {
  CHECK_RANKS(2, "mismatch");
}

TEST_CASE("DDP: GradScaler skips the step on every rank when one rank overflows") { CHECK_RANKS(2, "scaler"); }

// ---- in-process, world size 1

namespace {

std::shared_ptr<dist::ProcessGroup> solo_group() {
  auto store = std::make_shared<dist::TCPStore>("127.0.0.1", 0, true, std::chrono::milliseconds(10000));
  return dist::make_process_group("ring", store, 0, 1, kCPU);
}

}  // namespace

TEST_CASE("DDP (world size 1): buckets never mix dtypes; each dtype's first bucket takes the first cap") {
  auto pg = solo_group();
  DDPOptions o;
  o.process_group = pg;
  DistributedDataParallel big(std::make_shared<Mixed>(), o);
  // Reverse registration order d, c, b, a: one open bucket per dtype, ordered by first member.
  CHECK(big.bucket_parameter_names() == std::vector<std::vector<std::string>>{{"d", "b"}, {"c", "a"}});
  o.first_bucket_cap_mb = mb(1);
  DistributedDataParallel tiny(std::make_shared<Mixed>(), o);
  CHECK(tiny.bucket_parameter_names() == std::vector<std::vector<std::string>>{{"d"}, {"c"}, {"b"}, {"a"}});
  // Gradients of both dtypes reduce (world size 1: unchanged) into their own buckets.
  tiny.forward(ones({2})).sum().backward();
  auto m = tiny.module_as<Mixed>();
  CHECK(m->param("b").grad().dtype() == DType::f64);
  CHECK(m->param("a").grad().to_vector<float>() == std::vector<float>(100, 2.0f));
  CHECK(m->param("d").grad().to_vector<double>() == std::vector<double>(100, 2.0));
}

TEST_CASE("DDP (world size 1): names, state_dict prefix, views re-pointed after zero_grad(set_to_none)") {
  auto pg = solo_group();
  DDPOptions o;
  o.process_group = pg;
  auto net = make_convnet(5, kCPU);
  auto plain = make_convnet(5, kCPU);
  DistributedDataParallel ddp(net, o);
  CHECK(ddp.module() == net);
  const auto names = ddp.named_parameters();
  REQUIRE(names.size() == 4);
  CHECK(names[0].first == "module.0.weight");
  const nn::StateDict sd = ddp.state_dict();
  CHECK(sd[0].first == "module.0.weight");
  const nn::StateDict stripped = dist::strip_module_prefix(sd);
  CHECK(stripped[0].first == "0.weight");
  CHECK(stripped.back().first == "4.bias");
  auto fresh = make_convnet(6, kCPU);
  fresh->load_state_dict(stripped);
  CHECK(compare_params(cpu_params(*fresh), cpu_params(*net), Tol{0, 0}).empty());
  nn::StateDict other = {{"module.a", Tensor()}, {"b", Tensor()}, {"module.module.c", Tensor()}};
  dist::consume_prefix_in_state_dict_if_present(other, "module.");
  CHECK(other[0].first == "a");
  CHECK(other[1].first == "b");
  CHECK(other[2].first == "module.c");

  const Batch b = global_batch(0, 3, kCPU);
  for (int it = 0; it < 2; ++it) {
    ddp.zero_grad(true);
    plain->zero_grad(true);
    loss_of(ddp, b).backward();
    loss_of(*plain, b).backward();
    const auto ps = net->parameters();
    for (const Tensor& p : ps) CHECK(p.grad().storage() == ps[0].grad().storage());  // views into the bucket
    std::vector<std::pair<std::string, Tensor>> g1, g2;
    for (const auto& [k, p] : net->named_parameters()) g1.emplace_back(k, p.grad());
    for (const auto& [k, p] : plain->named_parameters()) g2.emplace_back(k, p.grad());
    CHECK(compare_params(g1, g2, Tol{0, 0}).empty());
  }
  CHECK_THROWS_WITH_AS(ddp.clone(), doctest::Contains("DDP cannot be cloned"), rg::Error);
  {
    auto guard = ddp.no_sync();
    CHECK_FALSE(ddp.require_backward_grad_sync());
  }
  CHECK(ddp.require_backward_grad_sync());
  net->to(DType::f64);
  CHECK_THROWS_WITH_AS(ddp.forward(native::to(b.x, kCPU, DType::f64)),
                       doctest::Contains("was moved or converted after DDP wrapped the module"), rg::Error);
}
