// The trainer's step (train/trainer.h): micro-batches with accumulation, the step's agreement
// between the ranks (Note [Step agreement]: the NaN/Inf guard, preemption, timed saves), the
// optimizer step, and what follows it (mid-epoch checkpoints, stops); fault injection for tests.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>

#include "autograd/autocast.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/native.h"
#include "distributed/exit_codes.h"
#include "train/trainer_impl.h"

namespace fs = std::filesystem;

namespace rg::train {

// Note [Step agreement]
// After the backward of a step's last micro-batch (DDP has averaged the gradients, so they are
// equal on every rank) and before the optimizer, the ranks agree on four flags in ONE collective,
// a max-allreduce of a (4) f32 tensor on the device, and read it on the host once:
//   [0] a gradient is inf/nan: the fused amp_unscale check, run with scale 1 (gradients unchanged,
//       bitwise) by amp::unscale_grads_, or by the GradScaler's own unscale_ with --amp f16, whose
//       found-inf reducer this is (so f16 adds no collective and no host sync of its own);
//   [1] some rank's loss was inf/nan (the same fused check on the loss of each micro-batch);
//   [2] a preemption signal some rank got (Note [Preemption signals]; the largest signal number);
//   [3] rank 0's --save-period-min is due.
// Every rank thus takes the same decisions: skip the optimizer step (flags 0 or 1; the scheduler,
// warmup and EMA still advance, as they do for a GradScaler skip; the skipped step's running sums
// are left out), stop after this step and save (flag 2), save (flag 3, or every
// --save-period-steps steps, counted alike on every rank). This is the step's only host sync (the
// GradScaler's, without which a step would have none), and its collective costs the latency of a
// 16-byte allreduce (the figure is logged at the end of a distributed run). With --nan-policy off
// flags 0 and 1 are not computed (f16 keeps its scaler's check). --nan-policy skip stops with
// kExitNanStop after --nan-max-skips skipped steps in a row; stop stops at the first non-finite
// loss, or non-finite gradient without a GradScaler (f16 overflow skips are the scaler's business,
// but count towards the streak). A stop saves last.safetensors at the step (a valid resume point:
// Note [Loop state]) and ends the run (Note [Stopping a run]).

void Trainer::micro_step(const Batch& b, bool sync, int64_t window) {
  Impl& m = *impl_;
  std::optional<dist::NoSyncGuard> no_sync;
  if (m.ddp && !sync) no_sync.emplace(m.ddp->no_sync());  // accumulate locally; the last micro-batch reduces
  StepLoss out;
  {
    amp::AutocastGuard ac(o_.amp == "bf16" ? DType::bf16 : DType::f16, o_.amp != "none");
    out = task_.loss(m.net(), b, *ctx_);
  }
  Tensor loss = out.loss;
  const int64_t step = st_.global_step + 1;  // the global step this micro-batch makes
  if (!m.faults.empty()) {                   // Note [Fault injection]
    if (m.faults.has(FaultPlan::Action::Nan, step, dist_.rank)) loss = loss * std::nan("");
    if (m.faults.has(FaultPlan::Action::NanLoss, step, dist_.rank)) loss = loss + std::nan("");
  }
  if (o_.nan_policy != "off") {
    NoGradGuard ng;
    native::amp_unscale_({native::to(loss.detach(), m.loss_bad.device(), DType::f32, /*force_copy=*/true)},
                         m.loss_bad, m.one);
  }
  if (info_.mean_over_accumulation && window > 1) loss = loss / static_cast<double>(window);
  if (m.scaler->is_enabled()) {
    m.scaler->scale(loss).backward();
  } else {
    loss.backward();
  }
  m.step_losses.push_back(std::move(out));
}

void Trainer::inject_faults() {
  const FaultPlan& f = impl_->faults;
  if (f.empty()) return;
  const int64_t s = st_.global_step;
  const int r = dist_.rank;
  if (f.has(FaultPlan::Action::Kill, s, r)) {
    std::fprintf(stderr, "rank %d: RINGGRAD_FAULT: killing myself with SIGKILL at step %lld\n", r, static_cast<long long>(s));
    std::fflush(stderr);
    ::raise(SIGKILL);
  }
  if (f.has(FaultPlan::Action::Term, s, r) || f.has(FaultPlan::Action::Term2, s, r)) ::raise(SIGTERM);
  if (f.has(FaultPlan::Action::Term2, s, r)) ::raise(SIGTERM);
  if (f.has(FaultPlan::Action::Usr1, s, r)) ::raise(SIGUSR1);
  if (f.has(FaultPlan::Action::Int, s, r)) ::raise(SIGINT);
}

StepDecision Trainer::agree(const Tensor* grad_found) {
  Impl& m = *impl_;
  NoGradGuard ng;
  const auto t0 = std::chrono::steady_clock::now();
  const Device dev = dist_.device;
  const Tensor flags = zeros({4}, TensorOptions(DType::f32).device(dev));
  if (grad_found && grad_found->defined()) {
    native::binary_(BinaryOp::Add, native::narrow(flags, 0, 0, 1), native::to(*grad_found, dev, DType::f32));
  }
  if (o_.nan_policy != "off") native::binary_(BinaryOp::Add, native::narrow(flags, 0, 1, 1), m.loss_bad);
  if (const int sig = PreemptSignals::pending()) native::fill_(native::narrow(flags, 0, 2, 1), sig);
  if (dist_.is_main() && o_.save_period_min > 0 &&
      std::chrono::duration<double>(t0 - m.last_save).count() >= 60.0 * o_.save_period_min) {
    native::fill_(native::narrow(flags, 0, 3, 1), 1.0);
  }
  if (dist_.enabled && dist_.world > 1) dist_.pg->allreduce(flags, dist::ReduceOp::Max)->wait();
  const std::vector<float> h = native::to(flags, kCPU, DType::f32).to_vector<float>();  // the host sync
  StepDecision d;
  d.grad_bad = h[0] != 0.0f;
  d.loss_bad = h[1] != 0.0f;
  d.signal = static_cast<int>(h[2]);
  d.save = h[3] != 0.0f;
  // The GradScaler backs off on what every rank saw, a non-finite loss included.
  if (grad_found && grad_found->defined()) native::fill_(*grad_found, d.grad_bad || d.loss_bad ? 1.0 : 0.0);
  m.agree_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ++m.agree_count;
  return d;
}

void Trainer::optimizer_step() {
  Impl& m = *impl_;
  const bool guard = o_.nan_policy != "off";
  if (m.scaler->is_enabled()) {
    m.scaler->unscale_(*m.opt);  // its found-inf reducer runs agree() (setup_optimizer)
  } else {
    Tensor found;
    if (guard) {
      found = zeros({1}, TensorOptions(DType::f32).device(dist_.device));
      amp::unscale_grads_(*m.opt, found, m.one);
    }
    m.decision = agree(guard ? &found : nullptr);
  }
  const StepDecision d = m.decision;
  const bool nonfinite = d.grad_bad || d.loss_bad;
  const bool hook_ok = !hooks_.before_optimizer_step || hooks_.before_optimizer_step(*this);
  if (m.scaler->is_enabled()) {
    if (nonfinite || hook_ok) m.scaler->step(*m.opt, nonfinite);
    m.scaler->update();
  } else if (hook_ok && !nonfinite) {
    m.opt->step();
  }
  if (!nonfinite) {
    for (const StepLoss& l : m.step_losses) m.sums.add(l);
  }
  m.step_losses.clear();
  if (guard) native::fill_(m.loss_bad, 0.0);
  m.nan_streak = nonfinite ? m.nan_streak + 1 : 0;
  if (d.loss_bad || (d.grad_bad && !m.scaler->is_enabled())) ++m.nan_skips;
  m.sched->step();
  m.warmup.apply(*m.opt, m.kinds, m.sched->last_epoch());
  if (m.ema) m.ema->update(*m.model);
}

void Trainer::stop(int code, const std::string& why) {
  stop_code_ = code;
  char where[160];
  std::snprintf(where, sizeof(where), "epoch %lld, batch %lld of %lld, step %lld", static_cast<long long>(st_.epoch + 1),
                static_cast<long long>(st_.batch), static_cast<long long>(nb_), static_cast<long long>(st_.global_step));
  const std::string last = (fs::path(o_.out) / "last.safetensors").string();
  stop_message_ = why + " at " + where + "; saved " + last;
  if (code == dist::kExitNanStop) {
    stop_message_ += " (the skipped steps left the weights as they were); exit code " + std::to_string(code);
  } else {
    stop_message_ += "; run the same command with --resume auto (or --resume) to continue; exit code " +
                     std::to_string(code);
  }
  log(1, stop_message_);
}

// After the optimizer step: stops (signal, NaN guard) and saves, then the caller's hook.
bool Trainer::after_step() {
  Impl& m = *impl_;
  const StepDecision& d = m.decision;
  ++m.steps_since_save;
  const bool nan_event = d.loss_bad || (d.grad_bad && !m.scaler->is_enabled());
  int code = 0;
  std::string why;
  if (d.signal) {
    code = preempt_exit_code(d.signal);
    why = (d.signal == SIGINT ? "interrupted (" : "preempted (") + signal_name(d.signal) + "): stopped after the step in progress";
  } else if (o_.nan_policy != "off" && m.nan_streak >= o_.nan_max_skips) {
    code = dist::kExitNanStop;
    why = "the NaN guard stopped training: " + std::to_string(m.nan_streak) +
          " optimizer steps in a row had a non-finite loss or gradients (--nan-max-skips " +
          std::to_string(o_.nan_max_skips) + ")";
  } else if (o_.nan_policy == "stop" && nan_event) {
    code = dist::kExitNanStop;
    why = std::string("the NaN guard stopped training (--nan-policy stop): a non-finite ") +
          (d.loss_bad ? "loss" : "gradient");
  }
  if (code) {
    save_mid_epoch();
    stop(code, why);
    return false;
  }
  const bool due = d.save || (o_.save_period_steps > 0 && m.steps_since_save >= o_.save_period_steps);
  if (due && st_.batch < nb_) save_mid_epoch();  // at the epoch's end, end_epoch saves
  return !hooks_.after_step || hooks_.after_step(*this);
}

bool Trainer::stop_at_epoch_end() {
  if (st_.epoch >= o_.epochs) return false;  // the run is complete anyway
  const StepDecision d = agree(nullptr);
  if (!d.signal) return false;
  stop(preempt_exit_code(d.signal), (d.signal == SIGINT ? "interrupted (" : "preempted (") + signal_name(d.signal) +
                                        "): stopped after the epoch's checkpoint");
  return true;
}

// Every rank's replaced samples of the epoch (train and validation), in rank order, on every rank.
void Trainer::gather_corrupt(EpochRecord& rec) {
  Impl& m = *impl_;
  std::string mine;
  for (const auto& c : m.epoch_corrupt) mine += c + "\n";
  m.epoch_corrupt.clear();
  const std::vector<std::string> all = dist_.enabled && dist_.world > 1 ? dist_.allgather_bytes(mine)
                                                                        : std::vector<std::string>{mine};
  for (const auto& part : all) {
    size_t at = 0;
    for (size_t nl = part.find('\n'); nl != std::string::npos; at = nl + 1, nl = part.find('\n', at)) {
      rec.corrupt.push_back(part.substr(at, nl - at));
    }
  }
}

std::string corrupt_summary(const std::vector<std::string>& corrupt) {
  std::map<std::string, std::pair<int64_t, std::string>> by_file;  // file -> (times, why)
  for (const auto& c : corrupt) {
    const size_t tab = c.find('\t');
    auto& e = by_file[c.substr(0, tab)];
    ++e.first;
    if (tab != std::string::npos) e.second = c.substr(tab + 1);
  }
  std::string s = "corrupt data: " + std::to_string(corrupt.size()) + " sample load(s) failed this epoch and " +
                  (corrupt.size() == 1 ? "was" : "were") + " replaced by other samples of the same shard (" +
                  std::to_string(by_file.size()) + " file(s); --strict-data makes this an error):";
  for (const auto& [file, e] : by_file) {
    s += "\n  " + file + (e.first > 1 ? " (" + std::to_string(e.first) + " times)" : "") + ": " + e.second;
  }
  return s;
}

}  // namespace rg::train
