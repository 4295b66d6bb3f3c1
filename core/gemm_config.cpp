// The GEMM switches of Note [GEMM switches]: atomics, with RINGGRAD_GEMM read once.
#include "core/gemm_config.h"

#include <atomic>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "core/error.h"

namespace rg {

namespace {
std::atomic<int> g_backend{static_cast<int>(GemmBackend::Cublas)};
std::atomic<bool> g_allow_tf32{false};
std::once_flag g_env_once;

// Applies RINGGRAD_GEMM once, before the first read or write of the backend, so that an explicit
// set_gemm_backend() always wins over the environment.
void read_env_once() {
  std::call_once(g_env_once, [] {
    const char* env = std::getenv("RINGGRAD_GEMM");
    if (env == nullptr || *env == '\0') return;
    std::string v(env);
    for (auto& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (v == "ours") {
      g_backend.store(static_cast<int>(GemmBackend::Ours));
    } else if (v == "cublas") {
      g_backend.store(static_cast<int>(GemmBackend::Cublas));
    } else {
      RG_THROW("RINGGRAD_GEMM must be 'ours' or 'cublas', got '", env, "'");
    }
  });
}

thread_local const char* t_last_kernel = "";
}  // namespace

const char* gemm_backend_name(GemmBackend b) { return b == GemmBackend::Ours ? "ours" : "cublas"; }

void set_gemm_backend(GemmBackend b) {
  read_env_once();
  g_backend.store(static_cast<int>(b));
}

GemmBackend gemm_backend() {
  read_env_once();
  return static_cast<GemmBackend>(g_backend.load());
}

void set_allow_tf32(bool allow) { g_allow_tf32.store(allow); }
bool allow_tf32() { return g_allow_tf32.load(); }

namespace detail {
const char* last_gemm_kernel() { return t_last_kernel; }
void set_last_gemm_kernel(const char* name) { t_last_kernel = name; }
}  // namespace detail

}  // namespace rg
