// DistributedDataParallel: construction (cross-rank signature check, coalesced broadcast of the
// module's state), forward with the buffer broadcast, no_sync, and the checkpoint and GradScaler
// helpers. The gradient reduction itself is distributed/reducer.cpp.
#include "distributed/ddp.h"

#include <atomic>
#include <cstdio>
#include <sstream>
#include <unordered_set>

#include "autograd/grad_mode.h"
#include "core/native.h"
#include "distributed/reducer.h"
#include "nn/amp/grad_scaler.h"

namespace rg::dist {

namespace {

std::atomic<int> g_instances{0};

// ---- the cross-rank signature of a module's state: one line per parameter or buffer

struct Entry {
  std::string kind;  // "parameter" or "buffer"
  std::string name;
  std::string dtype;
  std::string shape;
  bool requires_grad = false;
};

std::string encode(const std::vector<Entry>& es) {
  std::string s;
  for (const Entry& e : es) {
    s += e.kind + '\t' + e.name + '\t' + e.dtype + '\t' + e.shape + '\t' + (e.requires_grad ? "1" : "0") + '\n';
  }
  return s;
}

std::vector<Entry> decode(const std::string& s) {
  std::vector<Entry> out;
  std::stringstream ss(s);
  std::string line;
  while (std::getline(ss, line)) {
    std::vector<std::string> f;
    size_t p = 0;
    for (size_t q; (q = line.find('\t', p)) != std::string::npos; p = q + 1) f.push_back(line.substr(p, q - p));
    f.push_back(line.substr(p));
    RG_CHECK(f.size() == 5, "DDP: malformed parameter signature line '", line, "'");
    out.push_back(Entry{f[0], f[1], f[2], f[3], f[4] == "1"});
  }
  return out;
}

// The message for the first difference between rank r's entries and rank 0's, or "".
std::string first_difference(int r, const std::vector<Entry>& mine, const std::vector<Entry>& ref) {
  const size_t n = std::max(mine.size(), ref.size());
  for (size_t j = 0; j < n; ++j) {
    const std::string rs = "DDP: rank " + std::to_string(r) + " has ";
    if (j >= mine.size()) {
      return rs + "no " + ref[j].kind + " at position " + std::to_string(j) + " but rank 0 has " + ref[j].kind +
             " '" + ref[j].name + "' there (rank " + std::to_string(r) + " has " + std::to_string(mine.size()) +
             " parameters and buffers, rank 0 has " + std::to_string(ref.size()) + ")";
    }
    if (j >= ref.size()) {
      return rs + mine[j].kind + " '" + mine[j].name + "' at position " + std::to_string(j) +
             " but rank 0 has none there (rank " + std::to_string(r) + " has " + std::to_string(mine.size()) +
             " parameters and buffers, rank 0 has " + std::to_string(ref.size()) + ")";
    }
    const Entry& a = mine[j];
    const Entry& b = ref[j];
    if (a.kind != b.kind || a.name != b.name) {
      return rs + a.kind + " '" + a.name + "' at position " + std::to_string(j) + " but rank 0 has " + b.kind +
             " '" + b.name + "'";
    }
    if (a.shape != b.shape) return rs + a.kind + " '" + a.name + "' of shape " + a.shape + " but rank 0 has " + b.shape;
    if (a.dtype != b.dtype) return rs + a.kind + " '" + a.name + "' of dtype " + a.dtype + " but rank 0 has " + b.dtype;
    if (a.requires_grad != b.requires_grad) {
      return rs + a.kind + " '" + a.name + "' with requires_grad=" + (a.requires_grad ? "true" : "false") +
             " but rank 0 has requires_grad=" + (b.requires_grad ? "true" : "false");
    }
  }
  return "";
}

// Every rank publishes its signature and compares everyone's with rank 0's, so every rank raises
// the same error (naming the lowest differing rank) before any collective could hang.
void verify_across_ranks(ProcessGroup& pg, int instance, const std::vector<Entry>& mine) {
  if (pg.size() == 1) return;
  const std::string base = "rg_ddp/" + std::to_string(instance) + "/signature/";
  pg.store()->set(base + std::to_string(pg.rank()), encode(mine));
  const std::vector<Entry> ref = pg.rank() == 0 ? mine : decode(pg.store()->get_string(base + "0"));
  for (int r = 1; r < pg.size(); ++r) {
    const std::vector<Entry> other = r == pg.rank() ? mine : decode(pg.store()->get_string(base + std::to_string(r)));
    const std::string diff = first_difference(r, other, ref);
    RG_CHECK(diff.empty(), diff, " (every rank must wrap the same model)");
  }
}

}  // namespace

// ---- DistributedDataParallel

DistributedDataParallel::DistributedDataParallel(std::shared_ptr<nn::Module> module, DDPOptions options)
    : nn::Module("DistributedDataParallel"), module_(std::move(module)), o_(std::move(options)) {
  RG_CHECK(module_ != nullptr, "DDP: the module is null");
  RG_CHECK(o_.bucket_cap_mb > 0 && o_.first_bucket_cap_mb > 0, "DDP: bucket_cap_mb and first_bucket_cap_mb must be "
           "positive, got ", o_.bucket_cap_mb, " and ", o_.first_bucket_cap_mb);
  RG_CHECK(!o_.comm_dtype || is_floating(*o_.comm_dtype), "DDP: comm_dtype must be a floating dtype, got ",
           dtype_name(*o_.comm_dtype));
  register_module("module", module_);
  pg_ = o_.process_group ? o_.process_group : default_group();
  const int instance = g_instances.fetch_add(1);

  std::vector<detail::Reducer::Param> params;
  std::vector<Tensor> state;
  std::vector<Entry> signature;
  std::unordered_set<const TensorImpl*> seen;  // a tensor registered twice (tied weights) counts once
  auto add = [&](const std::string& kind, const std::string& name, const Tensor& t) {
    if (!seen.insert(t.impl()).second) return false;
    if (pg_->device_type()) {
      RG_CHECK(t.device().type == *pg_->device_type(), "DDP: ", kind, " '", name, "' is on ", t.device().str(),
               " but the process group (", pg_->backend(), ") works on ", (*pg_->device_type() == DeviceType::CPU ? std::string("cpu") : std::string("cuda")),
               " tensors; move the model to this rank's device before wrapping it");
    }
    state.push_back(t);
    signature.push_back(Entry{kind, name, dtype_name(t.dtype()), shape_str(t.sizes()), t.requires_grad()});
    return true;
  };
  for (const auto& [name, t] : module_->named_parameters()) {
    if (add("parameter", name, t) && t.requires_grad()) params.push_back({name, t});
  }
  for (const auto& [name, t] : module_->named_buffers()) add("buffer", name, t);
  verify_across_ranks(*pg_, instance, signature);
  {
    NoGradGuard ng;
    broadcast_coalesced(*pg_, state, 0);
  }
  reducer_ = std::make_shared<detail::Reducer>(std::move(params), pg_, o_, instance);
  reducer_->attach();
  training_ = module_->is_training();
}

DistributedDataParallel::~DistributedDataParallel() = default;

std::shared_ptr<nn::Module> DistributedDataParallel::shallow_copy() const {
  RG_THROW("DDP cannot be cloned (clone the wrapped module, ddp.module()->clone(), and wrap the copy)");
}

void DistributedDataParallel::prepare_forward() {
  if (o_.broadcast_buffers && module_->is_training() && pg_->size() > 1) {
    std::vector<Tensor> bufs;
    std::unordered_set<const TensorImpl*> seen;
    for (const auto& [name, t] : module_->named_buffers()) {
      if (seen.insert(t.impl()).second) bufs.push_back(t);
    }
    if (!bufs.empty()) {
      NoGradGuard ng;
      broadcast_coalesced(*pg_, bufs, 0);
    }
  }
  reducer_->prepare_forward(require_sync_);
}

Tensor DistributedDataParallel::forward(const Tensor& x) {
  prepare_forward();
  Tensor y = module_->forward(x);
  if (y.defined() && y.requires_grad() && !y.is_leaf() && require_sync_) {
    // Marks the start of backward for the timings (Note [DDP stats]); never changes the gradient.
    const std::weak_ptr<detail::Reducer> w = reducer_;
    y.register_hook([w](const Tensor&) {
      if (auto r = w.lock()) r->mark_backward_start();
      return Tensor();
    });
  }
  return y;
}

std::vector<std::vector<std::string>> DistributedDataParallel::bucket_parameter_names() const {
  return reducer_->bucket_parameter_names();
}

DDPStats DistributedDataParallel::last_stats() const { return reducer_->stats(); }

NoSyncGuard::NoSyncGuard(DistributedDataParallel& ddp) : ddp_(&ddp), prev_(ddp.require_sync_) {
  ddp.require_sync_ = false;
}

NoSyncGuard::~NoSyncGuard() {
  if (ddp_) ddp_->require_sync_ = prev_;
}

std::string DDPStats::str() const {
  std::string s;
  char line[160];
  std::snprintf(line, sizeof(line), "DDP iteration %lld (%s): backward end %.3f ms, done %.3f ms, comm %.3f ms, "
                "hidden %.3f ms (%.0f%%)\n", static_cast<long long>(iteration), overlap ? "overlapped" : "not overlapped",
                backward_end_ms, done_ms, comm_ms, hidden_ms, 100.0 * hidden_fraction);
  s += line;
  s += "  bucket   params        bytes    ready   launch   finish\n";
  for (size_t k = 0; k < buckets.size(); ++k) {
    const DDPBucketStats& b = buckets[k];
    std::snprintf(line, sizeof(line), "  %6zu %8d %12lld %8.3f %8.3f %8.3f\n", k, b.num_params,
                  static_cast<long long>(b.bytes), b.ready_ms, b.launch_ms, b.finish_ms);
    s += line;
  }
  return s;
}

// ---- helpers

void broadcast_coalesced(ProcessGroup& pg, const std::vector<Tensor>& tensors, int root, size_t cap_bytes) {
  if (pg.size() == 1) return;
  NoGradGuard ng;
  // Groups of one device and dtype, in first-appearance order, cut into chunks of <= cap_bytes.
  struct Chunk {
    Device device;
    DType dtype;
    std::vector<Tensor> members;
    size_t bytes = 0;
  };
  std::vector<Chunk> chunks;
  std::vector<size_t> open;  // index into chunks of the open chunk per (device, dtype), linear search
  for (const Tensor& t : tensors) {
    if (!t.defined() || t.numel() == 0) continue;
    size_t* slot = nullptr;
    for (size_t& c : open) {
      if (chunks[c].device == t.device() && chunks[c].dtype == t.dtype()) slot = &c;
    }
    if (slot && chunks[*slot].bytes > 0 && chunks[*slot].bytes + t.nbytes() > cap_bytes) {
      chunks.push_back(Chunk{t.device(), t.dtype(), {}, 0});
      *slot = chunks.size() - 1;
    } else if (!slot) {
      chunks.push_back(Chunk{t.device(), t.dtype(), {}, 0});
      open.push_back(chunks.size() - 1);
      slot = &open.back();
    }
    chunks[*slot].members.push_back(t);
    chunks[*slot].bytes += t.nbytes();
  }
  std::vector<Tensor> flats;
  std::vector<std::shared_ptr<Work>> works;
  for (const Chunk& c : chunks) {
    const DType wire = (c.dtype == DType::b8 || c.dtype == DType::u8) ? DType::i32 : c.dtype;
    Tensor flat;
    if (c.members.size() == 1 && wire == c.dtype && c.members[0].is_contiguous()) {
      flat = native::view(c.members[0], {c.members[0].numel()});  // in place, no copy
    } else {
      std::vector<Tensor> parts;
      for (const Tensor& t : c.members) parts.push_back(native::to(native::reshape(t, {t.numel()}), c.device, wire));
      flat = parts.size() == 1 ? native::contiguous(parts[0]) : native::cat(parts, 0);
    }
    flats.push_back(flat);
    works.push_back(pg.broadcast(flat, root));
  }
  for (auto& w : works) w->wait();
  if (pg.rank() == root) return;
  for (size_t k = 0; k < chunks.size(); ++k) {
    const Chunk& c = chunks[k];
    if (c.members.size() == 1 && flats[k].storage() == c.members[0].storage()) continue;  // received in place
    int64_t off = 0;
    for (const Tensor& t : c.members) {
      native::copy_(t, native::view(native::narrow(flats[k], 0, off, t.numel()), t.sizes()));
      off += t.numel();
    }
  }
}

void sync_grad_scaler(amp::GradScaler& scaler, const std::shared_ptr<ProcessGroup>& pg) {
  const std::weak_ptr<ProcessGroup> w = pg ? pg : default_group();
  scaler.set_found_inf_reducer([w](Tensor& found_inf) {
    const auto g = w.lock();
    RG_CHECK(g != nullptr, "GradScaler: the process group its found_inf flag is reduced over was destroyed");
    if (g->size() > 1) g->allreduce(found_inf, ReduceOp::Max)->wait();
  });
}

void consume_prefix_in_state_dict_if_present(nn::StateDict& sd, const std::string& prefix) {
  for (auto& [key, t] : sd) {
    if (key.compare(0, prefix.size(), prefix) == 0) key = key.substr(prefix.size());
  }
}

nn::StateDict strip_module_prefix(const nn::StateDict& sd) {
  nn::StateDict out = sd;
  consume_prefix_in_state_dict_if_present(out, "module.");
  return out;
}

}  // namespace rg::dist
