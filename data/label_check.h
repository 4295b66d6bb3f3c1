// What the three dataset formats share: the box checks of Note [Bad labels], the per-image check
// result, the label cache of Note [Label cache], the parallel check driver and the assembly of a
// DetectionDataset with its report (and --strict).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "data/detection.h"

namespace rg::data {

enum class BoxVerdict { Ok, Clipped, Outside, Empty };
// Checks one box against a W x H image (Note [Bad labels]): Empty for width or height <= 0 (or not
// finite), Outside when some side overhangs by more than tol * (that axis' image side), Clipped
// (and *b clipped to the image) when it overhangs within the tolerance, else Ok.
BoxVerdict check_box(Box* b, double img_w, double img_h, double tol);

// A file's size and modification time; size -1 when the file does not exist.
struct FileStamp {
  int64_t size = -1;
  int64_t mtime_ns = 0;
  bool operator==(const FileStamp&) const = default;
};
FileStamp file_stamp(const std::string& path);

// The check result of one image (what the label cache stores).
struct CheckedImage {
  std::string image, label;  // label: its label file (YOLO txt, VOC xml); empty for COCO
  FileStamp image_stamp, label_stamp;
  bool ok = false;           // the image is usable (else `problems` says why)
  int64_t height = 0, width = 0;
  Boxes boxes;               // the boxes kept (clipped where needed)
  int64_t clipped = 0, skipped = 0;
  std::vector<LabelProblem> problems;
};

// Probes the image (probe_image) into c: size, or a BadImage problem. Images under 10 x 10 pixels
// are refused, as ultralytics does.
bool check_image_file(CheckedImage* c);

// Adds one box to c after check_box and the duplicate test, or records why it is dropped (the
// message starts with `what`, e.g. "annotation id 7: ", where the file has no lines).
void add_checked_box(CheckedImage* c, Box b, double tol, const std::string& file, int64_t line,
                     const std::string& what = "");

// Note [Label cache]
// Checking a dataset reads every label and probes every image; the result is cached in one binary
// file beside the labels (YOLO: labels/<split>.cache, as ultralytics; COCO: <json>.cache; VOC:
// <Annotations folder>.cache), written to a temporary name and renamed. Its header holds a format
// version, the format name, a hash of the settings that change the outcome (class names, clip
// tolerance, keep_difficult) and the stamp of the annotation source (the COCO json); each entry
// holds an image's and its label file's size and modification time (ns). On the next start an
// entry is reused when both stamps still match, so only new or changed files are checked again,
// and a COCO json whose stamp matches is not parsed at all. A cache that is unreadable, of
// another version or with other settings is rebuilt; a cache that cannot be written is reported
// in the summary and training goes on.
struct LabelCacheKey {
  std::string format;   // "yolo", "coco", "voc"
  uint64_t settings = 0;
  FileStamp source;     // the annotation file every entry depends on (COCO); default otherwise
};
uint64_t hash_settings(const std::vector<std::string>& parts);
struct LabelCache {
  bool valid = false;              // read successfully with a matching key
  std::vector<std::string> extra;  // format-specific (COCO: category ids and names)
  std::vector<CheckedImage> entries;
};
LabelCache read_label_cache(const std::string& path, const LabelCacheKey& key);
// Returns an empty string when written, else why not.
std::string write_label_cache(const std::string& path, const LabelCacheKey& key, const LabelCache& cache);

// Checks files[i] = (image, label) for every i, reusing cached entries whose stamps match
// (opts.use_cache) and calling check(i) for the others on opts.threads threads; rewrites the cache
// (with `extra`) when anything was checked afresh. `preread`: the cache already read by the caller
// (else it is read here). report->from_cache / rechecked / notes are filled in.
std::vector<CheckedImage> check_with_cache(const std::string& cache_path, const LabelCacheKey& key,
                                           const std::vector<std::pair<std::string, std::string>>& files,
                                           const std::function<CheckedImage(int64_t)>& check,
                                           const LabelCheckOptions& opts, LabelReport* report,
                                           const LabelCache* preread = nullptr, std::vector<std::string> extra = {});

// Runs fn(i) for i in [0, n) on up to `threads` threads (0: hardware concurrency); the first
// exception is rethrown after all threads stopped.
void parallel_for(int64_t n, int threads, const std::function<void(int64_t)>& fn);

// Builds the dataset: usable images become records, every problem goes into the report (in image
// order); with opts.strict the first problem is an error "file:line: message".
DetectionDataset assemble_dataset(std::vector<std::string> names, std::vector<CheckedImage> checked,
                                  LabelReport report, const LabelCheckOptions& opts,
                                  std::vector<int64_t> category_ids = {});

}  // namespace rg::data
