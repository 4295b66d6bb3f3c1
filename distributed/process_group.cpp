// The ProcessGroup base: argument checks, sequence numbers, the hang watchdog's bookkeeping,
// RINGGRAD_DIST_DEBUG's cross-rank signature check and the timeout error that names the ranks
// that never arrived (Note [Collective sequence numbers]); CompletionWork; the backend registry.
#include "distributed/process_group.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>

#include "distributed/watchdog.h"

namespace rg::dist {

// ---- CompletionWork

bool CompletionWork::is_completed() {
  std::lock_guard<std::mutex> g(mu_);
  return done_;
}

void CompletionWork::wait() {
  std::unique_lock<std::mutex> g(mu_);
  if (!done_) {
    detail::WaitScope blocked;  // the hang report shows this thread's stack
    cv_.wait(g, [&] { return done_; });
  }
  if (error_) std::rethrow_exception(error_);
}

double CompletionWork::duration_ms() const {
  std::lock_guard<std::mutex> g(mu_);
  if (!done_) return -1.0;
  return std::chrono::duration<double, std::milli>(finished_ - queued_).count();
}

void CompletionWork::finish(std::exception_ptr error) {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (done_) return;
    done_ = true;
    error_ = std::move(error);
    finished_ = std::chrono::steady_clock::now();
  }
  cv_.notify_all();
}

// ---- ProcessGroup

namespace {

bool supported_dtype(DType t) {
  return t == DType::f32 || t == DType::f16 || t == DType::bf16 || t == DType::f64 || t == DType::i32 ||
         t == DType::i64;
}

const char* device_type_name(DeviceType t) { return t == DeviceType::CPU ? "cpu" : "cuda"; }

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::strcmp(v, "0") != 0;
}

bool env_off(const char* name) {
  const char* v = std::getenv(name);
  return v && (std::strcmp(v, "0") == 0 || std::strcmp(v, "off") == 0 || std::strcmp(v, "false") == 0);
}

std::string join_ranks(const std::vector<int>& ranks) {
  std::string s;
  for (size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
  return s;
}

}  // namespace

ProcessGroup::ProcessGroup(std::shared_ptr<Store> store, int rank, int size)
    : store_(std::move(store)), rank_(rank), size_(size) {
  RG_CHECK(size >= 1, "ProcessGroup: world size must be >= 1, got ", size);
  RG_CHECK(rank >= 0 && rank < size, "ProcessGroup: rank ", rank, " is out of range for world size ", size);
  RG_CHECK(store_ != nullptr, "ProcessGroup: a store is required");
  debug_ = env_flag("RINGGRAD_DIST_DEBUG");
  timeout_ = collective_timeout_from_env();
  watchdog_ = !env_off("RINGGRAD_WATCHDOG");
  monitor_ = std::make_shared<CollectiveMonitor>(store_, rank_, size_, timeout_, watchdog_);
  progress_ = &monitor_->progress;
  detail::watch(monitor_);
}

ProcessGroup::~ProcessGroup() = default;

void ProcessGroup::set_timeout(Millis t) {
  timeout_ = t;
  monitor_->set_timeout(t);
}

void ProcessGroup::set_watchdog(bool on) {
  watchdog_ = on;
  monitor_->set_enabled(on);
}

std::shared_ptr<Work> ProcessGroup::track(CollectiveInfo&& info, std::shared_ptr<Work> work) {
  if (watchdog_ && work) monitor_->issued(std::move(info), work);
  return work;
}

Millis collective_timeout_from_env() {
  const char* v = std::getenv("RINGGRAD_COLLECTIVE_TIMEOUT_S");
  if (!v || !*v) return kDefaultTimeout;
  char* end = nullptr;
  errno = 0;
  const double s = std::strtod(v, &end);
  RG_CHECK(errno == 0 && end != v && *end == '\0' && std::isfinite(s) && s > 0 && s < 1e7,
           "RINGGRAD_COLLECTIVE_TIMEOUT_S=", v, " is not a positive number of seconds");
  return Millis(std::max<int64_t>(1, static_cast<int64_t>(std::llround(s * 1000.0))));
}

void ProcessGroup::check_tensor(const Tensor& t, const char* op, const char* what) const {
  RG_CHECK(t.defined(), op, ": ", what, " is an undefined tensor");
  RG_CHECK(t.is_contiguous(), op, ": ", what, " must be contiguous, got ", t.describe(), " with strides ",
           shape_str(t.strides()), " (call .contiguous() first)");
  RG_CHECK(supported_dtype(t.dtype()), op, ": dtype ", dtype_name(t.dtype()), " of ", what,
           " is not supported (float32, float16, bfloat16, float64, int32 or int64)");
  if (auto dt = device_type()) {
    RG_CHECK(t.device().type == *dt, op, ": the '", backend(), "' process group works on ", device_type_name(*dt),
             " tensors, got ", what, " ", t.describe());
  }
}

CollectiveInfo ProcessGroup::begin(const char* op, const Tensor& t) {
  CollectiveInfo info;
  info.seq = seq_.fetch_add(1) + 1;
  info.op = op;
  if (t.defined()) {
    info.shape = t.sizes();
    info.dtype = t.dtype();
    info.device = t.device();
  } else {
    info.dtype = DType::i32;
    info.device = device_type().value_or(DeviceType::CPU) == DeviceType::CPU ? kCPU : Device::cuda(0);
  }
  return info;
}

std::shared_ptr<Work> ProcessGroup::allreduce(const Tensor& t, ReduceOp op) {
  OpScope scope("allreduce", {&t});
  check_tensor(t, "allreduce", "tensor");
  CollectiveInfo info = begin("allreduce", t);
  if (debug_) debug_check(info, std::string("allreduce(") + reduce_op_name(op) + ")");
  auto work = do_allreduce(t, op, info);
  return track(std::move(info), std::move(work));
}

std::shared_ptr<Work> ProcessGroup::broadcast(const Tensor& t, int root) {
  OpScope scope("broadcast", {&t});
  check_tensor(t, "broadcast", "tensor");
  RG_CHECK(root >= 0 && root < size_, "broadcast: root ", root, " is out of range for world size ", size_);
  CollectiveInfo info = begin("broadcast", t);
  if (debug_) debug_check(info, "broadcast(root=" + std::to_string(root) + ")");
  auto work = do_broadcast(t, root, info);
  return track(std::move(info), std::move(work));
}

std::shared_ptr<Work> ProcessGroup::allgather(const Tensor& out, const Tensor& in) {
  OpScope scope("allgather", {&out, &in});
  check_tensor(out, "allgather", "out");
  check_tensor(in, "allgather", "in");
  RG_CHECK(out.dtype() == in.dtype(), "allgather: out is ", dtype_name(out.dtype()), " but in is ",
           dtype_name(in.dtype()));
  RG_CHECK(out.device() == in.device(), "allgather: out is on ", out.device().str(), " but in is on ",
           in.device().str());
  RG_CHECK(out.numel() == in.numel() * size_, "allgather: out must have world size (", size_, ") * in.numel() (",
           in.numel(), ") = ", in.numel() * size_, " elements, got out ", out.describe(), " and in ", in.describe());
  CollectiveInfo info = begin("allgather", in);
  if (debug_) debug_check(info, "allgather");
  auto work = do_allgather(out, in, info);
  return track(std::move(info), std::move(work));
}

std::shared_ptr<Work> ProcessGroup::reduce_scatter(const Tensor& out, const Tensor& in, ReduceOp op) {
  OpScope scope("reduce_scatter", {&out, &in});
  check_tensor(out, "reduce_scatter", "out");
  check_tensor(in, "reduce_scatter", "in");
  RG_CHECK(out.dtype() == in.dtype(), "reduce_scatter: out is ", dtype_name(out.dtype()), " but in is ",
           dtype_name(in.dtype()));
  RG_CHECK(out.device() == in.device(), "reduce_scatter: out is on ", out.device().str(), " but in is on ",
           in.device().str());
  RG_CHECK(in.numel() == out.numel() * size_, "reduce_scatter: in must have world size (", size_,
           ") * out.numel() (", out.numel(), ") = ", out.numel() * size_, " elements, got in ", in.describe(),
           " and out ", out.describe());
  CollectiveInfo info = begin("reduce_scatter", in);
  if (debug_) debug_check(info, std::string("reduce_scatter(") + reduce_op_name(op) + ")");
  auto work = do_reduce_scatter(out, in, op, info);
  return track(std::move(info), std::move(work));
}

std::shared_ptr<Work> ProcessGroup::barrier() {
  CollectiveInfo info = begin("barrier", Tensor());
  if (debug_) debug_check(info, "barrier");
  auto work = do_barrier(info);
  return track(std::move(info), std::move(work));
}

// Every rank publishes "<signature> <dtype><shape> <device type>" under debug/<seq>/<rank> and
// compares with everyone's; the last rank to finish reading deletes the keys.
void ProcessGroup::debug_check(const CollectiveInfo& info, const std::string& signature) {
  const std::string mine = signature + " " + dtype_name(info.dtype) + shape_str(info.shape) + " " +
                           device_type_name(info.device.type);
  const std::string prefix = "debug/" + std::to_string(info.seq) + "/";
  store_->set(prefix + std::to_string(rank_), mine);
  std::vector<std::string> keys;
  for (int q = 0; q < size_; ++q) keys.push_back(prefix + std::to_string(q));
  try {
    store_->wait(keys, timeout_);
  } catch (const Error&) {
    std::vector<int> missing;
    for (int q = 0; q < size_; ++q) {
      if (!store_->check({keys[static_cast<size_t>(q)]})) missing.push_back(q);
    }
    RG_THROW("RINGGRAD_DIST_DEBUG: rank ", rank_, ": ", info.describe(), " timed out after ", timeout_.count(),
             " ms in the signature check; ranks that never reached it: ", join_ranks(missing));
  }
  for (int q = 0; q < size_; ++q) {
    if (q == rank_) continue;
    const std::string theirs = store_->get_string(keys[static_cast<size_t>(q)]);
    RG_CHECK(theirs == mine, "RINGGRAD_DIST_DEBUG: collective #", info.seq, " differs across ranks: rank ", q,
             " called ", theirs, ", rank ", rank_, " called ", mine);
  }
  if (store_->add(prefix + "done", 1) == size_) {
    for (const auto& k : keys) store_->delete_key(k);
    store_->delete_key(prefix + "done");
  }
}

Millis ProcessGroup::timeout_grace() const {
  return std::clamp(Millis(timeout_.count() / 4), Millis(200), Millis(10000));
}

// Note [Collective sequence numbers]: each rank that times out publishes progress/<rank> =
// "<seq> <description>". Ranks that published a number >= ours reached our collective; the others
// are stuck at an earlier one, or did not report at all (busy elsewhere, hung, or dead).
void ProcessGroup::raise_timeout(const CollectiveInfo& info, const std::string& detail) {
  if (watchdog_) dist::detail::report_hang_and_exit(*monitor_, info, timeout_, detail, true);  // Note [Hang watchdog]
  const std::string head = "rank " + std::to_string(rank_) + ": " + info.describe() + " timed out after " +
                           std::to_string(timeout_.count()) + " ms" + (detail.empty() ? "" : " (" + detail + ")");
  std::string tail;
  try {
    store_->set("progress/" + std::to_string(rank_), std::to_string(info.seq) + " " + info.describe());
    const auto until = std::chrono::steady_clock::now() + timeout_grace();
    std::vector<bool> reported(static_cast<size_t>(size_), false);
    reported[static_cast<size_t>(rank_)] = true;
    for (;;) {
      bool all = true;
      for (int q = 0; q < size_; ++q) {
        if (!reported[static_cast<size_t>(q)]) {
          reported[static_cast<size_t>(q)] = store_->check({"progress/" + std::to_string(q)});
          all = all && reported[static_cast<size_t>(q)];
        }
      }
      if (all || std::chrono::steady_clock::now() >= until) break;
      std::this_thread::sleep_for(Millis(20));
    }
    std::vector<std::string> missing;
    bool silent = false;
    for (int q = 0; q < size_; ++q) {
      if (q == rank_) continue;
      if (!reported[static_cast<size_t>(q)]) {
        missing.push_back(std::to_string(q));
        silent = true;
        continue;
      }
      const std::string v = store_->get_string("progress/" + std::to_string(q));
      const uint64_t their_seq = std::strtoull(v.c_str(), nullptr, 10);
      if (their_seq < info.seq) {
        const size_t sp = v.find(' ');
        missing.push_back(std::to_string(q) + " (stuck in " + (sp == std::string::npos ? v : v.substr(sp + 1)) + ")");
      }
    }
    if (missing.empty()) {
      tail = "; every rank reached it (a peer is too slow, or the connection between ranks stalled)";
    } else {
      tail = "; ranks that never reached it: ";
      for (size_t i = 0; i < missing.size(); ++i) tail += (i ? ", " : "") + missing[i];
      if (silent) tail += " (a rank with no progress report is busy before it, hung, or dead)";
    }
    // Rank 0 usually serves the store and its process may exit right after this error: linger so
    // that ranks which timed out a little later can still ask it.
    if (rank_ == 0 && !missing.empty()) std::this_thread::sleep_for(timeout_grace());
  } catch (const std::exception& e) {
    tail = "; could not ask the store which ranks arrived: " + std::string(e.what());
  }
  RG_THROW(head, tail);
}

// ---- backend registry (Note [Backend registry])

namespace {
std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::pair<std::string, DeviceType>, BackendFactory>& registry() {
  static std::map<std::pair<std::string, DeviceType>, BackendFactory> r;
  return r;
}
}  // namespace

void register_backend(const std::string& name, DeviceType device_type, BackendFactory factory) {
  std::lock_guard<std::mutex> g(registry_mutex());
  registry()[{name, device_type}] = std::move(factory);
}

bool has_backend(const std::string& name, DeviceType device_type) {
  std::lock_guard<std::mutex> g(registry_mutex());
  return registry().count({name, device_type}) > 0;
}

namespace detail {
// For init.cpp: the registered factory, or an empty function.
BackendFactory find_backend(const std::string& name, DeviceType device_type) {
  std::lock_guard<std::mutex> g(registry_mutex());
  auto it = registry().find({name, device_type});
  return it == registry().end() ? BackendFactory() : it->second;
}
}  // namespace detail

}  // namespace rg::dist
