// rg::native::nms: argument checks and output allocation around the nms kernels (core/cpu/nms.cpp,
// cuda_kernels/nms.cu), then the one read-back of how many boxes were kept.
#include <algorithm>

#include "core/native.h"

namespace rg::native {

Tensor nms(const Tensor& boxes, const Tensor& scores, double iou_threshold, double score_threshold,
           int64_t max_candidates, int64_t max_keep) {
  OpScope scope("nms", {&boxes, &scores});
  RG_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "nms: boxes must be (N, 4) as x1, y1, x2, y2, got ",
           shape_str(boxes.sizes()));
  RG_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0), "nms: scores must be (N) with N = ", boxes.size(0),
           " (the number of boxes), got ", shape_str(scores.sizes()));
  RG_CHECK(is_floating(boxes.dtype()) && boxes.dtype() == scores.dtype(), "nms: boxes and scores must have one ",
           "floating dtype, got ", dtype_name(boxes.dtype()), " and ", dtype_name(scores.dtype()));
  RG_CHECK(boxes.device() == scores.device(), "nms: boxes are on ", boxes.device().str(), " but scores on ",
           scores.device().str());
  RG_CHECK(!(iou_threshold != iou_threshold), "nms: iou_threshold is NaN");
  const int64_t n = boxes.size(0);
  const int64_t cap = max_keep < 0 ? n : std::min(n, max_keep);
  const TensorOptions idx = TensorOptions(DType::i64).device(boxes.device());
  Tensor keep = empty({cap}, idx);
  Tensor count = empty({1}, idx);
  const Tensor b = contiguous(boxes), s = contiguous(scores);
  // the kernels compare in double against the threshold rounded to the scores' dtype, which is
  // comparing in that dtype (what `scores > threshold` does in PyTorch)
  const double thr =
      score_threshold != score_threshold ? score_threshold : scalar_tensor(score_threshold, scores.dtype()).item();
  RG_CALL_KERNEL(nms, boxes.device(), keep, count, b, s, iou_threshold, thr, max_candidates);
  const auto kept = static_cast<int64_t>(count.item());
  return narrow(keep, 0, 0, kept);
}

}  // namespace rg::native
