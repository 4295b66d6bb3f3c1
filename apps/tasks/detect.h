// The object-detection task behind `ringgrad train --task detect` (also `ringgrad train-detector`):
// a darknet YOLO (yolov3-tiny.cfg, yolov3.cfg, yolov3-spp.cfg or a cfg file) on a YOLO data.yaml,
// the v3 or darknet loss, and COCO mAP gathered exactly over the ranks. The loop is the engine's.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/json.h"
#include "train/options.h"
#include "train/trainer.h"

// The detector's own options (Note [Options table] in train/options.h).
// clang-format off
#define RG_DETECT_OPTIONS(X) \
  X(data, Text, "data_gen/shapes-detect", ::rg::train::any_value(), Saved, "data", "YAML|DIR", \
    "a YOLO data.yaml (or its folder); the synthetic shapes set is generated when missing at the default location only") \
  X(img, Int, 416, ::rg::train::at_least(32), Saved, "data", "N", \
    "training and validation size in pixels (a multiple of the model's largest stride, 32)") \
  X(multi_scale, Bool, false, ::rg::train::any_value(), Saved, "data", "", \
    "train each step at a size drawn from (seed, epoch, step) in [0.5, 1.5] x --img (multiples of 32)") \
  X(rect, Bool, false, ::rg::train::any_value(), Saved, "data", "", \
    "rectangular batches (images sorted by aspect ratio, each batch padded to its own shape): training in that " \
    "fixed order without mosaic, and validation") \
  X(mosaic, Bool, true, ::rg::train::any_value(), Saved, "data", "", "mosaic augmentation (hyp mosaic=1.0); --no-mosaic: 0") \
  X(hyp, Text, "", ::rg::train::any_value(), Saved, "data", "FILE", \
    "ultralytics hyp YAML: augmentation (hsv_h, degrees, scale, mosaic, mixup, fliplr ...) and loss gains (box, obj, " \
    "cls, cls_pw, obj_pw, anchor_t, label_smoothing)") \
  X(cfg, Text, "yolov3-tiny.cfg", ::rg::train::any_value(), Saved, "model", "CFG", \
    "yolov3-tiny.cfg | yolov3.cfg | yolov3-spp.cfg (shipped) | a darknet .cfg path") \
  X(rewrite_classes, Tri, std::nullopt, ::rg::train::any_value(), Saved, "model", "", \
    "rewrite the cfg's [yolo] classes (and the filters before them) to the data's nc (default: shipped cfgs only; " \
    "a cfg path whose classes differ from the data is an error)") \
  X(fit_anchors, Bool, false, ::rg::train::any_value(), Saved, "model", "", \
    "replace the cfg's anchors by AutoAnchor's (k-means + genetic) when their best possible recall is below 0.98") \
  X(weights, Text, "", ::rg::train::any_value(), RunOnly, "model", "PATH", \
    "initial weights: darknet .weights (with --cutoff) or .safetensors (tensors whose name and shape match)") \
  X(cutoff, Int, -1, ::rg::train::at_least(-1), RunOnly, "model", "N", \
    "--weights .weights: load layers 0..N-1 only (darknet53.conv.74: 75; yolov3-tiny.conv.15: 15; -1: all)") \
  X(loss, Text, "v3", ::rg::train::one_of("v3|darknet"), Saved, "optimisation", "KIND", \
    "v3: ultralytics' YOLOv3 loss (CIoU box, BCE obj/cls, gains from hyp); darknet: the [yolo] layer's own " \
    "(MSE box, ignore_thresh), per image") \
  X(iou_loss, Text, "ciou", ::rg::train::one_of("ciou|giou"), Saved, "optimisation", "KIND", "v3 loss: the box term") \
  X(val_conf, Real, 0.001, ::rg::train::between(0, 1), Saved, "run", "X", "validation: confidence threshold") \
  X(val_iou, Real, 0.6, ::rg::train::between(0, 1), Saved, "run", "X", "validation: NMS IoU threshold") \
  X(max_det, Int, 300, ::rg::train::at_least(1), Saved, "run", "N", "validation: detections kept per image")
// clang-format on

namespace rg::app {

RG_DECLARE_OPTIONS(DetectOptions, RG_DETECT_OPTIONS);

// The built-in dataset location: the only place the synthetic set is made without --make-data.
inline constexpr const char* kDetectDataDefault = "data_gen/shapes-detect";
// The checkpoint format of detection runs.
inline constexpr const char* kDetectFormat = "ringgrad-detect-1";

// Every option of `ringgrad train-detector`: the engine's with the YOLOv3 PyTorch recipe's defaults
// (SGD lr 0.01, momentum 0.937, Nesterov, weight decay 5e-4 on conv weights only, YOLO warmup of 3
// epochs with bias lr 0.1 and momentum 0.8, cosine to 0.01 lr, EMA decay 0.9999 when --ema, global
// batch 16 accumulated to 64 images per step), and the detector's.
struct DetectConfig : train::TrainOptions, DetectOptions {
  DetectConfig();
  train::Options bind();  // both tables, bound to this object
  Json to_json() const;   // the Saved options (the checkpoint's "config")
  // The options stored in a detection checkpoint (metadata "trainer" -> "config"), for --resume.
  static DetectConfig from_checkpoint(const std::string& path);
};

// The training run as a library call (what the command line does); throws rg::Error on bad input.
train::RunResult train_detector(const DetectConfig& cfg, train::TrainerHooks hooks = {});

}  // namespace rg::app
