// The CUDA twins of the detection ops against the CPU (label gpu): the nms kernel keeps exactly the
// CPU's boxes on random odd sizes with ties in every float dtype, and so does the whole
// non_max_suppression on the same decoded rows; decode and both YOLO losses (value and gradient)
// agree to float tolerance.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "kernel_test_util.h"
#include "models/yolo_decode.h"
#include "models/yolo_loss.h"

using namespace rg;
using namespace rg::ktest;
using namespace rg::models;

namespace {

// n boxes in clusters (so that NMS suppresses a lot), scores on a coarse grid (many ties).
std::pair<Tensor, Tensor> random_boxes(int64_t n, uint64_t seed, DType dt) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<double> b, s;
  for (int64_t i = 0; i < n; ++i) {
    const double cx = std::floor(u(g) * 8) * 60 + u(g) * 20, cy = std::floor(u(g) * 8) * 60 + u(g) * 20;
    const double w = 10 + u(g) * 40, h = 10 + u(g) * 40;
    b.insert(b.end(), {cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2});
    s.push_back(std::floor(u(g) * 16) / 16);
  }
  return {from_vector<double>(b, {n, 4}).to(dt), from_vector<double>(s).to(dt)};
}

std::vector<int64_t> ints(const Tensor& t) { return native::to(t, kCPU, DType::i64).to_vector<int64_t>(); }

}  // namespace

TEST_CASE("nms CUDA keeps exactly the CPU's boxes: random odd sizes, ties, every float dtype, caps") {
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    for (int64_t n : {1, 7, 63, 64, 65, 129, 1031, 5003}) {
      const std::string name = dtype_name(dt);
      CAPTURE(name);
      CAPTURE(n);
      const auto [b, s] = random_boxes(n, static_cast<uint64_t>(n) * 31 + static_cast<uint64_t>(dt), dt);
      const Tensor gb = to_gpu(b), gs = to_gpu(s);
      for (double thr : {0.3, 0.5, 0.7}) {
        CHECK(ints(native::nms(gb, gs, thr)) == ints(native::nms(b, s, thr)));
        CHECK(ints(native::nms(gb, gs, thr, 0.25)) == ints(native::nms(b, s, thr, 0.25)));
        CHECK(ints(native::nms(gb, gs, thr, 0.1, n / 2 + 1, 17)) == ints(native::nms(b, s, thr, 0.1, n / 2 + 1, 17)));
      }
    }
  }
  CHECK(native::nms(to_gpu(zeros({0, 4})), to_gpu(zeros({0})), 0.5).numel() == 0);
  CHECK(native::nms(to_gpu(zeros({5, 4})), to_gpu(zeros({5})), 0.5, 0.5).numel() == 0);  // no candidates
}

TEST_CASE("non_max_suppression on CUDA returns the CPU's rows exactly for the same decoded input") {
  const int64_t B = 3, R = 2000, C = 5;
  std::vector<double> v;
  std::mt19937_64 g(7);
  std::uniform_real_distribution<double> u(0, 1);
  for (int64_t i = 0; i < B * R; ++i) {
    v.insert(v.end(), {std::floor(u(g) * 10) * 40 + u(g) * 10, std::floor(u(g) * 10) * 40 + u(g) * 10, 10 + u(g) * 50,
                       10 + u(g) * 50, std::floor(u(g) * 8) / 8});
    for (int64_t c = 0; c < C; ++c) v.push_back(std::floor(u(g) * 8) / 8);
  }
  const Tensor d = from_vector<double>(v, {B, R, 5 + C}).to(DType::f32);
  for (bool multi : {false, true}) {
    for (bool agnostic : {false, true}) {
      NmsOptions o;
      o.conf_thres = 0.05;
      o.iou_thres = 0.45;
      o.multi_label = multi;
      o.agnostic = agnostic;
      CAPTURE(multi);
      CAPTURE(agnostic);
      const std::vector<Tensor> cpu = non_max_suppression(d, o), gpu = non_max_suppression(to_gpu(d), o);
      for (int64_t b = 0; b < B; ++b) {
        RG_CHECK_CLOSE(to_cpu(gpu[static_cast<size_t>(b)]), cpu[static_cast<size_t>(b)], (test::Tol{0, 0}));
      }
    }
  }
}

TEST_CASE("yolo_decode and the YOLO losses on CUDA match the CPU") {
  YoloHeadSpec h0, h1;
  h0.all_anchors = h1.all_anchors = {{{10, 13}}, {{16, 30}}, {{33, 23}}, {{30, 61}}, {{62, 45}}, {{59, 119}}};
  h0.anchors = {{{30, 61}}, {{62, 45}}, {{59, 119}}};
  h0.mask = {3, 4, 5};
  h0.stride = 32;
  h1.anchors = {{{10, 13}}, {{16, 30}}, {{33, 23}}};
  h1.mask = {0, 1, 2};
  h1.stride = 16;
  h0.num_classes = h1.num_classes = 7;
  h1.scale_x_y = 1.1f;
  const std::vector<YoloHeadSpec> heads = {h0, h1};
  const int64_t B = 3, H = 96, W = 160, rows = 3 * (3 * 5) + 3 * (6 * 10);
  const Tensor flat = test::uniform({B, rows, 12}, -3, 3, DType::f32, 99);
  RG_CHECK_CLOSE(to_cpu(yolo_decode(to_gpu(flat), heads, H, W)), yolo_decode(flat, heads, H, W),
                 (test::Tol{1e-4, 1e-5}));
  const Tensor t = from_vector<double>(
      {0, 3, 0.2, 0.3, 0.1, 0.2, 0, 1, 0.7, 0.6, 0.4, 0.3, 2, 6, 0.5, 0.5, 0.05, 0.08, 2, 6, 0.52, 0.51, 0.06, 0.07},
      {4, 6});
  for (YoloLossKind kind : {YoloLossKind::V3, YoloLossKind::Darknet}) {
    YoloLossOptions o;
    o.kind = kind;
    Tensor pc = flat.clone(), pg = to_gpu(flat);
    pc.set_requires_grad();
    pg.set_requires_grad();
    const YoloLossResult rc = yolo_loss(pc, t, heads, H, W, o), rgpu = yolo_loss(pg, t, heads, H, W, o);
    CHECK(rgpu.total.item() == doctest::Approx(rc.total.item()).epsilon(1e-5));
    CHECK(rgpu.box.item() == doctest::Approx(rc.box.item()).epsilon(1e-5));
    CHECK(rgpu.obj.item() == doctest::Approx(rc.obj.item()).epsilon(1e-5));
    CHECK(rgpu.cls.item() == doctest::Approx(rc.cls.item()).epsilon(1e-5));
    rc.total.backward();
    rgpu.total.backward();
    RG_CHECK_CLOSE(to_cpu(pg.grad()), pc.grad(), (test::Tol{1e-5, 1e-4}));
  }
}
