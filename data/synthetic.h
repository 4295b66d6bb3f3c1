// Synthetic classification data: coloured shapes (the class is the shape kind) of random size,
// rotation, position and colour on textured, noisy backgrounds, written as a torchvision
// ImageFolder tree (DIR/train/<class>/*.png, DIR/val/<class>/*.png). Deterministic for a seed.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/image.h"
#include "data/sample_rng.h"

namespace rg::data {

// The shape kinds, in the order `--classes N` takes them: circle, square, triangle, cross, ring,
// star, bar, hexagon.
const std::vector<std::string>& shape_class_names();

// Shape membership in the shape's own frame (the rasteriser of both synthetic datasets): (u, v) in
// units of the shape's radius, a vertex (or arm) pointing along +u; every shape lies within u^2 + v^2 <= 1.
bool shape_contains(int kind, double u, double v);

// The textured background of the synthetic images: a base colour and a nearby second one mixed by
// a gradient, stripes or a blob grid, drawn from rng in a fixed order.
struct ShapeBackground {
  static constexpr int kGrid = 4;
  std::array<double, 3> base{}, alt{};
  int pattern = 0;
  double ca = 1, sa = 0, freq = 2, phase = 0;
  std::array<double, (kGrid + 1) * (kGrid + 1)> grid{};
  static ShapeBackground draw(SampleRng& rng);
  // The mixing weight in [0, 1] of `alt` at (xs, ys), the position as fractions of width and height.
  double mix(double xs, double ys) const;
};

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
