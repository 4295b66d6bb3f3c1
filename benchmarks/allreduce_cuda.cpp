// bench_allreduce_cuda: how close does the CUDA ring (CUDA IPC, several ranks on ONE GPU) come to
// what the GPU's memory allows? f32 allreduce, 4 KiB..256 MiB, 2 and 4 ranks: algbw, busbw, and the
// ratio to the roofline implied by the device-to-device copy bandwidth measured in the same run.
// Usage: bench_allreduce_cuda [--ranks 2,4] [--min-kb 4] [--max-mb 256] [--budget-s 0.3] [--nccl]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/cuda_api.h"
#include "core/native.h"
#include "distributed/cuda_backends.h"
#include "distributed/launcher.h"
#include "distributed/process_group.h"
#ifdef RINGGRAD_WITH_CUDA
#include "cuda_kernels/comm.h"
#endif

#include "bench_util.h"

using namespace rg;

namespace {

struct Args {
  std::vector<int> ranks{2, 4};
  int64_t min_bytes = int64_t{4} << 10;
  int64_t max_bytes = int64_t{256} << 20;
  double budget_s = 0.3;  // timed seconds per size (split over 3 trials)
  bool nccl = false;      // also NCCL, one GPU per rank, when there are >= 2 GPUs
  // worker mode (ranks started by the driver, or by bench_allreduce's CUDA hook)
  bool worker = false;
  std::string backend = "ring";
  std::string out;        // rank 0 appends "bytes seconds" lines here
  bool table = true;      // rank 0 prints the table
};

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: bench_allreduce_cuda [--ranks 2,4] [--min-kb 4] [--max-mb 256] [--budget-s 0.3] [--nccl]\n"
               "       bench_allreduce_cuda --worker [--backend ring|nccl] [--out FILE] [--quiet] (under a launcher)\n");
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (k == "--worker") {
      a.worker = true;
    } else if (k == "--nccl") {
      a.nccl = true;
    } else if (k == "--quiet") {
      a.table = false;
    } else if (k == "--backend") {
      a.backend = next();
    } else if (k == "--out") {
      a.out = next();
    } else if (k == "--ranks") {
      a.ranks.clear();
      const std::string v = next();
      for (size_t p = 0; p < v.size();) {
        size_t c = v.find(',', p);
        if (c == std::string::npos) c = v.size();
        a.ranks.push_back(std::atoi(v.substr(p, c - p).c_str()));
        p = c + 1;
      }
    } else if (k == "--min-kb") {
      a.min_bytes = std::atoll(next().c_str()) << 10;
    } else if (k == "--max-mb") {
      a.max_bytes = std::atoll(next().c_str()) << 20;
    } else if (k == "--max-bytes") {
      a.max_bytes = std::atoll(next().c_str());
    } else if (k == "--budget-s") {
      a.budget_s = std::atof(next().c_str());
    } else {
      usage();
    }
  }
  return a;
}

std::string self_exe() {
  char buf[PATH_MAX] = {};
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

#ifdef RINGGRAD_WITH_CUDA

std::string human(int64_t bytes) {
  char b[32];
  if (bytes >= (int64_t{1} << 20)) {
    std::snprintf(b, sizeof(b), "%lld MiB", static_cast<long long>(bytes >> 20));
  } else {
    std::snprintf(b, sizeof(b), "%lld KiB", static_cast<long long>(bytes >> 10));
  }
  return b;
}

// Model (one GPU, N ranks, the ring of distributed/cuda_ring_schedule.h): per allreduce of S bytes
// each rank runs, in units of S/N of DRAM traffic (reads + writes): RS step 0 copy 2, RS steps
// 1..N-2 fused reduce-and-forward 3, the last RS step reduce + store + forward 4, AG steps 1..N-2
// store + forward 3, the last AG step store 2: (6N - 4) S / N per rank, (6N - 4) S for the GPU.
// A D2D copy of C bytes moves 2C, so with copy bandwidth B the best time is (6N - 4) S / 2B and the
// roofline algbw is 2B / (6N - 4). (IPC handshakes, launches and context switches are not in it.)
double roofline_algbw(double copy_bw, int n) { return 2.0 * copy_bw / (6.0 * n - 4.0); }

// Copy bandwidth (bytes copied per second) of cudaMemcpyAsync D2D and of the ring's copy kernel.
void measure_copy(int dev, double* memcpy_bw, double* kernel_bw) {
  const int64_t bytes = int64_t{256} << 20;
  Tensor a = rg::empty(Shape{bytes}, TensorOptions(DType::u8).device(Device::cuda(dev)));
  Tensor b = rg::empty(Shape{bytes}, TensorOptions(DType::u8).device(Device::cuda(dev)));
  const cuda::Stream s = cuda::current_stream(dev);
  auto time_it = [&](bool kernel) {
    std::vector<double> ms;
    for (int rep = 0; rep < 7; ++rep) {
      cuda::Event e0(true), e1(true);
      e0.record(s);
      if (kernel) {
        cuda::ring_copy_cuda(b.data_ptr(), nullptr, a.data_ptr(), bytes, s.handle);
      } else {
        cuda::memcpy(b.data_ptr(), a.data_ptr(), static_cast<size_t>(bytes), cuda::CopyKind::DeviceToDevice, true);
      }
      e1.record(s);
      e1.synchronize();
      if (rep > 0) ms.push_back(e0.elapsed_ms(e1));
    }
    return static_cast<double>(bytes) / (bench::median(ms) * 1e-3);
  };
  *memcpy_bw = time_it(false);
  *kernel_bw = time_it(true);
}

int run_worker(const Args& a) {
  dist::register_cuda_backends();
  const char* lr = std::getenv("LOCAL_RANK");
  const int ndev = cuda::device_count();
  const int dev = ndev > 0 ? (lr ? std::atoi(lr) : 0) % ndev : 0;
  cuda::set_device(dev);
  dist::InitOptions io;
  io.backend = a.backend;
  io.device = Device::cuda(dev);
  auto pg = dist::init_process_group(io);
  const int N = pg->size(), r = pg->rank();
  const bool one_gpu = a.backend == "ring";

  double copy_bw = 0, kernel_bw = 0;
  if (r == 0 && a.table) {
    measure_copy(dev, &copy_bw, &kernel_bw);
    std::printf("\n%s, %d ranks on %s: D2D copy %.0f GB/s (cudaMemcpyAsync), %.0f GB/s (ring copy kernel)\n",
                a.backend.c_str(), N, cuda::device_name(dev).c_str(), copy_bw / 1e9, kernel_bw / 1e9);
    if (one_gpu) {
      std::printf("roofline algbw = 2 * copy / (6N - 4) = %.1f GB/s\n", roofline_algbw(copy_bw, N) / 1e9);
    }
    std::printf("%6s %9s %11s %11s %11s %9s\n", "ranks", "size", "time_us", "algbw GB/s", "busbw GB/s",
                one_gpu ? "roofline" : "");
    std::fflush(stdout);
  }
  std::ofstream out;
  if (r == 0 && !a.out.empty()) out.open(a.out);
  pg->barrier()->wait();

  // One zeroed buffer; every size is a prefix view of it (zeros stay zeros under sum).
  const int64_t max_n = a.max_bytes / 4;
  Tensor buf = rg::empty(Shape{max_n}, TensorOptions(DType::f32).device(Device::cuda(dev)));
  {
    std::vector<float> zeros(static_cast<size_t>(max_n), 0.0f);
    cuda::memcpy(buf.data_ptr(), zeros.data(), zeros.size() * sizeof(float), cuda::CopyKind::HostToDevice);
  }
  Tensor iters_dev = rg::empty(Shape{1}, TensorOptions(DType::i32).device(Device::cuda(dev)));
  for (int64_t bytes = a.min_bytes; bytes <= a.max_bytes; bytes *= 4) {
    Tensor x = native::narrow(buf, 0, 0, bytes / 4);
    auto t = std::chrono::steady_clock::now();
    for (int w = 0; w < 3; ++w) pg->allreduce(x)->wait();
    pg->allreduce(x)->synchronize();
    const double warm = std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count() / 4;
    // Every rank runs the same count: rank 0's choice (max over ranks; the others offer 0).
    int32_t iters = r == 0 ? static_cast<int32_t>(std::clamp(a.budget_s / 3 / std::max(warm, 1e-9), 3.0, 2000.0)) : 0;
    cuda::memcpy(iters_dev.data_ptr(), &iters, sizeof(iters), cuda::CopyKind::HostToDevice);
    pg->allreduce(iters_dev, dist::ReduceOp::Max)->wait();
    cuda::memcpy(&iters, iters_dev.data_ptr(), sizeof(iters), cuda::CopyKind::DeviceToHost);
    std::vector<double> per_op;
    for (int trial = 0; trial < 3; ++trial) {
      pg->barrier()->wait();
      t = std::chrono::steady_clock::now();
      std::shared_ptr<dist::Work> last;
      for (int i = 0; i < iters; ++i) {
        last = pg->allreduce(x);
        last->wait();  // orders the caller's stream only; the next call queues behind it
      }
      last->synchronize();
      per_op.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count() / iters);
    }
    const double sec = bench::median(per_op);
    if (r == 0) {
      if (out.is_open()) out << bytes << " " << sec << "\n" << std::flush;
      if (a.table) {
        const double alg = static_cast<double>(bytes) / sec;
        const double bus = alg * 2.0 * (N - 1) / N;
        if (one_gpu) {
          std::printf("%6d %9s %11.1f %11.2f %11.2f %8.0f%%\n", N, human(bytes).c_str(), sec * 1e6, alg / 1e9,
                      bus / 1e9, 100.0 * alg / roofline_algbw(copy_bw, N));
        } else {
          std::printf("%6d %9s %11.1f %11.2f %11.2f\n", N, human(bytes).c_str(), sec * 1e6, alg / 1e9, bus / 1e9);
        }
        std::fflush(stdout);
      }
    }
  }
  pg->barrier()->wait();
  dist::destroy_process_group();
  return 0;
}

int launch_ranks(const Args& a, const std::string& backend, int n) {
  dist::LaunchOptions o;
  o.nproc_per_node = n;
  o.backend = backend;
  o.program = self_exe();
  o.args = {"--worker", "--backend", backend, "--min-kb", std::to_string(a.min_bytes >> 10), "--max-bytes",
            std::to_string(a.max_bytes), "--budget-s", std::to_string(a.budget_s)};
  o.verbose = false;
  const dist::LaunchResult res = dist::launch(o);
  if (res.exit_code != 0) {
    std::fprintf(stderr, "bench_allreduce_cuda: %s with %d ranks failed: %s\n", backend.c_str(), n,
                 res.message.c_str());
  }
  return res.exit_code;
}

#endif  // RINGGRAD_WITH_CUDA

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
#ifndef RINGGRAD_WITH_CUDA
  (void)a;
  (void)self_exe;
  std::printf("bench_allreduce_cuda: ringgrad was built without CUDA; nothing to measure\n");
  return 0;
#else
  try {
    if (a.worker) return run_worker(a);
    // The driver never initialises CUDA (the launcher forks): GPUs are counted from /dev.
    const int gpus = dist::visible_gpus().count();
    if (gpus == 0) {
      std::printf("bench_allreduce_cuda: no CUDA device visible; nothing to measure\n");
      return 0;
    }
    std::printf("bench_allreduce_cuda: the CUDA ring (IPC) with several ranks on one GPU, f32 sum\n"
                "model: an allreduce of S bytes by N ranks on one GPU moves (6N-4)*S bytes through its memory\n"
                "(see the source); roofline = that traffic at the D2D copy bandwidth measured in the same run;\n"
                "busbw = algbw * 2(N-1)/N\n");
    std::fflush(stdout);
    int rc = 0;
    for (int n : a.ranks) rc |= launch_ranks(a, "ring", n);
    if (a.nccl) {
      if (gpus >= 2) {
        rc |= launch_ranks(a, "nccl", gpus);
      } else {
        std::printf("\nnccl: skipped (one GPU visible; NCCL needs one per rank)\n");
      }
    }
    return rc == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_allreduce_cuda: %s\n", e.what());
    return 1;
  }
#endif
}
