// How fast is our NMS? native::nms (the kernel-table op) on the CPU, and on CUDA when a device is
// visible, against a plain O(n^2) greedy NMS written here and, when Debian's python3-torchvision is
// installed, torchvision.ops.nms (benchmarks/nms_torchvision.py), each checked to keep the same boxes.
// Usage (from the repository root): bench_nms [--cpu-only|--gpu-only] [--no-torchvision]
//        [--sizes 1000,10000,100000] [--script benchmarks/nms_torchvision.py]
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "core/native.h"

using namespace rg;

namespace {

// Detector-like candidates: n / 20 objects on a 1280 x 1280 image (sides 16..160 px), each box a
// jittered copy of one of them (centre +-15% of its size, size +-20%), scores uniform: NMS keeps a
// small fraction, as it does on a detector's candidates.
struct Boxes {
  std::vector<float> b, s;
};
Boxes make_boxes(int64_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<float> u(0, 1);
  const int64_t objects = std::max<int64_t>(1, n / 20);
  std::vector<float> obj;
  for (int64_t k = 0; k < objects; ++k)
    obj.insert(obj.end(), {u(g) * 1280, u(g) * 1280, 16 + u(g) * 144, 16 + u(g) * 144});
  Boxes out;
  for (int64_t i = 0; i < n; ++i) {
    const float* o = &obj[4 * static_cast<size_t>(u(g) * objects)];
    const float cx = o[0] + (u(g) - 0.5f) * 0.3f * o[2], cy = o[1] + (u(g) - 0.5f) * 0.3f * o[3];
    const float w = o[2] * (0.8f + 0.4f * u(g)), h = o[3] * (0.8f + 0.4f * u(g));
    out.b.insert(out.b.end(), {cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2});
    out.s.push_back(u(g));
  }
  return out;
}

// The reference: sort (stable), then for each box still standing, test every later box. The IoU is
// written as in torchvision's CPU kernel (float areas, `>` against the double threshold).
std::vector<int64_t> plain_nms(const Boxes& x, double thr) {
  const size_t n = x.s.size();
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return x.s[a] > x.s[b]; });
  std::vector<uint8_t> dead(n, 0);
  std::vector<int64_t> keep;
  for (size_t i = 0; i < n; ++i) {
    if (dead[i]) continue;
    const float* a = &x.b[4 * order[i]];
    keep.push_back(order[i]);
    const float area_a = (a[2] - a[0]) * (a[3] - a[1]);
    for (size_t j = i + 1; j < n; ++j) {
      if (dead[j]) continue;
      const float* b = &x.b[4 * order[j]];
      const float w = std::max(std::min(a[2], b[2]) - std::max(a[0], b[0]), 0.0f);
      const float h = std::max(std::min(a[3], b[3]) - std::max(a[1], b[1]), 0.0f);
      volatile float inter = w * h;  // keep the products unfused, as Note [NMS formulas]
      volatile float area_b = (b[2] - b[0]) * (b[3] - b[1]);
      volatile float uni = area_a + area_b;
      if (static_cast<double>(inter / (uni - inter)) > thr) dead[j] = 1;
    }
  }
  return keep;
}

std::vector<int64_t> to_host(const Tensor& t) { return native::to(t, kCPU, DType::i64).to_vector<int64_t>(); }

// torchvision.ops.nms through benchmarks/nms_torchvision.py: "<ms> <kept>" and the kept indices in a file.
bool torchvision_nms(const std::string& script, const Boxes& x, double thr, double* ms, std::vector<int64_t>* keep) {
  const std::string dir = "/tmp/rg_bench_nms_" + std::to_string(::getpid());
  const std::string in = dir + ".bin", out = dir + ".keep";
  {
    std::ofstream f(in, std::ios::binary);
    const int64_t n = static_cast<int64_t>(x.s.size());
    f.write(reinterpret_cast<const char*>(&n), sizeof(n));
    f.write(reinterpret_cast<const char*>(x.b.data()), static_cast<std::streamsize>(x.b.size() * sizeof(float)));
    f.write(reinterpret_cast<const char*>(x.s.data()), static_cast<std::streamsize>(x.s.size() * sizeof(float)));
  }
  const std::string cmd = "/usr/bin/python3 " + script + " " + in + " " + std::to_string(thr) + " " + out + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return false;
  char line[256] = {0};
  const bool got = std::fgets(line, sizeof(line), p) != nullptr;
  const int rc = ::pclose(p);
  std::remove(in.c_str());
  if (!got || rc != 0 || std::sscanf(line, "%lf", ms) != 1) {
    std::remove(out.c_str());
    return false;
  }
  std::ifstream k(out);
  keep->clear();
  for (int64_t v; k >> v;) keep->push_back(v);
  std::remove(out.c_str());
  return true;
}

bool torchvision_available(const std::string& script) {
  return std::ifstream(script).good() &&
         std::system("/usr/bin/python3 -c 'import torch, torchvision' >/dev/null 2>&1") == 0;
}

std::string fmt(double v, const char* f = "%.3f") {
  if (v < 0) return "-";
  char b[32];
  std::snprintf(b, sizeof(b), f, v);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  bool cpu = true, gpu = true, tv = true;
  std::string script = "benchmarks/nms_torchvision.py";
  std::vector<int64_t> sizes = {1000, 10000, 100000};
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--cpu-only"))
      gpu = false;
    else if (!std::strcmp(argv[i], "--gpu-only"))
      cpu = false;
    else if (!std::strcmp(argv[i], "--no-torchvision"))
      tv = false;
    else if (!std::strcmp(argv[i], "--script") && i + 1 < argc)
      script = argv[++i];
    else if (!std::strcmp(argv[i], "--sizes") && i + 1 < argc) {
      sizes.clear();
      std::stringstream ss(argv[++i]);
      for (std::string t; std::getline(ss, t, ',');) sizes.push_back(std::atoll(t.c_str()));
    }
  }
  const bool has_gpu = gpu && cuda::device_count() > 0;
  tv = tv && cpu && torchvision_available(script);
  const double thr = 0.5;
  std::printf("NMS at IoU %.2f, f32, clustered candidates; median ms (lower is better); ratio = reference / ours\n",
              thr);
  if (!tv)
    std::printf(
        "(torchvision.ops.nms: not measured: no %s, /usr/bin/python3 lacks torch/torchvision, or --no-torchvision)\n",
        script.c_str());
  if (gpu && !has_gpu) std::printf("(CUDA: %s)\n", bench::no_gpu_reason());
  std::printf("%8s %7s | %10s %10s %7s | %10s %7s | %10s %7s\n", "boxes", "kept", "ours cpu", "plain", "ratio",
              "torchvision", "ratio", "ours cuda", "vs cpu");
  for (int64_t n : sizes) {
    const Boxes x = make_boxes(n, static_cast<uint64_t>(n));
    const Tensor b = from_vector<float>(x.b, {n, 4}), s = from_vector<float>(x.s);
    const int reps = n >= 100000 ? 3 : n >= 10000 ? 7 : 31;
    std::vector<int64_t> ours = to_host(native::nms(b, s, thr));
    double t_ours = 0, t_plain = 0, t_tv = -1, t_cuda = -1;
    if (cpu) {
      t_ours = bench::time_cpu_ms([&] { native::nms(b, s, thr); }, 1, reps);
      const std::vector<int64_t> ref = plain_nms(x, thr);
      if (ref != ours) std::printf("MISMATCH: plain NMS keeps %zu boxes, ours %zu\n", ref.size(), ours.size());
      t_plain = bench::time_cpu_ms([&] { plain_nms(x, thr); }, 0, n >= 100000 ? 1 : reps);
      std::vector<int64_t> tk;
      if (tv && torchvision_nms(script, x, thr, &t_tv, &tk)) {
        std::vector<int64_t> a = tk, o = ours;  // torchvision's sort is not stable: compare as sets
        std::sort(a.begin(), a.end());
        std::sort(o.begin(), o.end());
        if (a != o) std::printf("MISMATCH: torchvision keeps %zu boxes, ours %zu\n", tk.size(), ours.size());
      }
    }
    if (has_gpu) {
      const Tensor gb = native::to(b, Device::cuda(0), DType::f32), gs = native::to(s, Device::cuda(0), DType::f32);
      if (to_host(native::nms(gb, gs, thr)) != ours) std::printf("MISMATCH: CUDA and CPU keep different boxes\n");
      t_cuda = bench::time_gpu_ms([&] { native::nms(gb, gs, thr); }, 2, reps);
    }
    std::printf("%8lld %7zu | %10s %10s %7s | %10s %7s | %10s %7s\n", static_cast<long long>(n), ours.size(),
                fmt(cpu ? t_ours : -1).c_str(), fmt(cpu ? t_plain : -1).c_str(),
                fmt(cpu ? t_plain / t_ours : -1, "%.2f").c_str(), fmt(t_tv).c_str(),
                fmt(t_tv >= 0 ? t_tv / t_ours : -1, "%.2f").c_str(), fmt(t_cuda).c_str(),
                fmt(t_cuda >= 0 && cpu ? t_ours / t_cuda : -1, "%.1f").c_str());
  }
  return 0;
}
