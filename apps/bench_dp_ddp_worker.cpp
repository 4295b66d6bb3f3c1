// The worker processes of `ringgrad bench dp-vs-ddp` (Note [dp-vs-ddp benchmark]): one mode
// (single device, DataParallel, DDP overlapped / not / with SyncBatchNorm) timed phase by phase
// on synthetic tensors; each rank writes its raw figures as JSON for the driver.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "apps/bench_dp_ddp.h"
#include "autograd/autocast.h"
#include "core/allocator.h"
#include "core/cuda_api.h"
#include "core/error.h"
#include "core/native.h"
#include "core/random.h"
#include "distributed/data_parallel.h"
#include "distributed/ddp.h"
#include "distributed/sync_batchnorm.h"
#include "models/darknet.h"
#include "models/resnet.h"
#include "models/yolo_loss.h"
#include "nn/amp/grad_scaler.h"
#include "nn/functional.h"
#include "nn/optim/sgd.h"

namespace rg::app::bench {

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::shared_ptr<nn::Module> make_model(const Config& c) {
  if (c.yolo()) {
    RG_CHECK(c.model == "yolov3" || c.model == "yolov3-tiny" || c.model == "yolov3-spp",
             "bench dp-vs-ddp: unknown --model '", c.model, "' (yolov3, yolov3-tiny, yolov3-spp)");
    models::DarknetOptions o;
    o.num_classes = c.num_classes;
    return models::darknet_from_cfg(c.model + ".cfg", o);
  }
  models::ResNetOptions o;
  o.num_classes = c.num_classes;
  o.small_input = c.small_input;
  o.base_planes = c.width;
  if (c.model == "resnet18") return models::resnet18(o);
  if (c.model == "resnet34") return models::resnet34(o);
  if (c.model == "resnet50") return models::resnet50(o);
  if (c.model == "resnet101") return models::resnet101(o);
  if (c.model == "resnet152") return models::resnet152(o);
  RG_THROW("bench dp-vs-ddp: unknown --model '", c.model,
           "' (resnet18, resnet34, resnet50, resnet101, resnet152, yolov3, yolov3-tiny, yolov3-spp)");
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

// Sums of the per-step phase times (ms) over the recorded steps.
struct Phases {
  double replicate = 0, scatter = 0, forward = 0, gather = 0, backward = 0, reduce = 0, comm_wait = 0,
         optimizer = 0, step = 0, comm = 0, hidden = 0;
  int count = 0;
};

void write_json_atomic(const std::string& path, const Json& j) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    RG_CHECK(f.good(), "bench dp-vs-ddp: cannot write ", tmp);
    f << j.dump() << "\n";
    RG_CHECK(f.good(), "bench dp-vs-ddp: writing ", tmp, " failed");
  }
  std::filesystem::rename(tmp, path);
}

// ---- set-up

// Everything a worker process makes before it times anything: devices, process group, thread
// budget, model, wrappers, optimizer, scaler and the synthetic batch. Members are destroyed in
// reverse order, as the locals of one function would be.
struct Setup {
  std::string mode;
  int n = 1;
  bool is_ddp = false, is_dp = false, cuda = false;
  Device dev = kCPU;
  std::shared_ptr<dist::ProcessGroup> pg;
  int rank = 0;
  std::string backend = "none";
  std::vector<Device> dp_devices;  // DataParallel's devices
  std::vector<int> cuda_devices;   // the devices this process uses, for syncs and memory stats
  int budget = 0;                  // OpenMP threads per replica
  int caller_threads = 0;          // OpenMP threads of the calling thread
  std::shared_ptr<nn::Module> model;
  int64_t grad_bytes = 0, param_bytes = 0, buffer_bytes = 0;
  std::shared_ptr<dist::DistributedDataParallel> ddp;
  std::shared_ptr<dist::DataParallel> dp;
  std::unique_ptr<optim::SGD> opt;
  bool use_amp = false;
  DType amp_dtype = DType::f16;
  std::unique_ptr<amp::GradScaler> scaler;
  int64_t local_batch = 0;
  Tensor x;  // (local_batch, 3, image_size, image_size)
  Tensor y;  // (local_batch,) class ids; YOLO: (N, 6) targets [image, class, cx, cy, w, h]
  std::vector<models::YoloHeadSpec> heads;  // YOLO only

  void sync_all() const {
    for (int d : cuda_devices) cuda::synchronize(d);
  }
};

// Device, process group (DDP modes) and OpenMP thread budget.
void set_up_devices(const Config& cfg, Setup& s) {
  const int ngpu = s.cuda ? cuda::device_count() : 0;
  RG_CHECK(!s.cuda || ngpu > 0, "bench dp-vs-ddp: --device cuda but no CUDA device is visible");
  if (s.is_ddp) {
    const int local = dist::get_local_rank();
    if (s.cuda) {
      cuda::set_device(local % ngpu);
      s.dev = Device::cuda(local % ngpu);
    }
    dist::InitOptions io;
    io.backend = cfg.backend;
    io.device = s.dev;
    s.pg = dist::init_process_group(io);
    s.rank = s.pg->rank();
    RG_CHECK(s.pg->size() == s.n, "bench dp-vs-ddp: expected ", s.n, " ranks, the group has ", s.pg->size());
    s.backend = s.pg->backend();
  } else if (s.cuda) {
    cuda::set_device(0);
    s.dev = Device::cuda(0);
  }
  // DataParallel devices: one GPU each when there are enough, else N streams on cuda:0 (virtual
  // devices); on CPU, N CPU replicas.
  if (s.is_dp) {
    for (int r = 0; r < s.n; ++r) s.dp_devices.push_back(s.cuda ? Device::cuda(ngpu >= s.n ? r : 0) : kCPU);
  }
  if (s.cuda) {
    if (s.is_dp) {
      for (const Device& d : s.dp_devices) {
        if (std::find(s.cuda_devices.begin(), s.cuda_devices.end(), d.index) == s.cuda_devices.end()) {
          s.cuda_devices.push_back(d.index);
        }
      }
    } else {
      s.cuda_devices.push_back(s.dev.index);
    }
  }
  // Note [dp-vs-ddp threads]: OMP_NUM_THREADS (set by the driver) is the per-replica budget and
  // applies to every thread that starts an OpenMP region, DataParallel's replica threads included;
  // DataParallel's caller thread (loss, the whole backward, the optimizer) gets N * budget, the
  // process's total, as PyTorch's shared intra-op pool would give it (libgomp keeps this
  // omp_set_num_threads per thread, so the replica threads keep theirs).
  s.budget = omp_get_max_threads();
  if (s.is_dp) omp_set_num_threads(cfg.dp_caller_threads > 0 ? cfg.dp_caller_threads : s.n * s.budget);
  s.caller_threads = omp_get_max_threads();
}

// Model, its DP / DDP wrapper, optimizer, grad scaler and the synthetic batch.
void set_up_training(const Config& cfg, Setup& s) {
  manual_seed(cfg.seed);
  s.model = make_model(cfg);
  s.model->to(s.dev);
  s.model->train();
  for (const Tensor& p : s.model->parameters()) {
    s.param_bytes += static_cast<int64_t>(p.nbytes());
    if (p.requires_grad()) s.grad_bytes += static_cast<int64_t>(p.nbytes());
  }
  for (const Tensor& b : s.model->buffers()) s.buffer_bytes += static_cast<int64_t>(b.nbytes());
  if (s.mode == "ddp_syncbn") s.model = dist::convert_sync_batchnorm(s.model, s.pg);

  if (s.is_ddp) {
    dist::DDPOptions o;
    o.process_group = s.pg;
    o.overlap = s.mode != "ddp_no_overlap";
    s.ddp = std::make_shared<dist::DistributedDataParallel>(s.model, o);
  } else if (s.is_dp) {
    s.dp = std::make_shared<dist::DataParallel>(s.model, s.dp_devices);
  }

  optim::SGDOptions so;
  // lr 0: the weights never move, so every step does the same work on the same numbers. With a
  // real lr a small fixed batch is memorised within a few steps, and the vanishing gradients turn
  // denormal, which slows the CPU several-fold (measured: ResNet-50 backward 78 -> 242 ms at batch
  // 2). The optimizer still does all of its arithmetic (momentum, weight decay, the update).
  so.lr = 0.0;
  so.momentum = 0.9;
  so.weight_decay = 1e-4;
  s.opt = std::make_unique<optim::SGD>(s.model->parameters(), so);

  s.use_amp = cfg.amp != "none";
  s.amp_dtype = cfg.amp == "bf16" ? DType::bf16 : DType::f16;
  amp::GradScalerOptions gso;
  gso.enabled = cfg.amp == "f16";
  s.scaler = std::make_unique<amp::GradScaler>(gso);
  if (s.scaler->is_enabled() && s.is_ddp) dist::sync_grad_scaler(*s.scaler, s.pg);

  s.local_batch = s.is_dp ? s.n * cfg.batch : cfg.batch;
  Generator gen(cfg.seed * 7919 + 17 + static_cast<uint64_t>(s.rank));
  s.x = randn({s.local_batch, 3, cfg.image_size, cfg.image_size}, TensorOptions().device(s.dev), &gen);
  if (auto* dn = dynamic_cast<models::Darknet*>(s.model.get())) {
    // YOLO: 4 random boxes per image (centres in [0.1, 0.9], sides in [0.05, 0.5] of the image).
    s.heads = dn->heads();
    const int64_t n = 4 * s.local_batch;
    const Tensor img = floor(arange(static_cast<double>(n)) / 4.0);
    const Tensor cls = floor(rand({n}, TensorOptions(), &gen) * (static_cast<double>(cfg.num_classes) - 1e-3));
    const Tensor cxy = rand({n, 2}, TensorOptions(), &gen) * 0.8 + 0.1;
    const Tensor wh = rand({n, 2}, TensorOptions(), &gen) * 0.45 + 0.05;
    s.y = cat({img.unsqueeze(1), cls.unsqueeze(1), cxy, wh}, 1).to(s.dev);
  } else {
    s.y = randint(0, cfg.num_classes, {s.local_batch}, TensorOptions(DType::i64).device(s.dev), &gen);
  }
}

// ---- the step timer

// Runs training steps and adds the recorded ones' phases to `ph` (with `sync`: device-synchronised
// phase boundaries), and DDP's per-bucket allreduce figures.
class StepTimer {
 public:
  explicit StepTimer(Setup& s) : s_(s) {}

  void step(bool record, bool sync);

  Phases ph;
  std::vector<std::vector<double>> bucket_service;  // per bucket: its allreduce's own duration per step
  std::vector<int64_t> bucket_bytes;
  std::vector<std::vector<double>> bucket_launch;
  // Per bucket, per recorded step: launch and finish on the host's steady clock (ms), which all
  // processes of the machine share, so the driver can tell when the LAST rank launched a bucket.
  std::vector<std::vector<double>> bucket_launch_abs, bucket_finish_abs;
  Tensor last_loss;  // () the latest step's loss
  int64_t out_elem_bytes = 4;
  int64_t out_per_sample = 0;  // output elements per sample (classes; YOLO: rows x (5 + classes))

 private:
  void add_ddp_stats(double backward_start_ms, double* bwd);

  Setup& s_;
};

// One training step (forward with the loss, backward, optimizer), timed at the phase boundaries.
void StepTimer::step(bool record, bool sync) {
  const double t0 = now_ms();
  Tensor loss;
  {
    amp::AutocastGuard ac(s_.amp_dtype, s_.use_amp);
    const Tensor logits =  // (b, classes); YOLO: (b, rows, 5 + classes)
        s_.dp ? s_.dp->forward(s_.x) : s_.ddp ? s_.ddp->forward(s_.x) : s_.model->forward(s_.x);
    out_elem_bytes = static_cast<int64_t>(logits.element_size());
    out_per_sample = logits.numel() / std::max<int64_t>(1, logits.size(0));
    if (s_.heads.empty()) {
      loss = nn::functional::cross_entropy(logits, s_.y);
    } else {
      loss = models::yolo_loss(logits, s_.y, s_.heads, s_.x.size(2), s_.x.size(3)).total;
    }
  }
  if (sync) s_.sync_all();
  const double t1 = now_ms();
  if (s_.scaler->is_enabled()) {
    s_.scaler->scale(loss).backward();
  } else {
    loss.backward();
  }
  if (sync) s_.sync_all();
  const double t2 = now_ms();
  if (s_.scaler->is_enabled()) {
    s_.scaler->step(*s_.opt);
    s_.scaler->update();
  } else {
    s_.opt->step();
  }
  s_.opt->zero_grad();
  if (sync) s_.sync_all();
  const double t3 = now_ms();
  last_loss = loss;
  if (!record) return;
  ph.count++;
  ph.step += t3 - t0;
  ph.optimizer += t3 - t2;
  double fwd = t1 - t0, bwd = t2 - t1;
  if (s_.dp) {
    const dist::DataParallelTimings t = s_.dp->timings();
    if (t.replicas > 1) {
      ph.replicate += t.replicate_ms;
      ph.scatter += t.scatter_ms;
      ph.gather += t.gather_ms;
      fwd -= t.replicate_ms + t.scatter_ms + t.gather_ms;  // leaves the replicas' forward + the loss
      if (t.reduce_ms > 0) {
        ph.reduce += t.reduce_ms;
        bwd -= t.reduce_ms;
      }
    }
  }
  if (s_.ddp) add_ddp_stats(t1, &bwd);
  ph.forward += fwd;
  ph.backward += bwd;
}

// DDP's communication figures of the step whose backward started at backward_start_ms; takes the
// wait for the allreduces after the backward out of *bwd.
void StepTimer::add_ddp_stats(double backward_start_ms, double* bwd) {
  const dist::DDPStats st = s_.ddp->last_stats();
  const double wait = std::max(0.0, st.done_ms - st.backward_end_ms);
  ph.comm_wait += wait;
  *bwd -= wait;
  ph.comm += st.comm_ms;
  ph.hidden += st.hidden_ms;
  if (bucket_service.size() < st.buckets.size()) {
    bucket_service.resize(st.buckets.size());
    bucket_launch.resize(st.buckets.size());
    bucket_bytes.resize(st.buckets.size());
    bucket_launch_abs.resize(st.buckets.size());
    bucket_finish_abs.resize(st.buckets.size());
  }
  // A bucket's allreduce runs once the previous one has finished (one communication queue):
  // its own time is finish - max(launch, previous finish).
  double prev_finish = 0;
  for (size_t k = 0; k < st.buckets.size(); ++k) {
    const dist::DDPBucketStats& b = st.buckets[k];
    bucket_service[k].push_back(b.finish_ms - std::max(b.launch_ms, prev_finish));
    bucket_launch[k].push_back(b.launch_ms);
    // Backward started about when loss.backward() was called (t1; the loss's own backward is
    // the only thing in between).
    bucket_launch_abs[k].push_back(backward_start_ms + b.launch_ms);
    bucket_finish_abs[k].push_back(backward_start_ms + b.finish_ms);
    bucket_bytes[k] = b.bytes;
    prev_finish = b.finish_ms;
  }
}

// ---- the results writer

// What the timed passes measured, besides the step timer's sums.
struct Measured {
  double wall_ms = 0;          // the free-running timed steps
  std::vector<int64_t> peaks;  // allocator peak per device in use
  double loss = 0;
};

// The DDP buckets' figures: bytes, median service and launch times, and every step's absolute
// launch and finish times.
Json buckets_json(const StepTimer& st) {
  Json buckets = Json::array();
  for (size_t b = 0; b < st.bucket_service.size(); ++b) {
    Json e = Json::object();
    e.set("bytes", st.bucket_bytes[b]);
    e.set("service_ms", median(st.bucket_service[b]));
    e.set("launch_ms", median(st.bucket_launch[b]));
    Json la = Json::array(), fi = Json::array();
    for (double v : st.bucket_launch_abs[b]) la.push_back(v);
    for (double v : st.bucket_finish_abs[b]) fi.push_back(v);
    e.set("launch_abs_ms", la);
    e.set("finish_abs_ms", fi);
    buckets.push_back(e);
  }
  return buckets;
}

// Writes this rank's raw figures to <prefix>_rank<r>.json (Note [dp-vs-ddp benchmark]).
void write_results(const Config& cfg, const Setup& s, const StepTimer& st, const Measured& m,
                   const std::string& prefix) {
  const Phases& ph = st.ph;
  const double k = ph.count > 0 ? 1.0 / ph.count : 0.0;
  Json phases = Json::object();
  phases.set("replicate", ph.replicate * k);
  phases.set("scatter", ph.scatter * k);
  phases.set("forward", ph.forward * k);
  phases.set("gather", ph.gather * k);
  phases.set("backward", ph.backward * k);
  phases.set("reduce", ph.reduce * k);
  phases.set("comm_wait", ph.comm_wait * k);
  phases.set("optimizer", ph.optimizer * k);
  phases.set("step", ph.step * k);
  Json peak_list = Json::array();
  int64_t peak = 0;
  for (int64_t p : m.peaks) {
    peak_list.push_back(p);
    peak = std::max(peak, p);
  }
  Json j = Json::object();
  j.set("mode", s.mode);
  j.set("n", s.n);
  j.set("rank", s.rank);
  std::string where = s.dev.str();
  if (s.is_dp && s.n > 1) {
    const std::vector<Device>& dd = s.dp_devices;
    where = dd[1] == dd[0] ? dd[0].str() + " x" + std::to_string(s.n) : dd[0].str() + ".." + dd.back().str();
  }
  j.set("device", where);
  j.set("backend", s.backend);
  j.set("threads", s.budget);
  j.set("caller_threads", s.caller_threads);
  j.set("local_batch", s.local_batch);
  j.set("steps", cfg.steps);
  j.set("wall_ms", m.wall_ms);
  j.set("phases", phases);
  j.set("comm_ms", ph.comm * k);
  j.set("hidden_ms", ph.hidden * k);
  j.set("grad_bytes", s.grad_bytes);
  j.set("param_bytes", s.param_bytes);
  j.set("buffer_bytes", s.buffer_bytes);
  j.set("input_bytes_per_sample", int64_t{3} * cfg.image_size * cfg.image_size * 4);
  j.set("output_bytes_per_sample", st.out_per_sample * st.out_elem_bytes);
  j.set("peak_bytes", peak);
  j.set("peak_bytes_per_device", peak_list);
  j.set("buckets", buckets_json(st));
  j.set("loss", m.loss);
  write_json_atomic(prefix + "_rank" + std::to_string(s.rank) + ".json", j);
}

}  // namespace

int run_worker(const Config& cfg, const std::string& mode, int n, const std::string& prefix) {
  Setup s;
  s.mode = mode;
  s.n = n;
  s.is_ddp = mode == "ddp" || mode == "ddp_no_overlap" || mode == "ddp_syncbn";
  s.is_dp = mode == "dp";
  RG_CHECK(s.is_ddp || s.is_dp || mode == "single", "bench dp-vs-ddp: unknown worker mode '", mode, "'");
  RG_CHECK(n >= 1, "bench dp-vs-ddp: worker needs n >= 1, got ", n);
  s.cuda = cfg.cuda();
  set_up_devices(cfg, s);
  set_up_training(cfg, s);
  StepTimer timer(s);

  // ---- warm-up, then the timed steps
  for (int i = 0; i < cfg.warmup; ++i) timer.step(false, false);
  s.sync_all();
  if (s.pg) s.pg->barrier()->wait();
  Measured m;
  const double start = now_ms();
  // CPU: every timed step records its phases (the boundaries cost nothing). CUDA: a free-running
  // throughput pass, then a pass synchronised at each phase boundary for the breakdown.
  for (int i = 0; i < cfg.steps; ++i) timer.step(!s.cuda, false);
  s.sync_all();
  m.wall_ms = now_ms() - start;
  if (s.cuda) {
    for (int d : s.cuda_devices) m.peaks.push_back(cuda::memory_stats(d).peak_allocated);
  } else {
    m.peaks.push_back(cpu_memory_stats().peak_allocated);
  }
  if (s.cuda) {
    if (s.dp) {  // a DataParallel whose phase timings wait for the devices
      s.dp.reset();
      dist::DataParallelOptions dpo;
      dpo.sync_timing = true;
      s.dp = std::make_shared<dist::DataParallel>(s.model, s.dp_devices, std::nullopt, dpo);
      timer.step(false, true);
    }
    if (s.pg) s.pg->barrier()->wait();
    for (int i = 0; i < cfg.steps; ++i) timer.step(true, true);
  }
  m.loss = timer.last_loss.item();
  write_results(cfg, s, timer, m, prefix);

  if (s.ddp) {
    s.ddp.reset();
    s.pg->barrier()->wait();  // nobody tears the group down while another rank still writes
    s.pg.reset();
    dist::destroy_process_group();
  }
  return 0;
}

}  // namespace rg::app::bench
