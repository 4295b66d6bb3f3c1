// DDP's reducer (Note [DDP reducer]): bucket assignment, the AccumulateGrad hooks, in-order
// launches of the bucket allreduces, the end-of-backward callback, the static_graph rebuild and
// the per-iteration timings (Note [DDP stats]).
#include "distributed/reducer.h"

#include <algorithm>
#include <sstream>
#include <tuple>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/native.h"
#include "distributed/ddp.h"

namespace rg::dist::detail {

namespace {

int64_t mib_to_bytes(double mb) { return static_cast<int64_t>(mb * 1024.0 * 1024.0); }

// Slices start at 16-byte boundaries of the bucket (for vectorised kernels on .grad views).
int64_t align_elems(DType t) { return std::max<int64_t>(1, 16 / static_cast<int64_t>(dtype_size(t))); }

bool same_node(const std::weak_ptr<autograd::Node>& w, const std::shared_ptr<autograd::AccumulateGrad>& s) {
  // Ownership comparison: no reference-count traffic, and an expired or reset pointer differs.
  const std::weak_ptr<autograd::Node> sw = std::static_pointer_cast<autograd::Node>(s);
  return !w.owner_before(sw) && !sw.owner_before(w) && !w.expired();
}

}  // namespace

Reducer::Reducer(std::vector<Param> params, std::shared_ptr<ProcessGroup> pg, const DDPOptions& o, int instance)
    : pg_(std::move(pg)), instance_(instance), bucket_cap_bytes_(mib_to_bytes(o.bucket_cap_mb)),
      first_cap_bytes_(mib_to_bytes(o.first_bucket_cap_mb)), find_unused_(o.find_unused_parameters),
      static_graph_(o.static_graph), as_view_(o.gradient_as_bucket_view), overlap_(o.overlap) {
  slots_.reserve(params.size());
  for (auto& p : params) {
    Slot s;
    s.name = std::move(p.name);
    s.tensor = std::move(p.tensor);
    slots_.push_back(std::move(s));
  }
  for (const Slot& s : slots_) {
    if (s.tensor.is_cuda()) {
      cuda_ = true;
      cuda_device_ = s.tensor.device().index;
      break;
    }
  }
  if (o.comm_dtype) {
    has_comm_dtype_ = true;
    comm_dtype_ = *o.comm_dtype;
  }
  std::vector<size_t> order(slots_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = order.size() - 1 - i;  // reverse registration
  build_buckets(order);
  ready_.assign(slots_.size(), 0);
  arrival_.reserve(slots_.size());
}

Reducer::~Reducer() = default;

void Reducer::build_buckets(const std::vector<size_t>& order) {
  NoGradGuard ng;
  // Open buckets per (dtype, device type, device index); `closed` counts the key's full buckets.
  struct Open {
    std::tuple<int, int, int> key;
    std::vector<size_t> members;
    int64_t bytes = 0;
    int closed = 0;
  };
  std::vector<Open> open;
  std::vector<std::vector<size_t>> groups;
  auto close = [&](Open& b) {
    groups.push_back(std::move(b.members));
    b.members.clear();
    b.bytes = 0;
    ++b.closed;
  };
  for (size_t i : order) {
    const Tensor& t = slots_[i].tensor;
    const auto key = std::make_tuple(static_cast<int>(t.dtype()), static_cast<int>(t.device().type),
                                     static_cast<int>(t.device().index));
    auto it = std::find_if(open.begin(), open.end(), [&](const Open& b) { return b.key == key; });
    if (it == open.end()) {
      open.push_back(Open{key, {}, 0, 0});
      it = open.end() - 1;
    }
    it->members.push_back(i);
    it->bytes += static_cast<int64_t>(t.nbytes());
    const int64_t cap = it->closed == 0 ? first_cap_bytes_ : bucket_cap_bytes_;
    if (it->bytes >= cap) close(*it);
  }
  for (Open& b : open) {
    if (!b.members.empty()) close(b);
  }
  std::vector<size_t> pos(slots_.size(), 0);
  for (size_t j = 0; j < order.size(); ++j) pos[order[j]] = j;
  std::stable_sort(groups.begin(), groups.end(),
                   [&](const std::vector<size_t>& a, const std::vector<size_t>& b) { return pos[a[0]] < pos[b[0]]; });

  buckets_.clear();
  buckets_.resize(groups.size());
  for (size_t k = 0; k < groups.size(); ++k) {
    Bucket& b = buckets_[k];
    b.members = std::move(groups[k]);
    const Tensor& first = slots_[b.members[0]].tensor;
    b.dtype = first.dtype();
    b.device = first.device();
    const int64_t align = align_elems(b.dtype);
    int64_t n = 0;
    for (size_t i : b.members) {
      slots_[i].bucket = k;
      slots_[i].offset = n;
      n += (slots_[i].tensor.numel() + align - 1) / align * align;
    }
    b.flat = zeros({n}, TensorOptions(b.dtype).device(b.device));
    if (has_comm_dtype_ && comm_dtype_ != b.dtype) b.comm = zeros({n}, TensorOptions(comm_dtype_).device(b.device));
    b.comm_bytes = static_cast<int64_t>((b.comm.defined() ? b.comm : b.flat).nbytes());
    for (size_t i : b.members) {
      Slot& s = slots_[i];
      s.view = native::view(native::narrow(b.flat, 0, s.offset, s.tensor.numel()), s.tensor.sizes());
    }
    b.pending = b.members.size();
  }
}

void Reducer::attach() {
  NoGradGuard ng;
  const std::weak_ptr<Reducer> self = weak_from_this();
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    s.acc = autograd::grad_accumulator(s.tensor);
    s.acc->post_hooks.emplace_back([self, i](const Tensor&) {
      if (auto r = self.lock()) r->mark_ready(i);
    });
    // A gradient that exists already moves into the bucket.
    const Tensor g = s.tensor.grad();
    if (as_view_ && g.defined()) {
      native::copy_(s.view, g);
      s.tensor.set_grad(s.view);
    }
  }
}

void Reducer::prepare_forward(bool sync) {
  if (active_) {
    // The previous backward threw before its end-of-backward callback ran: settle what it
    // launched so the group is not left with collectives nobody waits for.
    wait_launched_quietly();
    active_ = false;
  }
  sync_ = sync;
  start_set_ = false;
  for (const Slot& s : slots_) {
    RG_CHECK(same_node(s.tensor.impl()->grad_accumulator, s.acc), "DDP: parameter '", s.name,
             "' was moved or converted after DDP wrapped the module (Module::to remakes its AccumulateGrad node, "
             "which DDP's hooks hang on); move the model to its device and dtype before wrapping it");
  }
}

void Reducer::mark_backward_start() {
  if (!sync_ || start_set_ || active_) return;
  stamp(start_);
  start_set_ = true;
}

void Reducer::stamp(Stamp& s) {
  s.host = std::chrono::steady_clock::now();
  if (cuda_) s.event.record(cuda::current_stream(cuda_device_));
}

double Reducer::ms(const Stamp& s) const {
  if (cuda_) return static_cast<double>(start_.event.elapsed_ms(s.event));
  return std::chrono::duration<double, std::milli>(s.host - start_.host).count();
}

// ---- backward

void Reducer::mark_ready(size_t i) {
  if (!sync_) return;  // no_sync: .grad accumulates locally
  if (!active_) begin_iteration();
  if (ready_[i]) return;
  ready_[i] = 1;
  arrival_.push_back(i);
  Slot& s = slots_[i];
  const Tensor g = s.tensor.grad();
  if (!g.defined()) {
    native::fill_(s.view, 0.0);
  } else if (!g.is_same(s.view)) {
    native::copy_(s.view, g);
    if (as_view_) s.tensor.set_grad(s.view);
  }
  Bucket& b = buckets_[s.bucket];
  if (--b.pending == 0) {
    stamp(b.ready);
    if (overlap_) launch_ready();
  }
}

void Reducer::begin_iteration() {
  active_ = true;
  std::fill(ready_.begin(), ready_.end(), 0);
  arrival_.clear();
  next_launch_ = 0;
  for (Bucket& b : buckets_) {
    b.pending = b.members.size();
    b.work.reset();
  }
  used_work_.reset();
  stats_buckets_.clear();
  if (!start_set_) {
    stamp(start_);
    start_set_ = true;
  }
  const std::weak_ptr<Reducer> self = weak_from_this();
  autograd::queue_callback([self] {
    if (auto r = self.lock()) r->finalize();
  });
}

void Reducer::launch(size_t k) {
  Bucket& b = buckets_[k];
  Tensor t = b.flat;
  if (b.comm.defined()) {
    native::copy_(b.comm, b.flat);  // compress
    t = b.comm;
  }
  stamp(b.launch);
  b.work = pg_->allreduce(t, ReduceOp::Avg);
}

void Reducer::launch_ready() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) launch(next_launch_++);
}

void Reducer::wait_launched_quietly() {
  for (Bucket& b : buckets_) {
    if (!b.work) continue;
    try {
      b.work->wait();
    } catch (const std::exception&) {
      // the error being raised matters more
    }
  }
}

void Reducer::finalize_unused(const std::vector<size_t>& unused) {
  for (size_t i : unused) {
    Slot& s = slots_[i];
    const Tensor g = s.tensor.grad();
    if (!g.defined()) {
      native::fill_(s.view, 0.0);
    } else if (g.is_same(s.view)) {
      // Its value is the contribution and stays its .grad, but the slice is about to be reduced.
      s.tensor.set_grad(native::clone(s.view));
    } else {
      native::copy_(s.view, g);
    }
    Bucket& b = buckets_[s.bucket];
    if (--b.pending == 0) stamp(b.ready);
  }
}

void Reducer::finalize() {
  struct Reset {
    Reducer* r;
    ~Reset() {
      r->active_ = false;
      r->start_set_ = false;
    }
  } reset{this};
  NoGradGuard ng;
  stamp(end_);

  std::vector<size_t> unused;
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (!ready_[i]) unused.push_back(i);
  }
  if (!unused.empty()) {
    if (!find_unused_) {
      wait_launched_quietly();
      std::ostringstream names;
      for (size_t j = 0; j < unused.size(); ++j) names << (j ? ", " : "") << slots_[unused[j]].name;
      RG_THROW("DDP: these parameters received no gradient in this iteration: ", names.str(),
               ". Use find_unused_parameters=true if this is intended, or make sure all forward outputs "
               "participate in the loss. (rank ", pg_->rank(), ")");
    }
    finalize_unused(unused);
  }
  launch_ready();
  RG_CHECK(next_launch_ == buckets_.size(), "DDP: internal error: ", buckets_.size() - next_launch_,
           " bucket(s) not ready at the end of backward");
  if (find_unused_) {
    std::vector<int32_t> used(ready_.begin(), ready_.end());
    const Device dev = buckets_.empty() ? kCPU : buckets_[0].device;
    used_map_ = native::to(from_vector<int32_t>(used), dev, DType::i32);
    used_work_ = pg_->allreduce(used_map_, ReduceOp::Max);
  }
  for (Bucket& b : buckets_) {
    b.work->wait();
    b.waited = std::chrono::steady_clock::now();
  }
  if (used_work_) used_work_->wait();
  for (Bucket& b : buckets_) {
    if (b.comm.defined()) native::copy_(b.flat, b.comm);  // decompress
  }
  std::vector<int32_t> global_used;
  if (!unused.empty()) global_used = native::to(used_map_, kCPU, DType::i32).to_vector<int32_t>();

  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    const Tensor g = s.tensor.grad();
    if (ready_[i]) {
      if (g.defined() && !g.is_same(s.view)) native::copy_(g, s.view);
    } else if (global_used[i]) {
      if (as_view_) s.tensor.set_grad(s.view);
      else if (g.defined()) native::copy_(g, s.view);
      else s.tensor.set_grad(native::clone(s.view));
    }
    // unused on every rank: .grad untouched
  }
  stamp(done_);
  ++iterations_;
  if (static_graph_ && !rebuilt_) {
    rebuilt_ = true;
    rebuild_from_arrival();
  }
}

// ---- static_graph: buckets in the order gradients arrived on rank 0

void Reducer::rebuild_from_arrival() {
  const size_t n = slots_.size();
  const std::string key = "rg_ddp/" + std::to_string(instance_) + "/arrival_order";
  std::vector<size_t> order;
  if (pg_->rank() == 0) {
    std::vector<uint8_t> seen(n, 0);
    order = arrival_;
    for (size_t i : order) seen[i] = 1;
    for (size_t i = n; i-- > 0;) {
      if (!seen[i]) order.push_back(i);  // never arrived: reverse registration order, at the end
    }
    std::string text;
    for (size_t j = 0; j < order.size(); ++j) {
      if (j) text += ',';
      text += std::to_string(order[j]);
    }
    if (pg_->size() > 1) pg_->store()->set(key, text);
  } else {
    const std::string text = pg_->store()->get_string(key);
    std::stringstream ss(text);
    std::string item;
    std::vector<uint8_t> seen(n, 0);
    while (std::getline(ss, item, ',')) {
      const size_t i = static_cast<size_t>(std::stoull(item));
      RG_CHECK(i < n && !seen[i], "DDP: rank 0's gradient arrival order names parameter ", i,
               " out of range or twice (this rank has ", n, " parameters)");
      seen[i] = 1;
      order.push_back(i);
    }
    RG_CHECK(order.size() == n, "DDP: rank 0's gradient arrival order has ", order.size(), " parameters, this rank ",
             n);
  }
  NoGradGuard ng;
  std::vector<Tensor> old_views(n);
  for (size_t i = 0; i < n; ++i) old_views[i] = slots_[i].view;
  std::vector<Bucket> old = std::move(buckets_);
  build_buckets(order);
  for (size_t i = 0; i < n; ++i) {
    Slot& s = slots_[i];
    const Tensor g = s.tensor.grad();
    if (!g.defined()) continue;
    const bool was_view = g.is_same(old_views[i]);
    if (was_view || as_view_) {
      native::copy_(s.view, g);
      s.tensor.set_grad(s.view);
    }
  }
  for (Bucket& b : old) {
    b.flat = Tensor();
    b.comm = Tensor();
  }
  stats_buckets_ = std::move(old);
}

// ---- introspection

std::vector<std::vector<std::string>> Reducer::bucket_parameter_names() const {
  std::vector<std::vector<std::string>> out;
  for (const Bucket& b : buckets_) {
    std::vector<std::string> names;
    for (size_t i : b.members) names.push_back(slots_[i].name);
    out.push_back(std::move(names));
  }
  return out;
}

// Note [DDP stats]
// Times are in ms from the start of backward (the first gradient reaching DDP's forward output,
// else the first parameter hook). On CPU they are host timestamps, and a bucket's allreduce
// finishes at launch + Work::duration_ms (the backend's queue-to-completion time; the host time
// its wait returned when the backend does not say). On CUDA every moment is an event recorded on
// the compute stream, and since the communication stream runs collectives one after another, a
// bucket finishes at max(its launch, the previous bucket's finish) + Work::duration_ms (the
// collective's own GPU time; done_ms when unknown). comm_ms is the union of the [launch, finish]
// intervals, and hidden_ms its part before backward_end_ms: the communication overlapped with
// gradient computation. With overlap = false every launch follows backward_end_ms, so nothing
// is hidden.
DDPStats Reducer::stats() const {
  DDPStats st;
  st.iteration = iterations_;
  st.overlap = overlap_;
  if (iterations_ == 0) return st;
  if (cuda_) done_.event.synchronize();
  st.backward_end_ms = ms(end_);
  st.done_ms = ms(done_);
  double prev_finish = 0;
  std::vector<std::pair<double, double>> spans;
  for (const Bucket& b : stats_buckets_.empty() ? buckets_ : stats_buckets_) {
    DDPBucketStats bs;
    bs.bytes = b.comm_bytes;
    bs.num_params = static_cast<int>(b.members.size());
    bs.ready_ms = ms(b.ready);
    bs.launch_ms = ms(b.launch);
    const double dur = b.work ? b.work->duration_ms() : -1.0;
    if (dur >= 0) {
      bs.finish_ms = cuda_ ? std::max(bs.launch_ms, prev_finish) + dur : bs.launch_ms + dur;
    } else {
      bs.finish_ms = cuda_ ? st.done_ms : std::chrono::duration<double, std::milli>(b.waited - start_.host).count();
    }
    bs.finish_ms = std::max(bs.finish_ms, bs.launch_ms);
    prev_finish = bs.finish_ms;
    spans.emplace_back(bs.launch_ms, bs.finish_ms);
    st.buckets.push_back(bs);
  }
  std::sort(spans.begin(), spans.end());
  double cur_lo = 0, cur_hi = -1;
  auto flush = [&] {
    if (cur_hi < cur_lo) return;
    st.comm_ms += cur_hi - cur_lo;
    st.hidden_ms += std::max(0.0, std::min(cur_hi, st.backward_end_ms) - cur_lo);
  };
  for (const auto& [lo, hi] : spans) {
    if (cur_hi >= cur_lo && lo <= cur_hi) {
      cur_hi = std::max(cur_hi, hi);
    } else {
      flush();
      cur_lo = lo;
      cur_hi = hi;
    }
  }
  flush();
  st.hidden_fraction = st.comm_ms > 0 ? st.hidden_ms / st.comm_ms : 0.0;
  return st;
}

}  // namespace rg::dist::detail
