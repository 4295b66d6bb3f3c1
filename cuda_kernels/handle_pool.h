// Library handles (cuBLAS, cuDNN) kept per thread and device, shared by gemm.cu and conv.cu.
#pragma once

#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/cuda_api.h"

namespace rg::cuda {

// Note [Library handles]
// A thread creates a handle for a device on first use and keeps it; when the thread exits, its
// handles go back to a process-wide pool that the next new thread takes from, so handle creation
// (milliseconds) happens once per concurrently active thread, not per thread ever started. Handles
// are never destroyed: destroying them during process teardown, after the CUDA context is gone,
// crashes. Callers set the handle's stream at every call.
template <typename Handle>
class ThreadHandleCache {
 public:
  // The calling thread's handle for `device`; create() makes a new one with `device` current.
  template <typename Create>
  static Handle get(int device, Create&& create) {
    Local& local = local_handles();
    if (auto it = local.by_device.find(device); it != local.by_device.end()) return it->second;
    Handle h{};
    {
      Pool& p = pool();
      std::lock_guard<std::mutex> lk(p.mu);
      std::vector<Handle>& fl = p.free[device];
      if (!fl.empty()) {
        h = fl.back();
        fl.pop_back();
      }
    }
    if (h == Handle{}) {
      DeviceGuard guard(device);
      h = std::forward<Create>(create)();
    }
    local.by_device[device] = h;
    return h;
  }

 private:
  struct Pool {
    std::mutex mu;
    std::unordered_map<int, std::vector<Handle>> free;
  };
  static Pool& pool() {
    static auto* p = new Pool();  // never destroyed: threads may exit during static destruction
    return *p;
  }
  struct Local {
    std::unordered_map<int, Handle> by_device;
    ~Local() {
      Pool& p = pool();
      std::lock_guard<std::mutex> lk(p.mu);
      for (auto& [dev, h] : by_device) p.free[dev].push_back(h);
    }
  };
  static Local& local_handles() {
    thread_local Local local;
    return local;
  }
};

}  // namespace rg::cuda
