// The rank program the distributed tests start through the launcher: `dist_worker <scenario>
// [--key value ...]`. It exits 0 after printing "OK <scenario>", or non-zero saying what failed.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "core/native.h"
#include "distributed/process_group.h"
#include "distributed/ring_cpu.h"
#include "../dist_eval_data.h"
#include "distributed/gather_objects.h"
#include "fault_scenarios.h"

using namespace rg;
using namespace rg::dist;

namespace {

using ReduceOp = rg::dist::ReduceOp;  // not core's reduction enum

std::map<std::string, std::string> g_opts;
int g_failures = 0;

std::string opt(const std::string& k, const std::string& fallback = "") {
  auto it = g_opts.find(k);
  return it == g_opts.end() ? fallback : it->second;
}
int opt_int(const std::string& k, int fallback) { return g_opts.count(k) ? std::atoi(g_opts[k].c_str()) : fallback; }

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> v;
  size_t p = 0;
  while (p < s.size()) {
    size_t c = s.find(',', p);
    if (c == std::string::npos) c = s.size();
    v.push_back(std::atoll(s.substr(p, c - p).c_str()));
    p = c + 1;
  }
  return v;
}

#define EXPECT(cond, ...)                                                        \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "rank %d: check failed: %s: ", get_rank(), #cond);   \
      std::fprintf(stderr, __VA_ARGS__);                                         \
      std::fprintf(stderr, "\n");                                                \
      if (++g_failures > 20) std::exit(1);                                       \
    }                                                                            \
  } while (0)

// ---- the values rank r holds at index i (chosen so every f16/bf16/f32 sum of up to 4 ranks is exact)

uint32_t mix(int r, int64_t i) {
  return (static_cast<uint32_t>(i) * 2654435761u ^ static_cast<uint32_t>(r + 1) * 0x9E3779B9u) >> 13;
}
double value(DType t, int r, int64_t i) {
  const uint32_t h = mix(r, i);
  if (is_floating(t)) return (static_cast<int>(h % 17) - 8) * 0.25;  // multiples of 1/4 in [-2, 2]
  if (t == DType::i32) return static_cast<double>(static_cast<int>(h % 2001) - 1000);
  return static_cast<double>(static_cast<int64_t>(h % 2001) - 1000 + (static_cast<int64_t>(r + 1) << 33));
}

template <typename T>
void fill_typed(T* p, DType t, int r, int64_t n, int64_t index_offset) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = value(t, r, i + index_offset);
    if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) p[i] = T(static_cast<float>(v));
    else p[i] = static_cast<T>(v);
  }
}

// Rank r's tensor: value(t, r, index_offset + i) at i, written straight in its dtype (all exact).
Tensor filled(DType t, int r, int64_t n, int64_t index_offset = 0) {
  Tensor x = empty({n}, t);
  switch (t) {
    case DType::f32: fill_typed(x.data<float>(), t, r, n, index_offset); break;
    case DType::f64: fill_typed(x.data<double>(), t, r, n, index_offset); break;
    case DType::f16: fill_typed(x.data<Half>(), t, r, n, index_offset); break;
    case DType::bf16: fill_typed(x.data<BFloat16>(), t, r, n, index_offset); break;
    case DType::i32: fill_typed(x.data<int32_t>(), t, r, n, index_offset); break;
    case DType::i64: fill_typed(x.data<int64_t>(), t, r, n, index_offset); break;
    default: std::abort();
  }
  return x;
}

double reduce_expected(DType t, ReduceOp op, int world, int64_t i) {
  double acc = value(t, 0, i);
  for (int q = 1; q < world; ++q) {
    const double v = value(t, q, i);
    acc = op == ReduceOp::Max ? std::max(acc, v) : acc + v;
  }
  if (op == ReduceOp::Avg) {
    if (is_floating(t)) return acc / world;
    return static_cast<double>(static_cast<int64_t>(acc) / world);  // truncating, as the ring (and NCCL)
  }
  return acc;
}

// |got - want| within what rounding the exact result to dtype t can cost (avg only; sums are exact).
bool close_enough(DType t, double got, double want, bool exact) {
  if (exact || !is_floating(t)) return got == want;
  const double rel = t == DType::f64 ? 1e-15 : t == DType::f32 ? 1e-7 : t == DType::f16 ? 1e-3 : 8e-3;
  return std::fabs(got - want) <= rel * std::fabs(want) + 1e-30;
}

uint64_t fnv(const Tensor& t) {
  const auto* p = static_cast<const uint8_t*>(t.data_ptr());
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < t.nbytes(); ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

std::vector<std::string> g_hashes;  // per case, compared across ranks at the end
void record(const std::string& name, const Tensor& t) { g_hashes.push_back(name + "=" + std::to_string(fnv(t))); }

// Every rank's list of result hashes must be identical: bitwise equal results everywhere.
void compare_hashes_across_ranks(ProcessGroup& pg) {
  std::string mine;
  for (const auto& h : g_hashes) mine += h + ";";
  pg.store()->set("hashes/" + std::to_string(pg.rank()), mine);
  for (int q = 0; q < pg.size(); ++q) {
    const std::string theirs = pg.store()->get_string("hashes/" + std::to_string(q));
    if (theirs != mine) {
      size_t k = 0;
      while (k < mine.size() && k < theirs.size() && mine[k] == theirs[k]) ++k;
      const size_t b = mine.rfind(';', k);
      EXPECT(false, "results differ bitwise from rank %d's, first at: %s", q,
             mine.substr(b == std::string::npos ? 0 : b + 1, 60).c_str());
    }
  }
}

std::string dtn(DType t) { return dtype_name(t); }

const DType kDTypes[] = {DType::f32, DType::f16, DType::bf16, DType::f64, DType::i32, DType::i64};
const ReduceOp kOps[] = {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max};

void check_allreduce(ProcessGroup& pg, DType t, ReduceOp op, int64_t n) {
  const int r = pg.rank(), w = pg.size();
  Tensor x = filled(t, r, n);
  pg.allreduce(x, op)->wait();
  const auto got = x.to_vector<double>();
  int bad = 0;
  for (int64_t i = 0; i < n && bad < 3; ++i) {
    const double want = reduce_expected(t, op, w, i);
    if (!close_enough(t, got[static_cast<size_t>(i)], want, op != ReduceOp::Avg)) {
      ++bad;
      EXPECT(false, "allreduce(%s) %s[%lld] at %lld: got %.17g, want %.17g", reduce_op_name(op), dtn(t).c_str(),
             static_cast<long long>(n), static_cast<long long>(i), got[static_cast<size_t>(i)], want);
    }
  }
  record(std::string("allreduce/") + reduce_op_name(op) + "/" + dtn(t) + "/" + std::to_string(n), x);
}

void check_reduce_scatter(ProcessGroup& pg, DType t, ReduceOp op, int64_t m) {
  const int r = pg.rank(), w = pg.size();
  Tensor in = filled(t, r, m * w);
  const Tensor in_copy = in.clone();
  Tensor out = zeros({m}, t);
  pg.reduce_scatter(out, in, op)->wait();
  const auto got = out.to_vector<double>();
  int bad = 0;
  for (int64_t j = 0; j < m && bad < 3; ++j) {
    const double want = reduce_expected(t, op, w, r * m + j);
    if (!close_enough(t, got[static_cast<size_t>(j)], want, op != ReduceOp::Avg)) {
      ++bad;
      EXPECT(false, "reduce_scatter(%s) %s m=%lld at %lld: got %.17g, want %.17g", reduce_op_name(op),
             dtn(t).c_str(), static_cast<long long>(m), static_cast<long long>(j), got[static_cast<size_t>(j)], want);
    }
  }
  EXPECT(fnv(in) == fnv(in_copy), "reduce_scatter modified its input (%s m=%lld)", dtn(t).c_str(),
         static_cast<long long>(m));
}

void check_allgather(ProcessGroup& pg, DType t, int64_t m) {
  const int r = pg.rank(), w = pg.size();
  Tensor in = filled(t, r, m);
  Tensor out = zeros({m * w}, t);
  pg.allgather(out, in)->wait();
  const auto got = out.to_vector<double>();
  int bad = 0;
  for (int q = 0; q < w; ++q) {
    for (int64_t i = 0; i < m && bad < 3; ++i) {
      const double want = value(t, q, i);
      if (got[static_cast<size_t>(q * m + i)] != want) {
        ++bad;
        EXPECT(false, "allgather %s m=%lld: slice %d at %lld: got %.17g, want %.17g", dtn(t).c_str(),
               static_cast<long long>(m), q, static_cast<long long>(i), got[static_cast<size_t>(q * m + i)], want);
      }
    }
  }
  record("allgather/" + dtn(t) + "/" + std::to_string(m), out);
}

void check_broadcast(ProcessGroup& pg, DType t, int64_t n, int root) {
  const int r = pg.rank();
  Tensor x = r == root ? filled(t, root, n) : filled(t, r + 7, n);
  pg.broadcast(x, root)->wait();
  const auto got = x.to_vector<double>();
  int bad = 0;
  for (int64_t i = 0; i < n && bad < 3; ++i) {
    if (got[static_cast<size_t>(i)] != value(t, root, i)) {
      ++bad;
      EXPECT(false, "broadcast root %d %s[%lld] at %lld: got %.17g, want %.17g", root, dtn(t).c_str(),
             static_cast<long long>(n), static_cast<long long>(i), got[static_cast<size_t>(i)], value(t, root, i));
    }
  }
}

// ---- scenarios

void scenario_collectives() {
  auto pg = default_group();
  if (const std::string want = opt("expect-transport"); !want.empty()) {
    auto* ring = dynamic_cast<RingCpuProcessGroup*>(pg.get());
    EXPECT(ring && ring->transport() == want, "transport is %s, expected %s",
           ring ? ring->transport().c_str() : "(not ring)", want.c_str());
  }
  const auto sizes = parse_list(opt("sizes", "1,7,1031,300007"));
  int root = 0;
  for (int64_t n : sizes) {
    for (DType t : kDTypes) {
      for (ReduceOp op : kOps) check_allreduce(*pg, t, op, n);
      for (ReduceOp op : kOps) check_reduce_scatter(*pg, t, op, n);
      check_allgather(*pg, t, n);
      check_broadcast(*pg, t, n, root);
      root = (root + 1) % pg->size();
    }
  }
  pg->barrier()->wait();
  compare_hashes_across_ranks(*pg);
}

// 64 MiB of f32 (and a 64 MiB allgather): the pipelined path with many sub-chunks per step.
void scenario_big() {
  auto pg = default_group();
  const int64_t n = int64_t{16} << 20;  // 16 Mi floats = 64 MiB
  check_allreduce(*pg, DType::f32, ReduceOp::Sum, n);
  check_allgather(*pg, DType::f32, n / pg->size());
  check_reduce_scatter(*pg, DType::bf16, ReduceOp::Max, n / pg->size());
  compare_hashes_across_ranks(*pg);
}

// f16/bf16 partial sums accumulate in f32 and round once: rank 0 holds 1, the others 2^-8 (half an
// ulp of bf16 at 1). Rounding after every hop would lose each 2^-8 (ties to even); one rounding
// of the f32 sum gives bf16(1 + (world-1) * 2^-8).
void scenario_halfacc() {
  auto pg = default_group();
  const int w = pg->size();
  for (DType t : {DType::bf16, DType::f16}) {
    // f16 has 10 fraction bits: its half ulp at 1 is 2^-11.
    const double small = t == DType::bf16 ? 1.0 / 256 : 1.0 / 2048;
    const int64_t n = 1031;
    Tensor x = full({n}, pg->rank() == 0 ? 1.0 : small, t);
    pg->allreduce(x)->wait();
    const double exact = 1.0 + (w - 1) * small;
    const double want = scalar_tensor(exact, DType::f64).to(t).item();  // one rounding of the exact sum
    const auto got = x.to_vector<double>();
    for (int64_t i = 0; i < n; ++i) {
      if (got[static_cast<size_t>(i)] != want) {
        EXPECT(false, "%s allreduce at %lld: got %.10g, want %.10g (one rounding of %.10g)", dtn(t).c_str(),
               static_cast<long long>(i), got[static_cast<size_t>(i)], want, exact);
        break;
      }
    }
  }
}

// Queue several collectives without waiting (as DDP does), then wait in reverse order.
void scenario_async() {
  auto pg = default_group();
  std::vector<Tensor> xs;
  std::vector<std::shared_ptr<Work>> works;
  for (int k = 0; k < 8; ++k) {
    xs.push_back(filled(DType::f32, pg->rank(), 1000 + 37 * k, k * 1000));
    works.push_back(pg->allreduce(xs.back()));
  }
  for (int k = 7; k >= 0; --k) {
    works[static_cast<size_t>(k)]->wait();
    EXPECT(works[static_cast<size_t>(k)]->is_completed(), "work %d not completed after wait", k);
    EXPECT(works[static_cast<size_t>(k)]->duration_ms() >= 0, "work %d has no duration", k);
    const auto got = xs[static_cast<size_t>(k)].to_vector<double>();
    for (int64_t i = 0; i < static_cast<int64_t>(got.size()); ++i) {
      double want = 0;
      for (int q = 0; q < pg->size(); ++q) want += value(DType::f32, q, i + k * 1000);
      if (got[static_cast<size_t>(i)] != want) {
        EXPECT(false, "async allreduce %d at %lld: got %g want %g", k, static_cast<long long>(i),
               got[static_cast<size_t>(i)], want);
        break;
      }
    }
  }
  EXPECT(pg->sequence_number() == 8, "sequence number %llu after 8 collectives",
         static_cast<unsigned long long>(pg->sequence_number()));
}

// One rank arrives late: the others must fail with the timeout error naming it.
int scenario_timeout() {
  auto pg = default_group();
  pg->set_timeout(std::chrono::milliseconds(opt_int("timeout-ms", 1000)));
  const int sleeper = opt_int("sleeper", pg->size() - 1);
  Tensor x = ones({7});
  pg->allreduce(x)->wait();  // #1 completes everywhere
  if (pg->rank() == sleeper) std::this_thread::sleep_for(std::chrono::seconds(opt_int("sleep-s", 6)));
  try {
    pg->allreduce(x)->wait();  // #2: the sleeper is not there
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ERROR: %s\n", e.what());
    // The group is now unusable, and says so.
    try {
      pg->allreduce(x)->wait();
    } catch (const std::exception& e2) {
      std::fprintf(stderr, "LATER: %s\n", e2.what());
    }
    return 3;
  }
  return 0;
}

// One rank leaves (with exit code 0, so the launcher lets the others run): they must fail naming it.
int scenario_dead_peer() {
  auto pg = default_group();
  pg->set_timeout(std::chrono::milliseconds(30000));
  const int quitter = opt_int("quitter", 1);
  if (pg->rank() == quitter) std::_Exit(0);
  try {
    Tensor x = ones({1 << 20});
    pg->allreduce(x)->wait();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ERROR: %s\n", e.what());
    return 4;
  }
  return 0;
}

// RINGGRAD_DIST_DEBUG=1: rank 1 calls allreduce with another shape.
int scenario_debug_mismatch() {
  auto pg = default_group();
  Tensor x = ones({pg->rank() == 1 ? 9 : 8});
  try {
    pg->allreduce(x)->wait();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ERROR: %s\n", e.what());
    return 5;
  }
  return 0;
}

// A rank that crashes: the launcher must stop the others (stuck in a collective or asleep).
int scenario_crash() {
  auto pg = default_group();
  if (pg->rank() == opt_int("crasher", 1)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::exit(opt_int("code", 7));
  }
  Tensor x = ones({16});
  try {
    pg->allreduce(x)->wait();
  } catch (...) {
  }
  std::this_thread::sleep_for(std::chrono::seconds(60));
  return 0;
}

// Each rank makes the records of its unpadded shard (images rank, rank + world, ...), the ranks gather
// them, and every rank evaluates all of them once: the digest must equal the single-process one, which
// the test computes (Note [Exact distributed evaluation]).
void scenario_dist_eval() {
  const int64_t images = opt_int("images", 23);
  auto pg = default_group();
  std::vector<metrics::ImageRecord> shard;
  for (int64_t i = pg->rank(); i < images; i += pg->size()) shard.push_back(test::eval_image(i));
  const auto blobs = all_gather_bytes(*pg, metrics::serialize_records(shard));
  std::vector<metrics::ImageRecord> all;
  for (const auto& b : blobs) {
    std::vector<metrics::ImageRecord> part = metrics::deserialize_records(b.data(), b.size());
    all.insert(all.end(), part.begin(), part.end());
  }
  EXPECT(static_cast<int64_t>(all.size()) == images, "gathered %zu records for %lld images", all.size(),
         static_cast<long long>(images));
  metrics::EvalOptions o;
  o.num_classes = 3;
  std::printf("EVAL %s\n", test::metrics_digest(metrics::evaluate_detections(all, o)).c_str());
}

// Writes its pid, notes SIGTERM in a file, sleeps. (No process group: the launcher tests use it.)
std::string g_dir;
void on_term(int) {
  const std::string p = g_dir + "/term_" + std::to_string(::getpid());
  FILE* f = std::fopen(p.c_str(), "w");
  if (f) std::fclose(f);
  std::_Exit(0);
}
int scenario_sleep() {
  g_dir = opt("dir", "/tmp");
  ::signal(SIGTERM, on_term);
  {
    std::ofstream f(g_dir + "/pid_" + std::string(std::getenv("RANK") ? std::getenv("RANK") : "x") + ".tmp");
    f << ::getpid() << "\n";
  }
  const std::string rank = std::getenv("RANK") ? std::getenv("RANK") : "x";
  std::rename((g_dir + "/pid_" + rank + ".tmp").c_str(), (g_dir + "/pid_" + rank).c_str());
  for (int i = 0; i < 600; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  return 0;
}

// The launcher's variables.
int scenario_env() {
  auto get = [](const char* k) { return std::string(std::getenv(k) ? std::getenv(k) : ""); };
  const int n = opt_int("nproc", 0);
  EXPECT(get("RANK") == get("LOCAL_RANK"), "RANK %s vs LOCAL_RANK %s", get("RANK").c_str(), get("LOCAL_RANK").c_str());
  EXPECT(get("WORLD_SIZE") == std::to_string(n), "WORLD_SIZE %s", get("WORLD_SIZE").c_str());
  EXPECT(get("LOCAL_WORLD_SIZE") == std::to_string(n), "LOCAL_WORLD_SIZE %s", get("LOCAL_WORLD_SIZE").c_str());
  EXPECT(get("GROUP_RANK") == "0", "GROUP_RANK %s", get("GROUP_RANK").c_str());
  EXPECT(get("MASTER_ADDR") == "127.0.0.1", "MASTER_ADDR %s", get("MASTER_ADDR").c_str());
  EXPECT(std::atoi(get("MASTER_PORT").c_str()) > 0, "MASTER_PORT %s", get("MASTER_PORT").c_str());
  // the launcher exports RINGGRAD_BACKEND only when a backend was named (--backend)
  EXPECT(get("RINGGRAD_BACKEND") == opt("backend", ""), "RINGGRAD_BACKEND %s", get("RINGGRAD_BACKEND").c_str());
  EXPECT(get("EXTRA_VAR") == "42", "EXTRA_VAR %s", get("EXTRA_VAR").c_str());
  return 0;
}

// Re-express the launcher's variables as srun or mpirun would, then rendezvous from those.
void as_launcher(const std::string& kind) {
  const std::string rank = std::getenv("RANK"), world = std::getenv("WORLD_SIZE"), local = std::getenv("LOCAL_RANK");
  ::unsetenv("RANK");
  ::unsetenv("WORLD_SIZE");
  ::unsetenv("LOCAL_RANK");
  if (kind == "slurm") {
    ::setenv("SLURM_PROCID", rank.c_str(), 1);
    ::setenv("SLURM_NTASKS", world.c_str(), 1);
    ::setenv("SLURM_LOCALID", local.c_str(), 1);
  } else {
    ::setenv("OMPI_COMM_WORLD_RANK", rank.c_str(), 1);
    ::setenv("OMPI_COMM_WORLD_SIZE", world.c_str(), 1);
    ::setenv("OMPI_COMM_WORLD_LOCAL_RANK", local.c_str(), 1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: dist_worker <scenario> [--key value ...]\n");
    return 2;
  }
  const std::string scenario = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) g_opts[std::string(argv[i]).substr(2)] = argv[i + 1];
  if (scenario == "sleep") return scenario_sleep();
  if (scenario == "env") return scenario_env() == 0 && g_failures == 0 ? (std::printf("OK env\n"), 0) : 1;

  const int expect_rank = std::getenv("RANK") ? std::atoi(std::getenv("RANK")) : -1;
  const int expect_world = std::getenv("WORLD_SIZE") ? std::atoi(std::getenv("WORLD_SIZE")) : -1;
  const int expect_local = std::getenv("LOCAL_RANK") ? std::atoi(std::getenv("LOCAL_RANK")) : -1;
  if (!opt("as").empty()) as_launcher(opt("as"));
  int rc = 0;
  try {
    InitOptions io;
    // A failed check must not hang for 5 minutes; RINGGRAD_COLLECTIVE_TIMEOUT_S, when set, rules.
    if (g_opts.count("init-timeout-ms") || !std::getenv("RINGGRAD_COLLECTIVE_TIMEOUT_S")) {
      io.timeout = std::chrono::milliseconds(opt_int("init-timeout-ms", 60000));
    }
    init_process_group(io);
    EXPECT(get_rank() == expect_rank, "get_rank() %d, launcher said %d", get_rank(), expect_rank);
    EXPECT(get_world_size() == expect_world, "get_world_size() %d, launcher said %d", get_world_size(), expect_world);
    EXPECT(get_local_rank() == expect_local, "get_local_rank() %d, launcher said %d", get_local_rank(), expect_local);
    if (opt_int("print-address", 0)) {
      std::printf("rank %d: reaches the store from %s\n", get_rank(), default_group()->store()->local_address().c_str());
    }
    if (const int frc = run_fault_scenario(scenario, g_opts); frc >= 0) {
      if (frc != 0) return frc;  // the scenario's own exit code (preempted ...)
    } else if (scenario == "collectives") scenario_collectives();
    else if (scenario == "big") scenario_big();
    else if (scenario == "halfacc") scenario_halfacc();
    else if (scenario == "async") scenario_async();
    else if (scenario == "timeout") rc = scenario_timeout();
    else if (scenario == "dead-peer") rc = scenario_dead_peer();
    else if (scenario == "debug-mismatch") rc = scenario_debug_mismatch();
    else if (scenario == "crash") rc = scenario_crash();
    else if (scenario == "dist-eval") scenario_dist_eval();
    else if (scenario == "rendezvous") {
      Tensor x = full({5}, 1.0);
      default_group()->allreduce(x)->wait();
      EXPECT(x.to_vector<double>()[4] == get_world_size(), "allreduce of ones gave %g", x.to_vector<double>()[4]);
    } else {
      std::fprintf(stderr, "unknown scenario %s\n", scenario.c_str());
      return 2;
    }
    if (rc != 0) return rc;  // the scenario's error was the point; skip the orderly goodbye
    destroy_process_group();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: %s failed: %s\n", get_rank(), scenario.c_str(), e.what());
    return 1;
  }
  if (g_failures) return 1;
  std::printf("OK %s\n", scenario.c_str());
  return 0;
}
