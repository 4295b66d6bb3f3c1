// The CUDA "ring" and "nccl" process groups on real GPUs: ranks as threads of this process (quick,
// no IPC), then as processes started through the launcher on ONE GPU (CUDA IPC; world sizes 2, 3,
// 4), every collective and dtype checked bit for bit against host references (gpu_checks.h).
// The process ranks run this same executable, selecting the skipped test case "cuda_worker_entry".
#include <doctest/doctest.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "distributed/cuda_backends.h"
#include "distributed/launcher.h"
#include "distributed_gpu/gpu_checks.h"
#include "launch_util.h"
#include "test_util.h"

#ifdef RINGGRAD_WITH_CUDA
#include "distributed/cuda_ring.h"

namespace rg::test::gpu {
namespace {

using namespace std::chrono_literals;

std::vector<int64_t> parse_sizes(const char* s, std::vector<int64_t> fallback) {
  if (!s || !*s) return fallback;
  std::vector<int64_t> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) v.push_back(std::atoll(item.c_str()));
  return v;
}

const char* env_or(const char* k, const char* fallback) {
  const char* v = std::getenv(k);
  return v && *v ? v : fallback;
}

// ---- ranks as processes

struct Outcome {
  int code = -1;
  std::string report;  // the launcher's message and every rank's log
};

// Starts `nproc` copies of this executable running the worker entry for `scenario` (Note [Ranks as
// copies of the test executable]); the logs stay in their /tmp/rg_gpu_dist_* directory.
Outcome launch_workers(int nproc, const std::string& scenario,
                       std::vector<std::pair<std::string, std::string>> env = {},
                       std::chrono::milliseconds job_timeout = 600s) {
  char tmpl[] = "/tmp/rg_gpu_dist_XXXXXX";
  const char* dir = mkdtemp(tmpl);
  REQUIRE(dir != nullptr);
  env.emplace_back("RG_GPU_WORKER", scenario);
  // "ring": the launcher's own GPU check is for nccl only; the worker picks its backend
  const SelfLaunch r = launch_copies({.nproc = nproc,
                                      .entry = "cuda_worker_entry",
                                      .env = env,
                                      .job_timeout = job_timeout,
                                      .log_dir = dir,
                                      .remove_logs = false});
  Outcome out;
  out.code = r.result.exit_code;
  out.report = r.report(scenario, [](std::string log) {
    if (log.size() > 6000) log = "..." + log.substr(log.size() - 6000);
    return log;
  });
  return out;
}

// ---- ranks as threads of this process: the ring's same-process path (raw pointers and events)

// Each thread gets its own current stream: threads sharing the legacy default stream would chain
// their ranks' collectives through it (rank A's wait queued before rank B's start).
std::vector<std::string> run_threads(int N, const dist::CudaRingConfig& cfg,
                                     const std::function<std::string(dist::ProcessGroup&, dist::Store&, int)>& body) {
  static int generation = 0;
  const std::string prefix = "threads" + std::to_string(generation++) + "/";
  auto server = std::make_shared<dist::TCPStore>("127.0.0.1", 0, true, std::chrono::milliseconds(60000));
  const int port = server->port();
  std::vector<std::string> errors(static_cast<size_t>(N));
  std::vector<std::thread> threads;
  for (int r = 0; r < N; ++r) {
    threads.emplace_back([&, r] {
      try {
        cuda::DeviceGuard dg(0);
        cuda::StreamGuard sg(cuda::new_stream(0));
        std::shared_ptr<dist::Store> base =
            r == 0 ? std::static_pointer_cast<dist::Store>(server)
                   : std::make_shared<dist::TCPStore>("127.0.0.1", port, false, std::chrono::milliseconds(60000));
        auto store = std::make_shared<dist::PrefixStore>(prefix, base);
        auto pg = dist::make_cuda_ring_group(store, r, N, Device::cuda(0), cfg);
        pg->set_timeout(std::chrono::milliseconds(120000));
        errors[static_cast<size_t>(r)] = body(*pg, *store, r);
        pg.reset();  // the destructor's neighbour hand-shake runs with every thread still alive
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = "rank " + std::to_string(r) + " threw: " + e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

dist::CudaRingConfig tiny_config(int slots) {
  dist::CudaRingConfig c;
  c.slot_bytes = 1024;  // 256 floats: many rounds and slot wrap-arounds on small tensors
  c.slots = slots;
  c.min_chunk_bytes = 16;
  return c;
}

}  // namespace

TEST_CASE("cuda ring (ranks as threads): every collective, dtype and size, world sizes 1-4") {
  int total = 0;
  for (int N : {1, 2, 3, 4}) {
    for (int cfg_kind = 0; cfg_kind < 3; ++cfg_kind) {
      const dist::CudaRingConfig cfg = cfg_kind == 0 ? dist::CudaRingConfig() : tiny_config(cfg_kind == 1 ? 2 : 3);
      // Tiny slots: 2049 already makes several rounds (the last one of a single element for 2 and 4
      // ranks) for 4- and 8-byte types in every config, with half of 4097's hand-overs (runtime:
      // with RINGGRAD_DEBUG_SYNC=1 every hand-over costs a device synchronisation).
      const std::vector<int64_t> sizes = cfg_kind == 0 ? std::vector<int64_t>{1, 7, 1023, 4097, 65537}
                                                       : std::vector<int64_t>{1, 7, 300, 1023, 2049};
      std::vector<int> counts(static_cast<size_t>(N), 0);
      const auto errors = run_threads(N, cfg, [&](dist::ProcessGroup& pg, dist::Store& store, int r) {
        CaseOptions o;
        o.seed = static_cast<uint64_t>(N * 10 + cfg_kind + 1);
        o.ref = RefKind::RingOrder;
        o.ring_cfg = cfg;
        return check_everything(pg, store, 0, o, sizes, &counts[static_cast<size_t>(r)]);
      });
      for (int r = 0; r < N; ++r) {
        CHECK_MESSAGE(errors[static_cast<size_t>(r)].empty(), "world ", N, " config ", cfg_kind, ": ",
                      errors[static_cast<size_t>(r)]);
      }
      total += counts[0];
    }
  }
  MESSAGE(total, " collective cases per rank (threads)");
}

TEST_CASE("cuda ring (ranks as threads): 64 MiB allreduce over several rounds, bitwise in the documented order") {
  const int N = 3;
  const dist::CudaRingConfig cfg;  // defaults: 3 ranks * 3 chunks * 8 MiB = 72 MiB per round
  const int64_t n = (int64_t{24} << 20) + 13;  // 96 MiB of f32: 2 rounds
  const auto errors = run_threads(N, cfg, [&](dist::ProcessGroup& pg, dist::Store&, int) {
    CaseOptions o;
    o.seed = 99;
    o.exact = false;
    o.ring_cfg = cfg;
    std::string e = check_allreduce(pg, 0, DType::f32, n, ReduceOp::Sum, o);
    if (e.empty()) e = check_allreduce(pg, 0, DType::bf16, n, ReduceOp::Avg, o);
    if (e.empty()) e = check_reduce_scatter(pg, 0, DType::f16, n / N, ReduceOp::Sum, o);
    if (e.empty()) e = check_allgather(pg, 0, DType::f32, n / N, o);
    if (e.empty()) e = check_broadcast(pg, 0, DType::f64, n / 2, 1, o);
    return e;
  });
  for (int r = 0; r < N; ++r) CHECK_MESSAGE(errors[static_cast<size_t>(r)].empty(), errors[static_cast<size_t>(r)]);
}

TEST_CASE("cuda ring: wrong device, dtype and shapes are rejected with the op named") {
  auto store = std::make_shared<dist::TCPStore>("127.0.0.1", 0, true, std::chrono::milliseconds(10000));
  auto pg = dist::make_cuda_ring_group(store, 0, 1, Device::cuda(0), dist::CudaRingConfig());
  CHECK(pg->backend() == "ring");
  Tensor cpu = rg::zeros(Shape{4});
  CHECK_THROWS_WITH_AS(pg->allreduce(cpu), doctest::Contains("allreduce"), Error);
  Tensor u8 = rg::empty(Shape{4}, TensorOptions(DType::u8).device(Device::cuda(0)));
  CHECK_THROWS_WITH_AS(pg->allreduce(u8), doctest::Contains("uint8"), Error);
  Tensor a = rg::empty(Shape{4}, TensorOptions().device(Device::cuda(0)));
  Tensor b = rg::empty(Shape{5}, TensorOptions().device(Device::cuda(0)));
  CHECK_THROWS_WITH_AS(pg->allgather(b, a), doctest::Contains("allgather"), Error);
  // The ring moves flat byte ranges: a strided view must be refused, not reduced as if contiguous.
  Tensor strided = native::narrow(rg::empty(Shape{4, 4}, TensorOptions().device(Device::cuda(0))), 1, 0, 2);
  CHECK_THROWS_WITH_AS(pg->allreduce(strided), doctest::Contains("contiguous"), Error);
  // World size 1: every collective is the identity (avg divides by 1).
  CaseOptions o;
  o.ring_cfg = dist::CudaRingConfig();
  CHECK(check_everything(*pg, *store, 0, o, {1, 7, 1023}) == "");
}

TEST_CASE("cuda ring: make_process_group finds the registered backend") {
  dist::register_cuda_backends();
  CHECK(dist::has_backend("ring", DeviceType::CUDA));
  auto store = std::make_shared<dist::TCPStore>("127.0.0.1", 0, true, std::chrono::milliseconds(10000));
  auto pg = dist::make_process_group("ring", store, 0, 1, Device::cuda(0));
  CHECK(pg->backend() == "ring");
  CHECK(pg->device_type() == DeviceType::CUDA);
#ifdef RINGGRAD_WITH_NCCL
  CHECK(dist::has_backend("nccl", DeviceType::CUDA));
#endif
}

// ---- ranks as processes on one GPU (CUDA IPC between processes)

TEST_CASE("cuda ring (ranks as processes on one GPU): world sizes 2, 3, 4") {
  for (int N : {2, 3, 4}) {
    const Outcome o = launch_workers(N, "ring-all", {{"RG_GPU_SIZES", "1,7,1023,4097,65537"}});
    CHECK_MESSAGE(o.code == 0, o.report);
  }
}

TEST_CASE("cuda ring (processes): tiny slots, many rounds and slot wrap-arounds") {
  for (int N : {2, 3}) {
    const Outcome o = launch_workers(N, "ring-all",
                                     {{"RG_GPU_SIZES", "1,7,300,1023,2049"},  // as the threads case
                                      {"RINGGRAD_CUDA_RING_SLOT_KB", "1"},
                                      {"RINGGRAD_CUDA_RING_SLOTS", N == 2 ? "2" : "3"},
                                      {"RINGGRAD_CUDA_RING_MIN_CHUNK_KB", "1"}});
    CHECK_MESSAGE(o.code == 0, o.report);
  }
}

TEST_CASE("cuda ring (processes): 64 MiB tensors") {
  const Outcome o = launch_workers(2, "ring-big");
  CHECK_MESSAGE(o.code == 0, o.report);
}

TEST_CASE("cuda ring (processes): a missing rank times out naming it; its peer then fails fast") {
  // The error path: with the hang watchdog on (the default) the timeout would end rank 0 instead.
  const Outcome o = launch_workers(2, "ring-timeout", {{"RINGGRAD_WATCHDOG", "0"}}, 120s);
  CHECK_MESSAGE(o.code == 0, o.report);
}

// A build without NCCL skips the NCCL cases; a GPU check (RINGGRAD_REQUIRE_GPU) fails them instead.
const char* const kNoNccl =
#ifdef RINGGRAD_WITH_NCCL
    "";
#else
    "ringgrad built without NCCL";
#endif

TEST_CASE("nccl: two ranks on one GPU are refused with a clear message") {
  if (skip_case(kNoNccl, required_gpus() >= 1)) return;
  const Outcome o = launch_workers(2, "nccl-same-gpu", {{"CUDA_VISIBLE_DEVICES", "0"}});
  CHECK_MESSAGE(o.code == 0, o.report);
}

TEST_CASE("nccl (processes, one GPU each): every collective and dtype") {
  if (skip_case(kNoNccl, required_gpus() >= 1)) return;
  RG_SKIP_UNLESS_GPU(2);  // NCCL needs one GPU per rank
  for (int N : {2, 3, 4}) {
    const std::string missing = missing_gpus(N);
    if (!missing.empty()) {  // the world sizes this machine has GPUs for ran; a promised one must
      CHECK_MESSAGE(required_gpus() < N, "RINGGRAD_REQUIRE_GPU=", required_gpus(), " but nccl with ", N,
                    " ranks cannot run: ", missing);
      MESSAGE("nccl with ", N, " ranks not run: ", missing);
      continue;
    }
    const Outcome o = launch_workers(N, "nccl-all", {{"RG_GPU_SIZES", "1,7,1023,4097,65537"}});
    CHECK_MESSAGE(o.code == 0, o.report);
  }
}

// ---- the rank side of the tests above (runs only in the processes the launcher starts)

namespace {

int device_for_rank() {
  const int local = std::atoi(env_or("LOCAL_RANK", "0"));
  const int n = cuda::device_count();
  return n > 0 ? local % n : 0;
}

std::string worker_ring_all(const std::string& backend) {
  dist::register_cuda_backends();
  const int dev = device_for_rank();
  cuda::set_device(dev);
  dist::InitOptions io;
  io.backend = backend;
  io.device = Device::cuda(dev);
  io.timeout = std::chrono::milliseconds(180000);
  auto pg = dist::init_process_group(io);
  if (pg->backend() != backend) return "init_process_group made a '" + pg->backend() + "' group, asked " + backend;
  CaseOptions o;
  o.seed = static_cast<uint64_t>(pg->size()) * 100 + 7;
  o.ref = backend == "nccl" ? RefKind::AnyOrder : RefKind::RingOrder;
  o.ring_cfg = dist::CudaRingConfig::from_env();
  int count = 0;
  const std::string e = check_everything(*pg, *pg->store(), dev, o,
                                         parse_sizes(std::getenv("RG_GPU_SIZES"), {1, 7, 1023, 4097}), &count);
  MESSAGE("rank ", pg->rank(), ": ", count, " collective cases on ", backend, " (cuda:", dev, ")");
  dist::destroy_process_group();
  return e;
}

std::string worker_ring_big() {
  dist::register_cuda_backends();
  const int dev = device_for_rank();
  cuda::set_device(dev);
  dist::InitOptions io;
  io.backend = "ring";
  io.device = Device::cuda(dev);
  auto pg = dist::init_process_group(io);
  CaseOptions o;
  o.seed = 5;
  o.exact = false;
  o.ring_cfg = dist::CudaRingConfig::from_env();
  const int64_t n = int64_t{16} << 20;  // 64 MiB of f32: 2 chunks of 8 MiB... and 2 rounds with 2 ranks
  std::string e = check_allreduce(*pg, dev, DType::f32, n, ReduceOp::Sum, o);
  if (e.empty()) e = check_allgather(*pg, dev, DType::f32, n / pg->size(), o);
  if (e.empty()) e = check_reduce_scatter(*pg, dev, DType::bf16, n / pg->size(), ReduceOp::Max, o);
  if (e.empty()) e = check_broadcast(*pg, dev, DType::f32, n, 1, o);
  dist::destroy_process_group();
  return e;
}

// Rank 1 skips allreduce #2: rank 0 must time out naming rank 1; then rank 1 calls it and must fail
// at once because rank 0 gave up (its `aborted` flag), not after its own timeout.
std::string worker_ring_timeout() {
  dist::register_cuda_backends();
  cuda::set_device(0);
  dist::InitOptions io;
  io.backend = "ring";
  io.device = Device::cuda(0);
  auto pg = dist::init_process_group(io);
  auto store = pg->store();
  const int r = pg->rank();
  Tensor x = device_tensor(1024, DType::f32, 0, false);
  to_device(x, make_input<float>(1, r, 1024, true));
  pg->allreduce(x)->synchronize();
  std::string err;
  if (r == 0) {
    pg->set_timeout(std::chrono::milliseconds(2000));
    const std::string seq = "allreduce #" + std::to_string(pg->sequence_number() + 1);
    const auto t0 = std::chrono::steady_clock::now();
    try {
      pg->allreduce(x)->wait();
      err = "rank 0: " + seq + " returned although rank 1 never called it";
    } catch (const std::exception& e) {
      const std::string m = e.what();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (!contains(m, "timed out") || !contains(m, seq + " ") || !contains(m, "never reached it: 1")) {
        err = "rank 0: the timeout error does not name the collective and rank 1: " + m;
      } else if (s > 30) {
        err = "rank 0: the 2 s timeout took " + std::to_string(s) + " s";
      }
      MESSAGE("rank 0 got, as it should: ", m);
    }
    store->set("timeout_test/rank0_done", std::string("1"));
    store->get("timeout_test/rank1_done");  // keep the store (served by rank 0) up for rank 1
  } else {
    store->get("timeout_test/rank0_done");
    pg->set_timeout(std::chrono::milliseconds(60000));
    const auto t0 = std::chrono::steady_clock::now();
    try {
      pg->allreduce(x)->synchronize();
      err = "rank 1: allreduce #2 succeeded although rank 0 gave up on it";
    } catch (const std::exception& e) {
      const std::string m = e.what();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (!contains(m, "rank 0")) err = "rank 1: the error does not name rank 0: " + m;
      if (s > 20) err = "rank 1: took " + std::to_string(s) + " s to notice that rank 0 gave up: " + m;
      MESSAGE("rank 1 got, as it should: ", m);
    }
    store->set("timeout_test/rank1_done", std::string("1"));
  }
  dist::destroy_process_group();
  return err;
}

std::string worker_nccl_same_gpu() {
#ifdef RINGGRAD_WITH_NCCL
  dist::register_cuda_backends();
  const int r = std::atoi(env_or("RANK", "0")), N = std::atoi(env_or("WORLD_SIZE", "1"));
  auto store = std::make_shared<dist::TCPStore>(env_or("MASTER_ADDR", "127.0.0.1"),
                                                std::atoi(env_or("MASTER_PORT", "0")),
                                                r == 0 && !std::getenv("TORCHELASTIC_USE_AGENT_STORE"),  // launcher's store
                                                std::chrono::milliseconds(60000));
  std::string err;
  try {
    auto pg = dist::make_process_group("nccl", store, r, N, Device::cuda(0));
    err = "rank " + std::to_string(r) + ": an nccl group with every rank on cuda:0 was made";
  } catch (const std::exception& e) {
    if (!contains(e.what(), "same GPU")) err = std::string("unexpected error: ") + e.what();
  }
  store->add("same_gpu_done", 1);
  while (store->add("same_gpu_done", 0) < N) std::this_thread::sleep_for(10ms);  // keep rank 0's server up
  return err;
#else
  return "";
#endif
}

}  // namespace

TEST_CASE("cuda_worker_entry" * doctest::skip()) {
  const std::string scenario = env_or("RG_GPU_WORKER", "");
  REQUIRE_MESSAGE(!scenario.empty(), "the worker entry runs only under launch_workers()");
  std::string err;
  try {
    if (scenario == "ring-all") err = worker_ring_all("ring");
    else if (scenario == "nccl-all") err = worker_ring_all("nccl");
    else if (scenario == "ring-big") err = worker_ring_big();
    else if (scenario == "ring-timeout") err = worker_ring_timeout();
    else if (scenario == "nccl-same-gpu") err = worker_nccl_same_gpu();
    else err = "unknown scenario " + scenario;
  } catch (const std::exception& e) {
    err = "rank " + std::string(env_or("RANK", "?")) + ": " + scenario + " threw: " + e.what();
  }
  CHECK_MESSAGE(err.empty(), err);
}

}  // namespace rg::test::gpu

#endif  // RINGGRAD_WITH_CUDA
