// Drawing: palette, rectangles, fonts (stb_truetype, compiled here with static linkage, and the
// built-in 5x7 bitmap font designed for ringgrad), labelled boxes and batch grids.
#include "data/draw.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wunused-function"
#define STBTT_STATIC
#define STB_TRUETYPE_IMPLEMENTATION
#include <stb/stb_truetype.h>
#pragma GCC diagnostic pop

#include "core/error.h"
#include "core/native.h"

namespace rg::data {

Rgb class_colour(int64_t k) {
  static const uint32_t kPalette[20] = {0xFF3838, 0xFF9D97, 0xFF701F, 0xFFB21D, 0xCFD231, 0x48F90A, 0x92CC17,
                                        0x3DDB86, 0x1A9334, 0x00D4BB, 0x2C99A8, 0x00C2FF, 0x344593, 0x6473FF,
                                        0x0018EC, 0x8438FF, 0x520085, 0xCB38FF, 0xFF95C8, 0xFF37C7};
  const uint32_t c = kPalette[static_cast<size_t>(((k % 20) + 20) % 20)];
  return {static_cast<uint8_t>(c >> 16), static_cast<uint8_t>(c >> 8), static_cast<uint8_t>(c)};
}

void fill_rect(Image* img, int64_t x1, int64_t y1, int64_t x2, int64_t y2, Rgb colour) {
  x1 = std::max<int64_t>(x1, 0), y1 = std::max<int64_t>(y1, 0);
  x2 = std::min(x2, img->width), y2 = std::min(y2, img->height);
  for (int64_t y = y1; y < y2; ++y) {
    for (int64_t x = x1; x < x2; ++x) std::copy(colour.begin(), colour.end(), img->at(y, x));
  }
}

void draw_rect(Image* img, const Box& b, Rgb colour, int64_t t) {
  const auto x1 = static_cast<int64_t>(std::lround(b.x1)), y1 = static_cast<int64_t>(std::lround(b.y1));
  const auto x2 = static_cast<int64_t>(std::lround(b.x2)), y2 = static_cast<int64_t>(std::lround(b.y2));
  fill_rect(img, x1, y1, x2, y1 + t, colour);
  fill_rect(img, x1, y2 - t, x2, y2, colour);
  fill_rect(img, x1, y1, x1 + t, y2, colour);
  fill_rect(img, x2 - t, y1, x2, y2, colour);
}

// ---- fonts
namespace {
// The built-in font: 5x7 glyphs for ASCII 32..126, one byte per row (bit 4 = left column).
constexpr uint8_t kGlyphs[95][7] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04},  // space !
    {0x0A, 0x0A, 0x00, 0x00, 0x00, 0x00, 0x00}, {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A},  // " #
    {0x04, 0x0F, 0x14, 0x0E, 0x05, 0x1E, 0x04}, {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03},  // $ %
    {0x08, 0x14, 0x14, 0x08, 0x15, 0x12, 0x0D}, {0x04, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00},  // & '
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}, {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08},  // ( )
    {0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00}, {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00},  // * +
    {0x00, 0x00, 0x00, 0x00, 0x06, 0x04, 0x08}, {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00},  // , -
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x06}, {0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10},  // . /
    {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}, {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E},  // 0 1
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}, {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E},  // 2 3
    {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}, {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E},  // 4 5
    {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}, {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08},  // 6 7
    {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}, {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C},  // 8 9
    {0x00, 0x06, 0x06, 0x00, 0x06, 0x06, 0x00}, {0x00, 0x06, 0x06, 0x00, 0x06, 0x04, 0x08},  // : ;
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02}, {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00},  // < =
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}, {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04},  // > ?
    {0x0E, 0x11, 0x17, 0x15, 0x17, 0x10, 0x0E}, {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11},  // @ A
    {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}, {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E},  // B C
    {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}, {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F},  // D E
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}, {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F},  // F G
    {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}, {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E},  // H I
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}, {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11},  // J K
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}, {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11},  // L M
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}, {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E},  // N O
    {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}, {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D},  // P Q
    {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}, {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E},  // R S
    {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}, {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E},  // T U
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}, {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A},  // V W
    {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}, {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04},  // X Y
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}, {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E},  // Z [
    {0x10, 0x10, 0x08, 0x04, 0x02, 0x01, 0x01}, {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E},  // \ ]
    {0x04, 0x0A, 0x11, 0x00, 0x00, 0x00, 0x00}, {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F},  // ^ _
    {0x08, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00}, {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F},  // ` a
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E}, {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E},  // b c
    {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F}, {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E},  // d e
    {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08}, {0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E},  // f g
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11}, {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E},  // h i
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C}, {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12},  // j k
    {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}, {0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11},  // l m
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11}, {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E},  // n o
    {0x00, 0x00, 0x1E, 0x11, 0x1E, 0x10, 0x10}, {0x00, 0x00, 0x0D, 0x13, 0x0F, 0x01, 0x01},  // p q
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10}, {0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E},  // r s
    {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06}, {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D},  // t u
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04}, {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A},  // v w
    {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11}, {0x00, 0x00, 0x11, 0x11, 0x0F, 0x01, 0x0E},  // x y
    {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F}, {0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02},  // z {
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}, {0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08},  // | }
    {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00}};                                              // ~

// Builtin geometry at line height px: glyph scale s = max(1, px / 9) (7 rows + 2 spacing), 6 s wide.
int64_t builtin_scale(int64_t px) { return std::max<int64_t>(1, px / 9); }

void blend(Image* img, int64_t x, int64_t y, Rgb c, int a) {  // a in 0..255
  if (x < 0 || y < 0 || x >= img->width || y >= img->height || a <= 0) return;
  uint8_t* p = img->at(y, x);
  for (int k = 0; k < 3; ++k) p[k] = static_cast<uint8_t>((p[k] * (255 - a) + c[static_cast<size_t>(k)] * a + 127) / 255);
}
}  // namespace

struct Font::TrueType {
  std::string bytes;
  stbtt_fontinfo info{};
  struct Glyph {
    int x0 = 0, y0 = 0, w = 0, h = 0;  // bitmap box relative to the pen on the baseline
    std::vector<uint8_t> alpha;
  };
  std::mutex mu;
  std::map<std::pair<int64_t, int>, Glyph> cache;  // (px, codepoint)

  float scale(int64_t px) const { return stbtt_ScaleForPixelHeight(&info, static_cast<float>(px)); }
  int ascent_px(int64_t px) const {
    int asc = 0, desc = 0, gap = 0;
    stbtt_GetFontVMetrics(&info, &asc, &desc, &gap);
    return static_cast<int>(std::lround(asc * scale(px)));
  }
  const Glyph& glyph(int64_t px, int cp) {
    std::lock_guard<std::mutex> lk(mu);
    auto it = cache.find({px, cp});
    if (it != cache.end()) return it->second;
    Glyph g;
    const float s = scale(px);
    int x1 = 0, y1 = 0, x2 = 0, y2 = 0;
    stbtt_GetCodepointBitmapBox(&info, cp, s, s, &x1, &y1, &x2, &y2);
    g.x0 = x1, g.y0 = y1, g.w = std::max(0, x2 - x1), g.h = std::max(0, y2 - y1);
    g.alpha.assign(static_cast<size_t>(g.w * g.h), 0);
    if (g.w && g.h) stbtt_MakeCodepointBitmap(&info, g.alpha.data(), g.w, g.h, g.w, s, s, cp);
    return cache.emplace(std::make_pair(px, cp), std::move(g)).first->second;
  }
  int advance(int64_t px, int cp, int next) const {
    int adv = 0, lsb = 0;
    stbtt_GetCodepointHMetrics(&info, cp, &adv, &lsb);
    const int kern = next ? stbtt_GetCodepointKernAdvance(&info, cp, next) : 0;
    return static_cast<int>(std::lround((adv + kern) * scale(px)));
  }
};

Font::~Font() = default;

const Font& Font::builtin() {
  static const Font f;
  return f;
}

std::shared_ptr<const Font> Font::load(const std::string& path, std::string* error) {
  auto fail = [&](const std::string& why) {
    if (error) *error = "font '" + path + "': " + why;
    return std::shared_ptr<const Font>(std::shared_ptr<const Font>{}, &builtin());
  };
  std::ifstream f(path, std::ios::binary);
  if (!f) return fail("cannot read it");
  auto tt = std::make_unique<TrueType>();
  tt->bytes.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  const auto* data = reinterpret_cast<const unsigned char*>(tt->bytes.data());
  const int offset = tt->bytes.size() >= 12 ? stbtt_GetFontOffsetForIndex(data, 0) : -1;
  if (offset < 0 || !stbtt_InitFont(&tt->info, data, offset)) return fail("not a TrueType font");
  std::shared_ptr<Font> font(new Font());
  font->tt_ = std::move(tt);
  font->name_ = path;
  return font;
}

const Font& Font::standard() {
  static const std::shared_ptr<const Font> f = [] {
    std::vector<std::string> paths;
    if (const char* env = std::getenv("RINGGRAD_FONT")) paths.emplace_back(env);
    for (const char* p : {"/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf",
                          "/usr/share/fonts/dejavu/DejaVuSans.ttf"}) {
      paths.emplace_back(p);
    }
    for (const auto& p : paths) {
      std::string err;
      auto font = load(p, &err);
      if (!font->is_builtin()) return font;
    }
    return std::shared_ptr<const Font>(std::shared_ptr<const Font>{}, &builtin());
  }();
  return *f;
}

int64_t Font::text_width(const std::string& text, int64_t px) const {
  if (!tt_) return static_cast<int64_t>(text.size()) * 6 * builtin_scale(px);
  int64_t w = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    w += tt_->advance(px, static_cast<unsigned char>(text[i]), i + 1 < text.size() ? static_cast<unsigned char>(text[i + 1]) : 0);
  }
  return w;
}

void Font::draw(Image* img, int64_t x, int64_t y, const std::string& text, Rgb colour, int64_t px) const {
  if (!tt_) {
    const int64_t s = builtin_scale(px), top = y + (px - 7 * s) / 2;
    for (size_t i = 0; i < text.size(); ++i) {
      const auto ch = static_cast<unsigned char>(text[i]);
      const uint8_t* g = kGlyphs[(ch >= 32 && ch <= 126) ? ch - 32 : '?' - 32];
      for (int r = 0; r < 7; ++r) {
        for (int c = 0; c < 5; ++c) {
          if (!(g[r] & (0x10 >> c))) continue;
          for (int64_t dy = 0; dy < s; ++dy) {
            for (int64_t dx = 0; dx < s; ++dx) blend(img, x + static_cast<int64_t>(i) * 6 * s + c * s + dx, top + r * s + dy, colour, 255);
          }
        }
      }
    }
    return;
  }
  const int64_t baseline = y + tt_->ascent_px(px);
  int64_t pen = x;
  for (size_t i = 0; i < text.size(); ++i) {
    const int cp = static_cast<unsigned char>(text[i]);
    const TrueType::Glyph& g = tt_->glyph(px, cp);
    for (int r = 0; r < g.h; ++r) {
      for (int c = 0; c < g.w; ++c) blend(img, pen + g.x0 + c, baseline + g.y0 + r, colour, g.alpha[static_cast<size_t>(r * g.w + c)]);
    }
    pen += tt_->advance(px, cp, i + 1 < text.size() ? static_cast<unsigned char>(text[i + 1]) : 0);
  }
}

// ---- labelled boxes and grids
void draw_labelled_box(Image* img, const Box& b, const std::string& label, Rgb colour, int64_t thickness, int64_t text_px,
                       const Font& font) {
  draw_rect(img, b, colour, thickness);
  if (label.empty()) return;
  const int64_t w = font.text_width(label, text_px) + 2 * thickness, h = text_px + thickness;
  const auto x1 = static_cast<int64_t>(std::lround(b.x1));
  int64_t y1 = static_cast<int64_t>(std::lround(b.y1)) - h;
  if (y1 < 0) y1 = static_cast<int64_t>(std::lround(b.y1));  // no room above: inside the box
  fill_rect(img, x1, y1, x1 + w, y1 + h, colour);
  const bool light = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] > 170;
  font.draw(img, x1 + thickness, y1 + thickness / 2, label, light ? Rgb{0, 0, 0} : Rgb{255, 255, 255}, text_px);
}

Image image_grid(const std::vector<Image>& images, int64_t cols, Rgb fill) {
  RG_CHECK(!images.empty() && cols >= 1, "image_grid: no images or no columns");
  int64_t ch = 0, cw = 0;
  for (const Image& im : images) ch = std::max(ch, im.height), cw = std::max(cw, im.width);
  const auto n = static_cast<int64_t>(images.size());
  const int64_t rows = (n + cols - 1) / cols;
  Image out(rows * ch, std::min(cols, n) * cw, 3);
  fill_rect(&out, 0, 0, out.width, out.height, fill);
  for (int64_t i = 0; i < n; ++i) {
    const Image& im = images[static_cast<size_t>(i)];
    RG_CHECK(im.channels == 3, "image_grid: image ", i, " has ", im.channels, " channels, not 3");
    for (int64_t y = 0; y < im.height; ++y) {
      std::copy(im.at(y, 0), im.at(y, 0) + im.width * 3, out.at((i / cols) * ch + y, (i % cols) * cw));
    }
  }
  return out;
}

Image plot_images(const Tensor& images, const std::vector<std::vector<DrawBox>>& boxes, const std::vector<std::string>& names,
                  const std::vector<std::string>& titles, int64_t max_images, int64_t max_side) {
  RG_CHECK(images.dim() == 4 && images.size(1) == 3 && images.dtype() == DType::u8 && images.is_cpu(),
           "plot_images: expected (B, 3, H, W) u8 images on the CPU, got ", images.describe());
  const int64_t B = std::min(images.size(0), max_images), H = images.size(2), W = images.size(3);
  RG_CHECK(B >= 1, "plot_images: no images");
  const int64_t ns = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(B))));
  const double scale = std::min(1.0, static_cast<double>(max_side) / static_cast<double>(ns * std::max(H, W)));
  const int64_t h = std::max<int64_t>(1, std::lround(H * scale)), w = std::max<int64_t>(1, std::lround(W * scale));
  const int64_t text_px = std::clamp<int64_t>(std::lround((h + w) * ns * 0.01), 10, 24);
  const int64_t lw = std::max<int64_t>(1, std::lround(text_px / 10.0));
  const Tensor x = native::contiguous(images);
  const uint8_t* px = x.data<uint8_t>();
  std::vector<Image> tiles;
  for (int64_t i = 0; i < B; ++i) {
    Image im(H, W, 3);
    const uint8_t* src = px + i * 3 * H * W;
    for (int64_t k = 0; k < H * W; ++k) {
      for (int c = 0; c < 3; ++c) im.pixels[static_cast<size_t>(k * 3 + c)] = src[c * H * W + k];
    }
    if (scale != 1.0) im = resize_bilinear(im, h, w);
    if (static_cast<size_t>(i) < boxes.size()) {
      for (const DrawBox& d : boxes[static_cast<size_t>(i)]) {
        const Box b{static_cast<float>(d.box.x1 * scale), static_cast<float>(d.box.y1 * scale),
                    static_cast<float>(d.box.x2 * scale), static_cast<float>(d.box.y2 * scale), d.box.cls};
        std::string label = d.box.cls >= 0 && static_cast<size_t>(d.box.cls) < names.size() ? names[static_cast<size_t>(d.box.cls)]
                                                                                            : std::to_string(d.box.cls);
        if (d.score >= 0) {
          char s[16];
          std::snprintf(s, sizeof(s), " %.2f", d.score);
          label += s;
        }
        draw_labelled_box(&im, b, label, class_colour(d.box.cls), lw, text_px);
      }
    }
    if (static_cast<size_t>(i) < titles.size() && !titles[static_cast<size_t>(i)].empty()) {
      std::string t = titles[static_cast<size_t>(i)];
      const size_t slash = t.rfind('/');
      if (slash != std::string::npos) t = t.substr(slash + 1);
      Font::standard().draw(&im, lw + 2, lw + 1, t.substr(0, 40), {220, 220, 220}, text_px);
    }
    draw_rect(&im, {0, 0, static_cast<float>(w), static_cast<float>(h), 0}, {255, 255, 255}, lw + 1);  // tile border
    tiles.push_back(std::move(im));
  }
  return image_grid(tiles, ns);
}

Image plot_batch(const Batch& batch, const std::vector<std::string>& names, int64_t max_images, int64_t max_side) {
  RG_CHECK(batch.images.defined() && batch.targets.defined(), "plot_batch: a detection batch with targets is needed");
  const int64_t B = batch.images.size(0), H = batch.images.size(2), W = batch.images.size(3);
  std::vector<std::vector<DrawBox>> boxes(static_cast<size_t>(B));
  const Tensor t = native::contiguous(batch.targets);
  const float* r = t.data<float>();
  for (int64_t k = 0; k < t.size(0); ++k, r += 6) {
    const auto i = static_cast<size_t>(r[0]);
    const float cx = r[2] * W, cy = r[3] * H, bw = r[4] * W, bh = r[5] * H;
    if (i < boxes.size()) boxes[i].push_back({{cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2, static_cast<int32_t>(r[1])}, -1});
  }
  std::vector<std::string> titles;
  for (const ImageInfo& info : batch.info) titles.push_back(info.path);
  return plot_images(batch.images, boxes, names, titles, max_images, max_side);
}

}  // namespace rg::data
