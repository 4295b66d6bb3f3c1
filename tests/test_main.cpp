// doctest main for every test executable (Note [Skips] in test_util.h). A GPU executable
// (rg_test_needs_gpu, defined per executable by tests/CMakeLists.txt) exits 77 without a CUDA
// device, which ctest reports as skipped, or fails naming the CUDA error under RINGGRAD_REQUIRE_GPU;
// a run whose every test case skipped at run time exits 77 as well.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/cuda_api.h"
#include "test_util.h"

extern const bool rg_test_needs_gpu;

namespace {

int g_cases = 0, g_skipped_cases = 0;

// Counts the test cases run and those that skipped at run time (rg::test::skip_case).
struct SkipCounter : doctest::IReporter {
  explicit SkipCounter(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_start(const doctest::TestCaseData&) override {
    ++g_cases;
    (void)rg::test::take_case_skipped();
  }
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {
    if (rg::test::take_case_skipped()) ++g_skipped_cases;
  }
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};

}  // namespace

REGISTER_LISTENER("rg_skip_counter", 1, SkipCounter);

int main(int argc, char** argv) {
  if (rg_test_needs_gpu) {
    const std::string why = rg::test::missing_gpus(1);
    if (!why.empty()) {
      if (rg::test::required_gpus() >= 1) {
        std::printf("FAILED: RINGGRAD_REQUIRE_GPU=%s but this GPU test suite cannot run: %s\n",
                    std::getenv("RINGGRAD_REQUIRE_GPU"), why.c_str());
        return 1;
      }
      std::printf("skipped: %s\n", why.c_str());
      return 77;
    }
  }
  doctest::Context ctx;
  ctx.applyCommandLine(argc, argv);
  const int rc = ctx.run();
  if (ctx.shouldExit()) return rc;
  if (rc == 0 && g_cases > 0 && g_skipped_cases == g_cases) {
    std::printf("skipped: all %d test case(s) of this run skipped (see the \"skipped:\" lines)\n", g_cases);
    return 77;
  }
  return rc;
}
