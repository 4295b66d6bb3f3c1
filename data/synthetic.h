// Synthetic classification data: coloured shapes (the class is the shape kind) of random size,
// rotation, position and colour on textured, noisy backgrounds, written as a torchvision
// ImageFolder tree (DIR/train/<class>/*.png, DIR/val/<class>/*.png). Deterministic for a seed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/image.h"

namespace rg::data {

// The shape kinds, in the order `--classes N` takes them: circle, square, triangle, cross, ring,
// star, bar, hexagon.
const std::vector<std::string>& shape_class_names();

// One image of `size` x `size` x 3 showing shape kind `kind` (index into shape_class_names()),
// every random choice drawn from SampleRng(seed, stream, index) (Note [Per-sample randomness]).
Image render_shape_image(int kind, int64_t size, uint64_t seed, uint64_t stream, uint64_t index);

struct ClassifyDataOptions {
  std::string out;
  int64_t classes = 6;
  int64_t train_per_class = 200;
  int64_t val_per_class = 50;
  int64_t size = 32;
  std::string format = "png";  // png or jpg
  uint64_t seed = 0;
};

struct MakeDataResult {
  int64_t written = 0;  // files created by this call
  int64_t kept = 0;     // files already present (idempotent re-run)
};

// Writes the dataset and DIR/dataset.json (the options, written last). Re-running with the same
// options keeps existing files and fills in missing ones; a DIR made with other options is an
// error naming both. Each image goes to a temporary name first and is renamed into place.
// progress: print a line per split to stdout.
MakeDataResult make_classify_dataset(const ClassifyDataOptions& o, bool progress = true);

// True when DIR/dataset.json exists (a finished dataset).
bool dataset_exists(const std::string& dir);

// Writes bytes to path through "<path>.tmp-<pid>-<tid>" and a rename (no fsync: data, not checkpoints).
void write_file_via_rename(const std::string& path, const std::string& bytes);

}  // namespace rg::data
