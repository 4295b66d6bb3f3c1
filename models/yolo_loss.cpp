// The YOLO losses (models/yolo_loss.h): target assignment, the v3 loss and the darknet loss, as
// vectorised tensor ops over every (anchor, target) pair of a head at once.
#include "models/yolo_loss.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/autocast.h"
#include "autograd/grad_mode.h"
#include "nn/functional.h"

namespace rg::models {

namespace F = rg::nn::functional;

// Note [YOLO v3 loss]
// The loss of ultralytics/yolov3 v9.x (the PyTorch YOLOv3 on the yolov5 code base: utils/loss.py
// compute_loss + build_targets, hyp.scratch.yaml, train.py's gain scaling), with the archive branch's
// darknet box decoding, which our darknet-compatible heads need. Per head i (grid H x W, stride s,
// anchors in grid units anc = anchor_px / s), for every target t and anchor a of the head:
//   match:  r = (w W, h H) / anc_a;  max(r, 1/r) < anchor_t for both w and h (a target may match
//           several anchors, or none); targets with w or h = 0 never match.
//   cell:   gi = clamp(floor(cx W), 0, W - 1), gj likewise: the target's own cell only. There are no
//           neighbouring-cell offsets: the archive's build_targets has none (style None) and the v9
//           yolov3 build_targets keeps only the [0, 0] offset, and with darknet's decoding a prediction
//           cannot reach a centre outside its own cell (sigmoid in (0, 1), unlike yolov5's 2 sigmoid - 0.5).
//   box:    p = (sigmoid(tx), sigmoid(ty), min(exp(tw), 1e3) anc_w, min(exp(th), 1e3) anc_h) against
//           (cx W - gi, cy H - gj, w W, h H); lbox_i = mean over matches of 1 - CIoU (or GIoU ...,
//           Note [Box IoU formulas]); 0 without matches.
//   obj:    tobj = 0 everywhere but the matched cells, which get (1 - gr) + gr clamp(IoU, 0), the IoU
//           detached (gr = iou_ratio, the reference's model.gr = 1); where several matches hit one
//           (image, anchor, cell), the last in (anchor, target) order wins, as PyTorch's CPU index_put_
//           does. lobj_i = mean over all B A H W cells of BCE(obj logit, tobj) (pos_weight obj_pw),
//           times balance_i.
//   cls:    when C > 1, mean over matches x classes of BCE(class logits, one-hot) with the targets
//           1 - eps/2 and eps/2 (label smoothing eps, pos_weight cls_pw).
// balance: (4.0, 1.0, 0.4) for three heads, else yolov5's (4.0, 1.0, 0.25, 0.06, 0.02), given by
// head in increasing stride (P3 first) whatever the cfg's head order (darknet lists stride 32 first).
// Gains, as train.py scales them: box_gain 3/nl, obj_gain (img_size / 640)^2 3/nl, cls_gain C/80 3/nl,
// nl = number of heads. total = (lbox + lobj + lcls) B; the reported terms are lbox, lobj, lcls.

// Note [Darknet YOLO loss]
// darknet's forward_yolo_layer (src/yolo_layer.c) writes deltas, the negative gradient of the loss
// with respect to the layer's raw inputs; its backward adds them unchanged. With AlexeyAB's
// normalizers and scale_x_y (s), the scalar whose negative gradient is exactly those deltas is the
// sum over the batch (darknet's SGD divides the summed gradient by the batch: use lr / batch to
// take its step) of, per head, in input-normalised coordinates:
//   assignment: each target t (w, h > 0) takes the anchor of ALL the cfg's anchors whose
//     (0, 0, w, h) box has the highest IoU with its own (first one on ties); the head whose mask
//     holds it learns t at cell (i, j) = (floor(cx W), floor(cy H)), clamped to the grid.
//   box (iou_loss = mse), per match, scale = 2 - w h, k = iou_normalizer:
//     k scale [ s BCE(tx_logit; (cx W - i + (s - 1)/2) / s) + same for y
//              + 1/2 (tw_logit - log(w W_in / anchor_w))^2 + 1/2 (th_logit - log(h H_in / anchor_h))^2 ]
//     (darknet's delta for x is k scale (target - (s sigmoid(x) - (s - 1)/2)), the gradient of the
//     BCE form, not of a square; for w, h it is the MSE's.) Matches that share a cell add up (AlexeyAB
//     accumulates). iou_loss giou/diou/ciou: k (1 - IoU_kind(decoded prediction, target)) per
//     match, differentiated exactly (darknet hand-codes an approximation of that gradient).
//   obj: obj_normalizer x [ BCE(obj logit; 1) at every cell with a match, BCE(obj logit; 0) at every
//     other cell whose decoded box has IoU <= ignore_thresh with every target of its image ].
//   cls: cls_normalizer x sum over the cells with a match of BCE(class logits; y), y the multi-hot of
//     the classes of every target matched there (darknet's delta_yolo_class sets 1 - p for each).
// Differences from darknet, all deliberate: cls_normalizer scales every class term (AlexeyAB applies
// it only with counters_per_class); the ignore test is plain best IoU (pjreddie's; AlexeyAB also asks
// for some class probability > 0.25 there); truth_thresh < 1, iou_thresh (extra anchors),
// label smoothing, focal loss and a truth at x = 0 ending the list are not reproduced.

YoloLossKind parse_yolo_loss_kind(const std::string& name) {
  if (name == "v3") return YoloLossKind::V3;
  if (name == "darknet") return YoloLossKind::Darknet;
  RG_THROW("unknown YOLO loss '", name, "' (expected v3 or darknet)");
}

namespace {

// One head's slice of the flat prediction and the geometry to index it.
struct Head {
  const YoloHeadSpec* spec = nullptr;
  int64_t index = 0;  // head number
  int64_t row0 = 0;   // first row of this head in the flat output
  int64_t A = 0, H = 0, W = 0;
  int64_t rows() const { return A * H * W; }
};

// Targets matched to one head's anchors (device tensors; no gradient).
struct HeadTargets {
  Tensor match;  // (A, N) bool
  Tensor gij;    // (N, 2) (gi, gj) as floats
  Tensor row;    // (A, N) i64: b * rows_total + row0 + a H W + gj W + gi (into the flat prediction)
  Tensor local;  // (A, N) i64: b * A H W + a H W + gj W + gi (into this head's cells)
  Tensor cell;   // (N) f64: b H W + gj W + gi (the same for every anchor)
};

std::vector<Head> layout(const std::vector<YoloHeadSpec>& heads, int64_t input_h, int64_t input_w, const Tensor& pred) {
  RG_CHECK(!heads.empty(), "yolo_loss: no heads");
  std::vector<Head> out;
  int64_t row = 0;
  for (size_t i = 0; i < heads.size(); ++i) {
    const YoloHeadSpec& s = heads[i];
    RG_CHECK(s.num_anchors() > 0 && s.stride > 0, "yolo_loss: head ", i, " has no anchors or no stride");
    RG_CHECK(input_h % s.stride == 0 && input_w % s.stride == 0, "yolo_loss: input ", input_h, "x", input_w,
             " is not a multiple of head ", i, "'s stride ", s.stride);
    RG_CHECK(s.num_classes == heads[0].num_classes, "yolo_loss: head ", i, " has ", s.num_classes,
             " classes, head 0 has ", heads[0].num_classes);
    out.push_back({&s, static_cast<int64_t>(i), row, s.num_anchors(), s.grid_h(input_h), s.grid_w(input_w)});
    row += s.rows(input_h, input_w);
  }
  RG_CHECK(pred.dim() == 3 && pred.size(1) == row && pred.size(2) == 5 + heads[0].num_classes, "yolo_loss: prediction ",
           shape_str(pred.sizes()), " does not match the heads: expected (B, ", row, ", ", 5 + heads[0].num_classes,
           ") for an input of ", input_h, "x", input_w);
  return out;
}

// Checks targets (N, 6) and returns them in dtype dt on device d. One read-back of four extremes.
Tensor checked_targets(const Tensor& targets, int64_t batch, int64_t classes, DType dt, Device d) {
  RG_CHECK(targets.defined() && targets.dim() == 2 && targets.size(1) == 6, "yolo_loss: targets must be (N, 6) ",
           "[image, class, cx, cy, w, h], got ", targets.defined() ? shape_str(targets.sizes()) : "undefined");
  RG_CHECK(targets.is_floating_point(), "yolo_loss: targets must be floating point, got ", dtype_name(targets.dtype()));
  const Tensor t = targets.detach().to(d, dt).contiguous();
  if (t.size(0) == 0) return t;
  NoGradGuard ng;
  const Tensor ib = t.slice(1, 0, 2);
  const Tensor finite_all = sum(isfinite(t).to(DType::f64));
  const Tensor frac = sum(ne(floor(ib), ib).to(DType::f64));
  const std::vector<double> v = stack({amin(ib.select(1, 0)), amax(ib.select(1, 0)), amin(ib.select(1, 1)),
                                       amax(ib.select(1, 1)), finite_all.to(dt), frac.to(dt)})
                                    .to_vector<double>();
  RG_CHECK(v[4] == static_cast<double>(t.numel()), "yolo_loss: targets hold NaN or infinite values");
  RG_CHECK(v[5] == 0, "yolo_loss: target image indices and classes must be whole numbers");
  RG_CHECK(v[0] >= 0 && v[1] < batch, "yolo_loss: target image index ", v[0] < 0 ? v[0] : v[1],
           " is out of range for a batch of ", batch);
  RG_CHECK(v[2] >= 0 && v[3] < classes, "yolo_loss: target class ", v[2] < 0 ? v[2] : v[3], " is out of range for ",
           classes, " classes");
  return t;
}

// A (2) tensor (x, y) in like's dtype and device.
Tensor xy(double x, double y, const Tensor& like) {
  return from_vector<double>({x, y}).to(like.device(), like.dtype());
}

Tensor anchors_tensor(const std::vector<std::array<float, 2>>& anchors, double scale, const Tensor& like) {
  std::vector<double> v;
  for (const auto& a : anchors) {
    v.push_back(a[0] * scale);
    v.push_back(a[1] * scale);
  }
  return from_vector<double>(v, {static_cast<int64_t>(anchors.size()), 2}).to(like.device(), like.dtype());
}

// Cells and indices of every (anchor, target) pair of head h, given the match mask.
HeadTargets locate(const Tensor& t, const Tensor& match, const Head& h, int64_t rows_total) {
  HeadTargets out;
  out.match = match;
  const Tensor grid = xy(h.W, h.H, t);
  const Tensor hi = xy(h.W - 1, h.H - 1, t);
  out.gij = minimum(clamp_min(floor(t.slice(1, 2, 4) * grid), 0.0), hi);  // (N, 2)
  const Tensor b = t.select(1, 0).to(DType::f64), gi = out.gij.select(1, 0).to(DType::f64),
               gj = out.gij.select(1, 1).to(DType::f64);
  const double hw = static_cast<double>(h.H * h.W);
  out.cell = b * hw + gj * static_cast<double>(h.W) + gi;  // (N)
  const Tensor a =
      arange(static_cast<double>(h.A), TensorOptions(DType::f64).device(t.device())).unsqueeze(1) * hw;  // (A, 1)
  const Tensor in_head = gj * static_cast<double>(h.W) + gi;                                             // (N)
  out.local = (b * static_cast<double>(h.rows()) + in_head).unsqueeze(0) + a;                            // (A, N)
  out.row = (b * static_cast<double>(rows_total) + (in_head + static_cast<double>(h.row0))).unsqueeze(0) + a;
  out.local = out.local.to(DType::i64);
  out.row = out.row.to(DType::i64);
  return out;
}

// v3 matching: (A, N) true where max(r, 1/r) < anchor_t for both of the target's w, h ratios.
Tensor v3_match(const Tensor& t, const Head& h, double anchor_t, int64_t input_h, int64_t input_w) {
  const Tensor size = xy(input_w, input_h, t);
  const Tensor wh = (t.slice(1, 4, 6) * size).unsqueeze(0);                 // (1, N, 2) pixels
  const Tensor anc = anchors_tensor(h.spec->anchors, 1.0, t).unsqueeze(1);  // (A, 1, 2) pixels
  const Tensor r = wh / anc;
  const Tensor worst = amax(maximum(r, reciprocal(r)), {2});  // (A, N)
  return lt(worst, anchor_t);
}

// darknet matching: (A, N) true where the target's best anchor over all anchors is this head's a-th.
Tensor darknet_match(const Tensor& t, const Head& h, int64_t input_h, int64_t input_w) {
  const YoloHeadSpec& s = *h.spec;
  const auto& all = s.all_anchors.empty() ? s.anchors : s.all_anchors;
  const Tensor size = xy(input_w, input_h, t);
  const Tensor wh = (t.slice(1, 4, 6) * size).unsqueeze(1);     // (N, 1, 2)
  const Tensor anc = anchors_tensor(all, 1.0, t).unsqueeze(0);  // (1, K, 2)
  const Tensor m = minimum(wh, anc);
  const Tensor inter = m.select(2, 0) * m.select(2, 1);
  const Tensor iou =
      inter / (wh.select(2, 0) * wh.select(2, 1) + anc.select(2, 0) * anc.select(2, 1) - inter);  // (N, K)
  const Tensor best = argmax(iou, 1).to(DType::f64);                                              // (N)
  const Tensor valid = logical_and(gt(t.select(1, 4), 0.0), gt(t.select(1, 5), 0.0));
  std::vector<double> mask;
  for (int64_t m_i : s.mask) mask.push_back(static_cast<double>(m_i));
  if (s.all_anchors.empty()) {  // no all_anchors: the masked anchors are all there is
    mask.clear();
    for (int64_t a = 0; a < h.A; ++a) mask.push_back(static_cast<double>(a));
  }
  RG_CHECK(static_cast<int64_t>(mask.size()) == h.A, "yolo_loss: head ", h.index, " has ", h.A,
           " anchors but a mask of ", mask.size());
  const Tensor mk = from_vector<double>(mask).to(t.device()).unsqueeze(1);  // (A, 1)
  return logical_and(eq(best.unsqueeze(0), mk), valid.unsqueeze(0));
}

HeadTargets assign(const Tensor& t, const Head& h, int64_t rows_total, int64_t input_h, int64_t input_w,
                   const YoloLossOptions& o) {
  NoGradGuard ng;
  const int64_t N = t.size(0);
  if (N == 0) {
    const TensorOptions f64 = TensorOptions(DType::f64).device(t.device());
    HeadTargets e;
    e.match = zeros({h.A, 0}, TensorOptions(DType::b8).device(t.device()));
    e.gij = zeros({0, 2}, TensorOptions(t.dtype()).device(t.device()));
    e.row = zeros({h.A, 0}, TensorOptions(DType::i64).device(t.device()));
    e.local = e.row;
    e.cell = zeros({0}, f64);
    return e;
  }
  const Tensor m =
      o.kind == YoloLossKind::V3 ? v3_match(t, h, o.anchor_t, input_h, input_w) : darknet_match(t, h, input_h, input_w);
  return locate(t, m, h, rows_total);
}

// ---- v3

std::vector<double> v3_balance(const std::vector<Head>& heads, const YoloLossOptions& o) {
  const size_t nl = heads.size();
  if (!o.balance.empty()) {
    RG_CHECK(o.balance.size() == nl, "yolo_loss: ", o.balance.size(), " balance weights for ", nl, " heads");
    return o.balance;
  }
  const std::vector<double> by_stride =
      nl == 3 ? std::vector<double>{4.0, 1.0, 0.4} : std::vector<double>{4.0, 1.0, 0.25, 0.06, 0.02};
  RG_CHECK(nl <= by_stride.size(), "yolo_loss: no default balance for ", nl, " heads (give balance)");
  std::vector<size_t> order(nl);
  for (size_t i = 0; i < nl; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return heads[a].spec->stride < heads[b].spec->stride; });
  std::vector<double> out(nl);
  for (size_t k = 0; k < nl; ++k) out[order[k]] = by_stride[k];
  return out;
}

// (A, N): true for the match whose IoU is written to its cell: no later (anchor, target) match has the
// same cell. Later matches of one cell share the anchor, so only later targets need comparing.
Tensor last_writer(const HeadTargets& ht) {
  NoGradGuard ng;
  amp::AutocastGuard no_autocast(amp::autocast_dtype(), false);
  const int64_t N = ht.cell.size(0);
  const Tensor same = eq(ht.cell.unsqueeze(1), ht.cell.unsqueeze(0));  // (N, N)
  const Tensor idx = arange(static_cast<double>(N), TensorOptions(DType::f64).device(ht.cell.device()));
  const Tensor later = logical_and(same, gt(idx.unsqueeze(0), idx.unsqueeze(1)));   // [n, n']: n' > n, same cell
  const Tensor counts = matmul(ht.match.to(DType::f32), later.to(DType::f32).t());  // (A, N)
  return logical_and(ht.match, eq(counts, 0.0));
}

struct Terms {
  Tensor box, obj, cls;
};

Terms v3_head(const Tensor& flat_rows, const Tensor& pred, const Tensor& t, const Head& h, const HeadTargets& ht,
              double balance, const YoloLossOptions& o) {
  const int64_t B = pred.size(0), C = h.spec->num_classes, N = t.size(0);
  const Tensor zero = zeros({}, TensorOptions(pred.dtype()).device(pred.device()));
  const Tensor obj_logits = pred.slice(1, h.row0, h.row0 + h.rows()).select(2, 4);  // (B, AHW)
  Tensor tobj = zeros({B * h.rows()}, TensorOptions(pred.dtype()).device(pred.device()));
  Terms out{zero, zero, zero};
  if (N > 0) {
    const Tensor ps = index_select(flat_rows, 0, ht.row.flatten());  // (A N, 5 + C)
    const Tensor m = ht.match.flatten();
    const Tensor n = sum(m.to(pred.dtype()));
    const Tensor anc = anchors_tensor(h.spec->anchors, 1.0 / static_cast<double>(h.spec->stride), pred);  // (A, 2)
    const Tensor anc_pairs = anc.unsqueeze(1).expand({h.A, N, 2}).reshape({h.A * N, 2});
    const Tensor pbox = cat({sigmoid(ps.slice(1, 0, 2)), clamp_max(exp(ps.slice(1, 2, 4)), 1e3) * anc_pairs}, 1);
    const Tensor grid = xy(h.W, h.H, pred);
    const Tensor tb = cat({t.slice(1, 2, 4) * grid - ht.gij, t.slice(1, 4, 6) * grid}, 1);  // (N, 4)
    const Tensor safe = from_vector<double>({0.5, 0.5, 1.0, 1.0}).to(pred.device(), pred.dtype());
    const Tensor tbox = where(m.unsqueeze(1), tb.unsqueeze(0).expand({h.A, N, 4}).reshape({h.A * N, 4}), safe);
    const Tensor iou = box_iou(pbox, tbox, o.box_iou);  // (A N)
    out.box = sum(where(m, 1.0 - iou, zero)) / clamp_min(n, 1.0);
    const Tensor keep = last_writer(ht).flatten();
    const Tensor target = clamp_min(iou.detach(), 0.0) * o.iou_ratio + (1.0 - o.iou_ratio);
    native::scatter_add_(tobj, 0, ht.local.flatten(), where(keep, target, zero));
    if (C > 1) {
      const double cp = 1.0 - 0.5 * o.label_smoothing, cn = 0.5 * o.label_smoothing;
      const Tensor cls = t.select(1, 1).unsqueeze(0).expand({h.A, N}).reshape({h.A * N, 1});
      const Tensor classes = arange(static_cast<double>(C), TensorOptions(pred.dtype()).device(pred.device()));
      const Tensor tc =
          where(eq(cls, classes.unsqueeze(0)), full({}, cp, TensorOptions(pred.dtype()).device(pred.device())),
                full({}, cn, TensorOptions(pred.dtype()).device(pred.device())));
      const Tensor pw =
          o.cls_pw == 1.0 ? Tensor() : full({C}, o.cls_pw, TensorOptions(pred.dtype()).device(pred.device()));
      const Tensor bce = F::binary_cross_entropy_with_logits(ps.slice(1, 5, 5 + C), tc, pw, "none");
      out.cls = sum(where(m.unsqueeze(1), bce, zero)) / clamp_min(n * static_cast<double>(C), 1.0);
    }
  }
  const Tensor pw = o.obj_pw == 1.0 ? Tensor() : full({1}, o.obj_pw, TensorOptions(pred.dtype()).device(pred.device()));
  out.obj = F::binary_cross_entropy_with_logits(obj_logits.reshape({B * h.rows()}), tobj, pw, "mean") * balance;
  return out;
}

YoloLossResult v3_loss(const Tensor& pred, const Tensor& t, const std::vector<Head>& heads, int64_t input_h,
                       int64_t input_w, const YoloLossOptions& o) {
  const int64_t B = pred.size(0), R = pred.size(1), C = heads[0].spec->num_classes;
  const Tensor flat_rows = pred.reshape({B * R, pred.size(2)});
  const std::vector<double> balance = v3_balance(heads, o);
  Tensor lbox, lobj, lcls;
  for (size_t i = 0; i < heads.size(); ++i) {
    const HeadTargets ht = assign(t, heads[i], R, input_h, input_w, o);
    const Terms tm = v3_head(flat_rows, pred, t, heads[i], ht, balance[i], o);
    lbox = i == 0 ? tm.box : lbox + tm.box;
    lobj = i == 0 ? tm.obj : lobj + tm.obj;
    lcls = i == 0 ? tm.cls : lcls + tm.cls;
  }
  const double nl = static_cast<double>(heads.size());
  const double img = o.img_size > 0 ? static_cast<double>(o.img_size) : static_cast<double>(std::max(input_h, input_w));
  lbox = lbox * (o.box_gain * 3.0 / nl);
  lobj = lobj * (o.obj_gain * (img / 640.0) * (img / 640.0) * 3.0 / nl);
  lcls = lcls * (o.cls_gain * static_cast<double>(C) / 80.0 * 3.0 / nl);
  return {(lbox + lobj + lcls) * static_cast<double>(B), lbox.detach(), lobj.detach(), lcls.detach()};
}

// ---- darknet

// (B, AHW): the best IoU of each decoded prediction (input-normalised cx, cy, w, h) with the targets of
// its image, over targets in chunks so that the (B, AHW, chunk) temporaries stay small.
Tensor darknet_best_iou(const Tensor& boxes, const Tensor& t) {
  NoGradGuard ng;
  const int64_t B = boxes.size(0), N = t.size(0);
  Tensor best = zeros({B, boxes.size(1)}, TensorOptions(boxes.dtype()).device(boxes.device()));
  const Tensor img = arange(static_cast<double>(B), TensorOptions(boxes.dtype()).device(boxes.device()));
  const Tensor p = boxes.unsqueeze(2);  // (B, AHW, 1, 4)
  constexpr int64_t kChunk = 32;
  for (int64_t c0 = 0; c0 < N; c0 += kChunk) {
    const Tensor tc = t.slice(0, c0, std::min(N, c0 + kChunk));
    const Tensor same = eq(img.unsqueeze(1), tc.select(1, 0).unsqueeze(0)).unsqueeze(1);  // (B, 1, n)
    const Tensor iou = box_iou(p, tc.slice(1, 2, 6).unsqueeze(0).unsqueeze(0), IouKind::IoU, {true, 0.0, false});
    best = maximum(best, amax(where(same, where(isfinite(iou), iou, zeros_like(iou)), zeros_like(iou)), {2}));
  }
  return best;
}

Terms darknet_head(const Tensor& flat_rows, const Tensor& pred, const Tensor& t, const Head& h, const HeadTargets& ht,
                   int64_t input_h, int64_t input_w) {
  const YoloHeadSpec& s = *h.spec;
  const int64_t B = pred.size(0), C = s.num_classes, N = t.size(0), cells = B * h.rows();
  const TensorOptions opts = TensorOptions(pred.dtype()).device(pred.device());
  const Tensor zero = zeros({}, opts);
  const Tensor head = pred.slice(1, h.row0, h.row0 + h.rows());  // (B, AHW, 5 + C)
  const double sxy = s.scale_x_y;
  Terms out{zero, zero, zero};
  Tensor pos = zeros({cells}, opts);  // matches per cell
  if (N > 0) {
    const Tensor m = ht.match.flatten(), mf = m.to(pred.dtype());
    native::scatter_add_(pos, 0, ht.local.flatten(), mf);
    const Tensor ps = index_select(flat_rows, 0, ht.row.flatten());  // (A N, 5 + C)
    const Tensor tp = t.unsqueeze(0).expand({h.A, N, 6}).reshape({h.A * N, 6});
    const Tensor gij = ht.gij.unsqueeze(0).expand({h.A, N, 2}).reshape({h.A * N, 2});
    const Tensor anc = anchors_tensor(s.anchors, 1.0, pred).unsqueeze(1).expand({h.A, N, 2}).reshape({h.A * N, 2});
    const Tensor grid = xy(h.W, h.H, pred);
    const Tensor in = xy(input_w, input_h, pred);
    const Tensor twh = tp.slice(1, 4, 6);
    Tensor box;
    if (s.iou_loss == "mse") {
      const Tensor txy = (tp.slice(1, 2, 4) * grid - gij + (sxy - 1.0) / 2.0) / sxy;
      const Tensor safe_wh = where(m.unsqueeze(1), twh, ones_like(twh));
      const Tensor tw = log(safe_wh * in / anc);
      const Tensor lxy = F::binary_cross_entropy_with_logits(ps.slice(1, 0, 2), txy, Tensor(), "none") * sxy;
      const Tensor lwh = square(ps.slice(1, 2, 4) - tw) * 0.5;
      const Tensor scale = 2.0 - twh.select(1, 0) * twh.select(1, 1);
      box = sum(cat({lxy, lwh}, 1), {1}) * scale * static_cast<double>(s.iou_normalizer);
    } else {
      const Tensor pxy = (sigmoid(ps.slice(1, 0, 2)) * sxy - (sxy - 1.0) / 2.0 + gij) / grid;
      const Tensor pwh = exp(ps.slice(1, 2, 4)) * anc / in;
      const Tensor iou = box_iou(cat({pxy, pwh}, 1), tp.slice(1, 2, 6), parse_iou_kind(s.iou_loss));
      box = (1.0 - iou) * static_cast<double>(s.iou_normalizer);
    }
    out.box = sum(where(m, box, zero));
    // class targets: the multi-hot of every class matched at a cell, read back at each match; a cell's
    // term is counted once (each of its k matches carries 1/k of it)
    const Tensor classes = arange(static_cast<double>(C), opts);
    const Tensor onehot =
        logical_and(eq(tp.select(1, 1).unsqueeze(1), classes.unsqueeze(0)), m.unsqueeze(1)).to(pred.dtype());
    Tensor cls_t = zeros({cells, C}, opts);
    native::index_add_(cls_t, 0, ht.local.flatten(), onehot);
    const Tensor y = clamp_max(index_select(cls_t, 0, ht.local.flatten()), 1.0);  // (A N, C)
    const Tensor share = where(m, reciprocal(clamp_min(index_select(pos, 0, ht.local.flatten()), 1.0)), zero);
    const Tensor bce = sum(F::binary_cross_entropy_with_logits(ps.slice(1, 5, 5 + C), y, Tensor(), "none"), {1});
    out.cls = sum(bce * share) * static_cast<double>(s.cls_normalizer);
  }
  // objectness: positive cells, and negatives whose prediction overlaps no target beyond ignore_thresh
  const Tensor is_pos = gt(pos, 0.0);
  Tensor is_neg = eq(pos, 0.0);
  if (N > 0) {
    NoGradGuard ng;
    const Tensor in = xy(input_w, input_h, pred);
    const Tensor p = head.detach().view({B, h.A, h.H, h.W, 5 + C});
    const Tensor gx = arange(static_cast<double>(h.W), opts).view({1, 1, 1, h.W});
    const Tensor gy = arange(static_cast<double>(h.H), opts).view({1, 1, h.H, 1});
    const Tensor cx = (sigmoid(p.select(4, 0)) * sxy - (sxy - 1.0) / 2.0 + gx) / static_cast<double>(h.W);
    const Tensor cy = (sigmoid(p.select(4, 1)) * sxy - (sxy - 1.0) / 2.0 + gy) / static_cast<double>(h.H);
    const Tensor anc = anchors_tensor(s.anchors, 1.0, pred).view({1, h.A, 1, 1, 2});
    const Tensor wh = exp(p.slice(4, 2, 4)) * anc / in;
    const Tensor boxes = stack({cx, cy, wh.select(4, 0), wh.select(4, 1)}, -1).view({B, h.rows(), 4});
    const Tensor best = darknet_best_iou(boxes, t).view({cells});
    is_neg = logical_and(is_neg, le(best, static_cast<double>(s.ignore_thresh)));
  }
  const Tensor weight = logical_or(is_pos, is_neg).to(pred.dtype());
  const Tensor bce = F::binary_cross_entropy_with_logits(head.select(2, 4).reshape({cells}), is_pos.to(pred.dtype()),
                                                         Tensor(), "none");
  out.obj = sum(bce * weight) * static_cast<double>(s.obj_normalizer);
  return out;
}

YoloLossResult darknet_loss(const Tensor& pred, const Tensor& t, const std::vector<Head>& heads, int64_t input_h,
                            int64_t input_w, const YoloLossOptions& o) {
  const int64_t B = pred.size(0), R = pred.size(1);
  const Tensor flat_rows = pred.reshape({B * R, pred.size(2)});
  Tensor lbox, lobj, lcls;
  for (size_t i = 0; i < heads.size(); ++i) {
    const YoloHeadSpec& s = *heads[i].spec;
    RG_CHECK(s.truth_thresh >= 1.0f, "yolo_loss (darknet): head ", i, " has truth_thresh ", s.truth_thresh,
             " < 1, which this loss does not implement");
    RG_CHECK(s.iou_loss == "mse" || s.iou_loss == "giou" || s.iou_loss == "diou" || s.iou_loss == "ciou",
             "yolo_loss (darknet): head ", i, " has unknown iou_loss '", s.iou_loss, "'");
    const HeadTargets ht = assign(t, heads[i], R, input_h, input_w, o);
    const Terms tm = darknet_head(flat_rows, pred, t, heads[i], ht, input_h, input_w);
    lbox = i == 0 ? tm.box : lbox + tm.box;
    lobj = i == 0 ? tm.obj : lobj + tm.obj;
    lcls = i == 0 ? tm.cls : lcls + tm.cls;
  }
  return {lbox + lobj + lcls, lbox.detach(), lobj.detach(), lcls.detach()};
}

// The dtype the loss computes in: f64 stays (gradchecks), everything else is f32.
Tensor loss_input(const Tensor& pred) {
  RG_CHECK(pred.defined() && pred.is_floating_point(), "yolo_loss: the prediction must be a floating tensor");
  return pred.dtype() == DType::f64 || pred.dtype() == DType::f32 ? pred.contiguous()
                                                                  : pred.to(DType::f32).contiguous();
}

}  // namespace

YoloLossResult yolo_loss(const Tensor& pred_in, const Tensor& targets, const std::vector<YoloHeadSpec>& specs,
                         int64_t input_h, int64_t input_w, const YoloLossOptions& opts) {
  amp::AutocastGuard no_autocast(amp::autocast_dtype(), false);
  const Tensor pred = loss_input(pred_in);
  const std::vector<Head> heads = layout(specs, input_h, input_w, pred);
  const Tensor t = checked_targets(targets, pred.size(0), specs[0].num_classes, pred.dtype(), pred.device());
  if (opts.kind == YoloLossKind::V3) return v3_loss(pred, t, heads, input_h, input_w, opts);
  return darknet_loss(pred, t, heads, input_h, input_w, opts);
}

std::vector<YoloMatch> yolo_assignments(const Tensor& targets, const std::vector<YoloHeadSpec>& specs, int64_t input_h,
                                        int64_t input_w, const YoloLossOptions& opts) {
  int64_t rows = 0;
  for (const auto& s : specs) rows += s.rows(input_h, input_w);
  const Tensor fake = empty({1, rows, 5 + (specs.empty() ? 0 : specs[0].num_classes)});
  const std::vector<Head> heads = layout(specs, input_h, input_w, fake);
  const Tensor t =
      checked_targets(targets, std::numeric_limits<int32_t>::max(), specs[0].num_classes, DType::f64, kCPU);
  std::vector<YoloMatch> out;
  for (const Head& h : heads) {
    const HeadTargets ht = assign(t, h, rows, input_h, input_w, opts);
    const std::vector<double> m = ht.match.to_vector<double>(), gij = ht.gij.to_vector<double>();
    const int64_t N = t.size(0);
    for (int64_t a = 0; a < h.A; ++a) {
      for (int64_t n = 0; n < N; ++n) {
        if (m[a * N + n] == 0) continue;
        out.push_back({n, h.index, a, static_cast<int64_t>(gij[2 * n + 1]), static_cast<int64_t>(gij[2 * n])});
      }
    }
  }
  return out;
}

}  // namespace rg::models
