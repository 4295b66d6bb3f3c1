// The CUDA runtime bridge: devices, per-thread current streams, events, copies, versions.
#include <cuda_runtime.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/cuda/cuda_check.h"

namespace rg::cuda {

bool built_with_cuda() { return true; }

namespace {
// The first cudaGetDeviceCount's answer: the count, or 0 and the error it returned.
struct DeviceCount {
  int n = 0;
  std::string error;
};
const DeviceCount& probe_devices() {
  static const DeviceCount d = [] {
    DeviceCount r;
    const cudaError_t e = cudaGetDeviceCount(&r.n);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      r.n = 0;
      r.error = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
    }
    return r;
  }();
  return d;
}
}  // namespace

int device_count() { return probe_devices().n; }

std::string device_count_error() { return probe_devices().error; }

bool is_available() { return device_count() > 0; }

int current_device() {
  int d = 0;
  RG_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

void set_device(int device) {
  RG_CHECK(device >= 0 && device < device_count(), "cuda:", device, " does not exist: ", device_count(),
           " CUDA device(s) visible (CUDA_VISIBLE_DEVICES=", std::getenv("CUDA_VISIBLE_DEVICES") ? std::getenv("CUDA_VISIBLE_DEVICES") : "unset", ")");
  RG_CUDA_CHECK(cudaSetDevice(device));
}

void synchronize(int device) {
  DeviceGuard g(device);
  RG_CUDA_CHECK(cudaDeviceSynchronize());
}

DeviceGuard::DeviceGuard(int device) {
  if (device < 0) return;
  const int cur = current_device();
  if (cur != device) {
    set_device(device);
    prev_ = cur;
  }
}
DeviceGuard::~DeviceGuard() {
  if (prev_ >= 0) (void)cudaSetDevice(prev_);
}

// ---- streams
namespace {
thread_local std::unordered_map<int, Stream> t_current;
std::mutex g_streams_mu;
std::vector<cudaStream_t> g_owned_streams;  // live until exit, like PyTorch's pool
int resolve(int device) { return device < 0 ? current_device() : device; }
}  // namespace

Stream default_stream(int device) { return Stream{nullptr, resolve(device)}; }

Stream current_stream(int device) {
  device = resolve(device);
  auto it = t_current.find(device);
  return it == t_current.end() ? Stream{nullptr, device} : it->second;
}

void set_current_stream(const Stream& s) { t_current[s.device] = s; }

Stream new_stream(int device, bool high_priority) {
  device = resolve(device);
  DeviceGuard g(device);
  int lo = 0, hi = 0;
  RG_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&lo, &hi));
  cudaStream_t s = nullptr;
  RG_CUDA_CHECK(cudaStreamCreateWithPriority(&s, cudaStreamNonBlocking, high_priority ? hi : lo));
  std::lock_guard<std::mutex> lk(g_streams_mu);
  g_owned_streams.push_back(s);
  return Stream{s, device};
}

void stream_synchronize(const Stream& s) {
  DeviceGuard g(s.device);
  RG_CUDA_CHECK(cudaStreamSynchronize(raw(s)));
}

StreamGuard::StreamGuard(const Stream& s) : prev_(current_stream(s.device)) { set_current_stream(s); }
StreamGuard::~StreamGuard() { set_current_stream(prev_); }

// ---- events
Event::~Event() {
  if (event_) {
    DeviceGuard g(device_);
    (void)cudaEventDestroy(static_cast<cudaEvent_t>(event_));
  }
}
Event::Event(Event&& o) noexcept : event_(o.event_), device_(o.device_), timing_(o.timing_) { o.event_ = nullptr; }
Event& Event::operator=(Event&& o) noexcept {
  if (this != &o) {
    std::swap(event_, o.event_);
    std::swap(device_, o.device_);
    std::swap(timing_, o.timing_);
  }
  return *this;
}

void Event::record(const Stream& s) {
  DeviceGuard g(s.device);
  if (!event_) {
    cudaEvent_t e = nullptr;
    RG_CUDA_CHECK(cudaEventCreateWithFlags(&e, timing_ ? cudaEventDefault : cudaEventDisableTiming));
    event_ = e;
    device_ = s.device;
  }
  RG_CHECK(device_ == s.device, "Event recorded on cuda:", device_, " cannot be recorded on cuda:", s.device);
  RG_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event_), raw(s)));
}

void Event::block(const Stream& s) const {
  if (!event_) return;
  DeviceGuard g(s.device);
  RG_CUDA_CHECK(cudaStreamWaitEvent(raw(s), static_cast<cudaEvent_t>(event_), 0));
}

void Event::synchronize() const {
  if (event_) RG_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event_)));
}

bool Event::query() const {
  if (!event_) return true;
  const cudaError_t e = cudaEventQuery(static_cast<cudaEvent_t>(event_));
  if (e == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  RG_CUDA_CHECK(e);
  return true;
}

float Event::elapsed_ms(const Event& end) const {
  RG_CHECK(event_ && end.event_, "elapsed_ms: both events must have been recorded");
  float ms = 0;
  RG_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(event_), static_cast<cudaEvent_t>(end.event_)));
  return ms;
}

// ---- copies
void memcpy(void* dst, const void* src, size_t nbytes, CopyKind kind, bool async) {
  if (nbytes == 0) return;
  const cudaMemcpyKind k = kind == CopyKind::HostToDevice   ? cudaMemcpyHostToDevice
                           : kind == CopyKind::DeviceToHost ? cudaMemcpyDeviceToHost
                                                            : cudaMemcpyDeviceToDevice;
  const cudaStream_t s = current_raw_stream();
  RG_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, k, s));
  if (!async) RG_CUDA_CHECK(cudaStreamSynchronize(s));
}

void memcpy_peer(void* dst, int dst_device, const void* src, int src_device, size_t nbytes) {
  if (nbytes == 0) return;
  {  // the copy runs on dst's stream, which does not wait for work still queued on src's device
    DeviceGuard gs(src_device);
    RG_CUDA_CHECK(cudaStreamSynchronize(current_raw_stream()));
  }
  DeviceGuard g(dst_device);
  const cudaStream_t s = current_raw_stream();
  RG_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_device, src, src_device, nbytes, s));
  RG_CUDA_CHECK(cudaStreamSynchronize(s));
}

// ---- information
std::string runtime_version() {
  int rt = 0, drv = 0;
  (void)cudaRuntimeGetVersion(&rt);
  if (cudaDriverGetVersion(&drv) != cudaSuccess) (void)cudaGetLastError();
  auto fmt = [](int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); };
  return "CUDA runtime " + fmt(rt) + ", driver " + (drv ? fmt(drv) : std::string("none"));
}

std::string device_name(int device) {
  cudaDeviceProp p{};
  RG_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  return p.name;
}

int64_t device_total_memory(int device) {
  cudaDeviceProp p{};
  RG_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  return static_cast<int64_t>(p.totalGlobalMem);
}

int compute_capability(int device) {
  int major = 0, minor = 0;
  RG_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  RG_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return major * 10 + minor;
}

void check_last_launch(const char* kernel, const char* file, int line) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) {
    detail::throw_error(file, line, detail::concat("CUDA kernel ", kernel, " failed to launch: ", cudaGetErrorString(e)));
  }
  static const bool debug_sync = [] {
    const char* v = std::getenv("RINGGRAD_DEBUG_SYNC");
    return v && v[0] == '1';
  }();
  if (debug_sync) {
    const cudaError_t s = cudaDeviceSynchronize();
    if (s != cudaSuccess) {
      detail::throw_error(file, line, detail::concat("CUDA kernel ", kernel, " failed: ", cudaGetErrorString(s)));
    }
  }
}

}  // namespace rg::cuda
