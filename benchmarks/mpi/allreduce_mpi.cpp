// Open MPI's MPI_Allreduce (float sum, in place) over the sizes bench_allreduce uses: the reference
// its shared-memory ring is compared with. Run by bench_allreduce through
// `mpirun --oversubscribe --allow-run-as-root -np 2`; rank 0 prints "<bytes> <seconds per call>".
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const long long max_bytes = argc > 1 ? std::atoll(argv[1]) : (256LL << 20);
  const double budget_s = argc > 2 ? std::atof(argv[2]) : 0.3;
  for (long long bytes = 4096; bytes <= max_bytes; bytes *= 4) {
    const long long n = bytes / 4;
    std::vector<float> buf(static_cast<size_t>(n));
    for (long long i = 0; i < n; ++i) buf[static_cast<size_t>(i)] = static_cast<float>((i + rank) % 7) * 0.5f;
    // Warm up, then let rank 0 choose an iteration count that fits the time budget.
    double t = MPI_Wtime();
    for (int k = 0; k < 2; ++k) MPI_Allreduce(MPI_IN_PLACE, buf.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    t = (MPI_Wtime() - t) / 2;
    int iters = std::clamp(static_cast<int>(budget_s / std::max(t, 1e-9)), 3, 2000);
    MPI_Bcast(&iters, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime();
    for (int k = 0; k < iters; ++k) {
      MPI_Allreduce(MPI_IN_PLACE, buf.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
    const double per = (MPI_Wtime() - t0) / iters;
    if (rank == 0) std::printf("%lld %.9f\n", bytes, per);
    std::fflush(stdout);
  }
  MPI_Finalize();
  return 0;
}
