// End-to-end: `ringgrad bench dp-vs-ddp` at a tiny size on the CPU (ResNet-18 small-input, 16x16,
// replicas 1,2): the run succeeds, and the CSV, the SVG and the report hold the expected rows,
// columns and figures, checked against values worked out here (parameter count, batch sizes,
// ratios recomputed from other columns, no hidden communication without overlap).
#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "launch_util.h"

namespace fs = std::filesystem;

namespace {

using rg::test::read_file;
using rg::test::ringgrad_bin;

struct TempDir : rg::test::ScratchDir {
  TempDir() : ScratchDir("rg_bench_e2e_") {}
};

// Runs `cmd` through the shell with stdout and stderr into `log`; returns the exit status.
int run(const std::string& cmd, const fs::path& log) {
  const int st = std::system((cmd + " > " + log.string() + " 2>&1").c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

std::vector<std::string> split(const std::string& line, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream ss(line);
  while (std::getline(ss, cur, sep)) out.push_back(cur);
  return out;
}

size_t count(const std::string& s, const std::string& needle) {
  size_t n = 0;
  for (size_t p = s.find(needle); p != std::string::npos; p = s.find(needle, p + needle.size())) ++n;
  return n;
}

}  // namespace

TEST_CASE("bench dp-vs-ddp: tiny CPU run writes a complete CSV, an SVG and the report") {
  const std::string bin = ringgrad_bin();
  REQUIRE_MESSAGE(fs::exists(bin), "ringgrad not found at ", bin, " (build the ringgrad target, or set RINGGRAD_BIN)");
  TempDir tmp;
  const fs::path out = tmp.path / "bench";
  const fs::path log = tmp.path / "bench.log";
  const int64_t batch = 2;
  const std::string cmd = bin + " bench dp-vs-ddp --device cpu --model resnet18 --small-input --image-size 16 "
                                "--batch-per-replica 2 --steps 2 --warmup 1 --replicas 1,2 --out " + out.string();
  const int rc = run(cmd, log);
  const std::string report = read_file(log);
  INFO("command: ", cmd);
  INFO("output:\n", report);
  REQUIRE(rc == 0);

  // ---- CSV: the header, then one row per mode x N in the driver's order.
  std::ifstream csv(out / "dp_vs_ddp.csv");
  REQUIRE(csv.good());
  std::string header;
  REQUIRE(std::getline(csv, header));
  const std::vector<std::string> expected_cols = {
      "mode", "n", "device", "backend", "model", "image_size", "batch_per_replica", "global_batch", "steps",
      "threads_per_replica", "images_per_s", "scaling_efficiency", "step_ms", "replicate_ms", "scatter_ms",
      "forward_ms", "gather_ms", "backward_ms", "reduce_ms", "comm_wait_ms", "optimizer_ms", "comm_ms",
      "hidden_fraction", "comm_share", "overlap_speedup", "peak_mem_mib", "grad_mib", "buckets", "other_load_cores", "own_cores"};
  const std::vector<std::string> cols = split(header, ',');
  REQUIRE(cols == expected_cols);
  std::map<std::string, size_t> col;
  for (size_t i = 0; i < cols.size(); ++i) col[cols[i]] = i;

  std::vector<std::vector<std::string>> rows;
  for (std::string line; std::getline(csv, line);) {
    if (line.empty()) continue;
    rows.push_back(split(line, ','));
    REQUIRE(rows.back().size() == cols.size());
  }
  const std::vector<std::pair<std::string, int>> expected_rows = {{"single", 1}, {"dp", 1},  {"ddp", 1},
                                                                  {"dp", 2},     {"ddp", 2}, {"ddp_no_overlap", 2}};
  REQUIRE(rows.size() == expected_rows.size());
  auto num = [&](const std::vector<std::string>& r, const std::string& c) { return std::stod(r[col.at(c)]); };
  auto find = [&](const std::string& mode, int n) -> const std::vector<std::string>& {
    for (const auto& r : rows) {
      if (r[col.at("mode")] == mode && std::stoi(r[col.at("n")]) == n) return r;
    }
    FAIL("no row for ", mode, " N=", n);
    return rows[0];
  };

  // ResNet-18 with the small-input stem and 1000 classes: torchvision's 11,689,512 parameters with
  // conv1 7x7x3x64 (9,408) replaced by 3x3x3x64 (1,728), all f32.
  const double grad_mib = (11689512.0 - 9408.0 + 1728.0) * 4.0 / (1024.0 * 1024.0);
  const double single_ips = num(find("single", 1), "images_per_s");
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    const auto& [mode, n] = expected_rows[i];
    CAPTURE(mode);
    CAPTURE(n);
    CHECK(r[col.at("mode")] == mode);
    CHECK(std::stoi(r[col.at("n")]) == n);
    CHECK(r[col.at("model")] == "resnet18-small");
    CHECK(num(r, "image_size") == 16);
    CHECK(num(r, "batch_per_replica") == batch);
    CHECK(num(r, "global_batch") == n * batch);
    CHECK(num(r, "steps") == 2);
    CHECK(num(r, "threads_per_replica") >= 1);
    CHECK(std::fabs(num(r, "grad_mib") - grad_mib) < 1e-3);
    // Sane positive figures.
    for (const char* c : {"images_per_s", "scaling_efficiency", "step_ms", "forward_ms", "backward_ms", "optimizer_ms",
                          "peak_mem_mib"}) {
      CAPTURE(c);
      CHECK(num(r, c) > 0);
      CHECK(std::isfinite(num(r, c)));
    }
    for (const char* c : {"replicate_ms", "scatter_ms", "gather_ms", "reduce_ms", "comm_wait_ms", "comm_ms"}) {
      CAPTURE(c);
      CHECK(num(r, c) >= 0);
    }
    CHECK(num(r, "hidden_fraction") >= 0);
    CHECK(num(r, "hidden_fraction") <= 1.0 + 1e-9);
    // The phases add up to the step.
    const double phases = num(r, "replicate_ms") + num(r, "scatter_ms") + num(r, "forward_ms") + num(r, "gather_ms") +
                          num(r, "backward_ms") + num(r, "reduce_ms") + num(r, "comm_wait_ms") +
                          num(r, "optimizer_ms");
    CHECK(std::fabs(phases - num(r, "step_ms")) <= 0.01 + 1e-3 * num(r, "step_ms"));
    // Scaling efficiency is images/s over N times the single device's.
    CHECK(num(r, "scaling_efficiency") == doctest::Approx(num(r, "images_per_s") / (n * single_ips)).epsilon(2e-3));
  }
  // DataParallel with 2 replicas replicates the parameters and reduces the gradients.
  CHECK(num(find("dp", 2), "replicate_ms") > 0);
  CHECK(num(find("dp", 2), "reduce_ms") > 0);
  CHECK(find("dp", 2)[col.at("backend")] == "-");
  // DDP with 2 ranks communicates in buckets; without overlap nothing runs under backward.
  const auto& ddp2 = find("ddp", 2);
  const auto& noov = find("ddp_no_overlap", 2);
  CHECK(ddp2[col.at("backend")] == "ring");
  CHECK(num(ddp2, "comm_ms") > 0);
  CHECK(num(ddp2, "buckets") >= 2);  // 1 MiB first bucket, then 25 MiB ones, for 44.6 MiB of gradients
  CHECK(num(noov, "comm_ms") > 0);
  CHECK(num(noov, "comm_wait_ms") > 0);
  CHECK(num(noov, "hidden_fraction") == 0.0);
  CHECK(num(noov, "buckets") == num(ddp2, "buckets"));
  CHECK(num(ddp2, "overlap_speedup") ==
        doctest::Approx(num(ddp2, "images_per_s") / num(noov, "images_per_s")).epsilon(2e-3));

  // ---- SVG: a complete document with axes, labels, a legend and one marker per measured point.
  const std::string svg = read_file(out / "dp_vs_ddp.svg");
  REQUIRE(svg.rfind("<svg", 0) == 0);
  CHECK(svg.find("</svg>") != std::string::npos);
  CHECK(svg.find("images / s") != std::string::npos);
  CHECK(svg.find("replicas / ranks (N)") != std::string::npos);
  for (const char* label : {"single device", "DataParallel", "DDP (overlapped)", "DDP (no overlap)", "ideal"}) {
    CAPTURE(label);
    CHECK(svg.find(label) != std::string::npos);
  }
  // Points: ideal at N=1,2; single at 1; dp at 1,2; ddp at 1,2; ddp_no_overlap at 2.
  CHECK(count(svg, "<circle") == 8);
  CHECK(count(svg, "<polyline") == 3);  // ideal, dp, ddp (the others have one point each)

  // ---- report: fairness, the bucket model check and the prediction for 2, 4 and 8 GPUs.
  CHECK(report.find("threads (fairness)") != std::string::npos);
  CHECK(report.find("bucket model check (ddp_no_overlap, N=2)") != std::string::npos);
  CHECK(report.find("analytical prediction") != std::string::npos);
  CHECK(count(report, "370GB/s") == 3);
  CHECK(count(report, "25GB/s") == 3);
  CHECK(report.find("CPU, 2 replicas: DDP / DP images/s") != std::string::npos);
}

TEST_CASE("bench dp-vs-ddp: bad arguments fail naming them") {
  const std::string bin = ringgrad_bin();
  REQUIRE(fs::exists(bin));
  TempDir tmp;
  const fs::path log = tmp.path / "bad.log";
  CHECK(run(bin + " bench dp-vs-ddp --bogus 3", log) != 0);
  CHECK(read_file(log).find("--bogus") != std::string::npos);
  CHECK(run(bin + " bench dp-vs-ddp --replicas 1,x", log) != 0);
  CHECK(read_file(log).find("--replicas") != std::string::npos);
  CHECK(run(bin + " bench no-such-benchmark", log) != 0);
  CHECK(read_file(log).find("no-such-benchmark") != std::string::npos);
}
