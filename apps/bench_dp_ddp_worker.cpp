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
#include "models/resnet.h"
#include "nn/amp/grad_scaler.h"
#include "nn/functional.h"
#include "nn/optim/sgd.h"

namespace rg::app::bench {

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::shared_ptr<models::ResNet> make_model(const Config& c) {
  models::ResNetOptions o;
  o.num_classes = c.num_classes;
  o.small_input = c.small_input;
  o.base_planes = c.width;
  if (c.model == "resnet18") return models::resnet18(o);
  if (c.model == "resnet34") return models::resnet34(o);
  if (c.model == "resnet50") return models::resnet50(o);
  if (c.model == "resnet101") return models::resnet101(o);
  if (c.model == "resnet152") return models::resnet152(o);
  RG_THROW("bench dp-vs-ddp: unknown --model '", c.model, "' (resnet18, resnet34, resnet50, resnet101, resnet152)");
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

}  // namespace

int run_worker(const Config& cfg, const std::string& mode, int n, const std::string& prefix) {
  const bool is_ddp = mode == "ddp" || mode == "ddp_no_overlap" || mode == "ddp_syncbn";
  const bool is_dp = mode == "dp";
  RG_CHECK(is_ddp || is_dp || mode == "single", "bench dp-vs-ddp: unknown worker mode '", mode, "'");
  RG_CHECK(n >= 1, "bench dp-vs-ddp: worker needs n >= 1, got ", n);
  const bool cuda = cfg.cuda();
  const int ngpu = cuda ? cuda::device_count() : 0;
  RG_CHECK(!cuda || ngpu > 0, "bench dp-vs-ddp: --device cuda but no CUDA device is visible");

  // ---- device, process group, threads
  Device dev = kCPU;
  std::shared_ptr<dist::ProcessGroup> pg;
  int rank = 0;
  std::string backend = "none";
  if (is_ddp) {
    const int local = dist::get_local_rank();
    if (cuda) {
      cuda::set_device(local % ngpu);
      dev = Device::cuda(local % ngpu);
    }
    dist::InitOptions io;
    io.backend = cfg.backend;
    io.device = dev;
    pg = dist::init_process_group(io);
    rank = pg->rank();
    RG_CHECK(pg->size() == n, "bench dp-vs-ddp: expected ", n, " ranks, the group has ", pg->size());
    backend = pg->backend();
  } else if (cuda) {
    cuda::set_device(0);
    dev = Device::cuda(0);
  }
  // DataParallel devices: one GPU each when there are enough, else N streams on cuda:0 (virtual
  // devices); on CPU, N CPU replicas.
  std::vector<Device> dp_devices;
  if (is_dp) {
    for (int r = 0; r < n; ++r) dp_devices.push_back(cuda ? Device::cuda(ngpu >= n ? r : 0) : kCPU);
  }
  std::vector<int> cuda_devices;  // the devices this process uses, for syncs and memory stats
  if (cuda) {
    if (is_dp) {
      for (const Device& d : dp_devices) {
        if (std::find(cuda_devices.begin(), cuda_devices.end(), d.index) == cuda_devices.end()) {
          cuda_devices.push_back(d.index);
        }
      }
    } else {
      cuda_devices.push_back(dev.index);
    }
  }
  // Note [dp-vs-ddp threads]: OMP_NUM_THREADS (set by the driver) is the per-replica budget and
  // applies to every thread that starts an OpenMP region, DataParallel's replica threads included;
  // DataParallel's caller thread (loss, the whole backward, the optimizer) gets N * budget, the
  // process's total, as PyTorch's shared intra-op pool would give it (libgomp keeps this
  // omp_set_num_threads per thread, so the replica threads keep theirs).
  const int budget = omp_get_max_threads();
  if (is_dp) omp_set_num_threads(cfg.dp_caller_threads > 0 ? cfg.dp_caller_threads : n * budget);
  const int caller_threads = omp_get_max_threads();

  // ---- model, wrappers, optimizer, data
  manual_seed(cfg.seed);
  std::shared_ptr<nn::Module> model = make_model(cfg);
  model->to(dev);
  model->train();
  int64_t grad_bytes = 0, param_bytes = 0, buffer_bytes = 0;
  for (const Tensor& p : model->parameters()) {
    param_bytes += static_cast<int64_t>(p.nbytes());
    if (p.requires_grad()) grad_bytes += static_cast<int64_t>(p.nbytes());
  }
  for (const Tensor& b : model->buffers()) buffer_bytes += static_cast<int64_t>(b.nbytes());
  if (mode == "ddp_syncbn") model = dist::convert_sync_batchnorm(model, pg);

  std::shared_ptr<dist::DistributedDataParallel> ddp;
  std::shared_ptr<dist::DataParallel> dp;
  if (is_ddp) {
    dist::DDPOptions o;
    o.process_group = pg;
    o.overlap = mode != "ddp_no_overlap";
    ddp = std::make_shared<dist::DistributedDataParallel>(model, o);
  } else if (is_dp) {
    dp = std::make_shared<dist::DataParallel>(model, dp_devices);
  }

  optim::SGDOptions so;
  // lr 0: the weights never move, so every step does the same work on the same numbers. With a
  // real lr a small fixed batch is memorised within a few steps, and the vanishing gradients turn
  // denormal, which slows the CPU several-fold (measured: ResNet-50 backward 78 -> 242 ms at batch
  // 2). The optimizer still does all of its arithmetic (momentum, weight decay, the update).
  so.lr = 0.0;
  so.momentum = 0.9;
  so.weight_decay = 1e-4;
  optim::SGD opt(model->parameters(), so);

  const bool use_amp = cfg.amp != "none";
  const DType amp_dtype = cfg.amp == "bf16" ? DType::bf16 : DType::f16;
  amp::GradScalerOptions gso;
  gso.enabled = cfg.amp == "f16";
  amp::GradScaler scaler(gso);
  if (scaler.is_enabled() && is_ddp) dist::sync_grad_scaler(scaler, pg);

  const int64_t local_batch = is_dp ? n * cfg.batch : cfg.batch;
  Generator gen(cfg.seed * 7919 + 17 + static_cast<uint64_t>(rank));
  const Tensor x = randn({local_batch, 3, cfg.image_size, cfg.image_size}, TensorOptions().device(dev), &gen);
  const Tensor y = randint(0, cfg.num_classes, {local_batch}, TensorOptions(DType::i64).device(dev), &gen);
  int64_t out_elem_bytes = 4;

  auto sync_all = [&] {
    for (int d : cuda_devices) cuda::synchronize(d);
  };

  // ---- one step; `record` adds its phases to `ph` (with `sync`: device-synchronised boundaries)
  Phases ph;
  std::vector<std::vector<double>> bucket_service;  // per bucket: its allreduce's own duration per step
  std::vector<int64_t> bucket_bytes;
  std::vector<std::vector<double>> bucket_launch;
  // Per bucket, per recorded step: launch and finish on the host's steady clock (ms), which all
  // processes of the machine share, so the driver can tell when the LAST rank launched a bucket.
  std::vector<std::vector<double>> bucket_launch_abs, bucket_finish_abs;
  Tensor last_loss;
  auto step = [&](bool record, bool sync) {
    const double t0 = now_ms();
    Tensor loss;
    {
      amp::AutocastGuard ac(amp_dtype, use_amp);
      const Tensor logits = dp ? dp->forward(x) : ddp ? ddp->forward(x) : model->forward(x);  // (b, classes)
      out_elem_bytes = static_cast<int64_t>(logits.element_size());
      loss = nn::functional::cross_entropy(logits, y);
    }
    if (sync) sync_all();
    const double t1 = now_ms();
    if (scaler.is_enabled()) {
      scaler.scale(loss).backward();
    } else {
      loss.backward();
    }
    if (sync) sync_all();
    const double t2 = now_ms();
    if (scaler.is_enabled()) {
      scaler.step(opt);
      scaler.update();
    } else {
      opt.step();
    }
    opt.zero_grad();
    if (sync) sync_all();
    const double t3 = now_ms();
    last_loss = loss;
    if (!record) return;
    ph.count++;
    ph.step += t3 - t0;
    ph.optimizer += t3 - t2;
    double fwd = t1 - t0, bwd = t2 - t1;
    if (dp) {
      const dist::DataParallelTimings t = dp->timings();
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
    if (ddp) {
      const dist::DDPStats st = ddp->last_stats();
      const double wait = std::max(0.0, st.done_ms - st.backward_end_ms);
      ph.comm_wait += wait;
      bwd -= wait;
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
        bucket_launch_abs[k].push_back(t1 + b.launch_ms);
        bucket_finish_abs[k].push_back(t1 + b.finish_ms);
        bucket_bytes[k] = b.bytes;
        prev_finish = b.finish_ms;
      }
    }
    ph.forward += fwd;
    ph.backward += bwd;
  };

  // ---- warm-up, then the timed steps
  for (int i = 0; i < cfg.warmup; ++i) step(false, false);
  sync_all();
  if (pg) pg->barrier()->wait();
  const double start = now_ms();
  // CPU: every timed step records its phases (the boundaries cost nothing). CUDA: a free-running
  // throughput pass, then a pass synchronised at each phase boundary for the breakdown.
  for (int i = 0; i < cfg.steps; ++i) step(!cuda, false);
  sync_all();
  const double wall_ms = now_ms() - start;
  std::vector<int64_t> peaks;
  if (cuda) {
    for (int d : cuda_devices) peaks.push_back(cuda::memory_stats(d).peak_allocated);
  } else {
    peaks.push_back(cpu_memory_stats().peak_allocated);
  }
  if (cuda) {
    if (dp) {  // a DataParallel whose phase timings wait for the devices
      dp.reset();
      dist::DataParallelOptions dpo;
      dpo.sync_timing = true;
      dp = std::make_shared<dist::DataParallel>(model, dp_devices, std::nullopt, dpo);
      step(false, true);
    }
    if (pg) pg->barrier()->wait();
    for (int i = 0; i < cfg.steps; ++i) step(true, true);
  }
  const double loss_value = last_loss.item();

  // ---- results
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
  Json buckets = Json::array();
  for (size_t b = 0; b < bucket_service.size(); ++b) {
    Json e = Json::object();
    e.set("bytes", bucket_bytes[b]);
    e.set("service_ms", median(bucket_service[b]));
    e.set("launch_ms", median(bucket_launch[b]));
    Json la = Json::array(), fi = Json::array();
    for (double v : bucket_launch_abs[b]) la.push_back(v);
    for (double v : bucket_finish_abs[b]) fi.push_back(v);
    e.set("launch_abs_ms", la);
    e.set("finish_abs_ms", fi);
    buckets.push_back(e);
  }
  Json peak_list = Json::array();
  int64_t peak = 0;
  for (int64_t p : peaks) {
    peak_list.push_back(p);
    peak = std::max(peak, p);
  }
  Json j = Json::object();
  j.set("mode", mode);
  j.set("n", n);
  j.set("rank", rank);
  std::string where = dev.str();
  if (is_dp && n > 1) {
    const bool shared = dp_devices[1] == dp_devices[0];
    where = shared ? dp_devices[0].str() + " x" + std::to_string(n) : dp_devices[0].str() + ".." + dp_devices.back().str();
  }
  j.set("device", where);
  j.set("backend", backend);
  j.set("threads", budget);
  j.set("caller_threads", caller_threads);
  j.set("local_batch", local_batch);
  j.set("steps", cfg.steps);
  j.set("wall_ms", wall_ms);
  j.set("phases", phases);
  j.set("comm_ms", ph.comm * k);
  j.set("hidden_ms", ph.hidden * k);
  j.set("grad_bytes", grad_bytes);
  j.set("param_bytes", param_bytes);
  j.set("buffer_bytes", buffer_bytes);
  j.set("input_bytes_per_sample", int64_t{3} * cfg.image_size * cfg.image_size * 4);
  j.set("output_bytes_per_sample", cfg.num_classes * out_elem_bytes);
  j.set("peak_bytes", peak);
  j.set("peak_bytes_per_device", peak_list);
  j.set("buckets", buckets);
  j.set("loss", loss_value);
  write_json_atomic(prefix + "_rank" + std::to_string(rank) + ".json", j);

  if (ddp) {
    ddp.reset();
    pg->barrier()->wait();  // nobody tears the group down while another rank still writes
    pg.reset();
    dist::destroy_process_group();
  }
  return 0;
}

}  // namespace rg::app::bench
