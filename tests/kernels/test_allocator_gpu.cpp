// The CUDA caching allocator (core/cuda/caching_allocator.cpp) and the stream/event runtime
// (core/cuda/runtime.cpp): stats, reuse without cudaMalloc, per-stream caching, empty_cache,
// record_stream holding a block back, and event ordering between streams.
#include <string>
#include <vector>

#include "core/cuda_api.h"
#include "kernel_test_util.h"
#include "test_util.h"

using namespace rg;
using namespace rg::ktest;

namespace {

constexpr int64_t kMiB = int64_t{1} << 20;

// Keeps `s` busy for several milliseconds with device-to-device copies between two buffers
// allocated here (on s); frees them at once (they belong to s, so reuse waits in stream order).
void make_busy(const cuda::Stream& s, int copies = 24) {
  const size_t bytes = static_cast<size_t>(256 * kMiB);
  void* a = cuda::caching_alloc(bytes, 0, s);
  void* b = cuda::caching_alloc(bytes, 0, s);
  {
    cuda::StreamGuard g(s);
    for (int i = 0; i < copies; ++i) {
      cuda::memcpy(i % 2 ? a : b, i % 2 ? b : a, bytes, cuda::CopyKind::DeviceToDevice, true);
    }
  }
  cuda::caching_free(a);
  cuda::caching_free(b);
}

}  // namespace

TEST_CASE("caching allocator: allocated, reserved and peak move as expected") {
  cuda::synchronize(0);
  cuda::empty_cache();
  const cuda::Stream s = cuda::current_stream(0);
  const cuda::MemoryStats s0 = cuda::memory_stats(0);

  void* p = cuda::caching_alloc(1000, 0, s);  // rounds to 1024 bytes, small pool
  const cuda::MemoryStats s1 = cuda::memory_stats(0);
  CHECK(s1.allocated - s0.allocated == 1024);
  CHECK(s1.num_allocs == s0.num_allocs + 1);
  CHECK(s1.reserved >= s1.allocated);
  CHECK((s1.reserved - s0.reserved == 0 || s1.reserved - s0.reserved == 2 * kMiB));  // a 2 MiB small segment at most
  CHECK(s1.peak_allocated >= s1.allocated);
  cuda::caching_free(p);
  const cuda::MemoryStats s2 = cuda::memory_stats(0);
  CHECK(s2.allocated == s0.allocated);
  CHECK(s2.reserved == s1.reserved);  // cached, not returned
  CHECK(s2.peak_allocated >= s1.allocated);

  // a large block gets its own segment (>= 10 MiB: rounded to 2 MiB)
  void* big = cuda::caching_alloc(static_cast<size_t>(50 * kMiB), 0, s);
  const cuda::MemoryStats s3 = cuda::memory_stats(0);
  CHECK(s3.allocated - s2.allocated == 50 * kMiB);
  CHECK(s3.reserved - s2.reserved == 50 * kMiB);
  CHECK(s3.num_cuda_mallocs == s2.num_cuda_mallocs + 1);
  void* big2 = cuda::caching_alloc(static_cast<size_t>(30 * kMiB), 0, s);
  CHECK(cuda::memory_stats(0).peak_allocated >= s2.allocated + 80 * kMiB);
  cuda::caching_free(big2);
  cuda::caching_free(big);
  CHECK(cuda::memory_stats(0).allocated == s0.allocated);
  CHECK(cuda::memory_stats(0).peak_allocated >= s2.allocated + 80 * kMiB);
  cuda::reset_peak_stats(0);
  CHECK(cuda::memory_stats(0).peak_allocated == cuda::memory_stats(0).allocated);
  CHECK(cuda::memory_stats(0).peak_reserved == cuda::memory_stats(0).reserved);

  // empty_cache gives every whole cached segment back
  cuda::empty_cache();
  CHECK(cuda::memory_stats(0).reserved <= s0.reserved);
  CHECK(cuda::memory_stats(0).reserved >= cuda::memory_stats(0).allocated);
}

TEST_CASE("caching allocator: a freed block is reused without a new cudaMalloc") {
  cuda::empty_cache();
  const cuda::Stream s = cuda::current_stream(0);
  void* p = cuda::caching_alloc(static_cast<size_t>(24 * kMiB), 0, s);
  make_busy(s);  // reuse on the same stream needs no wait, even while it is busy
  const int64_t mallocs = cuda::memory_stats(0).num_cuda_mallocs;
  cuda::caching_free(p);
  void* q = cuda::caching_alloc(static_cast<size_t>(24 * kMiB), 0, s);
  CHECK(q == p);  // the smallest cached block that fits
  CHECK(cuda::memory_stats(0).num_cuda_mallocs == mallocs);
  cuda::caching_free(q);

  // tensors: the second of two same-sized tensors takes the first one's memory
  const int64_t before = cuda::memory_stats(0).num_cuda_mallocs;
  void* first = nullptr;
  {
    Tensor t = empty({1000, 1000}, TensorOptions(DType::f32).device(kGPU));
    first = t.data_ptr();
  }
  const int64_t after_first = cuda::memory_stats(0).num_cuda_mallocs;
  Tensor u = empty({1000, 1000}, TensorOptions(DType::f32).device(kGPU));
  CHECK(u.data_ptr() == first);
  CHECK(cuda::memory_stats(0).num_cuda_mallocs == after_first);
  CHECK(after_first - before <= 1);
  cuda::synchronize(0);
}

TEST_CASE("caching allocator: blocks are cached per stream") {
  cuda::empty_cache();
  const cuda::Stream side = cuda::new_stream(0);
  const cuda::Stream def = cuda::current_stream(0);
  void* p = cuda::caching_alloc(static_cast<size_t>(24 * kMiB), 0, side);
  cuda::caching_free(p);
  const int64_t mallocs = cuda::memory_stats(0).num_cuda_mallocs;
  void* q = cuda::caching_alloc(static_cast<size_t>(24 * kMiB), 0, def);  // side's cached block is not def's
  CHECK(q != p);
  CHECK(cuda::memory_stats(0).num_cuda_mallocs == mallocs + 1);
  void* r = cuda::caching_alloc(static_cast<size_t>(24 * kMiB), 0, side);  // but side gets it back
  CHECK(r == p);
  cuda::caching_free(q);
  cuda::caching_free(r);
  cuda::synchronize(0);
  cuda::empty_cache();
}

TEST_CASE("caching allocator: record_stream delays reuse until the other stream's work is done") {
  cuda::empty_cache();
  const cuda::Stream def = cuda::current_stream(0);
  const cuda::Stream side = cuda::new_stream(0);
  const size_t bytes = static_cast<size_t>(24 * kMiB);  // >= 10 MiB: its own segment, never split
  void* p = cuda::caching_alloc(bytes, 0, def);
  cuda::record_stream(p, side);
  make_busy(side, 40);      // ~10 ms of copies queued on side
  cuda::caching_free(p);    // records an event on side, behind the copies
  void* q = cuda::caching_alloc(bytes, 0, def);
  CHECK(q != p);            // held back: side may still be using it
  cuda::stream_synchronize(side);
  void* r = cuda::caching_alloc(bytes, 0, def);
  CHECK(r == p);            // side is done: the block is back in def's pool
  cuda::caching_free(q);
  cuda::caching_free(r);
  cuda::synchronize(0);
  cuda::empty_cache();
}

TEST_CASE("caching allocator: split blocks merge with their free neighbours") {
  // A new stream has an empty pool, so every placement below is determined.
  cuda::synchronize(0);
  cuda::empty_cache();
  const cuda::Stream s = cuda::new_stream(0);
  const int64_t reserved0 = cuda::memory_stats(0).reserved;
  const size_t k300 = 300 * 1024;  // a multiple of 512: no rounding
  char* a = static_cast<char*>(cuda::caching_alloc(k300, 0, s));  // a new 2 MiB small segment
  char* b = static_cast<char*>(cuda::caching_alloc(k300, 0, s));
  char* c = static_cast<char*>(cuda::caching_alloc(k300, 0, s));
  CHECK(b == a + k300);  // split off the segment's tail, in order
  CHECK(c == b + k300);
  CHECK(cuda::memory_stats(0).reserved == reserved0 + 2 * kMiB);
  cuda::caching_free(a);
  cuda::caching_free(b);  // merges with a: one 600 KiB block at a
  const int64_t mallocs = cuda::memory_stats(0).num_cuda_mallocs;
  void* d = cuda::caching_alloc(2 * k300 - 1024, 0, s);  // fits only the merged block or the tail
  CHECK(d == a);  // the smallest free block that fits: the merged one (the tail is 1148 KiB)
  CHECK(cuda::memory_stats(0).num_cuda_mallocs == mallocs);
  cuda::caching_free(c);
  cuda::caching_free(d);  // the whole segment is one free block again ...
  cuda::empty_cache();    // ... so it goes back to the driver
  CHECK(cuda::memory_stats(0).reserved == reserved0);
}

TEST_CASE("caching allocator: empty_cache waits for record_stream holds, then frees their blocks") {
  cuda::synchronize(0);
  cuda::empty_cache();
  const int64_t reserved0 = cuda::memory_stats(0).reserved;
  const cuda::Stream def = cuda::current_stream(0);
  const cuda::Stream side = cuda::new_stream(0);
  void* p = cuda::caching_alloc(static_cast<size_t>(24 * kMiB), 0, def);
  cuda::record_stream(p, side);
  make_busy(side, 40);
  cuda::caching_free(p);  // held back behind side's copies
  cuda::empty_cache();
  CHECK(cuda::memory_stats(0).reserved == reserved0);  // p's segment and make_busy's, all returned
  CHECK(cuda::memory_stats(0).allocated <= reserved0);
}

TEST_CASE("caching allocator: out of memory frees the cache and retries, then reports a clear error") {
  cuda::synchronize(0);
  cuda::empty_cache();
  const int64_t total = cuda::device_total_memory(0);
  const size_t big = static_cast<size_t>(total / 10 * 6);  // two cannot both fit
  const cuda::Stream side = cuda::new_stream(0);
  const cuda::Stream def = cuda::current_stream(0);
  void* p = cuda::caching_alloc(big, 0, side);
  cuda::caching_free(p);  // cached for side: def cannot reuse it ...
  const int64_t mallocs = cuda::memory_stats(0).num_cuda_mallocs;
  void* q = nullptr;
  CHECK_NOTHROW(q = cuda::caching_alloc(big, 0, def));  // ... so the first cudaMalloc fails, the cache goes, the retry works
  CHECK(q != nullptr);
  CHECK(cuda::memory_stats(0).num_cuda_mallocs == mallocs + 1);
  CHECK(cuda::memory_stats(0).reserved < 2 * static_cast<int64_t>(big));
  cuda::caching_free(q);
  cuda::empty_cache();
  try {
    cuda::caching_alloc(static_cast<size_t>(total) * 4, 0, def);
    FAIL("expected an out-of-memory error");
  } catch (const rg::Error& e) {
    const std::string msg = e.what();
    CHECK_MESSAGE(msg.find("CUDA out of memory on cuda:0") != std::string::npos, msg);
  }
  // the failed cudaMalloc leaves no sticky error behind
  Tensor t = full({1000}, 2.0, TensorOptions(DType::f32).device(kGPU));
  CHECK(native::reduce(ReduceOp::Sum, t, {}, false).item() == 2000.0);
}

TEST_CASE("streams: current stream, guards and new streams") {
  const cuda::Stream def = cuda::default_stream(0);
  CHECK(def.handle == nullptr);
  CHECK(cuda::current_stream(0) == def);
  const cuda::Stream a = cuda::new_stream(0), b = cuda::new_stream(0, true);
  CHECK(a.handle != nullptr);
  CHECK(b.handle != nullptr);
  CHECK(a != b);
  {
    cuda::StreamGuard g(a);
    CHECK(cuda::current_stream(0) == a);
    {
      cuda::StreamGuard h(b);
      CHECK(cuda::current_stream(0) == b);
    }
    CHECK(cuda::current_stream(0) == a);
  }
  CHECK(cuda::current_stream(0) == def);
  CHECK(cuda::current_device() == 0);
  CHECK(cuda::device_count() >= 1);
  CHECK(cuda::compute_capability(0) >= 70);
}

TEST_CASE("events order work across streams and time it") {
  const cuda::Stream s1 = cuda::new_stream(0), s2 = cuda::new_stream(0);
  Tensor a = full({1 << 20}, 1.0, TensorOptions(DType::f32).device(kGPU));
  Tensor b = zeros({1 << 20}, TensorOptions(DType::f32).device(kGPU));
  cuda::synchronize(0);

  // a is filled with 5 by a copy, not a kernel: RINGGRAD_DEBUG_SYNC=1 (scripts/gpu_check.sh)
  // synchronises the device after every kernel launch, which would drain s1 before the checks.
  Tensor five = full({1 << 20}, 5.0, TensorOptions(DType::f32).device(kGPU));
  cuda::synchronize(0);
  cuda::Event start(true), stop(true), ready;
  CHECK(ready.query());  // never recorded: done
  start.record(s1);
  make_busy(s1, 40);
  {
    cuda::StreamGuard g(s1);  // behind the busy work on s1
    cuda::memcpy(a.data_ptr(), five.data_ptr(), a.nbytes(), cuda::CopyKind::DeviceToDevice, true);
  }
  ready.record(s1);
  stop.record(s1);
  CHECK_FALSE(ready.query());  // ~10 ms of copies are still queued ahead of it
  ready.block(s2);             // s2 waits for s1's fill without the host waiting
  {
    cuda::StreamGuard g(s2);
    native::copy_(b, a);
  }
  cuda::stream_synchronize(s2);
  for (double v : b.to_vector<double>()) {
    if (v != 5.0) {
      FAIL("s2 read a before s1 filled it: ", v);
      break;
    }
  }
  stop.synchronize();
  CHECK(ready.query());
  CHECK(start.elapsed_ms(stop) > 0.0f);
  cuda::synchronize(0);
}

TEST_CASE("host <-> device copies through cuda::memcpy") {
  std::vector<float> h(1000), back(1000, 0.0f);
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<float>(i) * 0.5f;
  void* d = cuda::caching_alloc(h.size() * sizeof(float), 0, cuda::current_stream(0));
  cuda::memcpy(d, h.data(), h.size() * sizeof(float), cuda::CopyKind::HostToDevice);
  cuda::memcpy(back.data(), d, h.size() * sizeof(float), cuda::CopyKind::DeviceToHost);
  CHECK(back == h);
  cuda::caching_free(d);
}
