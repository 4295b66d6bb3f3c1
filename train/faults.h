// Fault tolerance of the training engine (issue 12): how a run stopped on purpose ends
// (RunStopped), preemption signals (Note [Preemption signals]), temporary files left by an
// interrupted save, and the fault-injection testing aid (Note [Fault injection]).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace rg::train {

// Note [Stopping a run]
// A run that stops early on purpose ends with an exit code of distributed/exit_codes.h:
// kExitPreempted (75) after SIGTERM or SIGUSR1, 130 after SIGINT (issue 11), kExitNanStop (87)
// when the NaN guard gives up (Note [Step agreement] in train/trainer_step.cpp). The trainer
// saves last.safetensors and returns, train() shuts the process group down and then throws
// RunStopped, which run_command (train/cli.h) turns into the process's exit code; a caller of
// train() sees the exception (a hook that returns false is not such a stop: train() returns).
class RunStopped : public std::runtime_error {
 public:
  RunStopped(int exit_code, const std::string& message) : std::runtime_error(message), code_(exit_code) {}
  int exit_code() const { return code_; }

 private:
  int code_;
};

// Note [Preemption signals]
// While a PreemptSignals object lives (train() holds one for the whole run), SIGTERM, SIGUSR1
// (Slurm's --signal) and SIGINT only record the signal in an atomic flag (async-signal-safe; with
// `announce`, one line is write(2)n to stderr). The trainer polls the flag once per optimizer step
// and at each epoch's end, folds it into the per-step agreement collective, so every rank stops
// after the same step; rank 0 saves last.safetensors and every rank exits with
// preempt_exit_code(signal). A second signal exits at once with 128 + its number (_exit, also
// async-signal-safe) and touches no file: a save in progress leaves only its temporary file
// (checkpoints are written to PATH.tmp-PID and renamed, nn/checkpoint.cpp), the previous
// last.safetensors stays whole, and the next run removes the stale temporary
// (remove_stale_temporaries). Handlers are installed with SA_RESTART; the previous ones come back
// when the last object goes. Signals that arrive before the loop (data preparation, model set-up)
// are acted on after the first step.
class PreemptSignals {
 public:
  explicit PreemptSignals(bool announce);
  ~PreemptSignals();
  PreemptSignals(const PreemptSignals&) = delete;
  PreemptSignals& operator=(const PreemptSignals&) = delete;

  static int pending();  // the first signal received since install or reset(); 0: none
  static void reset();
};
int preempt_exit_code(int sig);    // SIGINT: 130; SIGTERM, SIGUSR1: kExitPreempted
std::string signal_name(int sig);  // "SIGTERM"

// Note [Fault injection]
// A testing aid (tests, bench_faults): RINGGRAD_FAULT, or TrainerHooks::faults in-process, lists
// faults comma-separated, each ACTION@STEP[+][:RANK]. STEP is the global step (batches done,
// 1-based) that ends the optimizer step concerned; with '+' every step from STEP on; RANK limits
// it to one rank (default: every rank). Actions:
//   kill     the rank SIGKILLs itself after the step's backward, before the step's agreement
//   term, usr1, int   raise SIGTERM / SIGUSR1 / SIGINT there (a signal only this rank got)
//   term2    raise SIGTERM twice there (the second exits at once)
//   nan      multiply the step's (last micro-batch's) loss by NaN: loss and gradients non-finite
//   nanloss  add NaN to the loss: the loss is NaN, the gradients stay finite
// Only a job's first attempt injects (TORCHELASTIC_RESTART_COUNT unset or 0), so that a job
// restarted by `ringgrad launch --max-restarts` runs clean.
struct FaultPlan {
  enum class Action { Kill, Term, Usr1, Int, Term2, Nan, NanLoss };
  struct Item {
    Action action = Action::Kill;
    int64_t step = 0;
    bool onward = false;
    int rank = -1;  // -1: every rank
  };
  std::vector<Item> items;

  // Throws naming the malformed item.
  static FaultPlan parse(const std::string& spec);
  // `spec` when not empty, else RINGGRAD_FAULT; empty on a restarted attempt.
  static FaultPlan from_environment(const std::string& spec);
  bool has(Action a, int64_t step, int rank) const;
  bool empty() const { return items.empty(); }
};

// Removes the temporary files DIR/<name>.tmp-<pid> that a process killed while saving left
// behind (nn/checkpoint.cpp's atomic writes), when no process <pid> is alive; returns their names.
std::vector<std::string> remove_stale_temporaries(const std::string& dir);

}  // namespace rg::train
