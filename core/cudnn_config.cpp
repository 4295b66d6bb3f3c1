// The cuDNN switches (Note [cuDNN switches]) and the library version string.
#include "core/cudnn_config.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(RINGGRAD_WITH_CUDNN)
#include <cudnn.h>
#endif

namespace rg {

namespace {
std::atomic<bool> g_enabled{true};

std::atomic<bool>& benchmark_flag() {
  static std::atomic<bool> flag{[] {
    const char* v = std::getenv("RINGGRAD_CUDNN_BENCHMARK");
    return !(v && (std::strcmp(v, "0") == 0 || std::strcmp(v, "false") == 0 || std::strcmp(v, "off") == 0));
  }()};
  return flag;
}
}  // namespace

void set_cudnn_enabled(bool on) { g_enabled.store(on, std::memory_order_relaxed); }
bool cudnn_enabled() { return g_enabled.load(std::memory_order_relaxed); }
void set_cudnn_benchmark(bool on) { benchmark_flag().store(on, std::memory_order_relaxed); }
bool cudnn_benchmark() { return benchmark_flag().load(std::memory_order_relaxed); }

namespace detail {
namespace {
thread_local const char* t_last_conv_backend = "";
}
const char* last_conv_backend() { return t_last_conv_backend; }
void set_last_conv_backend(const char* name) { t_last_conv_backend = name; }
}  // namespace detail

std::string cudnn_version() {
#if defined(RINGGRAD_WITH_CUDNN)
  const size_t v = cudnnGetVersion();  // 9.x: major * 10000 + minor * 100 + patch
  if (v >= 90000) {
    return "cuDNN " + std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
  }
  return "cuDNN " + std::to_string(v / 1000) + "." + std::to_string(v / 100 % 10) + "." + std::to_string(v % 100);
#else
  return "not built";
#endif
}

}  // namespace rg
