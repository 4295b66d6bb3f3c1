// In-process tests of the distributed runtime: env:// and tcp:// rendezvous (torchrun, Slurm and
// Open MPI variables, errors naming what is missing), backend lookup, argument checks, sequence
// numbers, and ring groups of several ranks run as threads of this process.
#include <doctest/doctest.h>

#include <thread>

#include "core/native.h"
#include "dist_test_util.h"
#include "distributed/process_group.h"
#include "distributed/ring_cpu.h"

using namespace rg;
using namespace rg::dist;
using namespace rg::test;
using namespace std::chrono_literals;

namespace {
#define CHECK_HAS(s, needle) CHECK_MESSAGE((s).find(needle) != std::string::npos, (s))

// Runs f(rank) on `world` threads, each holding its own ring group over one shared store.
void run_threads(int world, const std::function<void(RingCpuProcessGroup&)>& f) {
  auto server = std::make_shared<TCPStore>("127.0.0.1", 0, true, 10000ms);
  static int round = 0;
  auto base = std::make_shared<PrefixStore>("threads" + std::to_string(round++) + "/", server);
  std::vector<std::thread> ts;
  std::vector<std::string> errors(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) {
    ts.emplace_back([&, r] {
      try {
        RingCpuProcessGroup pg(base, r, world);
        f(pg);
        pg.barrier()->wait();
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : ts) t.join();
  for (int r = 0; r < world; ++r) CHECK_MESSAGE(errors[static_cast<size_t>(r)].empty(), errors[static_cast<size_t>(r)]);
}
}  // namespace

TEST_CASE("init_process_group env://: errors name the missing variable") {
  CleanRendezvousEnv clean;
  InitOptions o;
  CHECK_HAS(message_of([&] { init_process_group(o); }),
            "RANK is not set: launch with `ringgrad launch` or set RANK/WORLD_SIZE");
  {
    EnvScope e{{"RANK", "0"}};
    CHECK_HAS(message_of([&] { init_process_group(o); }), "WORLD_SIZE is not set");
  }
  {
    EnvScope e{{"RANK", "0"}, {"WORLD_SIZE", "2"}};
    CHECK_HAS(message_of([&] { init_process_group(o); }), "MASTER_ADDR is not set");
  }
  {
    EnvScope e{{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}};
    CHECK_HAS(message_of([&] { init_process_group(o); }), "MASTER_PORT is not set");
  }
  {
    EnvScope e{{"RANK", "zero"}, {"WORLD_SIZE", "2"}};
    CHECK_HAS(message_of([&] { init_process_group(o); }), "RANK=zero is not a non-negative integer");
  }
  {
    EnvScope e{{"RANK", "3"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "1"}};
    CHECK_HAS(message_of([&] { init_process_group(o); }), "rank 3 is out of range for world size 2");
  }
  {
    EnvScope e{{"SLURM_PROCID", "0"}};
    const std::string s = message_of([&] { init_process_group(o); });
    CHECK_HAS(s, "SLURM_NTASKS is not set");
    CHECK_HAS(s, "SLURM_PROCID is");
  }
  {
    EnvScope e{{"OMPI_COMM_WORLD_RANK", "1"}};
    CHECK_HAS(message_of([&] { init_process_group(o); }), "OMPI_COMM_WORLD_SIZE is not set");
  }
  {
    InitOptions t;
    t.init_method = "tcp://127.0.0.1:1234";
    CHECK_HAS(message_of([&] { init_process_group(t); }), "needs InitOptions::rank and InitOptions::world_size");
    t.init_method = "file:///tmp/x";
    CHECK_HAS(message_of([&] { init_process_group(t); }), "is not supported");
  }
  CHECK_FALSE(is_initialized());
  CHECK(get_rank() == 0);
  CHECK(get_world_size() == 1);
}

TEST_CASE("init_process_group env://: torchrun, Slurm and Open MPI variables (world size 1)") {
  CleanRendezvousEnv clean;
  struct Case {
    const char *rank, *world, *local, *local_value;
  };
  for (const Case& c : {Case{"RANK", "WORLD_SIZE", "LOCAL_RANK", "3"},
                        Case{"SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "2"},
                        Case{"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "1"}}) {
    CAPTURE(c.rank);
    EnvScope e{{c.rank, "0"}, {c.world, "1"}, {c.local, c.local_value}};
    CHECK(get_local_rank() == std::atoi(c.local_value));  // read from the environment before init too
    auto pg = init_process_group(InitOptions{});
    CHECK(is_initialized());
    CHECK(default_group() == pg);
    CHECK(pg->backend() == "ring");
    CHECK(get_rank() == 0);
    CHECK(get_world_size() == 1);
    CHECK(get_local_rank() == std::atoi(c.local_value));
    CHECK_HAS(message_of([&] { init_process_group(InitOptions{}); }), "already exists");
    Tensor x = full({5}, 2.0);
    pg->allreduce(x, dist::ReduceOp::Avg)->wait();
    CHECK(x.to_vector<double>() == std::vector<double>(5, 2.0));
    destroy_process_group();
    CHECK_FALSE(is_initialized());
    CHECK_HAS(message_of([] { default_group(); }), "not initialised");
  }
}

TEST_CASE("init_process_group tcp://host:port with explicit rank and world size") {
  CleanRendezvousEnv clean;
  InitOptions o;
  o.init_method = "tcp://127.0.0.1:" + std::to_string(pick_free_port());
  o.rank = 0;
  o.world_size = 1;
  o.timeout = 2000ms;
  auto pg = init_process_group(o);
  CHECK(pg->timeout() == 2000ms);
  CHECK(get_world_size() == 1);
  destroy_process_group();
}

TEST_CASE("make_process_group: unknown and unavailable backends say why") {
  auto store = std::make_shared<TCPStore>("127.0.0.1", 0, true, 2000ms);
  CHECK_HAS(message_of([&] { make_process_group("gloo", store, 0, 1, kCPU); }), "unknown process group backend 'gloo'");
  CHECK_HAS(message_of([&] { make_process_group("nccl", store, 0, 1, kCPU); }), "NCCL works on CUDA tensors only");
#if !defined(RINGGRAD_WITH_CUDA)
  CHECK_HAS(message_of([&] { make_process_group("nccl", store, 0, 1, Device::cuda(0)); }), "built without CUDA");
  CHECK_HAS(message_of([&] { make_process_group("ring", store, 0, 1, Device::cuda(0)); }), "built without CUDA");
#elif !defined(RINGGRAD_WITH_NCCL)
  CHECK_HAS(message_of([&] { make_process_group("nccl", store, 0, 1, Device::cuda(0)); }), "built without NCCL");
#endif
}

namespace {
class FakeGroup : public ProcessGroup {
 public:
  using ProcessGroup::ProcessGroup;
  std::string backend() const override { return "fake"; }
  int calls = 0;

 protected:
  std::shared_ptr<Work> done() {
    ++calls;
    auto w = std::make_shared<CompletionWork>();
    w->finish();
    return w;
  }
  std::shared_ptr<Work> do_allreduce(const Tensor&, dist::ReduceOp, const CollectiveInfo&) override { return done(); }
  std::shared_ptr<Work> do_broadcast(const Tensor&, int, const CollectiveInfo&) override { return done(); }
  std::shared_ptr<Work> do_allgather(const Tensor&, const Tensor&, const CollectiveInfo&) override { return done(); }
  std::shared_ptr<Work> do_reduce_scatter(const Tensor&, const Tensor&, dist::ReduceOp, const CollectiveInfo&) override {
    return done();
  }
  std::shared_ptr<Work> do_barrier(const CollectiveInfo&) override { return done(); }
};
}  // namespace

TEST_CASE("register_backend: make_process_group finds a registered factory") {
  register_backend("fake", DeviceType::CPU, [](std::shared_ptr<Store> s, int rank, int size, Device) {
    return std::make_shared<FakeGroup>(std::move(s), rank, size);
  });
  CHECK(has_backend("fake", DeviceType::CPU));
  CHECK_FALSE(has_backend("fake", DeviceType::CUDA));
  auto store = std::make_shared<TCPStore>("127.0.0.1", 0, true, 2000ms);
  auto pg = make_process_group("fake", store, 0, 1, kCPU);
  CHECK(pg->backend() == "fake");
  pg->barrier()->wait();
  CHECK(dynamic_cast<FakeGroup&>(*pg).calls == 1);
}

TEST_CASE("ProcessGroup: argument checks name the op and the shapes; rejected calls take no number") {
  auto store = std::make_shared<TCPStore>("127.0.0.1", 0, true, 2000ms);
  auto pg = make_process_group("ring", store, 0, 1, kCPU);
  CHECK(pg->sequence_number() == 0);
  Tensor m = zeros({4, 6});
  Tensor t = m.transpose(0, 1);
  std::string e = message_of([&] { pg->allreduce(t); });
  CHECK_HAS(e, "allreduce: tensor must be contiguous");
  CHECK_HAS(e, "float32[6, 4]");
  e = message_of([&] { pg->broadcast(zeros({3}, DType::b8)); });
  CHECK_HAS(e, "broadcast: dtype bool of tensor is not supported");
  e = message_of([&] { pg->broadcast(zeros({3}), 1); });
  CHECK_HAS(e, "broadcast: root 1 is out of range for world size 1");
  e = message_of([&] { pg->allgather(zeros({5}), zeros({4})); });
  CHECK_HAS(e, "allgather: out must have world size (1) * in.numel() (4) = 4 elements");
  CHECK_HAS(e, "float32[5]");
  e = message_of([&] { pg->allgather(zeros({4}, DType::f64), zeros({4})); });
  CHECK_HAS(e, "allgather: out is float64 but in is float32");
  e = message_of([&] { pg->reduce_scatter(zeros({3}), zeros({4})); });
  CHECK_HAS(e, "reduce_scatter: in must have world size (1) * out.numel() (3) = 3 elements");
  CHECK(pg->sequence_number() == 0);
  e = message_of([&] { pg->allreduce(Tensor()); });
  CHECK_HAS(e, "undefined");
  // World size 1: every collective is the identity (reduce_scatter copies, avg divides by 1).
  Tensor x = arange(6.0, DType::i64);
  pg->allreduce(x, dist::ReduceOp::Avg)->wait();
  CHECK(x.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4, 5});
  Tensor out = zeros({6}, DType::i64);
  pg->reduce_scatter(out, x)->wait();
  CHECK(out.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4, 5});
  Tensor g = zeros({6}, DType::i64);
  pg->allgather(g, x)->wait();
  CHECK(g.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4, 5});
  pg->broadcast(x, 0)->wait();
  pg->barrier()->wait();
  CHECK(pg->sequence_number() == 5);
}

TEST_CASE("ring: groups made by threads of one process, over tcp and shm") {
  for (const char* transport : {"tcp", "shm"}) {
    CAPTURE(transport);
    EnvScope env{{"RINGGRAD_RING_TRANSPORT", std::string(transport)}};
    for (int world : {2, 3}) {
      CAPTURE(world);
      run_threads(world, [&](RingCpuProcessGroup& pg) {
        CHECK(pg.transport() == transport);
        const int r = pg.rank();
        // allreduce: rank r holds r + i; the sum is world * i + world (world - 1) / 2.
        Tensor x = arange(1000.0, DType::f64).add_(full({1000}, r, DType::f64));
        pg.allreduce(x)->wait();
        const auto v = x.to_vector<double>();
        for (int i = 0; i < 1000; i += 111) CHECK(v[static_cast<size_t>(i)] == world * i + world * (world - 1) / 2);
        // max of i32: rank r holds r * 10.
        Tensor mx = full({3}, r * 10.0, DType::i32);
        pg.allreduce(mx, dist::ReduceOp::Max)->wait();
        CHECK(mx.to_vector<int32_t>() == std::vector<int32_t>(3, (world - 1) * 10));
      });
    }
  }
}

TEST_CASE("ring: the transport can be forced, and a bad value is refused") {
  EnvScope env{{"RINGGRAD_RING_TRANSPORT", std::string("carrier-pigeon")}};
  auto server = std::make_shared<TCPStore>("127.0.0.1", 0, true, 2000ms);
  std::string e0, e1;
  std::thread t([&] { e1 = message_of([&] { RingCpuProcessGroup pg(server, 1, 2); }); });
  e0 = message_of([&] { RingCpuProcessGroup pg(server, 0, 2); });
  t.join();
  CHECK_HAS(e0, "RINGGRAD_RING_TRANSPORT=carrier-pigeon is not one of tcp, shm, auto");
  CHECK_HAS(e1, "rank 0 could not set up the group: RINGGRAD_RING_TRANSPORT=carrier-pigeon");
}
