// Our COCO evaluation against pycocotools' COCOeval, the evaluator detection papers report: random
// ground truth (crowd boxes, every area range) and detections (ties in score, more than 100 per image
// and class) written as COCO json, evaluated by Python in a subprocess, all 12 numbers to 1e-6.
// Python: $RG_TEST_PYTHON (scripts/test.sh points it at a venv with pycocotools), else python3; when
// it cannot import pycocotools the test case is skipped, saying why.
#include <doctest/doctest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "metrics/coco_eval.h"
#include "test_util.h"

using namespace rg;
using namespace rg::metrics;

namespace {

std::string python() {
  const char* p = std::getenv("RG_TEST_PYTHON");
  return p && *p ? p : "python3";
}

// Runs a shell command, returning its exit status and everything it printed.
std::pair<int, std::string> run(const std::string& cmd) {
  std::string out;
  FILE* f = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!f) return {-1, "popen failed"};
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) out.append(buf.data(), n);
  const int status = ::pclose(f);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// Empty when pycocotools can be imported; otherwise why not (checked once, when the case registers).
const std::string& oracle_problem() {
  static const std::string problem = [] {
    const auto [rc, out] = run(python() + " -c \"import numpy, pycocotools.coco, pycocotools.cocoeval\"");
    if (rc == 0) return std::string();
    std::string last = out;  // the error's last line says it best ("No module named 'pycocotools'")
    while (!last.empty() && last.back() == '\n') last.pop_back();
    last = last.substr(last.rfind('\n') == std::string::npos ? 0 : last.rfind('\n') + 1);
    std::string why = python() + " cannot import pycocotools/numpy (" + last.substr(0, 200) +
                      "); run scripts/test.sh, or set RG_TEST_PYTHON to a python that has them";
    std::fprintf(stderr, "test_metrics: skipping 'COCO evaluation equals pycocotools': %s\n", why.c_str());
    return why;
  }();
  return problem;
}

constexpr const char* kScript = R"(import json, sys
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
gt = COCO(sys.argv[1])
dt = gt.loadRes(sys.argv[2])
e = COCOeval(gt, dt, 'bbox')
e.evaluate(); e.accumulate(); e.summarize()
print('STATS ' + ' '.join(repr(float(x)) for x in e.stats))
)";

std::string num(double v) {
  char b[40];
  std::snprintf(b, sizeof(b), "%.17g", v);
  return b;
}

// Random images: up to 12 boxes each over 4 classes, areas from ~20 to ~300 pixels a side, 1 in 8
// crowd; detections near the boxes and at random, scores on a 0.05 grid (many ties); image 5 gets
// 130 detections of class 1 (the 100-per-image cut matters).
std::vector<ImageRecord> random_records(uint64_t seed, int images) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(0, 1);
  auto side = [&] { return 4 + std::exp(u(g) * std::log(80.0)) * 4; };
  std::vector<ImageRecord> out;
  for (int i = 0; i < images; ++i) {
    ImageRecord r;
    r.image_id = 100 + 3 * i;
    const int ngt = static_cast<int>(u(g) * 13);
    for (int k = 0; k < ngt; ++k) {
      GtBox b;
      b.w = side();
      b.h = side();
      b.x = u(g) * 640;
      b.y = u(g) * 480;
      b.category = static_cast<int64_t>(u(g) * 4);
      b.crowd = u(g) < 0.125;
      r.gts.push_back(b);
    }
    const int ndet = i == 5 ? 130 : static_cast<int>(u(g) * 40);
    for (int k = 0; k < ndet; ++k) {
      DetBox d;
      if (!r.gts.empty() && u(g) < 0.7) {
        const GtBox& b = r.gts[static_cast<size_t>(u(g) * r.gts.size())];
        const double j = 0.25 * u(g);
        d.x = b.x + (u(g) - 0.5) * j * b.w;
        d.y = b.y + (u(g) - 0.5) * j * b.h;
        d.w = b.w * (1 + (u(g) - 0.5) * j);
        d.h = b.h * (1 + (u(g) - 0.5) * j);
        d.category = u(g) < 0.85 ? b.category : static_cast<int64_t>(u(g) * 4);
      } else {
        d.w = side();
        d.h = side();
        d.x = u(g) * 640;
        d.y = u(g) * 480;
        d.category = static_cast<int64_t>(u(g) * 4);
      }
      if (i == 5) d.category = 1;
      d.score = std::floor(u(g) * 20) / 20 + 0.05;
      r.dets.push_back(d);
    }
    out.push_back(r);
  }
  return out;
}

void write_json(const std::vector<ImageRecord>& recs, const std::string& gt_path, const std::string& dt_path) {
  std::ostringstream gt, dt;
  gt << "{\"images\": [";
  for (size_t i = 0; i < recs.size(); ++i) gt << (i ? ", " : "") << "{\"id\": " << recs[i].image_id << "}";
  gt << "], \"categories\": [{\"id\": 1}, {\"id\": 2}, {\"id\": 3}, {\"id\": 4}], \"annotations\": [";
  int64_t id = 1;
  bool first = true, first_dt = true;
  dt << "[";
  for (const ImageRecord& r : recs) {
    for (const GtBox& b : r.gts) {
      gt << (first ? "" : ", ") << "{\"id\": " << id++ << ", \"image_id\": " << r.image_id
         << ", \"category_id\": " << b.category + 1 << ", \"bbox\": [" << num(b.x) << ", " << num(b.y) << ", "
         << num(b.w) << ", " << num(b.h) << "], \"area\": " << num(b.area_or_box()) << ", \"iscrowd\": " << b.crowd
         << "}";
      first = false;
    }
    for (const DetBox& d : r.dets) {
      dt << (first_dt ? "" : ", ") << "{\"image_id\": " << r.image_id << ", \"category_id\": " << d.category + 1
         << ", \"bbox\": [" << num(d.x) << ", " << num(d.y) << ", " << num(d.w) << ", " << num(d.h)
         << "], \"score\": " << num(d.score) << "}";
      first_dt = false;
    }
  }
  gt << "]}";
  dt << "]";
  std::ofstream(gt_path) << gt.str();
  std::ofstream(dt_path) << dt.str();
}

}  // namespace

TEST_CASE("COCO evaluation equals pycocotools' COCOeval: all 12 numbers to 1e-6 on random data" *
          doctest::test_suite("python")) {
  RG_SKIP_IF(oracle_problem());  // a visible skip: ctest's test_metrics_python entry (Note [Skips])
  char tmpl[] = "/tmp/rgcoco-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  std::ofstream(dir + "/eval.py") << kScript;
  for (uint64_t seed : {1, 2, 3}) {
    CAPTURE(seed);
    const std::vector<ImageRecord> recs = random_records(seed, seed == 3 ? 60 : 25);
    write_json(recs, dir + "/gt.json", dir + "/dt.json");
    const auto [rc, out] = run(python() + " " + dir + "/eval.py " + dir + "/gt.json " + dir + "/dt.json");
    REQUIRE_MESSAGE(rc == 0, out);
    const size_t at = out.find("STATS ");
    REQUIRE_MESSAGE(at != std::string::npos, out);
    std::istringstream in(out.substr(at + 6));
    EvalOptions o;
    o.num_classes = 4;
    const DetectionMetrics m = evaluate_detections(recs, o);
    for (int i = 0; i < 12; ++i) {
      double want = 0;
      in >> want;
      CAPTURE(i);
      CHECK(std::fabs(m.stats[i] - want) <= 1e-6);
    }
    CHECK(m.stats[0] > 0.05);  // the data are not degenerate: real matches at every threshold
  }
  std::filesystem::remove_all(dir);
}
