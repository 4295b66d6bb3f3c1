// YOLO inference post-processing (models/yolo_decode.h): darknet decoding of the flat head output and
// ultralytics-style confidence filtering + class-aware batched NMS (Note [YOLO NMS]).
#include "models/yolo_decode.h"

#include "autograd/grad_mode.h"
#include "models/box_ops.h"
#include "models/yolo_head.h"

namespace rg::models {

Tensor yolo_decode(const Tensor& flat, const std::vector<YoloHeadSpec>& heads, int64_t input_h, int64_t input_w) {
  RG_CHECK(flat.defined() && flat.is_floating_point(), "yolo_decode: the prediction must be a floating tensor");
  const Tensor x = flat.dtype() == DType::f64 || flat.dtype() == DType::f32 ? flat : flat.to(DType::f32);
  const std::vector<Tensor> parts = split_heads(x, heads, input_h, input_w);
  const TensorOptions opts = TensorOptions(x.dtype()).device(x.device());
  std::vector<Tensor> out;
  for (size_t i = 0; i < heads.size(); ++i) {
    const YoloHeadSpec& h = heads[i];
    const Tensor& p = parts[i];  // (B, A, H, W, 5 + C)
    const int64_t B = p.size(0), A = p.size(1), H = p.size(2), W = p.size(3), K = p.size(4);
    const double s = h.scale_x_y, stride = static_cast<double>(h.stride);
    const Tensor gx = arange(static_cast<double>(W), opts).view({1, 1, 1, W});
    const Tensor gy = arange(static_cast<double>(H), opts).view({1, 1, H, 1});
    const Tensor cx = (sigmoid(p.select(4, 0)) * s - (s - 1.0) / 2.0 + gx) * stride;
    const Tensor cy = (sigmoid(p.select(4, 1)) * s - (s - 1.0) / 2.0 + gy) * stride;
    std::vector<double> anc;
    for (const auto& a : h.anchors) {
      anc.push_back(a[0]);
      anc.push_back(a[1]);
    }
    const Tensor at = from_vector<double>(anc, {1, A, 1, 1, 2}).to(x.device(), x.dtype());
    const Tensor wh = exp(p.slice(4, 2, 4)) * at;
    const Tensor rest = sigmoid(p.slice(4, 4, K));
    out.push_back(cat({cx.unsqueeze(4), cy.unsqueeze(4), wh, rest}, 4).reshape({B, A * H * W, K}));
  }
  return out.size() == 1 ? out[0] : cat(out, 1);
}

Tensor batched_nms(const Tensor& boxes, const Tensor& scores, const Tensor& idxs, double iou_threshold,
                   double score_threshold, int64_t max_candidates, int64_t max_keep) {
  RG_CHECK(idxs.defined() && idxs.dim() == 1 && idxs.size(0) == boxes.size(0),
           "batched_nms: idxs must be (N) with N = ", boxes.size(0), ", got ",
           idxs.defined() ? shape_str(idxs.sizes()) : "undefined");
  NoGradGuard ng;
  if (boxes.size(0) == 0)
    return native::nms(boxes.detach(), scores.detach(), iou_threshold, score_threshold, max_candidates, max_keep);
  const Tensor b = boxes.detach(), s = scores.detach();
  // torchvision's coordinate trick, over the boxes that can be kept: offset = class * (max coordinate + 1)
  const Tensor thr =
      scalar_tensor(score_threshold, TensorOptions(s.dtype()).device(s.device()));  // as native::nms rounds it
  const Tensor cand = gt(s, thr).unsqueeze(1);
  const Tensor lowest = full({}, -std::numeric_limits<double>::infinity(), TensorOptions(b.dtype()).device(b.device()));
  const Tensor max_coord = amax(where(cand, b, lowest));
  const Tensor offsets = idxs.detach().to(b.dtype()) * (max_coord + 1.0);
  return native::nms(b + offsets.unsqueeze(1), s, iou_threshold, score_threshold, max_candidates, max_keep);
}

namespace {

// One image's candidates before NMS: boxes (M, 4) x1y1x2y2, scores (M), classes (M) as floats.
struct Candidates {
  Tensor boxes, scores, classes;
};

Candidates candidates(const Tensor& x, const NmsOptions& o) {  // x (R, 5 + C) decoded
  const int64_t R = x.size(0), C = x.size(1) - 5;
  const Tensor box = xywh_to_xyxy(x.slice(1, 0, 4));
  const Tensor cls = x.slice(1, 5, 5 + C) * x.slice(1, 4, 5);  // (R, C) obj * cls
  const TensorOptions opts = TensorOptions(x.dtype()).device(x.device());
  Candidates c;
  if (o.multi_label) {
    c.scores = cls.reshape({R * C});
    c.boxes = box.unsqueeze(1).expand({R, C, 4}).reshape({R * C, 4});
    c.classes = arange(static_cast<double>(C), opts).unsqueeze(0).expand({R, C}).reshape({R * C});
  } else {
    auto [conf, j] = max(cls, 1);
    c.scores = conf;
    c.boxes = box;
    c.classes = j.to(x.dtype());
  }
  if (!o.classes.empty()) {
    std::vector<double> keep;
    for (int64_t k : o.classes) keep.push_back(static_cast<double>(k));
    const Tensor allowed = from_vector<double>(keep).to(x.device(), x.dtype());
    const Tensor hit = amax(eq(c.classes.unsqueeze(1), allowed.unsqueeze(0)).to(x.dtype()), {1});
    c.scores = where(gt(hit, 0.0), c.scores, full({}, -std::numeric_limits<double>::infinity(), opts));
  }
  return c;
}

}  // namespace

std::vector<Tensor> non_max_suppression(const Tensor& decoded, const NmsOptions& o) {
  RG_CHECK(decoded.defined() && decoded.dim() == 3 && decoded.size(2) > 5, "non_max_suppression: expected decoded ",
           "rows (B, rows, 5 + C), got ", decoded.defined() ? shape_str(decoded.sizes()) : "undefined");
  RG_CHECK(o.conf_thres >= 0 && o.conf_thres <= 1 && o.iou_thres >= 0 && o.iou_thres <= 1,
           "non_max_suppression: conf_thres ", o.conf_thres, " and iou_thres ", o.iou_thres, " must be in [0, 1]");
  NoGradGuard ng;
  const Tensor d = decoded.dtype() == DType::f64 || decoded.dtype() == DType::f32 ? decoded.detach()
                                                                                  : decoded.detach().to(DType::f32);
  std::vector<Tensor> out;
  for (int64_t b = 0; b < d.size(0); ++b) {
    const Candidates c = candidates(d.select(0, b), o);
    const Tensor groups = o.agnostic ? zeros_like(c.classes) : c.classes;
    const Tensor keep = batched_nms(c.boxes, c.scores, groups, o.iou_thres, o.conf_thres, o.max_nms, o.max_det);
    out.push_back(cat({index_select(c.boxes, 0, keep), index_select(c.scores, 0, keep).unsqueeze(1),
                       index_select(c.classes, 0, keep).unsqueeze(1)},
                      1));
  }
  return out;
}

}  // namespace rg::models
