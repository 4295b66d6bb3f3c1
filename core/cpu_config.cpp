// set_flush_denormal: FTZ/DAZ on the calling thread and the OpenMP pool (Note [Flush denormals]).
#include "core/cpu_config.h"

#if defined(__SSE2__)
#include <immintrin.h>
#endif
#include <omp.h>

namespace rg {

namespace {

#if defined(__SSE2__)
constexpr unsigned kFtz = 0x8000;  // MXCSR bit 15: flush to zero
constexpr unsigned kDaz = 0x0040;  // MXCSR bit 6: denormals are zero

void apply_to_this_thread(bool on) {
  const unsigned csr = _mm_getcsr();
  _mm_setcsr(on ? (csr | kFtz | kDaz) : (csr & ~(kFtz | kDaz)));
}
#endif

}  // namespace

bool set_flush_denormal(bool on) {
#if defined(__SSE2__)
  apply_to_this_thread(on);
  // One task per pool thread: a parallel region of omp_get_max_threads() threads reuses the pool.
#pragma omp parallel
  apply_to_this_thread(on);
  return true;
#else
  (void)on;
  return false;
#endif
}

bool flush_denormal() {
#if defined(__SSE2__)
  return (_mm_getcsr() & (kFtz | kDaz)) == (kFtz | kDaz);
#else
  return false;
#endif
}

}  // namespace rg
