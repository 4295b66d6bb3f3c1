// CPU greedy non-maximum suppression, the reference twin of cuda_kernels/nms.cu: the same candidates,
// the same order and the same overlap test (Note [NMS formulas] in core/nms_iou.h), so both devices
// keep exactly the same boxes.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "core/cpu/loops.h"
#include "core/kernels.h"

// Before the formulas: everything defined from here on rounds each product and sum on its own.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")  // Note [NMS formulas]: no fused multiply-adds
#endif

#include "core/nms_iou.h"

namespace rg {

namespace {

// Candidate indices (score > threshold), sorted by score descending, ties by index; cut to max_candidates.
template <typename T, typename A>
std::vector<int64_t> sorted_candidates(const T* scores, int64_t n, double score_threshold, int64_t max_candidates) {
  std::vector<int64_t> order;
  order.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (static_cast<double>(cpu::cast<A>(scores[i])) > score_threshold) order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return cpu::cast<A>(scores[a]) > cpu::cast<A>(scores[b]); });
  if (max_candidates > 0 && static_cast<int64_t>(order.size()) > max_candidates) order.resize(max_candidates);
  return order;
}

// The greedy pass over the sorted candidates, boxes copied in that order as structure-of-arrays so that
// the inner loop over later boxes vectorises. Returns how many indices were written to keep.
template <typename T, typename A>
int64_t greedy(const T* boxes, const std::vector<int64_t>& order, double iou_threshold, int64_t* keep,
               int64_t max_keep) {
  const size_t n = order.size();
  std::vector<A> x1(n), y1(n), x2(n), y2(n), area(n);
  for (size_t k = 0; k < n; ++k) {
    const T* b = boxes + 4 * order[k];
    const A box[4] = {cpu::cast<A>(b[0]), cpu::cast<A>(b[1]), cpu::cast<A>(b[2]), cpu::cast<A>(b[3])};
    x1[k] = box[0];
    y1[k] = box[1];
    x2[k] = box[2];
    y2[k] = box[3];
    area[k] = nms::area(box);
  }
  std::vector<uint8_t> removed(n, 0);
  int64_t kept = 0;
  for (size_t i = 0; i < n && kept < max_keep; ++i) {
    if (removed[i]) continue;
    keep[kept++] = order[i];
    const A a[4] = {x1[i], y1[i], x2[i], y2[i]};
    const A area_a = area[i];
    for (size_t j = i + 1; j < n; ++j) {
      const A b[4] = {x1[j], y1[j], x2[j], y2[j]};
      removed[j] |= static_cast<uint8_t>(nms::suppresses(a, area_a, b, area[j], iou_threshold));
    }
  }
  return kept;
}

}  // namespace

void nms_cpu(const Tensor& keep, const Tensor& num_kept, const Tensor& boxes, const Tensor& scores,
             double iou_threshold, double score_threshold, int64_t max_candidates) {
  // keep (K) i64, num_kept (1) i64, boxes (N, 4), scores (N): contiguous, checked by native::nms
  RG_CHECK(keep.is_contiguous() && boxes.is_contiguous() && scores.is_contiguous(),
           "nms: the kernel needs contiguous tensors");
  const int64_t n = scores.numel();
  int64_t kept = 0;
  RG_DISPATCH_FLOAT(boxes.dtype(), "nms", [&] {
    using A = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const auto* s = static_cast<const scalar_t*>(scores.data_ptr());
    const auto* b = static_cast<const scalar_t*>(boxes.data_ptr());
    const std::vector<int64_t> order = sorted_candidates<scalar_t, A>(s, n, score_threshold, max_candidates);
    kept = greedy<scalar_t, A>(b, order, iou_threshold, keep.data<int64_t>(), keep.numel());
  });
  *num_kept.data<int64_t>() = kept;
}

}  // namespace rg
