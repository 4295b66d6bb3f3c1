// DataParallel: replicate (the Broadcast autograd node), scatter, parallel_apply on persistent
// worker threads, gather, and the per-phase timings. Note [DataParallel step] in data_parallel.h.
#include "distributed/data_parallel.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "autograd/autocast.h"
#include "autograd/engine.h"
#include "autograd/function.h"
#include "autograd/grad_mode.h"
#include "core/cuda_api.h"
#include "core/native.h"

namespace rg::dist {

namespace {

thread_local bool t_in_replica = false;

using autograd::Node;
using autograd::TensorList;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// The latest step's timings, shared with the autograd nodes that fill reduce_ms and backward_ms
// (they may outlive the DataParallel).
struct TimingState {
  std::mutex mu;
  DataParallelTimings t;
  bool sync = false;
  std::vector<int> cuda_devices;  // distinct CUDA ordinals to synchronise when sync

  void sync_now() const {
    if (!sync) return;
    for (int d : cuda_devices) cuda::synchronize(d);
  }
  void set_reduce(int64_t step, double ms) {
    std::lock_guard<std::mutex> g(mu);
    if (t.step == step) t.reduce_ms = ms;
  }
  void set_backward(int64_t step, double ms) {
    std::lock_guard<std::mutex> g(mu);
    if (t.step == step && t.backward_ms < 0) t.backward_ms = ms;
  }
};

// ---- coalescing (PyTorch's broadcast_coalesced / reduce_add_coalesced)
constexpr size_t kBucketBytes = size_t{10} << 20;

// Tensors of one dtype, in their list order, at most kBucketBytes together (a larger tensor
// makes a bucket of its own).
struct Bucket {
  DType dtype = DType::f32;
  std::vector<size_t> idx;
  size_t bytes = 0;
};

std::vector<Bucket> make_buckets(const std::vector<Tensor>& ts) {
  std::vector<Bucket> out;
  std::vector<DType> seen;
  for (const Tensor& t : ts) {
    if (std::find(seen.begin(), seen.end(), t.dtype()) == seen.end()) seen.push_back(t.dtype());
  }
  for (DType dt : seen) {
    Bucket cur;
    cur.dtype = dt;
    for (size_t i = 0; i < ts.size(); ++i) {
      if (ts[i].dtype() != dt) continue;
      if (!cur.idx.empty() && cur.bytes + ts[i].nbytes() > kBucketBytes) {
        out.push_back(std::move(cur));
        cur = Bucket();
        cur.dtype = dt;
      }
      cur.idx.push_back(i);
      cur.bytes += ts[i].nbytes();
    }
    if (!cur.idx.empty()) out.push_back(std::move(cur));
  }
  return out;
}

// The bucket's tensors flattened into one 1-D tensor on their device. With a single contiguous
// tensor this is a view of it (`fresh` false), else a new tensor.
Tensor flatten_bucket(const std::vector<Tensor>& ts, const Bucket& b, bool* fresh) {
  if (b.idx.size() == 1) {
    const Tensor& t = ts[b.idx[0]];
    *fresh = !t.is_contiguous();
    return native::reshape(t, Shape{t.numel()});
  }
  std::vector<Tensor> parts;
  parts.reserve(b.idx.size());
  for (size_t i : b.idx) parts.push_back(native::reshape(ts[i], Shape{ts[i].numel()}));
  *fresh = true;
  return native::cat(parts, 0);
}

// Views of `flat` shaped as the bucket's tensors; out[i] for each i of the bucket.
void unflatten_bucket(const Tensor& flat, const std::vector<Tensor>& like, const Bucket& b, std::vector<Tensor>* out) {
  int64_t off = 0;
  for (size_t i : b.idx) {
    const int64_t n = like[i].numel();
    (*out)[i] = native::view(native::narrow(flat, 0, off, n), like[i].sizes());
    off += n;
  }
}

// Copies of `ts` (all on one device) on `dst`: one copy per bucket.
std::vector<Tensor> copy_coalesced(const std::vector<Tensor>& ts, const std::vector<Bucket>& buckets,
                                   const std::vector<Tensor>& flats, Device dst) {
  std::vector<Tensor> out(ts.size());
  for (size_t k = 0; k < buckets.size(); ++k) {
    const Tensor copy = native::to(flats[k], dst, buckets[k].dtype, /*force_copy=*/true);
    unflatten_bucket(copy, ts, buckets[k], &out);
  }
  return out;
}

// ---- autograd nodes

// Broadcast of the master parameters to R replicas (forward inputs: K parameters on src;
// outputs: R * K tensors, replica-major). Backward: the replicas' gradients summed onto src,
// coalesced per bucket (ReduceAddCoalesced), timed as the step's reduce phase.
struct BroadcastBackward : Node {
  int replicas = 0;
  Device src;
  std::vector<Shape> shapes;
  std::vector<Bucket> buckets;
  std::shared_ptr<TimingState> timing;
  int64_t step = 0;
  std::string name() const override { return "Broadcast"; }

  TensorList apply(TensorList&& grads) override {
    timing->sync_now();
    const auto t0 = Clock::now();
    const size_t K = shapes.size();
    TensorList out(K);
    for (const Bucket& b : buckets) {
      Tensor acc;
      for (int r = 0; r < replicas; ++r) {
        std::vector<Tensor> gr(K);
        for (size_t i : b.idx) gr[i] = grads[static_cast<size_t>(r) * K + i];
        bool fresh = false;
        Tensor flat = flatten_bucket(gr, b, &fresh);
        if (!acc.defined()) {
          // The sum is built in place: start from a tensor nobody else holds.
          acc = (fresh && flat.device() == src) ? flat : native::to(flat, src, b.dtype, /*force_copy=*/true);
        } else {
          native::binary_(BinaryOp::Add, acc, native::to(flat, src, b.dtype));
        }
      }
      int64_t off = 0;
      for (size_t i : b.idx) {
        const int64_t n = shape_numel(shapes[i]);
        out[i] = native::view(native::narrow(acc, 0, off, n), shapes[i]);
        off += n;
      }
    }
    timing->sync_now();
    timing->set_reduce(step, ms_since(t0));
    return out;
  }
};

// Scatter of x along dim 0 (outputs: one chunk per replica, on its device). Backward: the
// chunks' gradients moved back to x's device and concatenated.
struct ScatterBackward : Node {
  Device src;
  DType dtype = DType::f32;
  std::string name() const override { return "Scatter"; }
  TensorList apply(TensorList&& grads) override {
    std::vector<Tensor> parts;
    parts.reserve(grads.size());
    for (const Tensor& g : grads) parts.push_back(native::to(g, src, dtype));
    return {native::cat(parts, 0)};
  }
};

// Gather of the replicas' outputs onto the output device (forward inputs: R outputs; output: their
// concatenation). Backward: split and moved back; its start opens the step's backward timing,
// closed by a final callback when the whole backward is done.
struct GatherBackward : Node {
  std::vector<int64_t> rows;     // rows each input contributed
  std::vector<Shape> in_shapes;  // original shapes (0-dim outputs were gathered as one row)
  std::vector<Device> in_devices;
  std::vector<DType> in_dtypes;
  std::shared_ptr<TimingState> timing;
  int64_t step = 0;
  std::string name() const override { return "Gather"; }

  TensorList apply(TensorList&& grads) override {
    timing->sync_now();
    const auto t0 = Clock::now();
    std::shared_ptr<TimingState> tm = timing;
    const int64_t s = step;
    autograd::queue_callback([tm, s, t0] {
      tm->sync_now();
      tm->set_backward(s, ms_since(t0));
    });
    const Tensor& g = grads[0];
    TensorList out(rows.size());
    int64_t off = 0;
    for (size_t r = 0; r < rows.size(); ++r) {
      Tensor part = native::narrow(g, 0, off, rows[r]);
      off += rows[r];
      part = native::to(part, in_devices[r], in_dtypes[r]);
      out[r] = part.sizes() == in_shapes[r] ? part : native::reshape(part, in_shapes[r]);
    }
    return out;
  }
};

// ---- a persistent worker thread: runs one task at a time for the caller.
class Worker {
 public:
  Worker() : thread_([this] { loop(); }) {}
  ~Worker() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void post(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> g(mu_);
      task_ = std::move(task);
      has_task_ = true;
      done_ = false;
      error_ = nullptr;
    }
    cv_.notify_all();
  }
  // Blocks until the posted task finished; returns its exception, if any.
  std::exception_ptr wait() {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return done_; });
    return error_;
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      cv_.wait(lk, [&] { return has_task_ || stop_; });
      if (!has_task_) return;  // stop with nothing pending
      std::function<void()> task = std::move(task_);
      has_task_ = false;
      lk.unlock();
      std::exception_ptr err;
      try {
        task();
      } catch (...) {
        err = std::current_exception();
      }
      task = nullptr;  // drop what the task captured on this thread
      lk.lock();
      error_ = err;
      done_ = true;
      cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void()> task_;
  bool has_task_ = false, done_ = true, stop_ = false;
  std::exception_ptr error_;
  std::thread thread_;  // last: starts after the members above exist
};

std::string what_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

// torch.chunk's sizes: ceil(n / k) each, the last smaller; fewer than k chunks when n is small.
std::vector<int64_t> chunk_sizes(int64_t n, int64_t k) {
  std::vector<int64_t> out;
  const int64_t per = (n + k - 1) / k;
  for (int64_t off = 0; off < n; off += per) out.push_back(std::min(per, n - off));
  return out;
}

// Where a replica tensor is bound: (index into master_modules, parameter or buffer name).
using Slots = std::vector<std::pair<size_t, std::string>>;

// One step's replicate phase: the master's tensors sorted by how they reach the replicas (slots[i]
// names tensors[i]), and the flattened buckets, which stay alive until the forward returns.
struct Replication {
  Slots bc_slots, plain_slots, buf_slots;
  std::vector<Tensor> bc_params;     // parameters that require grad: through the Broadcast node
  std::vector<Tensor> plain_params;  // parameters copied without history
  std::vector<Tensor> bufs;          // buffers, copied without history
  std::vector<Tensor> plain;         // plain_params then bufs
  std::vector<Bucket> plain_buckets, bc_buckets;
  std::vector<Tensor> plain_flats, bc_flats;  // (numel of bucket k,) each, on devices[0]
};

// The caller's thread-local state that a replica thread adopts (Note [DataParallel threads]).
struct CallerState {
  bool grad_on = true;
  bool autocast_on = false;
  DType autocast_dtype = DType::f16;
};

}  // namespace

bool in_data_parallel_replica() { return t_in_replica; }

// ---- DataParallel

struct DataParallel::Impl {
  std::vector<Device> devices;
  Device output_device;
  DataParallelOptions options;
  bool is_cuda = false;
  std::vector<std::unique_ptr<Worker>> workers;  // one per device
  std::vector<cuda::Stream> streams;             // CUDA: replica r's stream
  std::vector<cuda::Event> done_events;          // CUDA: replica r's forward is done
  std::vector<cuda::Event> in_events;            // CUDA: by ordinal, caller's streams after scatter
  std::shared_ptr<TimingState> timing = std::make_shared<TimingState>();

  // Replica module trees (cloned once); [r][i] mirrors master_modules[i] (named_modules order).
  std::vector<nn::Module*> master_modules;
  std::vector<std::vector<std::shared_ptr<nn::Module>>> replicas;

  // The four phases of forward (Note [DataParallel step]); forward times each of them.
  Replication replicate(nn::Module& master, size_t R, bool grad_on, int64_t step);
  std::vector<Tensor> scatter(const Tensor& x, const std::vector<int64_t>& rows);
  std::vector<int> record_inputs_ready(const Tensor& x);
  std::vector<Tensor> parallel_apply(const std::vector<Tensor>& chunks, const std::vector<int>& involved,
                                     const Replication& rep, bool grad_on);
  Tensor gather(const std::vector<Tensor>& outs, int64_t step);

  // Helpers of the phases.
  Replication collect_master(bool grad_on) const;
  std::shared_ptr<BroadcastBackward> record_broadcast(const Replication& rep, size_t R, int64_t step);
  void run_replica(size_t r, const Tensor& chunk, const std::vector<int>& involved, const CallerState& cs,
                   Tensor* out);
  void check_tree(nn::Module& master);
  void ensure_replica(nn::Module& master, size_t r);
  void bind(size_t r, const Slots& param_slots, const std::vector<Tensor>& params, const Slots& buffer_slots,
            const std::vector<Tensor>& buffers);
  void sync_training(size_t r);
  // Drops replica r's references to this step's copies (the autograd graph keeps what it needs),
  // so they die with the graph as PyTorch's per-step replicas do.
  void unbind(size_t r, const Slots& param_slots, const Slots& buffer_slots);
};

void DataParallel::Impl::unbind(size_t r, const Slots& param_slots, const Slots& buffer_slots) {
  for (const auto& [i, k] : param_slots) replicas[r][i]->set_parameter(k, Tensor());
  for (const auto& [i, k] : buffer_slots) replicas[r][i]->set_buffer(k, Tensor());
}

void DataParallel::Impl::check_tree(nn::Module& master) {
  const auto mods = master.named_modules();
  bool same = mods.size() == master_modules.size();
  for (size_t i = 0; same && i < mods.size(); ++i) same = mods[i].second.get() == master_modules[i];
  if (same) return;
  master_modules.clear();
  for (const auto& [k, m] : mods) master_modules.push_back(m.get());
  replicas.assign(devices.size(), {});
}

void DataParallel::Impl::ensure_replica(nn::Module& master, size_t r) {
  if (!replicas[r].empty()) return;
  std::shared_ptr<nn::Module> root = master.clone(devices[r]);
  for (const auto& [k, m] : root->named_modules()) replicas[r].push_back(m);
  RG_CHECK(replicas[r].size() == master_modules.size(), "DataParallel: the clone of the module has ",
           replicas[r].size(), " submodules, the module ", master_modules.size());
}

void DataParallel::Impl::sync_training(size_t r) {
  const bool root_flag = master_modules[0]->is_training();
  bool uniform = true;
  for (const nn::Module* m : master_modules) uniform = uniform && m->is_training() == root_flag;
  if (uniform) {
    replicas[r][0]->train(root_flag);  // the whole subtree (it may differ after a mixed step)
    return;
  }
  // Pre-order: a module's train() resets its subtree, later entries then set their own flag.
  for (size_t i = 0; i < master_modules.size(); ++i) replicas[r][i]->train(master_modules[i]->is_training());
}

void DataParallel::Impl::bind(size_t r, const Slots& param_slots, const std::vector<Tensor>& params,
                              const Slots& buffer_slots, const std::vector<Tensor>& buffers) {
  for (size_t i = 0; i < param_slots.size(); ++i) {
    replicas[r][param_slots[i].first]->set_parameter(param_slots[i].second, params[i]);
  }
  for (size_t i = 0; i < buffer_slots.size(); ++i) {
    replicas[r][buffer_slots[i].first]->set_buffer(buffer_slots[i].second, buffers[i]);
  }
  sync_training(r);
}

DataParallel::DataParallel(std::shared_ptr<nn::Module> module, std::vector<Device> devices,
                           std::optional<Device> output_device, DataParallelOptions options)
    : nn::Module("DataParallel"), impl_(std::make_unique<Impl>()) {
  RG_CHECK(module != nullptr, "DataParallel: module is null");
  RG_CHECK(!devices.empty(), "DataParallel: at least one device is needed");
  for (const Device& d : devices) {
    RG_CHECK(d.type == devices[0].type, "DataParallel: devices must all be CPU or all CUDA, got ", devices[0].str(),
             " and ", d.str());
    if (d.is_cuda()) {
      RG_CHECK(d.index >= 0 && d.index < cuda::device_count(), "DataParallel: device ", d.str(),
               " is not available (", cuda::device_count(), " CUDA device(s) visible",
               cuda::built_with_cuda() ? "" : "; ringgrad was built without CUDA", ")");
    }
  }
  register_module("module", std::move(module));
  Impl& s = *impl_;
  s.devices = std::move(devices);
  s.output_device = output_device.value_or(s.devices[0]);
  s.options = options;
  s.is_cuda = s.devices[0].is_cuda();
  s.timing->sync = options.sync_timing && s.is_cuda;
  if (s.is_cuda) {
    auto add = [&](int d) {
      if (std::find(s.timing->cuda_devices.begin(), s.timing->cuda_devices.end(), d) == s.timing->cuda_devices.end()) {
        s.timing->cuda_devices.push_back(d);
      }
    };
    for (const Device& d : s.devices) add(d.index);
    if (s.output_device.is_cuda()) add(s.output_device.index);
    for (const Device& d : s.devices) s.streams.push_back(cuda::new_stream(d.index));
    s.done_events.resize(s.devices.size());
    s.in_events.resize(static_cast<size_t>(cuda::device_count()));
  }
  if (s.devices.size() > 1) {
    for (size_t r = 0; r < s.devices.size(); ++r) s.workers.push_back(std::make_unique<Worker>());
  }
}

DataParallel::~DataParallel() = default;

const std::vector<Device>& DataParallel::devices() const { return impl_->devices; }
Device DataParallel::output_device() const { return impl_->output_device; }
const DataParallelOptions& DataParallel::options() const { return impl_->options; }

DataParallelTimings DataParallel::timings() const {
  std::lock_guard<std::mutex> g(impl_->timing->mu);
  return impl_->timing->t;
}

void DataParallel::report_backward_ms(double ms) {
  std::lock_guard<std::mutex> g(impl_->timing->mu);
  impl_->timing->t.backward_ms = ms;
}

std::shared_ptr<nn::Module> DataParallel::shallow_copy() const {
  RG_THROW("DataParallel cannot be cloned; clone its module() and wrap the copy in a new DataParallel");
}

// ---- the phases of forward (torch.nn.parallel: replicate, scatter, parallel_apply, gather)

// The master's parameters and buffers (master_modules order), sorted into the Broadcast ones
// (grad mode on and requires_grad), the other parameters and the buffers.
Replication DataParallel::Impl::collect_master(bool grad_on) const {
  Replication rep;
  for (size_t i = 0; i < master_modules.size(); ++i) {
    nn::Module* m = master_modules[i];
    for (const auto& [k, t] : m->named_parameters(false)) {
      if (grad_on && t.requires_grad()) {
        rep.bc_slots.emplace_back(i, k);
        rep.bc_params.push_back(t);
      } else {
        rep.plain_slots.emplace_back(i, k);
        rep.plain_params.push_back(t);
      }
    }
    for (const auto& [k, t] : m->named_buffers(false)) {
      rep.buf_slots.emplace_back(i, k);
      rep.bufs.push_back(t);
    }
  }
  return rep;
}

// The Broadcast node of rep.bc_params to R replicas (null when none requires grad); recording it
// makes the master parameters' accumulators here, on the caller's thread (Note [DataParallel threads]).
std::shared_ptr<BroadcastBackward> DataParallel::Impl::record_broadcast(const Replication& rep, size_t R,
                                                                        int64_t step) {
  if (rep.bc_params.empty()) return nullptr;
  std::shared_ptr<BroadcastBackward> bnode = autograd::record_list<BroadcastBackward>(rep.bc_params);
  RG_CHECK(bnode, "DataParallel: internal error: no Broadcast node for parameters that require grad");
  bnode->replicas = static_cast<int>(R);
  bnode->src = devices[0];
  for (const Tensor& p : rep.bc_params) bnode->shapes.push_back(p.sizes());
  bnode->buckets = rep.bc_buckets;
  bnode->timing = timing;
  bnode->step = step;
  return bnode;
}

// Replicate phase: binds this step's parameter and buffer copies into replicas 0..R-1, the
// parameters that require grad through one Broadcast node (Note [DataParallel step], 1).
Replication DataParallel::Impl::replicate(nn::Module& master, size_t R, bool grad_on, int64_t step) {
  check_tree(master);
  Replication rep = collect_master(grad_on);
  for (size_t r = 0; r < R; ++r) ensure_replica(master, r);
  // Tensors without history: buffers and parameters that need no gradient.
  rep.plain = rep.plain_params;
  rep.plain.insert(rep.plain.end(), rep.bufs.begin(), rep.bufs.end());
  rep.plain_buckets = make_buckets(rep.plain);
  rep.bc_buckets = make_buckets(rep.bc_params);
  {
    NoGradGuard ng;
    for (const Bucket& b : rep.plain_buckets) {
      bool fresh = false;
      rep.plain_flats.push_back(flatten_bucket(rep.plain, b, &fresh));
    }
    for (const Bucket& b : rep.bc_buckets) {
      bool fresh = false;
      rep.bc_flats.push_back(flatten_bucket(rep.bc_params, b, &fresh));
    }
  }
  const std::shared_ptr<BroadcastBackward> bnode = record_broadcast(rep, R, step);
  const auto n_plain_params = static_cast<std::ptrdiff_t>(rep.plain_params.size());
  for (size_t r = 0; r < R; ++r) {
    std::vector<Tensor> rp, rplain;
    if (r == 0) {
      for (const Tensor& p : rep.bc_params) rp.push_back(native::alias(p));
      rplain = rep.plain;  // replica 0 shares the master's buffers and frozen parameters
    } else {
      NoGradGuard ng;
      rp = copy_coalesced(rep.bc_params, rep.bc_buckets, rep.bc_flats, devices[r]);
      rplain = copy_coalesced(rep.plain, rep.plain_buckets, rep.plain_flats, devices[r]);
    }
    if (bnode) {
      for (const Tensor& t : rp) autograd::set_history(t, bnode);  // output r * K + j
    }
    std::vector<Tensor> params = rp;
    Slots pslots = rep.bc_slots;
    params.insert(params.end(), rplain.begin(), rplain.begin() + n_plain_params);
    pslots.insert(pslots.end(), rep.plain_slots.begin(), rep.plain_slots.end());
    const std::vector<Tensor> rbufs(rplain.begin() + n_plain_params, rplain.end());
    bind(r, pslots, params, rep.buf_slots, rbufs);
  }
  return rep;
}

// Scatter phase: x (N, ...) cut along dim 0 into chunks of rows[r] rows, chunk r moved to
// devices[r]; differentiable through a Scatter node. Returns R chunks, (rows[r], ...) each.
std::vector<Tensor> DataParallel::Impl::scatter(const Tensor& x, const std::vector<int64_t>& rows) {
  const size_t R = rows.size();
  std::vector<Tensor> chunks(R);
  {
    NoGradGuard ng;
    int64_t off = 0;
    for (size_t r = 0; r < R; ++r) {
      chunks[r] = native::to(native::narrow(x, 0, off, rows[r]), devices[r], x.dtype());
      off += rows[r];
    }
  }
  if (auto n = autograd::record<ScatterBackward>({&x})) {
    n->src = x.device();
    n->dtype = x.dtype();
    for (const Tensor& c : chunks) autograd::set_history(c, n);
  }
  return chunks;
}

// End of scatter: returns every device involved (the CUDA devices in use and x's; none on CPU)
// and records in_events[d] on the caller's current stream of each, for the replica streams to
// wait on (Note [DataParallel streams]).
std::vector<int> DataParallel::Impl::record_inputs_ready(const Tensor& x) {  // x: (N, ...)
  std::vector<int> involved = timing->cuda_devices;
  if (is_cuda) {
    if (x.is_cuda() && std::find(involved.begin(), involved.end(), x.device().index) == involved.end()) {
      involved.push_back(x.device().index);
    }
    for (int d : involved) in_events[static_cast<size_t>(d)].record(cuda::current_stream(d));
  }
  return involved;
}

// Replica r's forward on chunk (rows[r], ...), run on worker thread r with the caller's grad
// mode and autocast state; on CUDA on devices[r] and streams[r], after the inputs are ready and
// recording done_events[r] afterwards, also when the forward throws.
void DataParallel::Impl::run_replica(size_t r, const Tensor& chunk, const std::vector<int>& involved,
                                     const CallerState& cs, Tensor* out) {
  GradMode::set_enabled(cs.grad_on);
  std::optional<amp::AutocastGuard> ac;
  if (cs.autocast_on) ac.emplace(cs.autocast_dtype, true);
  std::optional<cuda::DeviceGuard> dg;
  std::optional<cuda::StreamGuard> sg;
  if (is_cuda) {
    dg.emplace(devices[r].index);
    sg.emplace(streams[r]);
    for (int d : involved) in_events[static_cast<size_t>(d)].block(streams[r]);
  }
  t_in_replica = true;
  try {
    *out = replicas[r][0]->forward(chunk);
  } catch (...) {
    t_in_replica = false;
    if (is_cuda) done_events[r].record(streams[r]);
    throw;
  }
  t_in_replica = false;
  if (is_cuda) done_events[r].record(streams[r]);
}

// Parallel-apply phase: every replica's forward on its worker thread, then the caller's streams
// wait for them, the step's copies are unbound and a replica's exception is rethrown naming it.
// chunks: R x (rows[r], ...); returns R outputs, (rows[r], ...) or 0-dim each.
std::vector<Tensor> DataParallel::Impl::parallel_apply(const std::vector<Tensor>& chunks,
                                                       const std::vector<int>& involved, const Replication& rep,
                                                       bool grad_on) {
  const size_t R = chunks.size();
  std::vector<Tensor> outs(R);
  const CallerState cs{grad_on, amp::is_autocast_enabled(), amp::autocast_dtype()};
  for (size_t r = 0; r < R; ++r) {
    workers[r]->post([this, r, &chunks, &involved, &cs, &outs] { run_replica(r, chunks[r], involved, cs, &outs[r]); });
  }
  std::vector<std::exception_ptr> errors(R);
  for (size_t r = 0; r < R; ++r) errors[r] = workers[r]->wait();
  // The caller's streams wait for the replicas BEFORE unbind may free the copies the replica
  // streams still read or write (buffer copies die there): a freed block returns to the caller's
  // stream, whose later work must be ordered after the replicas' (Note [DataParallel streams]).
  if (is_cuda) {
    for (size_t r = 0; r < R; ++r) {
      for (int d : involved) done_events[r].block(cuda::current_stream(d));
    }
  }
  for (size_t r = 0; r < R; ++r) {
    unbind(r, rep.bc_slots, rep.buf_slots);
    unbind(r, rep.plain_slots, {});
  }
  for (size_t r = 0; r < R; ++r) {
    if (errors[r]) {
      RG_THROW("DataParallel: caught an exception in replica ", r, " on device ", devices[r].str(), ": ",
               what_of(errors[r]));
    }
  }
  for (size_t r = 0; r < R; ++r) {
    RG_CHECK(outs[r].defined(), "DataParallel: replica ", r, " on device ", devices[r].str(),
             " returned an undefined tensor");
  }
  return outs;
}

// Gather phase: outs, R x (rows[r], ...) (or R x 0-dim), moved to output_device and concatenated
// along dim 0 into (N, ...) (or (R,)); differentiable through a Gather node that times the backward.
Tensor DataParallel::Impl::gather(const std::vector<Tensor>& outs, int64_t step) {
  const size_t R = outs.size();
  Tensor result;
  {
    NoGradGuard ng;
    std::vector<Tensor> parts;
    parts.reserve(R);
    for (size_t r = 0; r < R; ++r) {
      RG_CHECK(outs[r].dtype() == outs[0].dtype(), "DataParallel: replica outputs have different dtypes: ",
               dtype_name(outs[0].dtype()), " (replica 0) and ", dtype_name(outs[r].dtype()), " (replica ", r, ")");
      Tensor o = outs[r].dim() == 0 ? native::reshape(outs[r], Shape{1}) : outs[r];
      parts.push_back(native::to(o, output_device, o.dtype()));
    }
    result = native::cat(parts, 0);
  }
  if (auto n = autograd::record_list<GatherBackward>(outs)) {
    for (const Tensor& o : outs) {
      n->rows.push_back(o.dim() == 0 ? 1 : o.size(0));
      n->in_shapes.push_back(o.sizes());
      n->in_devices.push_back(o.device());
      n->in_dtypes.push_back(o.dtype());
    }
    n->timing = timing;
    n->step = step;
    autograd::set_history(result, n);
  }
  return result;
}

// The step: the four phases, each timed (device-synchronised at its ends with sync_timing).
Tensor DataParallel::forward(const Tensor& x) {  // x: (N, ...)
  Impl& s = *impl_;
  const std::shared_ptr<nn::Module> master = module();
  RG_CHECK(x.defined(), "DataParallel: undefined input");
  const Device src = s.devices[0];
  for (const auto& named : {master->named_parameters(), master->named_buffers()}) {
    for (const auto& [k, t] : named) {
      RG_CHECK(t.device() == src, "DataParallel: module must have its parameters and buffers on device ", src.str(),
               " (devices[0]) but found one of them on device: ", t.device().str(), " (", k, ")");
    }
  }
  if (s.devices.size() == 1) {  // PyTorch: the module itself, on the input moved to devices[0]
    return master->forward(x.to(src));
  }
  RG_CHECK(x.dim() >= 1 && x.size(0) >= 1, "DataParallel: the input must have a batch dimension of at least one "
           "row to scatter, got ", shape_str(x.sizes()));

  DataParallelTimings tm;
  {
    std::lock_guard<std::mutex> g(s.timing->mu);
    tm.step = s.timing->t.step + 1;
  }
  const std::vector<int64_t> rows = chunk_sizes(x.size(0), static_cast<int64_t>(s.devices.size()));
  const size_t R = rows.size();
  tm.replicas = static_cast<int>(R);
  const bool grad_on = GradMode::is_enabled();
  s.timing->sync_now();

  // ---- 1. replicate
  auto t0 = Clock::now();
  const Replication rep = s.replicate(*master, R, grad_on, tm.step);
  s.timing->sync_now();
  tm.replicate_ms = ms_since(t0);

  // ---- 2. scatter
  t0 = Clock::now();
  const std::vector<Tensor> chunks = s.scatter(x, rows);  // R x (rows[r], ...)
  const std::vector<int> involved = s.record_inputs_ready(x);
  s.timing->sync_now();
  tm.scatter_ms = ms_since(t0);

  // ---- 3. parallel_apply
  t0 = Clock::now();
  const std::vector<Tensor> outs = s.parallel_apply(chunks, involved, rep, grad_on);
  s.timing->sync_now();
  tm.forward_ms = ms_since(t0);

  // ---- 4. gather
  t0 = Clock::now();
  Tensor result = s.gather(outs, tm.step);  // (N, ...), or (R,) for 0-dim outputs
  s.timing->sync_now();
  tm.gather_ms = ms_since(t0);
  {
    std::lock_guard<std::mutex> g(s.timing->mu);
    s.timing->t = tm;
  }
  return result;
}

}  // namespace rg::dist
