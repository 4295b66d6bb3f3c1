// Cuts the model's flat head output (Note [YOLO forward layout]) back into per-head views, the
// form the YOLO losses and the decoder work on.
#pragma once

#include <vector>

#include "autograd/ops.h"
#include "models/yolo_spec.h"

namespace rg::models {

// flat (B, sum_i A_i * H_i * W_i, 5 + C) -> per head (B, A_i, H_i, W_i, 5 + C), views into `flat` (autograd
// flows through them). input_h, input_w: the network input's spatial size.
inline std::vector<Tensor> split_heads(const Tensor& flat, const std::vector<YoloHeadSpec>& heads, int64_t input_h,
                                       int64_t input_w) {
  Shape rows;
  for (const auto& h : heads) rows.push_back(h.rows(input_h, input_w));
  RG_CHECK(flat.dim() == 3, "split_heads: expected (B, rows, 5 + C), got ", shape_str(flat.sizes()));
  std::vector<Tensor> parts = split(flat, rows, 1);
  std::vector<Tensor> out;
  for (size_t i = 0; i < heads.size(); ++i) {
    const auto& h = heads[i];
    RG_CHECK(flat.size(2) == 5 + h.num_classes, "split_heads: head ", i, " has ", h.num_classes, " classes but the ",
             "output has ", flat.size(2), " values per row");
    out.push_back(parts[i].view({flat.size(0), h.num_anchors(), h.grid_h(input_h), h.grid_w(input_w), flat.size(2)}));
  }
  return out;
}

}  // namespace rg::models
