// The training loop of the engine (train/trainer.h): set-up, the epoch loop, the step with
// accumulation, validation cadence and best tracking. Checkpoints, resume and results.csv are in
// train/trainer_state.cpp.
#include "train/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>

#include "autograd/anomaly.h"
#include "autograd/autocast.h"
#include "autograd/grad_mode.h"
#include "core/cpu_config.h"
#include "core/cuda_api.h"
#include "core/native.h"
#include "core/random.h"
#include "distributed/launcher.h"
#include "distributed/sync_batchnorm.h"
#include "train/progress.h"
#include "train/trainer_impl.h"

namespace fs = std::filesystem;

namespace rg::train {

double figure(const Figures& f, const std::string& name) {
  std::string names;
  for (const auto& x : f) {
    if (x.name == name) return x.value;
    names += (names.empty() ? "" : ", ") + x.name;
  }
  RG_THROW("no figure '", name, "' (have: ", names.empty() ? "none" : names, ")");
}

std::string format_figures(const Figures& f, const std::string& sep) {
  std::string s;
  char buf[64];
  for (const auto& x : f) {
    std::snprintf(buf, sizeof(buf), "%.*f", x.digits, x.value);
    s += (s.empty() ? "" : sep) + x.name + " " + buf;
  }
  return s;
}

// ---- running sums

void RunningSums::reset(size_t n, Device d) {
  sums.assign(n, Tensor());
  for (auto& t : sums) t = zeros({}, TensorOptions(DType::f32).device(d));
  count = 0;
}

void RunningSums::add(const StepLoss& s) {
  RG_CHECK(s.sums.size() == sums.size(), "the task's loss returned ", s.sums.size(), " running sums, its info() names ",
           sums.size());
  NoGradGuard ng;
  for (size_t i = 0; i < sums.size(); ++i) {
    native::binary_(BinaryOp::Add, sums[i], native::to(s.sums[i].detach(), sums[i].device(), DType::f32));
  }
  count += s.count;
}

std::vector<double> RunningSums::host() const {
  std::vector<double> v;
  for (const auto& t : sums) v.push_back(t.item());
  v.push_back(count);
  return v;
}

void RunningSums::set(const std::vector<double>& v, Device d) {
  RG_CHECK(v.size() == sums.size() + 1, "saved running sums have ", v.size(), " values, expected ", sums.size() + 1);
  for (size_t i = 0; i < sums.size(); ++i) {
    sums[i] = native::to(from_vector<float>({static_cast<float>(v[i])}).reshape({}), d, DType::f32, true);
  }
  count = v.back();
}

// ---- options

TrainOptions resolve_defaults(TrainOptions o, const Task& task) {
  if (!o.lr) o.lr = task.default_lr(o.optimizer);
  if (!o.weight_decay) o.weight_decay = task.default_weight_decay(o.optimizer);
  return o;
}

void check_options(const TrainOptions& in) {
  TrainOptions o = in;
  Options opts;
  opts.add(TrainOptions::specs(), &o);
  opts.check();
  RG_CHECK(!(o.warmup == "yolo" && o.scheduler == "onecycle"),
           "--warmup yolo sets the momentum during warmup, which --scheduler onecycle also cycles: pick another "
           "warmup or schedule");
  RG_CHECK(!(o.nesterov && o.optimizer != "sgd"), "--nesterov is an SGD option (--optimizer is ", o.optimizer, ")");
}

// ---- set-up

Trainer::Trainer(const TrainOptions& opts, Task& task, const DevicePlan& plan, DistContext& dist, TrainerHooks hooks)
    : o_(opts), task_(task), info_(task.info()), plan_(plan), dist_(dist), hooks_(std::move(hooks)),
      impl_(std::make_unique<Impl>()) {
  ctx_ = std::make_unique<Context>(Context{o_, dist_, dist_.device, 0, [this](int l, const std::string& s) { log(l, s); }});
}

Trainer::~Trainer() = default;

dist::DistributedDataParallel* Trainer::ddp() const { return impl_->ddp.get(); }
nn::Module& Trainer::model() const { return *impl_->model; }

void Trainer::log(int level, const std::string& s) const {
  if (o_.verbosity >= level) {
    std::printf("%s\n", s.c_str());
    std::fflush(stdout);
  }
}

void Trainer::setup_data() {
  int64_t batch = o_.batch_size;
  if (info_.global_batch && dist_.world > 1) {
    RG_CHECK(o_.batch_size % dist_.world == 0, "--batch-size ", o_.batch_size, " is the global batch and must divide ",
             "evenly over the ", dist_.world, " ranks");
    batch = o_.batch_size / dist_.world;
  }
  ctx_->batch = batch;
  if (dist_.is_main()) task_.prepare_data(*ctx_);  // rank 0 generates; the others wait below
  dist_.barrier();
  data_ = task_.build_data(*ctx_);
  RG_CHECK(data_.train && data_.val, info_.command, ": the task built no train or val loader");
  nb_ = data_.train->num_batches();
  RG_CHECK(nb_ >= 1, "the training set (", data_.train_size, " samples over ", dist_.world,
           " rank(s)) makes no batch");
  const int64_t global = batch * dist_.world;
  if (o_.accumulate > 0) {
    accumulate_ = o_.accumulate;
  } else if (info_.nominal_batch > 0) {  // YOLO: accumulate = max(round(nbs / batch), 1)
    accumulate_ = std::max<int64_t>(std::llround(static_cast<double>(info_.nominal_batch) / static_cast<double>(global)), 1);
  }
  steps_per_epoch_ = (nb_ + accumulate_ - 1) / accumulate_;
  weight_decay_ = o_.weight_decay.value();
  if (info_.nominal_batch > 0) {  // YOLO scales the decay with the batch actually stepped
    weight_decay_ *= static_cast<double>(global * accumulate_) / static_cast<double>(info_.nominal_batch);
  }
}

// The model (with the resumed weights, before DDP wraps it: its broadcast from rank 0 then agrees
// with what every rank loaded), then DDP or DataParallel.
void Trainer::setup_model() {
  Impl& m = *impl_;
  manual_seed(static_cast<uint64_t>(o_.seed));  // the initial weights follow from the seed
  m.model = task_.build_model(*ctx_);
  RG_CHECK(m.model, info_.command, ": the task built no model");
  if (o_.sync_bn) {
    RG_CHECK(dist_.enabled, "--sync-bn needs DDP (several ranks, or --distributed): DataParallel and a single process "
                            "compute batch statistics over the whole batch already");
    m.model = dist::convert_sync_batchnorm(m.model, dist_.pg);
  }
  m.model->to(dist_.device);
  m.model->train();
  if (!o_.resume.empty()) {
    m.ckpt = nn::load_safetensors(o_.resume);
    trainer_meta(*m.ckpt, o_.resume, info_.format);
    nn::StateDict weights;
    for (const auto& [k, v] : m.ckpt->tensors) {
      if (!is_train_state_key(k)) weights.emplace_back(k, v);
    }
    m.model->load_state_dict(weights, /*strict=*/true);
  }
  if (dist_.enabled) {
    dist::DDPOptions o;
    o.process_group = dist_.pg;
    o.bucket_cap_mb = o_.bucket_cap_mb;
    o.find_unused_parameters = o_.find_unused_parameters;
    m.ddp = std::make_shared<dist::DDP>(m.model, o);
  } else if (plan_.kind == RunKind::DataParallel) {
    m.dp = std::make_shared<dist::DataParallel>(m.model, plan_.devices);
  }
}

void Trainer::setup_optimizer() {
  Impl& m = *impl_;
  ParamGroups groups = make_param_groups(*m.model, weight_decay_, o_.decay_norm_bias);
  m.kinds = groups.kinds;
  m.opt = make_optimizer(o_, groups);
  m.sched = make_scheduler(o_, *m.opt, steps_per_epoch_);
  if (o_.warmup == "yolo") {
    m.warmup.steps = warmup_steps(o_, steps_per_epoch_);
    m.warmup.bias_lr = o_.warmup_bias_lr;
    m.warmup.momentum_start = o_.warmup_momentum;
    m.warmup.momentum = o_.momentum;
    m.warmup.apply(*m.opt, m.kinds, 0);
  }
  amp::GradScalerOptions so;
  so.enabled = o_.amp == "f16";
  m.scaler = std::make_unique<amp::GradScaler>(so);
  // Its inf/nan flag joins the step's agreement, which every rank decides alike (Note [Step agreement]).
  if (m.scaler->is_enabled()) m.scaler->set_found_inf_reducer([this](Tensor& found) { impl_->decision = agree(&found); });
  if (o_.ema) {
    optim::EMAOptions eo;
    eo.decay = o_.ema_decay;
    m.ema = std::make_unique<optim::ModelEMA>(*m.model, eo);
  }
  m.sums.reset(info_.terms.size(), dist_.device);
  m.one = ones({1}, TensorOptions(DType::f32).device(dist_.device));
  m.loss_bad = zeros({1}, TensorOptions(DType::f32).device(dist_.device));
}

void Trainer::print_header() const {
  char line[768];
  char steps[96];
  if (accumulate_ > 1) {
    std::snprintf(steps, sizeof(steps), "%lld batches, %lld optimizer steps per epoch", static_cast<long long>(nb_),
                  static_cast<long long>(steps_per_epoch_));
  } else {
    std::snprintf(steps, sizeof(steps), "%lld steps/epoch", static_cast<long long>(nb_));
  }
  // A task whose --batch-size is global says so (and the per-rank share on several ranks).
  char batch[96];
  if (info_.global_batch) {
    std::snprintf(batch, sizeof(batch), "global batch %lld", static_cast<long long>(ctx_->batch * dist_.world));
    if (dist_.world > 1) {
      std::snprintf(batch + std::strlen(batch), sizeof(batch) - std::strlen(batch), " = %lld per rank x %lld",
                    static_cast<long long>(ctx_->batch), static_cast<long long>(dist_.world));
    }
  } else {
    std::snprintf(batch, sizeof(batch), "batch %lld", static_cast<long long>(ctx_->batch));
  }
  std::snprintf(line, sizeof(line), "%s: %s, %s (%s), %s lr %g, %s schedule, amp %s, device %s",
                info_.command.c_str(), task_.describe().c_str(), batch, steps,
                o_.optimizer.c_str(), *o_.lr, o_.scheduler.c_str(), o_.amp.c_str(),
                impl_->dp ? o_.device.c_str() : dist_.device.str().c_str());
  log(1, line);
  if (accumulate_ > 1) {
    log(1, "accumulate: " + std::to_string(accumulate_) + " micro-batches per optimizer step (" +
               std::to_string(ctx_->batch * dist_.world * accumulate_) + " samples)" +
               (info_.nominal_batch > 0 ? ", weight decay scaled to " + format_number(weight_decay_) : ""));
  }
  if (impl_->dp) log(1, plan_.table.substr(0, plan_.table.size() - 1));
  if (dist_.enabled) log(1, describe(dist_, ctx_->batch, info_.global_batch));
}

// ---- the epoch

std::string Trainer::progress_stats(const Batch* last) const {
  const Impl& m = *impl_;
  Figures f = info_.terms;
  // The committed steps' sums plus the micro-batches of the optimizer step in progress: the sums
  // take a step only once the NaN guard passed it (optimizer_step), and with --accumulate a window
  // can span the whole epoch, which would leave the bar at zero.
  std::vector<double> h = m.sums.host();
  for (const StepLoss& l : m.step_losses) {
    for (size_t i = 0; i < l.sums.size() && i + 1 < h.size(); ++i) h[i] += l.sums[i].item();
    h.back() += l.count;
  }
  for (size_t i = 0; i < f.size(); ++i) f[i].value = h.back() > 0 ? h[i] / h.back() : 0.0;
  char lr[48];
  std::snprintf(lr, sizeof(lr), "lr %.4g", m.opt->param_groups()[0].lr());
  std::string s = format_figures(f, "  ") + "  " + lr;
  if (m.nan_skips > 0) s += "  nan-skips " + std::to_string(m.nan_skips);
  if (dist_.device.is_cuda()) {
    char mem[48];
    std::snprintf(mem, sizeof(mem), "  mem %.2fG", static_cast<double>(cuda::memory_stats(dist_.device.index).reserved) / 1e9);
    s += mem;
  }
  const std::string note = last ? task_.batch_note(*last) : "";
  return note.empty() ? s : s + "  " + note;
}

// Runs the rest of epoch st_.epoch from batch st_.batch; false when a hook stopped the run.
bool Trainer::train_epoch(EpochRecord& rec) {
  Impl& m = *impl_;
  m.model->train();
  if (st_.batch == 0) m.sums.reset(info_.terms.size(), dist_.device);
  data_.train->start_epoch(st_.epoch, st_.batch);
  char prefix[64];
  std::snprintf(prefix, sizeof(prefix), "epoch %lld/%lld", static_cast<long long>(st_.epoch + 1),
                static_cast<long long>(o_.epochs));
  ProgressBar bar(prefix, nb_, stdout_is_tty(), o_.log_every, st_.batch);
  const bool show = o_.verbosity >= 2;
  int64_t seen = 0;  // samples this call, on this rank
  while (st_.batch < nb_) {
    // One optimizer step: the micro-batches of this window (never across the epoch's end).
    const int64_t window = std::min(accumulate_, nb_ - st_.batch);
    m.opt->zero_grad();
    for (int64_t k = 0; k < window; ++k) {
      const std::unique_ptr<Batch> b = data_.train->next();
      RG_CHECK(b, "the training loader ended after ", st_.batch, " of its ", nb_, " batches");
      micro_step(*b, k + 1 == window, window);
      ++st_.batch;
      ++st_.global_step;
      seen += b->size();
      if (show && bar.due(st_.batch)) bar.update(st_.batch, seen * dist_.world, progress_stats(b.get()));
    }
    inject_faults();
    optimizer_step();
    for (auto& c : data_.train->take_corrupt()) m.epoch_corrupt.push_back(std::move(c));
    if (!after_step()) {
      if (show) bar.finish();
      return false;
    }
  }
  // The bar shows this rank's running figures; the epoch's are summed over the ranks.
  const std::vector<double> h = dist_.sum(m.sums.host());
  rec.train = info_.terms;
  for (size_t i = 0; i < rec.train.size(); ++i) rec.train[i].value = h.back() > 0 ? h[i] / h.back() : 0.0;
  rec.seconds = bar.elapsed();
  rec.images_per_sec = rec.seconds > 0 ? static_cast<double>(seen * dist_.world) / rec.seconds : 0.0;
  rec.lr = m.opt->param_groups()[0].lr();
  if (show) bar.finish();
  return true;
}

Figures Trainer::evaluate(nn::Module& model) {
  const bool was_training = model.is_training();
  model.eval();
  Figures f;
  {
    NoGradGuard ng;
    amp::AutocastGuard ac(o_.amp == "bf16" ? DType::bf16 : DType::f16, o_.amp != "none");
    f = task_.evaluate(model, *data_.val, *ctx_);
  }
  model.train(was_training);
  RG_CHECK(f.size() == info_.metrics.size(), "the task's evaluate returned ", f.size(), " metrics, its info() names ",
           info_.metrics.size());
  for (size_t i = 0; i < f.size(); ++i) {
    RG_CHECK(f[i].name == info_.metrics[i].name, "the task's evaluate returned metric '", f[i].name, "' where its info() names '",
             info_.metrics[i].name, "'");
  }
  return f;
}

// Validation (on its cadence), best tracking, checkpoints, the epoch line, results.csv, pictures.
void Trainer::end_epoch(EpochRecord& rec) {
  Impl& m = *impl_;
  rec.epoch = st_.epoch + 1;
  const bool last_epoch = st_.epoch + 1 == o_.epochs;
  rec.validated = (st_.epoch + 1) % o_.val_period == 0 || last_epoch;
  if (rec.validated) {
    // Every rank evaluates rank 0's weights and buffers (the saved ones) on its shard.
    dist_.broadcast_buffers(*m.model);
    m.last_val = evaluate(*m.model);
    for (auto& c : data_.val->take_corrupt()) m.epoch_corrupt.push_back(std::move(c));
    m.last_fitness = task_.fitness(m.last_val);
    if (m.ema) {
      dist_.broadcast_buffers(*m.ema->module());
      m.last_ema_val = evaluate(*m.ema->module());
      m.last_fitness = task_.fitness(m.last_ema_val);
    }
    rec.val = m.last_val;
    rec.ema_val = m.last_ema_val;
    rec.improved = m.last_fitness > st_.best_fitness;
    if (rec.improved) st_.best_fitness = m.last_fitness;
  }
  rec.fitness = m.last_fitness;
  rec.skipped_steps = m.scaler->skipped_steps();
  rec.nan_skips = m.nan_skips;
  gather_corrupt(rec);
  ++st_.epoch;
  st_.batch = 0;
  m.sums.reset(info_.terms.size(), dist_.device);
  m.steps_since_save = 0;
  const fs::path out(o_.out);
  if (dist_.is_main()) {
    save_checkpoint((out / "last.safetensors").string());
    if (rec.improved) save_checkpoint((out / "best.safetensors").string());
    write_results(rec);
    m.last_save = std::chrono::steady_clock::now();
  }
  dist_.barrier();  // nobody goes on (or reads the checkpoint) before it is written
  char line[768];
  int n = std::snprintf(line, sizeof(line), "epoch %lld/%lld  train %s", static_cast<long long>(rec.epoch),
                        static_cast<long long>(o_.epochs), format_figures(rec.train).c_str());
  auto append = [&](const std::string& s) {
    n += std::snprintf(line + n, sizeof(line) - static_cast<size_t>(std::min<int>(n, sizeof(line))), "%s", s.c_str());
  };
  append(rec.validated ? "  val " + format_figures(rec.val) : "  (not validated)");
  if (rec.validated && m.ema) {
    char e[48];
    std::snprintf(e, sizeof(e), " (ema %.3f)", rec.fitness);
    append(e);
  }
  char tail[128];
  std::snprintf(tail, sizeof(tail), "  lr %.4g  %.1fs  %.0f img/s%s", rec.lr, rec.seconds, rec.images_per_sec,
                rec.improved ? "  * best" : "");
  append(tail);
  if (rec.skipped_steps > 0) append("  (" + std::to_string(rec.skipped_steps) + " skipped f16 steps)");
  if (rec.nan_skips > 0) append("  (" + std::to_string(rec.nan_skips) + " steps skipped by the NaN guard)");
  log(1, line);
  if (!rec.corrupt.empty()) log(1, corrupt_summary(rec.corrupt));
  if (dist_.is_main()) {
    EpochEnd e;
    e.epoch = rec.epoch;
    e.final = last_epoch;
    e.metrics = rec.validated ? (m.ema ? &m.last_ema_val : &m.last_val) : nullptr;
    e.model = m.ema ? m.ema->module().get() : m.model.get();
    e.out = o_.out;
    const bool was_training = e.model->is_training();
    e.model->eval();
    task_.on_epoch_end(e, *ctx_);
    e.model->train(was_training);
  }
}

RunResult Trainer::run() {
  RunResult res;
  res.world_size = dist_.world;
  setup_data();
  setup_model();
  setup_optimizer();
  if (!o_.resume.empty()) resume();
  if (dist_.is_main()) {
    fs::create_directories(o_.out);
    const std::vector<std::string> stale = remove_stale_temporaries(o_.out);
    std::string names;
    for (const auto& n : stale) names += (names.empty() ? "" : ", ") + n;
    if (!stale.empty()) log(1, "removed the temporary file(s) of a save that was interrupted: " + names);
  }
  impl_->last_save = std::chrono::steady_clock::now();
  impl_->faults = FaultPlan::from_environment(hooks_.faults);
  // The restored state (weights, buffers, optimizer, schedule, scaler, EMA, counters, RNG), before any
  // step: it must equal the checkpoint resumed from, tensor for tensor (tests/e2e/test_train_classify.cpp).
  if (o_.save_resumed && !o_.resume.empty() && dist_.is_main()) {
    save_checkpoint((fs::path(o_.out) / "resumed.safetensors").string());
  }
  res.last_path = (fs::path(o_.out) / "last.safetensors").string();
  res.best_path = (fs::path(o_.out) / "best.safetensors").string();
  print_header();
  if (st_.epoch >= o_.epochs) {
    log(1, "nothing to do: the run has completed " + std::to_string(st_.epoch) + " of " + std::to_string(o_.epochs) +
               " epochs (pass a larger --epochs to train longer)");
  }
  while (st_.epoch < o_.epochs) {
    EpochRecord rec;
    if (!train_epoch(rec)) {
      if (!stop_code_) log(1, "stopped at epoch " + std::to_string(st_.epoch + 1) + ", batch " + std::to_string(st_.batch));
      break;
    }
    end_epoch(rec);
    res.history.push_back(rec);
    if (stop_at_epoch_end()) break;
    if (o_.stop_after_epochs > 0 && st_.epoch >= o_.stop_after_epochs && st_.epoch < o_.epochs) {
      log(1, "stopping after epoch " + std::to_string(st_.epoch) + " (--stop-after-epochs)");
      break;
    }
  }
  res.best_fitness = st_.best_fitness;
  res.global_step = st_.global_step;
  res.epochs_done = st_.epoch;
  res.stop_code = stop_code_;
  res.stop_message = stop_message_;
  if (impl_->agree_count > 0 && dist_.world > 1) {
    char a[160];
    std::snprintf(a, sizeof(a), "step agreement: %lld allreduces of 4 floats, %.1f us each on average (collective + host read)",
                  static_cast<long long>(impl_->agree_count), 1e6 * impl_->agree_seconds / static_cast<double>(impl_->agree_count));
    log(2, a);
  }
  if (stop_code_) return res;
  char best[32];
  std::snprintf(best, sizeof(best), "%.4g", st_.best_fitness);
  log(1, "done: best " + info_.fitness_key + " " + best + "; checkpoints in " + o_.out +
             " (last.safetensors, best.safetensors), results.csv");
  return res;
}

// ---- the whole run

RunResult train(const TrainOptions& in, Task& task, TrainerHooks hooks) {
  // Preemption signals only set a flag from here on (Note [Preemption signals]); rank 0 says so.
  const PreemptSignals signals(launch_env().rank == 0 && in.verbosity > 0);
  TrainOptions o = resolve_defaults(in, task);
  if (o.resume == "auto") {  // as run_command resolves it, for callers of train() itself
    const std::string last = (fs::path(o.out) / "last.safetensors").string();
    o.resume = fs::exists(last) ? last : "";
  }
  check_options(o);
  task.check_options(o);
  const DevicePlan plan = plan_devices(o.device, o.mode, o.distributed, launch_env(), dist::visible_gpus());
  RG_CHECK(plan.kind != RunKind::SelfLaunch, "--device ", o.device,
           " with --mode ddp trains one rank per device: start it from the command line (`ringgrad ",
           task.info().command, "`), which launches the ranks, or under `ringgrad launch`");
  // The device, and in distributed mode the process group. On an error the process is expected
  // to exit (the launcher then stops the other ranks), so the group is only torn down on success.
  DistContext dc = init_distributed(plan, o.device, o.backend);
  if (o.quiet) o.verbosity = std::min<int64_t>(o.verbosity, 1);
  if (!dc.is_main()) o.verbosity = 0;  // rank 0 prints for everyone
  // Before the loader threads start, so that they inherit it. The previous state comes back at the end.
  const bool prev_flush_denormal = flush_denormal();
  if (o.flush_denormal) set_flush_denormal(true);
  RunResult res;
  {
    std::optional<autograd::DetectAnomalyGuard> anomaly;
    if (o.detect_anomaly) {
      anomaly.emplace();
      if (o.verbosity >= 1) {
        std::printf("anomaly detection is on: every backward node's outputs are checked for inf/nan, and the first "
                    "one names its op and where its forward was called (slow: for debugging)\n");
      }
    }
    Trainer t(o, task, plan, dc, std::move(hooks));  // holds the DDP, which must be gone before the group is destroyed
    res = t.run();
  }
  if (o.flush_denormal) set_flush_denormal(prev_flush_denormal);
  shutdown_distributed(dc);
  if (res.stop_code != 0) throw RunStopped(res.stop_code, res.stop_message);
  return res;
}

}  // namespace rg::train
