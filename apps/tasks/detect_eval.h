// What training, `ringgrad val` and `ringgrad detect` share about a trained detector: the one
// evaluation function (Note [Detection evaluation]), the validation loader of a rank, the per-class
// table, COCO-json predictions, and loading a detector from a checkpoint or darknet .weights + .cfg.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/json.h"
#include "data/detection.h"
#include "metrics/coco_eval.h"
#include "models/darknet.h"
#include "train/dist.h"
#include "train/task.h"

namespace rg::app {

// Note [Detection evaluation]
// One function, evaluate_detector, computes every mAP ringgrad prints: training's validation line
// and `ringgrad val`. Per rank, for its unpadded shard of the val split (make_detect_val_loader:
// letterboxed to img x img, or rectangular batches with --rect; the same order and batches at any
// world size given the same per-rank batch), the model's raw heads are decoded and NMS'd
// (conf 0.001, IoU 0.6, 300 per image: ultralytics' val defaults) and each image's detections are
// mapped back to its original pixels through its letterbox (data/box_transforms.h's
// unletterbox_xyxy); ground truth is the dataset's boxes in original pixels. The per-image
// records are gathered from every rank as bytes (Note [Exact distributed evaluation]) and COCO's
// evaluation runs once on all of them, so 1 or N ranks give the same numbers, bit for bit, as
// long as each image's forward gives the same bits (on the CPU: the same per-process thread count).
struct DetectEvalSettings {
  double conf = 0.001;
  double iou = 0.6;
  int64_t max_det = 300;
};

// This rank's validation batches of `ds`: unpadded shard (every image once over the ranks), in
// dataset order (or aspect-ratio order with `rect`), u8 images letterboxed with pad 114.
std::unique_ptr<train::Loader> make_detect_val_loader(std::shared_ptr<const data::DetectionDataset> ds, int64_t img,
                                                      int64_t stride, bool rect, int64_t batch, int workers,
                                                      const train::DistContext& dist, bool pin_memory);

struct DetectEval {
  metrics::DetectionMetrics metrics;
  std::vector<metrics::ImageRecord> records;  // every image of every rank, sorted by image id (= dataset index)
  int64_t images = 0;
  double seconds = 0;  // this rank's forward + NMS time
};

// Runs `model` (eval mode; the caller holds NoGradGuard and any autocast) over `val` and evaluates
// (Note [Detection evaluation]); every rank returns the same result. `pred_plot` (rank 0 only, may
// be empty): the first batch with its predictions (score >= 0.25) drawn there, as
// val_batch0_pred.jpg.
DetectEval evaluate_detector(nn::Module& model, const std::vector<models::YoloHeadSpec>& heads, train::Loader& val,
                             const data::DetectionDataset& ds, const train::DistContext& dist, Device device,
                             const DetectEvalSettings& settings, const std::string& pred_plot = "");

// {P, R, mAP50, mAP50-95}: what training's epoch line and results.csv show.
train::Figures detect_figures(const metrics::DetectionMetrics& m);
std::vector<train::Figure> detect_figure_names();

// ultralytics' table: a row for all classes (images, instances, P, R, mAP50, mAP50-95), then one per
// class with ground truth (images holding it, instances, mAP50, mAP50-95).
std::string per_class_table(const DetectEval& e, const std::vector<std::string>& names);

// COCO result ids of a YOLO dataset's images and classes (Note [COCO result ids]).
struct CocoIds {
  std::vector<int64_t> image_ids;     // by dataset index
  std::vector<int64_t> category_ids;  // by class
  std::string source;                 // what they came from, for the message
};
// Note [COCO result ids]
// A YOLO dataset whose root holds annotations/instances_<split>.json (ultralytics' COCO layout, and
// what `make-data detect` writes) takes its image ids from that json by file name and its category
// ids as the json's sorted ids (class k = the k-th smallest, as loading COCO maps them). Otherwise
// an image's id is its file stem when that is a number (ultralytics' habit), else its dataset
// index, and a category id is the class index.
CocoIds coco_ids_for(const data::DetectionDataset& ds, const std::string& data_root, const std::string& split);
// [{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...] for every detection.
std::string coco_predictions_json(const std::vector<metrics::ImageRecord>& records, const CocoIds& ids);

// A detector ready for inference: from a ringgrad detection checkpoint (its cfg, class names and
// image size are in the metadata; `cfg` may override the cfg), a plain safetensors state_dict with
// `cfg`, or a darknet .weights file with `cfg`.
struct LoadedDetector {
  std::shared_ptr<models::Darknet> model;
  std::vector<std::string> names;  // class names when the checkpoint has them, else empty
  int64_t img = 0;                 // the training size (0: unknown)
  Json config = Json(nullptr);     // the training options of a ringgrad checkpoint
  std::string what;                // "runs/detect/best.safetensors (ringgrad checkpoint, epoch 12, EMA weights)"
};
// prefer_ema: a checkpoint trained with --ema gives its EMA weights (what best.safetensors was chosen by).
LoadedDetector load_detector(const std::string& weights, const std::string& cfg, bool prefer_ema = true);

// Note [Detector classes]
// The classes a run trains come from the data (nc and names of data.yaml). A shipped cfg given by
// name (yolov3-tiny.cfg, yolov3.cfg, yolov3-spp.cfg: 80 COCO classes) is rewritten to nc, with a
// printed line, as ultralytics overrides a model yaml's nc. A cfg given as a path is the user's own
// network: when its [yolo] classes differ from nc that is an error naming both, unless
// --rewrite-classes asks for the rewrite (--no-rewrite-classes refuses it for shipped cfgs too).
// `note` receives the line to print (empty when nothing was rewritten).
models::DarknetCfg detector_cfg(const std::string& cfg, std::optional<bool> rewrite, int64_t nc,
                                const std::string& data_what, std::string* note);

// Initial weights for training (--weights): darknet .weights (layers 0..cutoff-1 with cutoff >= 0)
// or a safetensors state_dict / ringgrad checkpoint, of which the tensors whose name and shape
// match the model load (ultralytics' intersect_dicts: a head trained for other classes is skipped).
// Returns the line to print.
std::string load_initial_weights(models::Darknet& model, const std::string& path, int64_t cutoff);

// COCO's 80 class names (darknet's coco.names), for 80-class models without names of their own.
const std::vector<std::string>& coco80_names();
// `names` when it has nc entries, else coco80_names() for nc 80, else "class0", "class1", ...
std::vector<std::string> names_or_default(const std::vector<std::string>& names, int64_t nc);

}  // namespace rg::app
