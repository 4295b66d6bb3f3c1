// DetectionDataset: images with their boxes (any format, once checked: YOLO txt, COCO json, VOC xml),
// the class names, and the report of the labels that were clipped or dropped (Note [Bad labels]).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/box.h"
#include "data/image.h"

namespace rg::data {

// One image of a detection dataset: its file, original size and boxes (original pixels, Note [Box
// coordinates]).
struct DetectionRecord {
  std::string image;
  int64_t height = 0, width = 0;
  Boxes boxes;
};

// Note [Bad labels]
// A bad label never crashes training and never silently vanishes. Kinds (LabelIssue):
// - ClassOutOfRange: class id not in [0, nc) (YOLO), unknown category (COCO), name not in the
//   class list (VOC);
// - Outside: a box extending further outside the image than clip_tolerance (a fraction of the
//   image side) on some side; boxes within the tolerance are clipped to the image and counted as
//   `clipped` (not an issue); overhangs under 0.001 pixel (rounding of normalised coordinates)
//   are clipped without a count;
// - EmptyBox: zero or negative width or height;
// - Malformed: a line that is not `class cx cy w h` (or `class x y x y ...` polygon) of finite
//   numbers, a COCO annotation that is not an object with a 4-number bbox or names an unknown
//   image, a VOC object without a complete bndbox, an XML file that does not parse;
// - Duplicate: the same class and box twice in one image (the second is dropped);
// - BadImage: an image file that is missing, unreadable, truncated or smaller than 10 x 10 pixels
//   (the image and its labels are dropped).
// Each issue is dropped and counted per kind; the report prints one summary line naming the first
// few files (file:line). With `strict`, the first issue is an error naming file and line instead.
// A missing label file or an empty one makes a background image (kept, counted as backgrounds);
// COCO iscrowd and VOC difficult boxes are left out of the targets unless keep_difficult (counted
// as `skipped`).
enum class LabelIssue { ClassOutOfRange, Outside, EmptyBox, Malformed, Duplicate, BadImage };
constexpr int kNumLabelIssues = 6;
const char* label_issue_name(LabelIssue k);  // "class out of range", "outside image", ...

struct LabelProblem {
  LabelIssue kind = LabelIssue::Malformed;
  std::string file;   // the label (or image) file
  int64_t line = 0;   // 1-based line in `file`; 0 when not line-based (COCO: `message` names the annotation)
  std::string message;
  std::string where() const;  // "file:line" or "file"
};

struct LabelReport {
  std::string source;  // what was read: a label folder, a json file, an Annotations folder
  int64_t images = 0, boxes = 0, backgrounds = 0, clipped = 0, skipped = 0;
  std::array<int64_t, kNumLabelIssues> dropped{};
  std::vector<LabelProblem> problems;  // every issue, in file order
  bool from_cache = false;             // the check results came from the label cache
  int64_t rechecked = 0;               // files checked afresh (all of them without a cache)
  std::vector<std::string> notes;      // e.g. why the label cache could not be written

  int64_t total_dropped() const;
  void add(LabelProblem p);
  // One line: counts, then the dropped labels per kind naming the first few files.
  std::string summary() const;
};

struct LabelCheckOptions {
  bool strict = false;            // any issue is an error naming file and line
  double clip_tolerance = 0.02;   // fraction of the image side a box may overhang and be clipped
  bool use_cache = true;          // read and write the label cache (Note [Label cache])
  bool keep_difficult = false;    // keep COCO iscrowd / VOC difficult boxes as targets
  int threads = 0;                // checking threads; 0 = hardware concurrency
};

// The dataset: immutable after construction, so every method is thread-safe.
class DetectionDataset {
 public:
  DetectionDataset(std::vector<std::string> names, std::vector<DetectionRecord> records, LabelReport report = {},
                   std::vector<int64_t> category_ids = {});

  int64_t size() const { return static_cast<int64_t>(records_.size()); }
  const DetectionRecord& record(int64_t i) const;
  const std::vector<DetectionRecord>& records() const { return records_; }
  const std::vector<std::string>& names() const { return names_; }
  int64_t num_classes() const { return static_cast<int64_t>(names_.size()); }
  const LabelReport& report() const { return report_; }
  // COCO: category id of each class (class index -> id; ids sorted ascending); empty otherwise.
  const std::vector<int64_t>& category_ids() const { return category_ids_; }

  // Decodes image i as RGB at full size, or reduced while decoding to the smallest factor >=
  // min_scale that the decoder offers (read_image_reduced); *scale receives the factor used.
  // Errors name the file.
  Image load(int64_t i, double min_scale = 1.0, double* scale = nullptr) const;

 private:
  std::vector<std::string> names_;
  std::vector<DetectionRecord> records_;
  LabelReport report_;
  std::vector<int64_t> category_ids_;
};

}  // namespace rg::data
