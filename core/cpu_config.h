// Process-wide switches for the CPU backend, in the spirit of torch.set_flush_denormal.
#pragma once

namespace rg {

// Note [Flush denormals]
// set_flush_denormal(true) sets the x86 MXCSR bits FTZ (results that would be denormal become zero) and
// DAZ (denormal inputs read as zero), like torch.set_flush_denormal. Denormal f32 values (below
// 1.18e-38) take a slow microcode path, often 10-100x slower per instruction; late in training,
// gradients of a well-fitted batch drift into that range and a CPU backward can slow down severalfold.
// MXCSR is per thread. The call applies to the calling thread and to every thread of the OpenMP pool
// (the pool runs our parallel_for and Eigen's GEMM); threads created later inherit the creating
// thread's floating-point environment (pthread_create), so set it before starting worker threads.
// Returns false, changing nothing, where the CPU has no such mode (not x86 with SSE2).
bool set_flush_denormal(bool on);
bool flush_denormal();  // the calling thread's current FTZ/DAZ state (false where unsupported)

}  // namespace rg
