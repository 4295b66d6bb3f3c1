// Drawing on u8 RGB images, in one place for every picture ringgrad writes (make-data detect
// --show, training's train_batch0.jpg and val_batch0_pred.jpg, the detect command): per-class
// colours, rectangles, labelled boxes, text (DejaVu Sans through stb_truetype, or a built-in 5x7
// bitmap font when no font file is found), and ultralytics-style grids of batch images.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "data/box.h"
#include "data/dataloader.h"
#include "data/image.h"

namespace rg::data {

using Rgb = std::array<uint8_t, 3>;

// ultralytics' 20-colour palette (its Colors class), repeating: the colour of class k.
Rgb class_colour(int64_t k);

// Pixels [x1, x2) x [y1, y2), clipped to the image.
void fill_rect(Image* img, int64_t x1, int64_t y1, int64_t x2, int64_t y2, Rgb colour);
// The outline of b (Note [Box coordinates]), `thickness` pixels drawn inwards from its edges.
void draw_rect(Image* img, const Box& b, Rgb colour, int64_t thickness);

// A font: TrueType when loaded from a file, else the built-in 5x7 bitmap (scaled by whole pixels).
class Font {
 public:
  // The font pictures use: $RINGGRAD_FONT, else DejaVu Sans from Debian's fonts-dejavu-core, else
  // the built-in one. Loaded once; thread-safe.
  static const Font& standard();
  static const Font& builtin();
  // A TrueType file; the built-in font (and *error set) when it cannot be read or parsed.
  static std::shared_ptr<const Font> load(const std::string& path, std::string* error = nullptr);

  bool is_builtin() const { return !tt_; }
  const std::string& name() const { return name_; }
  // The width of `text` at pixel height px (the height of a line: ascent + descent).
  int64_t text_width(const std::string& text, int64_t px) const;
  // Draws `text` with its line's top-left corner at (x, y), blended by glyph coverage.
  void draw(Image* img, int64_t x, int64_t y, const std::string& text, Rgb colour, int64_t px) const;

  ~Font();
  struct TrueType;

 private:
  Font() = default;
  std::string name_ = "built-in 5x7";
  std::unique_ptr<TrueType> tt_;
};

// ultralytics' box_label: the box outline and, above its top-left corner (inside when there is no
// room), a filled box in the same colour with the label in white (black on light colours).
void draw_labelled_box(Image* img, const Box& b, const std::string& label, Rgb colour, int64_t thickness,
                       int64_t text_px, const Font& font = Font::standard());

// Images placed row-major, `cols` per row, each cell the size of the largest, on `fill`.
Image image_grid(const std::vector<Image>& images, int64_t cols, Rgb fill = {255, 255, 255});

// A box to draw on a batch image: score < 0 labels it with the class name (a target), else with
// "name 0.87" (a prediction).
struct DrawBox {
  Box box;
  float score = -1;
};

// ultralytics' plot_images: the first max_images images of a batch ((B, 3, H, W) u8 on the CPU) on a
// square grid with white borders, scaled so the picture's side is at most max_side, each titled
// with its file name (titles[i], may be empty) and its boxes (batch pixels) drawn with class names.
Image plot_images(const Tensor& images, const std::vector<std::vector<DrawBox>>& boxes,
                  const std::vector<std::string>& names, const std::vector<std::string>& titles,
                  int64_t max_images = 16, int64_t max_side = 1920);

// A detection batch with its targets (what ultralytics saves as train_batch0.jpg).
Image plot_batch(const Batch& batch, const std::vector<std::string>& names, int64_t max_images = 16,
                 int64_t max_side = 1920);

}  // namespace rg::data
