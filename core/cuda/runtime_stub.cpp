// The CUDA runtime bridge for builds without CUDA: no devices; anything that needs one throws, and
// every _cuda kernel of the op table throws naming the op.
#include <cstdlib>

#include "core/cuda_api.h"
#include "core/error.h"
#include "core/kernels.h"

namespace rg::cuda {

namespace {
[[noreturn]] void no_cuda(const char* what) {
  RG_THROW(what, ": ringgrad was built without CUDA (configure with CUDA to use cuda devices)");
}
}  // namespace

bool built_with_cuda() { return false; }
bool is_available() { return false; }
int device_count() { return 0; }
std::string device_count_error() { return "ringgrad built without CUDA"; }
int current_device() { return 0; }
void set_device(int device) {
  if (device != 0) no_cuda("set_device");
}
void synchronize(int) {}
DeviceGuard::DeviceGuard(int) {}
DeviceGuard::~DeviceGuard() = default;
Stream current_stream(int device) { return Stream{nullptr, device < 0 ? 0 : device}; }
void set_current_stream(const Stream&) {}
Stream default_stream(int device) { return Stream{nullptr, device < 0 ? 0 : device}; }
Stream new_stream(int device, bool) { return Stream{nullptr, device < 0 ? 0 : device}; }
void stream_synchronize(const Stream&) {}
StreamGuard::StreamGuard(const Stream& s) : prev_(s) {}
StreamGuard::~StreamGuard() = default;
Event::~Event() = default;
Event::Event(Event&& o) noexcept : event_(nullptr), device_(o.device_), timing_(o.timing_) {}
Event& Event::operator=(Event&&) noexcept { return *this; }
void Event::record(const Stream&) {}
void Event::block(const Stream&) const {}
void Event::synchronize() const {}
bool Event::query() const { return true; }
float Event::elapsed_ms(const Event&) const { no_cuda("Event::elapsed_ms"); }
MemoryStats memory_stats(int) { return {}; }
void reset_peak_stats(int) {}
void empty_cache() {}
void* caching_alloc(size_t, int, const Stream&) { no_cuda("caching_alloc"); }
void caching_free(void*) {}
void record_stream(void*, const Stream&) {}
void* pinned_alloc(size_t nbytes) {
  void* p = std::aligned_alloc(64, (nbytes + 63) / 64 * 64 + 64);
  RG_CHECK(p, "out of host memory allocating ", nbytes, " bytes");
  return p;
}
void pinned_free(void* ptr) { std::free(ptr); }
void memcpy(void*, const void*, size_t, CopyKind, bool) { no_cuda("memcpy"); }
void memcpy_peer(void*, int, const void*, int, size_t) { no_cuda("memcpy_peer"); }
std::string runtime_version() { return "built without CUDA"; }
std::string device_name(int) { no_cuda("device_name"); }
int64_t device_total_memory(int) { no_cuda("device_total_memory"); }
int compute_capability(int) { no_cuda("compute_capability"); }
void check_last_launch(const char*, const char*, int) {}

}  // namespace rg::cuda

namespace rg {
// Every op in the table gets a _cuda twin that explains why it cannot run.
#define RG_STUB_KERNEL(name, params) \
  void name##_cuda params { RG_THROW("op '" #name "' needs a CUDA device but ringgrad was built without CUDA"); }
RG_KERNEL_TABLE(RG_STUB_KERNEL)
#undef RG_STUB_KERNEL
}  // namespace rg
