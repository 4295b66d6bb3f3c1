// The trainer (train/trainer.h) on a toy task: accumulation through no_sync equals one big batch
// (one process, a DDP world of one, and 2 real ranks), exact resume from an epoch's end and from
// the middle of one (a hook-taken checkpoint), results.csv, the validation cadence and the
// end-of-epoch hook, the step hooks, --resume on the command line, and the byte allgather.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>

#include "core/random.h"
#include "distributed/ddp.h"
#include "distributed/ring_cpu.h"
#include "distributed/store.h"
#include "checkpoint_util.h"
#include "launch_util.h"
#include "test_util.h"
#include "toy_task.h"
#include "train/cli.h"

namespace fs = std::filesystem;
using rg::test::bitwise_differences;
using rg::test::trainer_of;
using rg::test::contains;
using rg::test::read_file;
using rg::test::ToyConfig;

namespace rg::test {
RG_DEFINE_OPTIONS(ToyOptions, RG_TOY_OPTIONS)
}  // namespace rg::test

namespace {
struct TempDir : rg::test::ScratchDir {
  TempDir() : ScratchDir("rg_train_") {}
};

ToyConfig base(const std::string& out) {
  ToyConfig c;
  c.out = out;
  c.epochs = 2;
  c.batch_size = 8;
  c.lr = 0.1;
  c.seed = 11;
  return c;
}

// Largest relative difference between the model tensors of two checkpoints.
double model_diff(const std::string& a_path, const std::string& b_path) {
  const auto a = rg::nn::load_safetensors(a_path), b = rg::nn::load_safetensors(b_path);
  double worst = 0;
  for (const auto& [k, t] : a.tensors) {
    if (k.rfind("optimizer.", 0) == 0 || k.rfind("ema.", 0) == 0) continue;
    const rg::Tensor* u = rg::nn::find(b.tensors, k);
    REQUIRE_MESSAGE(u != nullptr, k);
    const auto x = t.to_vector<double>(), y = u->to_vector<double>();
    for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]) / std::max(1e-3, std::abs(x[i])));
  }
  return worst;
}

std::vector<std::string> lines_of(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream f(path);
  for (std::string l; std::getline(f, l);) out.push_back(l);
  return out;
}
}  // namespace

TEST_CASE("bitwise_differences (the resume tests' comparison) sees a single changed byte") {
  TempDir d;
  rg::Tensor w = rg::full({5}, 1.5), v = rg::full({3}, -2.0);
  rg::nn::save_safetensors(d / "a.safetensors", {{"w", w}, {"v", v}}, {});
  static_cast<uint8_t*>(v.data_ptr())[0] ^= 1;  // the lowest bit of v[0]'s mantissa
  rg::nn::save_safetensors(d / "b.safetensors", {{"w", w}, {"v", v}}, {});
  CHECK(bitwise_differences(d / "a.safetensors", d / "a.safetensors") == 0);
  CHECK(bitwise_differences(d / "a.safetensors", d / "b.safetensors") == 1);
}

TEST_CASE("accumulation: 2 micro-batches of 4 through no_sync take the steps of one batch of 8") {
  TempDir d;
  ToyConfig big = base(d / "big");
  const auto r_big = rg::test::train_toy(big);
  ToyConfig acc = base(d / "acc");
  acc.batch_size = 4;
  acc.accumulate = 2;
  const auto r_acc = rg::test::train_toy(acc);
  ToyConfig ddp = acc;  // the DDP code path (a world of one): the first micro-batch under no_sync
  ddp.out = d / "ddp";
  ddp.distributed = true;
  std::vector<int64_t> synced;  // DDP's synchronised backwards after each optimizer step
  rg::train::TrainerHooks hooks;
  hooks.after_step = [&](rg::train::Trainer& t) {
    REQUIRE(t.ddp() != nullptr);
    synced.push_back(t.ddp()->last_stats().iteration);
    return true;
  };
  const auto r_ddp = rg::test::train_toy(ddp, hooks);
  CHECK(synced == std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8});  // one per step: the first micro-batch under no_sync
  ToyConfig single = base(d / "single");  // what accumulation must not be: steps of 4
  single.batch_size = 4;
  const auto r_single = rg::test::train_toy(single);

  CHECK(r_big.global_step == 8);  // 32 samples in batches of 8, 2 epochs
  CHECK(r_acc.global_step == 16);
  CHECK(trainer_of(r_acc.last_path)["accumulate"].as_int() == 2);
  // Same optimizer step count (the schedule's) as the big batch.
  CHECK(rg::Json::parse(*rg::nn::load_safetensors(r_acc.last_path).meta("scheduler"))["last_epoch"].as_int() == 8);
  const double acc_vs_big = model_diff(r_big.last_path, r_acc.last_path);
  const double ddp_vs_big = model_diff(r_big.last_path, r_ddp.last_path);
  const double single_vs_big = model_diff(r_big.last_path, r_single.last_path);
  MESSAGE("after 8 steps, relative difference to batch 8: accumulate 2 x 4: ", acc_vs_big, ", same under DDP: ",
          ddp_vs_big, ", plain batch 4 (16 steps): ", single_vs_big);
  CHECK(acc_vs_big < 1e-5);
  CHECK(ddp_vs_big < 1e-5);
  CHECK(single_vs_big > 1e-3);  // the comparison can tell
  // The epoch's running loss is over all samples either way.
  CHECK(r_acc.history.back().train[0].value == doctest::Approx(r_big.history.back().train[0].value).epsilon(1e-5));
}

// A rank of the 2-rank accumulation test (skipped in normal runs: Note [Ranks as copies of the test executable]).
TEST_CASE("accumulation rank entry" * doctest::skip()) {
  ToyConfig c = base(rg::test::env_str("RG_TOY_OUT"));
  c.batch_size = 4;
  c.accumulate = 2;
  rg::test::train_toy(c);
}

TEST_CASE("accumulation: 2 DDP ranks x 2 micro-batches of 4 take the steps of one process with batch 16") {
  TempDir d;
  ToyConfig one = base(d / "one");
  one.batch_size = 16;
  const auto r_one = rg::test::train_toy(one);
  rg::test::SelfLaunchOptions so;
  so.entry = "accumulation rank entry";
  so.env = {{"RG_TOY_OUT", d / "two"}};
  so.log_dir = d / "logs";
  fs::create_directories(so.log_dir);
  so.job_timeout = std::chrono::milliseconds(120000);
  const auto job = rg::test::launch_copies(so);
  REQUIRE_MESSAGE(job.result.exit_code == 0, job.report("accumulation", [](std::string s) { return s; }));
  const rg::Json t = trainer_of(d / "two/last.safetensors");
  CHECK(t["world_size"].as_int() == 2);
  CHECK(t["global_step"].as_int() == 8);  // 16 samples per rank in batches of 4, 2 epochs
  const double diff = model_diff(r_one.last_path, d / "two/last.safetensors");
  MESSAGE("2 ranks x accumulate 2 x batch 4 vs one process x batch 16, 4 steps: relative difference ", diff);
  CHECK(diff < 1e-5);
}

TEST_CASE("exact resume through the engine: from an epoch's end and from the middle of one (CPU, bitwise)") {
  TempDir d;
  // Momentum, a warmup into a cosine schedule, accumulation and an EMA: every kind of state.
  ToyConfig c = base(d / "straight");
  c.epochs = 3;
  c.batch_size = 4;
  c.accumulate = 2;
  c.momentum = 0.9;
  c.scheduler = "cosine";
  c.warmup_epochs = 0.5;
  c.ema = true;
  c.ema_decay = 0.9;
  const auto straight = rg::test::train_toy(c);
  REQUIRE(straight.epochs_done == 3);

  // Stopped after epoch 1, resumed.
  ToyConfig a = c;
  a.out = d / "epoch";
  a.stop_after_epochs = 1;
  REQUIRE(rg::test::train_toy(a).epochs_done == 1);
  ToyConfig b = c;
  b.out = d / "epoch";
  b.resume = d / "epoch/last.safetensors";
  const auto rest = rg::test::train_toy(b);
  CHECK(rest.history.size() == 2);
  CHECK(bitwise_differences(straight.last_path, rest.last_path) == 0);

  // Stopped by the after-step hook at epoch 2, batch 4 (global step 12), with a checkpoint taken there.
  ToyConfig m = c;
  m.out = d / "mid";
  rg::train::TrainerHooks hooks;
  int calls = 0;
  hooks.after_step = [&](rg::train::Trainer& t) {
    ++calls;
    if (t.state().global_step < 12) return true;
    t.save_checkpoint((fs::path(m.out) / "last.safetensors").string());
    return false;
  };
  const auto part = rg::test::train_toy(m, hooks);
  CHECK(calls == 6);  // optimizer steps at batches 2, 4, 6, 8 of epoch 1 and 2, 4 of epoch 2
  CHECK(part.history.size() == 1);
  const rg::Json t = trainer_of(d / "mid/last.safetensors");
  CHECK(t["epoch"].as_int() == 1);
  CHECK(t["batch"].as_int() == 4);
  CHECK(t["global_step"].as_int() == 12);
  CHECK(t["sampler"]["start_batch"].as_int() == 4);
  CHECK(t["train_sums"].size() == 2);  // the loss sum so far and the sample count
  CHECK(t["train_sums"][1].as_double() == 16.0);
  CHECK(t["toy_samples"].as_int() == 32);  // the task's metadata
  ToyConfig r = c;
  r.out = d / "mid";
  r.resume = d / "mid/last.safetensors";
  const auto after = rg::test::train_toy(r);
  CHECK(after.history.size() == 2);
  CHECK(after.global_step == straight.global_step);
  CHECK(bitwise_differences(straight.last_path, after.last_path) == 0);
  // The resumed epoch's running loss includes the batches before the checkpoint.
  CHECK(after.history.front().train[0].value == straight.history[1].train[0].value);
  CHECK(*rg::nn::load_safetensors(straight.last_path).meta("optimizer") ==
        *rg::nn::load_safetensors(after.last_path).meta("optimizer"));

  // results.csv: a header and one row per epoch; the resumed run kept epoch 1's row.
  const auto rows = lines_of(d / "mid/results.csv"), want = lines_of(d / "straight/results.csv");
  REQUIRE(rows.size() == 4);
  CHECK(rows[0] == "epoch,train/loss,val/mse,ema/mse,fitness,lr,nan_skips,corrupt,seconds");
  for (size_t i = 1; i < rows.size(); ++i) {
    CHECK(rows[i].substr(0, rows[i].rfind(',')) == want[i].substr(0, want[i].rfind(',')));  // all but seconds
  }
}

TEST_CASE("validation cadence, best tracking and the end-of-epoch hook") {
  TempDir d;
  ToyConfig c = base(d / "run");
  c.epochs = 3;
  c.val_period = 2;
  rg::test::ToyTask task(c);
  const auto r = rg::train::train(c, task);
  REQUIRE(r.history.size() == 3);
  CHECK_FALSE(r.history[0].validated);  // epoch 1: not on the cadence
  CHECK(r.history[1].validated);
  CHECK(r.history[2].validated);  // the last epoch always
  CHECK(r.history[0].val.empty());
  CHECK(r.history[0].fitness == -1);
  CHECK(r.history[1].improved);
  CHECK(r.best_fitness == std::max(r.history[1].fitness, r.history[2].fitness));
  CHECK(r.best_fitness == -std::min(r.history[1].val[0].value, r.history[2].val[0].value));
  CHECK(task.epoch_end_calls == 3);
  CHECK(read_file(d.path / "run/picture_1.txt") == "none");
  CHECK(contains(read_file(d.path / "run/picture_2.txt"), "mse 0."));
  const auto rows = lines_of(d / "run/results.csv");
  REQUIRE(rows.size() == 4);
  CHECK(rows[1].find(",,,") != std::string::npos);  // epoch 1: empty val/mse and fitness
  CHECK(trainer_of(r.best_path)["best_score"].as_double() == r.best_fitness);
}

TEST_CASE("the before-optimizer-step hook skips steps: the weights stay the initial ones, the schedule goes on") {
  TempDir d;
  ToyConfig c = base(d / "run");
  c.epochs = 1;
  rg::train::TrainerHooks hooks;
  hooks.before_optimizer_step = [](rg::train::Trainer&) { return false; };
  const auto r = rg::test::train_toy(c, hooks);
  CHECK(r.global_step == 4);
  rg::manual_seed(11);
  rg::test::ToyTask task(c);
  const rg::train::TrainOptions& o = c;
  rg::train::DistContext dc;
  const rg::train::Context ctx{o, dc, rg::kCPU, 8, nullptr};
  const auto init = task.build_model(ctx)->state_dict();
  const auto ck = rg::nn::load_safetensors(r.last_path);
  for (const auto& [k, t] : init) {
    const rg::Tensor* u = rg::nn::find(ck.tensors, k);
    REQUIRE(u != nullptr);
    CHECK_MESSAGE(std::memcmp(t.data_ptr(), u->data_ptr(), t.nbytes()) == 0, k);
  }
  CHECK(rg::Json::parse(*ck.meta("scheduler"))["last_epoch"].as_int() == 4);
}

TEST_CASE("--resume on the command line: the checkpoint's options are the base, the command line's override them") {
  TempDir d;
  ToyConfig c = base(d / "run");
  c.lr = 0.07;
  c.samples = 24;
  c.stop_after_epochs = 1;  // not saved: a resumed run must not stop again
  rg::test::train_toy(c);
  rg::train::CommandSpec spec;
  spec.command = "toy";
  ToyConfig got;
  auto capture = [&](const ToyConfig& x) { got = x; };
  REQUIRE(rg::train::run_command<ToyConfig>(spec, {"--resume", "--out", d / "run", "--epochs", "4"}, capture) == 0);
  CHECK(got.resume == d / "run/last.safetensors");
  CHECK(*got.lr == 0.07);
  CHECK(got.samples == 24);
  CHECK(got.epochs == 4);
  CHECK(got.stop_after_epochs == 0);
  REQUIRE(rg::train::run_command<ToyConfig>(spec, {"--resume", d / "run/last.safetensors", "--lr", "0.5"}, capture) == 0);
  CHECK(*got.lr == 0.5);
  CHECK(got.epochs == 2);
  CHECK(rg::test::contains(rg::test::error_of<std::exception>([&] {
                             rg::train::run_command<ToyConfig>(spec, {"--epochs", "-2"}, capture);
                           }),
                           "Invalid --epochs: -2"));
}

TEST_CASE("allgather_bytes: every rank's bytes, of any length (2 ranks on threads)") {
  using namespace std::chrono_literals;
  auto server = std::make_shared<rg::dist::TCPStore>("127.0.0.1", 0, true, 10000ms);
  const std::vector<std::string> mine = {std::string("rank zero\0with a zero byte", 26), ""};
  std::vector<std::vector<std::string>> got(2), again(2);
  std::vector<std::string> errors(2);
  std::vector<std::thread> ts;
  for (int r = 0; r < 2; ++r) {
    ts.emplace_back([&, r] {
      try {
        rg::train::DistContext dc;
        dc.enabled = true;
        dc.rank = r;
        dc.world = 2;
        dc.pg = std::make_shared<rg::dist::RingCpuProcessGroup>(server, r, 2);
        got[static_cast<size_t>(r)] = dc.allgather_bytes(mine[static_cast<size_t>(r)]);
        again[static_cast<size_t>(r)] = dc.allgather_bytes(r == 0 ? "" : "x");
        dc.barrier();
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : ts) t.join();
  for (int r = 0; r < 2; ++r) {
    CHECK_MESSAGE(errors[static_cast<size_t>(r)].empty(), errors[static_cast<size_t>(r)]);
    CHECK(got[static_cast<size_t>(r)] == mine);
    CHECK(again[static_cast<size_t>(r)] == std::vector<std::string>{"", "x"});
  }
  rg::train::DistContext alone;
  CHECK(alone.allgather_bytes("solo") == std::vector<std::string>{"solo"});
}
