// The CUDA runtime as core sees it: devices, per-thread current streams, events, the caching
// allocator's stats and host<->device copies. Declared without CUDA headers so CPU-only code
// compiles against it; a build without CUDA links core/cuda/runtime_stub.cpp instead.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace rg::cuda {

bool is_available();   // built with CUDA and at least one device visible
bool built_with_cuda();
int device_count();    // 0 without CUDA or without devices (never throws)
// Why device_count() is 0: "" when the CUDA runtime answered (devices or not), else the error of
// its first cudaGetDeviceCount ("cudaErrorNoDevice: no CUDA-capable device is detected", a broken
// driver's error ...), or "ringgrad built without CUDA". Tests name it when a GPU was required.
std::string device_count_error();
int current_device();
void set_device(int device);
void synchronize(int device = -1);  // -1: current device

// RAII: makes `device` current for the scope (no-op for device < 0).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1;
};

// A stream handle (cudaStream_t as void*). handle == nullptr is the legacy default stream.
struct Stream {
  void* handle = nullptr;
  int device = 0;
  bool operator==(const Stream& o) const { return handle == o.handle && device == o.device; }
  bool operator!=(const Stream& o) const { return !(*this == o); }
};

// Note [Current stream]
// Each thread has one current stream per device, the default stream until set. Kernels and
// copies are issued on the current stream of their tensor's device. Work handed to another
// stream (DDP's communication stream) is ordered by recording an Event here and waiting on it there.
Stream current_stream(int device = -1);
void set_current_stream(const Stream& s);
Stream default_stream(int device = -1);
// A new non-blocking stream owned by the runtime (lives until exit).
Stream new_stream(int device = -1, bool high_priority = false);
void stream_synchronize(const Stream& s);

class StreamGuard {
 public:
  explicit StreamGuard(const Stream& s);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  Stream prev_;
};

// A CUDA event, created on first record. Timing is enabled when asked at construction.
class Event {
 public:
  explicit Event(bool timing = false) : timing_(timing) {}
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  Event(Event&& o) noexcept;
  Event& operator=(Event&& o) noexcept;

  void record(const Stream& s);
  void record() { record(current_stream()); }
  void block(const Stream& s) const;  // s waits for this event (no host wait)
  void synchronize() const;
  bool query() const;                 // true when done (or never recorded)
  float elapsed_ms(const Event& end) const;

 private:
  void* event_ = nullptr;
  int device_ = -1;
  bool timing_;
};

// ---- memory (core/cuda/caching_allocator.cpp)
struct MemoryStats {
  int64_t allocated = 0;       // bytes in live tensors (rounded sizes)
  int64_t reserved = 0;        // bytes held from cudaMalloc, live or cached
  int64_t peak_allocated = 0;
  int64_t peak_reserved = 0;
  int64_t num_allocs = 0;      // calls to allocate
  int64_t num_cuda_mallocs = 0;  // cache misses that went to cudaMalloc
};
MemoryStats memory_stats(int device = -1);
void reset_peak_stats(int device = -1);
void empty_cache();  // returns every cached, unused block to the driver
// Raw device memory from the caching allocator, freed through caching_free. The block belongs to
// `stream`; Note [Caching allocator streams].
void* caching_alloc(size_t nbytes, int device, const Stream& stream);
void caching_free(void* ptr);
// The block holding ptr is also used on stream s: its reuse waits for the work queued there now.
void record_stream(void* ptr, const Stream& s);

// Pinned host memory (cudaHostAlloc), from a small cache; falls back to malloc without CUDA.
void* pinned_alloc(size_t nbytes);
void pinned_free(void* ptr);

// Copies on the current stream of the device involved; `async` skips the host wait.
enum class CopyKind { HostToDevice, DeviceToHost, DeviceToDevice };
void memcpy(void* dst, const void* src, size_t nbytes, CopyKind kind, bool async = false);
void memcpy_peer(void* dst, int dst_device, const void* src, int src_device, size_t nbytes);

// Versions, for `ringgrad info`: "CUDA runtime 13.0, driver 13.0, cuDNN 9.x, NCCL 2.x" parts.
std::string runtime_version();
std::string device_name(int device);
int64_t device_total_memory(int device);
int compute_capability(int device);  // e.g. 90

// Checks the last launch error in debug builds (RINGGRAD_DEBUG_SYNC=1 also synchronises).
void check_last_launch(const char* kernel, const char* file, int line);

}  // namespace rg::cuda
