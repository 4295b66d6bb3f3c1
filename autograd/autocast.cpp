// Autocast state (thread-local), the guard, and the cast helpers with the weight cast cache.
// Note [Autocast policy] in autograd/autocast.h.
#include "autograd/autocast.h"

#include <memory>
#include <utility>
#include <vector>

#include "autograd/grad_mode.h"

namespace rg::amp {

namespace {

struct CacheEntry {
  std::shared_ptr<TensorImpl> source;  // keeps the key alive while the cast is cached
  uint32_t version;                    // the source's version when cast: an in-place update invalidates it
  Tensor cast;
};

struct AutocastState {
  bool enabled = false;
  DType dtype = DType::f16;
  int depth = 0;                   // nesting of guards (enabled or not)
  std::vector<CacheEntry> cache;   // few entries (one per weight used in the scope): a linear scan
};

AutocastState& state() {
  thread_local AutocastState s;
  return s;
}

}  // namespace

AutocastGuard::AutocastGuard(DType dtype, bool enabled) {
  RG_CHECK(dtype == DType::f16 || dtype == DType::bf16, "autocast: the dtype must be float16 or bfloat16, got ",
           dtype_name(dtype));
  AutocastState& s = state();
  prev_enabled_ = s.enabled;
  prev_dtype_ = s.dtype;
  if (s.enabled && enabled && s.dtype != dtype) s.cache.clear();  // casts of the other dtype are of no use
  s.enabled = enabled;
  s.dtype = dtype;
  ++s.depth;
}

AutocastGuard::~AutocastGuard() {
  AutocastState& s = state();
  if (s.enabled && prev_enabled_ && s.dtype != prev_dtype_) s.cache.clear();
  s.enabled = prev_enabled_;
  s.dtype = prev_dtype_;
  if (--s.depth == 0) s.cache.clear();
}

bool is_autocast_enabled() { return state().enabled; }
DType autocast_dtype() { return state().dtype; }

void clear_autocast_cache() { state().cache.clear(); }

Tensor autocast_lower(const Tensor& t) {
  AutocastState& s = state();
  if (!s.enabled || !t.defined() || !is_floating(t.dtype()) || t.dtype() == DType::f64 || t.dtype() == s.dtype) {
    return t;
  }
  const bool cacheable = t.dtype() == DType::f32 && t.requires_grad() && t.is_leaf() && GradMode::is_enabled();
  if (!cacheable) return t.to(s.dtype);
  for (CacheEntry& e : s.cache) {
    if (e.source != t.impl_ptr()) continue;
    if (e.version != t.version() || e.cast.dtype() != s.dtype) {
      e.version = t.version();
      e.cast = t.to(s.dtype);
    }
    return e.cast;
  }
  Tensor cast = t.to(s.dtype);
  s.cache.push_back({t.impl_ptr(), t.version(), cast});
  return cast;
}

Tensor autocast_f32(const Tensor& t) {
  if (!state().enabled || !t.defined() || !is_reduced_float(t.dtype())) return t;
  return t.to(DType::f32);
}

}  // namespace rg::amp
