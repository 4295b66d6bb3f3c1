// The YOLO (ultralytics) dataset format: data.yaml, image folders or .txt image lists, and one
// labels/*.txt per image with `class cx cy w h` lines (normalised), checked and cached.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/detection.h"

namespace rg::data {

// Note [data.yaml]
// The fields ultralytics reads, with its meaning:
// - path: the dataset root. Relative: against the folder of the yaml file (ultralytics resolves
//   it against its datasets folder); absent: that folder.
// - train, val, test: each a folder, a .txt file listing images, or a list of these; relative
//   entries are under `path`. A folder gives every image below it (recursively, sorted); a list
//   file's relative lines are relative to the list file's folder ("./images/a.jpg").
// - names: a list, or a map {0: person, 1: bicycle, ...} whose keys must be 0..nc-1.
// - nc: the class count (optional when names is given; must equal the number of names).
// Other keys (download, ...) are ignored. Errors name the file, the key and its line.
struct DataYaml {
  std::string file;                      // the yaml file
  std::string root;                      // `path`, resolved
  std::vector<std::string> train, val, test;  // resolved sources (folders or list files)
  std::vector<std::string> names;
  int64_t nc = 0;
  const std::vector<std::string>& split(const std::string& name) const;  // "train", "val", "test"
};
DataYaml read_data_yaml(const std::string& path);

// Every image of the sources, sorted: folders are walked recursively, .txt files read as lists.
// The extensions are ultralytics' image formats (jpg, jpeg, png, bmp, tif, tiff, webp, dng, mpo);
// those we cannot decode are reported as bad images when checked.
std::vector<std::string> list_yolo_images(const std::vector<std::string>& sources);

// ultralytics' img2label_paths: the last "/images/" becomes "/labels/" and the extension ".txt".
std::string image_to_label_path(const std::string& image);

// The label cache of these sources (Note [Label cache]): beside the first label file's folder
// ("labels/train2017" -> "labels/train2017.cache"), or the list file's name with .cache.
std::string yolo_cache_path(const std::vector<std::string>& sources, const std::vector<std::string>& label_files);

// Reads and checks one split (Note [Bad labels]); the report's source names the split.
DetectionDataset load_yolo(const DataYaml& data, const std::string& split, const LabelCheckOptions& opts = {});
DetectionDataset load_yolo_sources(const std::vector<std::string>& sources, std::vector<std::string> names,
                                   const LabelCheckOptions& opts = {});

}  // namespace rg::data
