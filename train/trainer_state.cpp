// The trainer's saved state: checkpoints (Note [Training checkpoints]), exact resume (Note [Exact
// resume]) and results.csv.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/random.h"
#include "train/trainer_impl.h"

namespace fs = std::filesystem;

namespace rg::train {

// Note [Training checkpoints]
// (Formerly Note [Classifier checkpoints]; the classifier's files keep this layout.)
// DIR/last.safetensors (every epoch, and whenever save_checkpoint is called) and
// DIR/best.safetensors (when the fitness improves: the EMA model's with --ema, else the model's)
// hold the same things:
// - the model's state_dict under its own names, no prefix ("conv1.weight", "fc.bias", ...);
// - the training state, Note [Training state in checkpoints] (nn/optim/optimizer.h): prefixes
//   "optimizer", "scheduler", "scaler" (--amp f16 only) and "ema" (--ema only: "ema.module.<name>");
// - metadata "trainer": {"format": the task's, "epoch": epochs completed, "batch": batches of the
//   next epoch done (0 at an epoch's end), "global_step", "best_<key>" (the best fitness),
//   "val_<key>" (the latest fitness: the EMA's with --ema), "model_val": the model's latest
//   metrics by name, "world_size" (ranks that trained it), "accumulate",
//   "sampler": {"epoch", "start_batch", "seed", "world_size", "batch_size" (per rank)},
//   "rng": {"seed", "offset"} (the default generator), "train_sums" (mid-epoch only: the epoch's
//   running sums so far), "ranks" (mid-epoch saves of save_mid_epoch: per rank, in rank order,
//   {"sums": its running sums, "corrupt": its replaced samples so far}), "nan_skips" and
//   "nan_streak" (the NaN guard's counters), "config": {every Saved option}, plus the task's
//   metadata() keys}.
//   <key> is TaskInfo::fitness_key ("acc" for the classifier: best_acc, val_acc).
// Keys of the model never start with those prefixes, so the split is unambiguous.
namespace {
const char* const kTrainPrefixes[] = {"optimizer.", "scheduler.", "scaler.", "ema."};

Json number_array(const std::vector<double>& v) {
  Json a = Json::array();
  for (double x : v) a.push_back(x);
  return a;
}

Json figures_object(const Figures& f) {
  Json o = Json::object();
  for (const auto& x : f) o.set(x.name, x.value);
  return o;
}

std::string csv_cell(double v) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}
}  // namespace

bool is_train_state_key(const std::string& k) {
  for (const char* p : kTrainPrefixes) {
    if (k.rfind(p, 0) == 0) return true;
  }
  return false;
}

Json trainer_meta(const nn::SafeTensors& ck, const std::string& path, const std::string& format) {
  const std::string* m = ck.meta("trainer");
  RG_CHECK(m, "cannot resume from '", path, "': not a ringgrad training checkpoint (no \"trainer\" metadata)");
  Json t = Json::parse(*m);
  const Json* f = t.find("format");
  RG_CHECK(f && f->is_string(), "cannot resume from '", path, "': its trainer metadata has no format");
  RG_CHECK(f->as_string() == format, "cannot resume from '", path, "': it was written by format '", f->as_string(),
           "', this task reads '", format, "'");
  return t;
}

void Trainer::save_checkpoint(const std::string& path) const {
  const Impl& m = *impl_;
  nn::StateDict tensors = m.model->state_dict();
  nn::Metadata meta;
  nn::put_train_state(tensors, meta, "optimizer", m.opt->state_dict());
  nn::put_train_state(tensors, meta, "scheduler", m.sched->state_dict());
  if (m.scaler->is_enabled()) nn::put_train_state(tensors, meta, "scaler", m.scaler->state_dict());
  if (m.ema) nn::put_train_state(tensors, meta, "ema", m.ema->state_dict());
  Json t = Json::object();
  t.set("format", info_.format);
  t.set("epoch", st_.epoch);
  t.set("batch", st_.batch);
  t.set("global_step", st_.global_step);
  t.set("best_" + info_.fitness_key, st_.best_fitness);
  t.set("val_" + info_.fitness_key, m.last_fitness);
  t.set("model_val", figures_object(m.last_val));
  t.set("world_size", static_cast<int64_t>(dist_.world));
  t.set("accumulate", accumulate_);
  Json sampler = Json::object();
  sampler.set("epoch", st_.epoch);
  sampler.set("start_batch", st_.batch);
  sampler.set("seed", o_.seed);
  sampler.set("world_size", static_cast<int64_t>(dist_.world));
  sampler.set("batch_size", ctx_->batch);
  t.set("sampler", sampler);
  Json rng = Json::object();
  rng.set("seed", static_cast<int64_t>(default_generator().seed()));
  rng.set("offset", static_cast<int64_t>(default_generator().offset()));
  t.set("rng", rng);
  if (st_.batch > 0) t.set("train_sums", number_array(m.sums.host()));
  if (st_.batch > 0 && m.rank_states.is_array()) t.set("ranks", m.rank_states);
  t.set("nan_skips", m.nan_skips);
  t.set("nan_streak", m.nan_streak);
  const Json task_meta = task_.metadata();
  for (const auto& [k, v] : task_meta.as_object()) t.set(k, v);
  Options engine;
  TrainOptions saved = o_;
  engine.add(TrainOptions::specs(), &saved);
  Json config = engine.to_json();
  const Json task_config = task_.options_json();
  for (const auto& [k, v] : task_config.as_object()) config.set(k, v);
  t.set("config", config);
  meta.emplace_back("trainer", t.dump());
  meta.emplace_back("format", "pt");  // safetensors' convention for PyTorch state dicts
  nn::save_safetensors(path, tensors, meta);
}

// A checkpoint in the middle of an epoch (--save-period-steps, --save-period-min, a stop): every
// rank hands its running sums and replaced samples to rank 0 (two small allgathers), so that each
// rank resumes its own (Note [Exact resume]); rank 0 writes last.safetensors.
void Trainer::save_mid_epoch() {
  Impl& m = *impl_;
  Json mine = Json::object();
  mine.set("sums", number_array(m.sums.host()));
  Json corrupt = Json::array();
  for (const auto& c : m.epoch_corrupt) corrupt.push_back(c);
  mine.set("corrupt", corrupt);
  m.rank_states = Json::array();
  if (dist_.enabled && dist_.world > 1) {
    for (const auto& part : dist_.allgather_bytes(mine.dump())) m.rank_states.push_back(Json::parse(part));
  } else {
    m.rank_states.push_back(mine);
  }
  if (dist_.is_main()) {
    save_checkpoint((fs::path(o_.out) / "last.safetensors").string());
    m.last_save = std::chrono::steady_clock::now();
  }
  m.rank_states = Json();
  m.steps_since_save = 0;
}

// Note [Exact resume]
// Everything a step depends on is restored: weights and buffers (BN statistics and
// num_batches_tracked), optimizer state (momentum buffers, Adam moments and step counts,
// hyper-parameters), the schedule's step, the GradScaler's scale and tracker, the EMA, the loop
// state (Note [Loop state]) and the epoch's running sums; the data order and augmentation follow
// from (seed, epoch, index) alone (Note [Loader determinism]), and the default generator's
// (seed, offset) is put back. On the CPU, whose kernels are deterministic for a fixed thread
// count, a resumed run therefore ends bitwise equal to an uninterrupted one, from an epoch's end
// or from the middle of one (tests/e2e/test_train_classify.cpp, tests/train/test_trainer.cpp). In
// distributed mode the same holds at the same world size; at another one, or with another
// accumulation, the run re-plans (Note [Distributed training]), restarting an epoch it left in
// its middle. setup_model() has loaded the weights already.
void Trainer::resume() {
  Impl& m = *impl_;
  const std::string& path = o_.resume;
  const nn::SafeTensors& ck = *m.ckpt;
  const Json t = trainer_meta(ck, path, info_.format);
  m.opt->load_state_dict(nn::get_train_state(ck, "optimizer"));
  const int64_t saved_epochs = t["config"]["epochs"].as_int();
  const int64_t saved_world = t.find("world_size") ? t["world_size"].as_int() : 1;
  const int64_t saved_accumulate = t.find("accumulate") ? t["accumulate"].as_int() : 1;
  st_.epoch = t["epoch"].as_int();
  st_.batch = t.find("batch") ? t["batch"].as_int() : 0;
  st_.global_step = t["global_step"].as_int();
  const bool replan = saved_world != dist_.world || saved_accumulate != accumulate_;
  if (replan) {
    // Another number of steps per epoch: continue at the saved epoch (its start, if it was left
    // in the middle), with the schedule re-planned.
    if (st_.batch > 0) log(1, "resume: restarting epoch " + std::to_string(st_.epoch + 1) + " from its first batch");
    st_.batch = 0;
    st_.global_step = st_.epoch * nb_;
    m.sched->set_step(st_.epoch * steps_per_epoch_);
    m.warmup.apply(*m.opt, m.kinds, m.sched->last_epoch());
    std::string why;
    if (saved_world != dist_.world) {
      why = "the checkpoint was trained on " + std::to_string(saved_world) + " rank(s), this run has " +
            std::to_string(dist_.world);
    } else {
      why = "the checkpoint stepped every " + std::to_string(saved_accumulate) + " micro-batch(es), this run every " +
            std::to_string(accumulate_);
    }
    log(1, "resume: " + why + ": continuing at epoch " + std::to_string(st_.epoch) +
               " with the schedule re-planned for " + std::to_string(steps_per_epoch_) +
               " steps per epoch (not bitwise an uninterrupted run)");
  } else if (saved_epochs == o_.epochs) {
    m.sched->load_state_dict(nn::get_train_state(ck, "scheduler"));
  } else {
    // Another run length: the schedule is re-planned and jumps to the current step (every
    // schedule is a closed form of it).
    m.sched->set_step(st_.epoch * steps_per_epoch_ + (st_.batch + accumulate_ - 1) / accumulate_);
    m.warmup.apply(*m.opt, m.kinds, m.sched->last_epoch());
    log(1, "resume: the schedule is re-planned for " + std::to_string(o_.epochs) + " epochs (the checkpoint's run had " +
               std::to_string(saved_epochs) + ")");
  }
  RG_CHECK(st_.global_step == st_.epoch * nb_ + st_.batch, "cannot resume from '", path, "': its global step ",
           st_.global_step, " is not epoch ", st_.epoch, " x ", nb_, " batches per epoch + ", st_.batch,
           " (was the dataset or batch size changed?)");
  if (m.scaler->is_enabled() && nn::has_train_state(ck, "scaler")) {
    m.scaler->load_state_dict(nn::get_train_state(ck, "scaler"));
  }
  if (m.ema) {
    RG_CHECK(nn::has_train_state(ck, "ema"), "cannot resume '", path, "' with --ema: the checkpoint has no EMA");
    m.ema->load_state_dict(nn::get_train_state(ck, "ema"));
  }
  const std::string best_key = "best_" + info_.fitness_key, val_key = "val_" + info_.fitness_key;
  st_.best_fitness = t[best_key].as_double();
  if (const Json* v = t.find(val_key)) m.last_fitness = v->as_double();
  if (const Json* mv = t.find("model_val")) {  // the latest validation, by the task's metric names
    Figures f = info_.metrics;
    bool all = true;
    for (auto& x : f) {
      const Json* v = mv->find(x.name);
      all = all && v && v->is_number();
      if (all) x.value = v->as_double();
    }
    if (all && !f.empty()) m.last_val = f;
  }
  if (st_.batch > 0) {
    // This rank's own running state when the checkpoint has every rank's (a mid-epoch save at
    // this world size), else rank 0's sums.
    const Json* ranks = t.find("ranks");
    const bool own = ranks && ranks->is_array() && ranks->size() == static_cast<size_t>(dist_.world);
    const Json& src = own ? (*ranks)[static_cast<size_t>(dist_.rank)]["sums"] : t["train_sums"];
    std::vector<double> sums;
    for (const auto& x : src.as_array()) sums.push_back(x.as_double());
    m.sums.set(sums, dist_.device);
    if (own) {
      for (const auto& c : (*ranks)[static_cast<size_t>(dist_.rank)]["corrupt"].as_array()) {
        m.epoch_corrupt.push_back(c.as_string());
      }
    }
  }
  if (const Json* v = t.find("nan_skips")) m.nan_skips = v->as_int();
  if (const Json* v = t.find("nan_streak")) m.nan_streak = v->as_int();
  const Json& rng = t["rng"];
  default_generator().set_state(static_cast<uint64_t>(rng["seed"].as_int()), static_cast<uint64_t>(rng["offset"].as_int()));
  // results.csv keeps the rows of the epochs this run continues from.
  std::ifstream in(fs::path(o_.out) / "results.csv");
  std::string line;
  if (in && std::getline(in, m.csv_header)) {
    while (std::getline(in, line)) {
      if (!line.empty() && std::atoll(line.c_str()) <= st_.epoch) m.csv_rows.push_back(line);
    }
  }
  log(1, "resumed from " + path + " at epoch " + std::to_string(st_.epoch) +
             (st_.batch > 0 ? ", batch " + std::to_string(st_.batch) : "") + " (step " +
             std::to_string(st_.global_step) + ")");
}

// results.csv: a header and one row per epoch, rewritten whole (atomically) after each epoch.
void Trainer::write_results(const EpochRecord& rec) {
  Impl& m = *impl_;
  std::string header = "epoch";
  for (const auto& f : info_.terms) header += ",train/" + f.name;
  for (const auto& f : info_.metrics) header += ",val/" + f.name;
  if (m.ema) {
    for (const auto& f : info_.metrics) header += ",ema/" + f.name;
  }
  header += ",fitness,lr,nan_skips,corrupt,seconds";
  if (header != m.csv_header) m.csv_rows.clear();  // another layout (e.g. --ema toggled): start over
  m.csv_header = header;
  std::string row = std::to_string(rec.epoch);
  auto cell = [&](bool present, double v) {
    row += ',';
    if (present) row += csv_cell(v);
  };
  for (const auto& f : rec.train) cell(true, f.value);
  auto metric_cells = [&](const Figures& f) {
    for (size_t i = 0; i < info_.metrics.size(); ++i) cell(i < f.size(), i < f.size() ? f[i].value : 0.0);
  };
  metric_cells(rec.val);
  if (m.ema) metric_cells(rec.ema_val);
  cell(rec.validated, rec.fitness);
  cell(true, rec.lr);
  for (const int64_t n : {rec.nan_skips, static_cast<int64_t>(rec.corrupt.size())}) {
    row += ',';
    row += std::to_string(n);
  }
  cell(true, rec.seconds);
  m.csv_rows.push_back(row);
  std::string text = header + "\n";
  for (const auto& r : m.csv_rows) text += r + "\n";
  nn::atomic_write_file((fs::path(o_.out) / "results.csv").string(), text);
}

}  // namespace rg::train
