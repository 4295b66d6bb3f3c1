// The engine's fault tolerance on the toy task (issue 12): mid-epoch checkpoints by step period
// and exact resume from an odd step (1 process and 2 DDP ranks), preemption signals (the step in
// progress finishes and is saved; exit codes 75 and 130; a signal at one rank only stops both at
// the same step), the NaN guard (an injected NaN skips the step on every rank, K in a row stop with
// 87, --nan-policy stop/off), a second signal exits at once without touching the saved file, an
// atomic save killed half-way leaves the old file whole, and --resume auto.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "autograd/anomaly.h"
#include "distributed/exit_codes.h"
#include "checkpoint_util.h"
#include "launch_util.h"
#include "test_util.h"
#include "toy_task.h"
#include "train/cli.h"
#include "train/faults.h"

namespace fs = std::filesystem;
using rg::test::bitwise_differences;
using rg::test::trainer_of;
using rg::test::contains;
using rg::test::ToyConfig;
using rg::train::RunStopped;

namespace {
struct TempDir : rg::test::ScratchDir {
  TempDir() : ScratchDir("rg_faults_") {}
};

// 32 samples in batches of 4: 8 steps per epoch in one process (4 per rank with 2 ranks, 16 samples
// each). Momentum, a warmup into a cosine schedule and an EMA: every kind of state.
ToyConfig base(const std::string& out) {
  ToyConfig c;
  c.out = out;
  c.epochs = 3;
  c.batch_size = 4;
  c.lr = 0.1;
  c.momentum = 0.9;
  c.scheduler = "cosine";
  c.warmup_epochs = 0.5;
  c.ema = true;
  c.ema_decay = 0.9;
  c.seed = 5;
  c.save_period_min = 0;  // saves only where a test asks for them
  return c;
}

bool any_nan(const std::string& path) {
  for (const auto& [k, t] : rg::nn::load_safetensors(path).tensors) {
    if (k.rfind("optimizer.", 0) == 0 || t.dtype() != rg::DType::f32) continue;
    for (double x : t.to_vector<double>()) {
      if (std::isnan(x)) return true;
    }
  }
  return false;
}

// train_toy, returning the RunStopped code (0 when the run ended normally) and its message.
std::pair<int, std::string> run_toy(const ToyConfig& c, rg::train::TrainerHooks hooks = {}) {
  try {
    rg::test::train_toy(c, std::move(hooks));
  } catch (const RunStopped& e) {
    return {e.exit_code(), e.what()};
  }
  return {0, ""};
}

ToyConfig resumed(ToyConfig c) {
  c.resume = (fs::path(c.out) / "last.safetensors").string();
  return c;
}

// A hook that ends the run after global step `step` without saving: a kill right after that step.
rg::train::TrainerHooks stop_after(int64_t step) {
  rg::train::TrainerHooks h;
  h.after_step = [step](rg::train::Trainer& t) { return t.state().global_step < step; };
  return h;
}
}  // namespace

TEST_CASE("--save-period-steps: a run killed after step 12 resumes from step 11's save, bitwise (1 process)") {
  TempDir d;
  const auto straight = rg::test::train_toy(base(d / "straight"));
  REQUIRE(straight.global_step == 24);
  ToyConfig c = base(d / "cut");
  c.save_period_steps = 3;  // saves after steps 3, 6, (8: epoch end), 11, 14, ...
  CHECK(run_toy(c, stop_after(12)).first == 0);
  const rg::Json t = trainer_of(d / "cut/last.safetensors");
  CHECK(t["global_step"].as_int() == 11);
  CHECK(t["epoch"].as_int() == 1);
  CHECK(t["batch"].as_int() == 3);
  REQUIRE(t.find("ranks") != nullptr);
  CHECK(t["ranks"].size() == 1);
  CHECK(t["ranks"][0]["sums"].size() == 2);  // the loss sum so far and the sample count
  CHECK(t["ranks"][0]["sums"][1].as_double() == 12.0);
  const auto after = rg::test::train_toy(resumed(base(d / "cut")));
  CHECK(after.global_step == 24);
  CHECK(bitwise_differences(straight.last_path, after.last_path) == 0);
  CHECK(after.history.front().train[0].value == straight.history[1].train[0].value);  // the epoch's running loss
}

TEST_CASE("preemption in one process: SIGTERM finishes the step, saves it and stops with 75; SIGINT with 130") {
  TempDir d;
  const auto straight = rg::test::train_toy(base(d / "straight"));
  ToyConfig c = base(d / "term");
  rg::train::TrainerHooks h;
  h.faults = "term@13";  // raised after step 13's backward
  const auto [code, msg] = run_toy(c, h);
  CHECK(code == rg::dist::kExitPreempted);
  CHECK(contains(msg, "preempted (SIGTERM)"));
  CHECK(contains(msg, "step 13"));
  CHECK(rg::train::PreemptSignals::pending() == 0);  // the flag went with the run's handlers
  const rg::Json t = trainer_of(d / "term/last.safetensors");
  CHECK(t["global_step"].as_int() == 13);  // the step in progress was finished and saved: nothing lost
  CHECK(bitwise_differences(straight.last_path, rg::test::train_toy(resumed(base(d / "term"))).last_path) == 0);

  // SIGINT at an epoch's last step (16 of 3 x 8): exit 130, saved at batch 8 of 8; the resumed run
  // ends that epoch (validation, its checkpoint) and goes on.
  h.faults = "int@16";
  const auto [code2, msg2] = run_toy(base(d / "int"), h);
  CHECK(code2 == 130);
  CHECK(contains(msg2, "interrupted (SIGINT)"));
  const rg::Json u = trainer_of(d / "int/last.safetensors");
  CHECK(u["global_step"].as_int() == 16);
  CHECK(u["batch"].as_int() == 8);
  const auto rest = rg::test::train_toy(resumed(base(d / "int")));
  CHECK(rest.history.size() == 2);  // epoch 2's end, then epoch 3
  CHECK(bitwise_differences(straight.last_path, rest.last_path) == 0);
}

TEST_CASE("the NaN guard: an injected NaN skips that step only (bitwise a hook-skipped step); 3 in a row stop with 87") {
  TempDir d;
  // Reference: step 5 skipped by the before-optimizer-step hook.
  rg::train::TrainerHooks skip5;
  skip5.before_optimizer_step = [](rg::train::Trainer& t) { return t.state().global_step != 5; };
  const auto ref = rg::test::train_toy(base(d / "ref"), skip5);
  for (const char* fault : {"nan@5", "nanloss@5"}) {  // loss and gradients non-finite; the loss only
    CAPTURE(fault);
    ToyConfig c = base(d / fault);
    rg::train::TrainerHooks h;
    h.faults = fault;
    const auto r = rg::test::train_toy(c, h);
    CHECK(bitwise_differences(ref.last_path, r.last_path) == 0);
    CHECK(r.history.back().nan_skips == 1);
    CHECK(trainer_of(r.last_path)["nan_skips"].as_int() == 1);
    CHECK(std::isfinite(r.history[0].train[0].value));  // the skipped step's loss is left out of the running loss
    std::ifstream csv(fs::path(c.out) / "results.csv");
    std::string header, row;
    std::getline(csv, header);
    std::getline(csv, row);
    CHECK(contains(header, ",nan_skips,corrupt,"));
    CHECK(contains(row, ",1,0,"));
  }
  // From step 5 on, every step: the third skip in a row stops the run at step 7 (exit 87), saved.
  ToyConfig c = base(d / "streak");
  c.nan_max_skips = 3;
  rg::train::TrainerHooks h;
  h.faults = "nan@5+";
  const auto [code, msg] = run_toy(c, h);
  CHECK(code == rg::dist::kExitNanStop);
  CHECK(contains(msg, "3 optimizer steps in a row"));
  const rg::Json t = trainer_of(d / "streak/last.safetensors");
  CHECK(t["global_step"].as_int() == 7);
  CHECK(t["nan_streak"].as_int() == 3);
  CHECK_FALSE(any_nan(d / "streak/last.safetensors"));
  // --nan-policy stop: the first one stops; off: the NaN reaches the weights.
  ToyConfig s = base(d / "stop");
  s.nan_policy = "stop";
  h.faults = "nan@5";
  CHECK(run_toy(s, h).first == rg::dist::kExitNanStop);
  CHECK(trainer_of(d / "stop/last.safetensors")["global_step"].as_int() == 5);
  ToyConfig off = base(d / "off");
  off.nan_policy = "off";
  const auto r = rg::test::train_toy(off, h);
  CHECK(any_nan(r.last_path));
}

TEST_CASE("an atomic save killed half-way leaves the old file whole; the next run removes the stale temporary") {
  TempDir d;
  fs::create_directories(d / "run");
  const std::string path = d / "run/last.safetensors";
  rg::nn::save_safetensors(path, {{"w", rg::full({4}, 1.0)}}, {{"note", "old"}});
  const std::string before = rg::test::read_file(path);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    // The file-size limit kills the writer with SIGXFSZ after 4096 bytes of its 4 MB temporary.
    ::signal(SIGXFSZ, SIG_DFL);
    rlimit lim{4096, 4096};
    ::setrlimit(RLIMIT_FSIZE, &lim);
    rg::nn::save_safetensors(path, {{"w", rg::zeros({1 << 20})}}, {{"note", "new"}});
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGXFSZ);
  const std::string tmp = path + ".tmp-" + std::to_string(pid);
  REQUIRE(fs::exists(tmp));
  CHECK(fs::file_size(tmp) == 4096);  // half-written
  CHECK(rg::test::read_file(path) == before);
  CHECK(*rg::nn::load_safetensors(path).meta("note") == "old");
  const auto removed = rg::train::remove_stale_temporaries(d / "run");
  REQUIRE(removed.size() == 1);
  CHECK(removed[0] == "last.safetensors.tmp-" + std::to_string(pid));
  CHECK_FALSE(fs::exists(tmp));
}

TEST_CASE("--resume auto: OUT/last.safetensors when it exists, else a fresh start") {
  TempDir d;
  rg::train::CommandSpec spec;
  spec.command = "toy";
  ToyConfig got;
  auto capture = [&](const ToyConfig& x) { got = x; };
  REQUIRE(rg::train::run_command<ToyConfig>(spec, {"--resume", "auto", "--out", d / "run", "--lr", "0.2"}, capture) == 0);
  CHECK(got.resume.empty());
  CHECK(*got.lr == 0.2);
  ToyConfig c = base(d / "run");
  c.epochs = 1;
  c.lr = 0.07;
  rg::test::train_toy(c);
  REQUIRE(rg::train::run_command<ToyConfig>(spec, {"--resume=auto", "--out", d / "run", "--epochs", "2"}, capture) == 0);
  CHECK(got.resume == d / "run/last.safetensors");
  CHECK(*got.lr == 0.07);  // the checkpoint's options
  CHECK(got.epochs == 2);
  // A RunStopped from the training function becomes the command's exit code.
  auto stopped = [](const ToyConfig&) { throw RunStopped(rg::dist::kExitPreempted, "preempted (SIGTERM)"); };
  CHECK(rg::train::run_command<ToyConfig>(spec, {"--out", d / "x"}, stopped) == rg::dist::kExitPreempted);
}

// ---- 2 ranks (Note [Ranks as copies of the test executable])

// Runs the scenario RG_FAULT_SCENARIO on one rank: "plain", "periodic" (--save-period-steps 3,
// ends after step 10 without saving), "resume", "skip5" (the hook skips step 5), "faults"
// (RG_FAULTS injected). Each rank writes its final weights to OUT/rank<r>.safetensors; a
// RunStopped exits with its code.
TEST_CASE("fault scenario rank entry" * doctest::skip()) {
  const std::string scenario = rg::test::env_str("RG_FAULT_SCENARIO");
  ToyConfig c = base(rg::test::env_str("RG_TOY_OUT"));
  c.samples = 48;  // 24 per rank: 6 steps per epoch, 18 in all
  rg::train::TrainerHooks h;
  int64_t end = 18;
  if (scenario == "periodic") c.save_period_steps = 3, end = 10;
  if (scenario == "resume") c = resumed(c);
  if (scenario == "skip5") h.before_optimizer_step = [](rg::train::Trainer& t) { return t.state().global_step != 5; };
  if (scenario == "faults") h.faults = rg::test::env_str("RG_FAULTS");
  if (!rg::test::env_str("RG_SAVE_EVERY_STEP").empty()) c.save_period_steps = 1;
  h.after_step = [end, out = c.out](rg::train::Trainer& t) {
    if (t.state().global_step == 18) {
      const int r = t.dist().rank;
      rg::nn::save_safetensors((fs::path(out) / ("rank" + std::to_string(r) + ".safetensors")).string(),
                               t.model().state_dict());
    }
    return t.state().global_step < end;
  };
  try {
    rg::test::train_toy(c, h);
  } catch (const RunStopped& e) {
    std::printf("stopped: %s\n", e.what());
    std::fflush(nullptr);
    std::_Exit(e.exit_code());
  }
}

namespace {
int run_ranks(const TempDir& d, const std::string& scenario, const std::string& out, const std::string& faults = "") {
  rg::test::SelfLaunchOptions so;
  so.entry = "fault scenario rank entry";
  so.env = {{"RG_FAULT_SCENARIO", scenario}, {"RG_TOY_OUT", d / out}, {"RG_FAULTS", faults}};
  so.log_dir = d / ("logs_" + out + "_" + scenario);
  fs::create_directories(so.log_dir);
  so.job_timeout = std::chrono::milliseconds(120000);
  const auto job = rg::test::launch_copies(so);
  const bool expected = job.result.exit_code == 0 || job.result.exit_code == rg::dist::kExitPreempted;
  if (!expected) MESSAGE(job.report(scenario, [](std::string s) { return s; }));
  return job.result.exit_code;
}
}  // namespace

TEST_CASE("2 DDP ranks: resume from a mid-epoch save at step 9; SIGTERM at one rank stops both after the same step") {
  TempDir d;
  REQUIRE(run_ranks(d, "plain", "straight") == 0);
  const std::string final_state = d / "straight/last.safetensors";
  CHECK(bitwise_differences(d / "straight/rank0.safetensors", d / "straight/rank1.safetensors") == 0);

  REQUIRE(run_ranks(d, "periodic", "cut") == 0);  // saves after 3, (6), 9; stops after 10
  const rg::Json t = trainer_of(d / "cut/last.safetensors");
  CHECK(t["global_step"].as_int() == 9);
  CHECK(t["batch"].as_int() == 3);
  REQUIRE(t["ranks"].size() == 2);  // each rank's running sums, resumed by that rank
  CHECK(t["ranks"][1]["sums"][1].as_double() == 12.0);
  REQUIRE(run_ranks(d, "resume", "cut") == 0);
  CHECK(bitwise_differences(final_state, d / "cut/last.safetensors") == 0);

  // SIGTERM raised at rank 1 only, after step 7's backward: the flag rides the step's agreement,
  // both ranks finish step 7, rank 0 saves it, the job exits 75.
  CHECK(run_ranks(d, "faults", "term", "term@7:1") == rg::dist::kExitPreempted);
  CHECK(trainer_of(d / "term/last.safetensors")["global_step"].as_int() == 7);
  REQUIRE(run_ranks(d, "resume", "term") == 0);
  CHECK(bitwise_differences(final_state, d / "term/last.safetensors") == 0);
}

TEST_CASE("2 DDP ranks: a NaN loss on rank 1 at step 5 skips that step on both ranks (identical weights)") {
  TempDir d;
  REQUIRE(run_ranks(d, "skip5", "ref") == 0);
  REQUIRE(run_ranks(d, "faults", "nan", "nanloss@5:1") == 0);  // rank 1's loss only; the gradients stay finite
  CHECK(bitwise_differences(d / "nan/rank0.safetensors", d / "nan/rank1.safetensors") == 0);
  CHECK(bitwise_differences(d / "ref/rank0.safetensors", d / "nan/rank0.safetensors") == 0);
  CHECK(trainer_of(d / "nan/last.safetensors")["nan_skips"].as_int() == 1);
}

TEST_CASE("a second signal exits at once (128 + SIGTERM) and leaves the saved checkpoint as it was") {
  TempDir d;
  // One rank, checkpointing every step; SIGTERM twice after step 5's backward.
  const int code = [&] {
    rg::test::SelfLaunchOptions so;
    so.nproc = 1;
    so.entry = "fault scenario rank entry";
    so.env = {{"RG_FAULT_SCENARIO", "faults"}, {"RG_TOY_OUT", d / "twice"}, {"RG_FAULTS", "term2@5"},
              {"RG_SAVE_EVERY_STEP", "1"}};
    so.log_dir = d / "logs_twice";
    fs::create_directories(so.log_dir);
    const auto job = rg::test::launch_copies(so);
    CHECK(contains(job.logs[0], "second signal: exiting at once"));
    return job.result.exit_code;
  }();
  CHECK(code == 128 + SIGTERM);
  const rg::Json t = trainer_of(d / "twice/last.safetensors");
  CHECK(t["global_step"].as_int() == 4);  // step 4's save; step 5 was never saved
}

TEST_CASE("--detect-anomaly: the backward of an injected NaN names the op and the engine's forward call") {
  TempDir d;
  ToyConfig c = base(d / "anomaly");
  c.detect_anomaly = true;
  rg::train::TrainerHooks h;
  h.faults = "nan@3";  // loss x NaN in the step's forward
  const std::string msg = rg::test::error_of([&] { rg::test::train_toy(c, h); }, "(no error)");
  MESSAGE(msg);
  CHECK(contains(msg, "Function 'affineBackward' returned nan values"));  // loss * scalar is an affine op
  CHECK(contains(msg, "rg::operator*(rg::Tensor const&, double)"));
  CHECK(contains(msg, "rg::train::Trainer::micro_step("));  // where the loss was multiplied
  CHECK_FALSE(rg::autograd::AnomalyMode::is_enabled());     // the run's guard is gone
}
