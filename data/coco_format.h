// COCO instances json: a streaming reader (nlohmann SAX: no document tree, Note [COCO json]) and
// the checked DetectionDataset with contiguous classes mapped to and from the category ids.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/detection.h"

namespace rg::data {

// Note [COCO json]
// COCO's train json is ~450 MB, mostly segmentation polygons we do not need. read_coco_json
// streams the file through nlohmann's SAX parser in 1 MiB chunks and keeps only images {id,
// file_name, width, height}, annotations {id, image_id, category_id, bbox, iscrowd} and categories
// {id, name}; everything else is skipped without being stored, so memory stays near the size of
// what is kept (benchmarks/RESULTS.md compares it with a DOM parse). Categories are sorted by id:
// class k is the k-th smallest id (as pycocotools-based trainers map them), and
// DetectionDataset::category_ids() maps back for writing results.
struct CocoImage {
  int64_t id = -1;
  std::string file_name;
  int64_t width = 0, height = 0;
};
struct CocoAnnotation {
  int64_t id = -1, image_id = -1, category_id = -1;
  double bbox[4] = {0, 0, 0, 0};
  int bbox_len = -1;    // numbers in bbox; -1: no bbox key
  bool iscrowd = false;
  std::string problem;  // why the annotation is malformed (empty when fine)
};
struct CocoCategory {
  int64_t id = -1;
  std::string name;
};
struct CocoFile {
  std::vector<CocoImage> images;
  std::vector<CocoAnnotation> annotations;
  std::vector<CocoCategory> categories;
};
// Throws naming the file and byte offset for a file that is not JSON, or not a COCO object.
CocoFile read_coco_json(const std::string& path);

// Reads and checks a COCO dataset (Note [Bad labels]); image file_names are relative to image_dir.
// The label cache is <json>.cache (Note [Label cache]).
DetectionDataset load_coco(const std::string& json_path, const std::string& image_dir, const LabelCheckOptions& opts = {});

}  // namespace rg::data
