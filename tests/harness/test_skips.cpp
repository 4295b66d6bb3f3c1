// The skip rules of Note [Skips] (tests/test_util.h), seen from outside: a GPU executable and the
// GPU cases of a CPU executable exit 77 (ctest's "skipped") without a device, and fail naming the
// CUDA runtime's error under RINGGRAD_REQUIRE_GPU. The devices are hidden with
// CUDA_VISIBLE_DEVICES= so the same checks hold on a machine that has GPUs.
#include <doctest/doctest.h>
#include <stdio.h>
#include <sys/wait.h>

#include <string>

#include "core/cuda_api.h"
#include "test_util.h"

namespace {

struct Run {
  int code = -1;  // the exit code, -1 when the program did not exit normally
  std::string out;
};

// Runs `program args` with the environment changes `env` (an `env` command prefix), output and
// errors together.
Run run(const std::string& env, const std::string& program, const std::string& args) {
  const std::string cmd = "env " + env + " " + program + " " + args + " 2>&1";
  Run r;
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE_MESSAGE(p != nullptr, cmd);
  char buf[1024];
  while (std::fgets(buf, sizeof(buf), p)) r.out += buf;
  const int status = ::pclose(p);
  if (WIFEXITED(status)) r.code = WEXITSTATUS(status);
  return r;
}

const char* const kHidden = "CUDA_VISIBLE_DEVICES=";
const std::string kRequired = std::string(kHidden) + " RINGGRAD_REQUIRE_GPU=1";
const std::string kNotRequired = std::string("-u RINGGRAD_REQUIRE_GPU ") + kHidden;

// What the runtime says when it finds no device: its error name, or the CUDA-free build's reason.
std::string runtime_error_part() {
  return rg::cuda::built_with_cuda() ? "cudaGetDeviceCount failed: cudaError" : "ringgrad built without CUDA";
}

}  // namespace

TEST_CASE("a GPU suite without a device: skipped (77), or a failure naming the CUDA error when required") {
  const Run skipped = run(kNotRequired, RG_KERNELS_GPU_BIN, "");
  CHECK_MESSAGE(skipped.code == 77, skipped.out);
  CHECK_MESSAGE(rg::test::contains(skipped.out, "skipped: needs 1 CUDA device, 0 visible"), skipped.out);
  const Run zero = run(std::string(kHidden) + " RINGGRAD_REQUIRE_GPU=0", RG_KERNELS_GPU_BIN, "");
  CHECK_MESSAGE(zero.code == 77, zero.out);  // 0 promises nothing

  const Run failed = run(kRequired, RG_KERNELS_GPU_BIN, "");
  CHECK_MESSAGE(failed.code != 0, failed.out);
  CHECK_MESSAGE(failed.code != 77, failed.out);
  CHECK_MESSAGE(rg::test::contains(failed.out, "FAILED: RINGGRAD_REQUIRE_GPU=1 but this GPU test suite cannot run"),
                failed.out);
  CHECK_MESSAGE(rg::test::contains(failed.out, runtime_error_part()), failed.out);
}

TEST_CASE("the GPU cases of a CPU executable: skipped (77) as a run, failures when a GPU is required") {
  const Run skipped = run(kNotRequired, RG_NN_BIN, "--test-suite=gpu");
  CHECK_MESSAGE(skipped.code == 77, skipped.out);
  CHECK_MESSAGE(rg::test::contains(skipped.out, "MESSAGE: skipped: needs 1 CUDA device"), skipped.out);
  CHECK_MESSAGE(rg::test::contains(skipped.out, "test case(s) of this run skipped"), skipped.out);

  const Run failed = run(kRequired, RG_NN_BIN, "--test-suite=gpu");
  CHECK_MESSAGE(failed.code != 0, failed.out);
  CHECK_MESSAGE(failed.code != 77, failed.out);
  CHECK_MESSAGE(rg::test::contains(failed.out, "ERROR: RINGGRAD_REQUIRE_GPU=1 but this test case cannot run: needs 1 "
                                               "CUDA device, 0 visible (" + runtime_error_part()),
                failed.out);
  CHECK_MESSAGE(!rg::test::contains(failed.out, "MESSAGE: skipped"), failed.out);

  // A run with runnable cases is not a skip: the batch-norm cases pass, with or without the variable.
  const Run mixed = run(kRequired, RG_NN_BIN, "--test-suite-exclude=gpu,python --test-case=*batch_norm*");
  CHECK_MESSAGE(mixed.code == 0, mixed.out);
}
