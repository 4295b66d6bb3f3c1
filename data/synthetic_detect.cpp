// The synthetic detection dataset: rendering with exact labels (Note [Synthetic detection labels])
// and the idempotent YOLO + COCO writer.
#include "data/synthetic_detect.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include "core/error.h"
#include "core/json.h"
#include "data/label_check.h"  // parallel_for

namespace fs = std::filesystem;

namespace rg::data {

namespace {
constexpr double kPi = 3.14159265358979323846;

struct Shape {
  int kind = 0;
  double cx = 0, cy = 0, r = 1, cr = 1, sr = 0;
  std::array<uint8_t, 3> colour{};
  int64_t x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // the clipped pixel window [x0, x1) x [y0, y1)
  std::vector<float> cov;                   // own coverage in [0, 1] over the window
  std::vector<float> vis;                   // coverage left visible by the shapes above
  double area = 0;                          // sum of cov
};

bool inside(const Shape& s, double px, double py) {
  const double dx = px - s.cx, dy = py - s.cy;
  return shape_contains(s.kind, (dx * s.cr + dy * s.sr) / s.r, (-dx * s.sr + dy * s.cr) / s.r);
}

// Coverage of the pixels of window [x0, x1) x [y0, y1): pixels whose four corners agree are taken
// as wholly in or out, the others sampled 4 x 4. Returns the sum.
double rasterise(const Shape& s, int64_t x0, int64_t y0, int64_t x1, int64_t y1, std::vector<float>* cov) {
  const int64_t w = x1 - x0, h = y1 - y0;
  cov->assign(static_cast<size_t>(std::max<int64_t>(w * h, 0)), 0.0f);
  if (w <= 0 || h <= 0) return 0;
  std::vector<char> corner(static_cast<size_t>((w + 1) * (h + 1)));
  for (int64_t y = 0; y <= h; ++y) {
    for (int64_t x = 0; x <= w; ++x) corner[static_cast<size_t>(y * (w + 1) + x)] = inside(s, x0 + x, y0 + y);
  }
  double sum = 0;
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const int c = corner[static_cast<size_t>(y * (w + 1) + x)] + corner[static_cast<size_t>(y * (w + 1) + x + 1)] +
                    corner[static_cast<size_t>((y + 1) * (w + 1) + x)] + corner[static_cast<size_t>((y + 1) * (w + 1) + x + 1)];
      float v = c == 4 ? 1.0f : 0.0f;
      if (c != 0 && c != 4) {
        int hits = 0;
        for (int sy = 0; sy < 4; ++sy) {
          for (int sx = 0; sx < 4; ++sx) hits += inside(s, x0 + x + (sx + 0.5) / 4, y0 + y + (sy + 0.5) / 4);
        }
        v = static_cast<float>(hits) / 16.0f;
      }
      (*cov)[static_cast<size_t>(y * w + x)] = v;
      sum += v;
    }
  }
  return sum;
}

int colour_distance(const std::array<uint8_t, 3>& a, const std::array<double, 3>& b) {
  return static_cast<int>(std::abs(a[0] - b[0]) + std::abs(a[1] - b[1]) + std::abs(a[2] - b[2]));
}

// Tries to place shape `s` (window and coverage filled in) against the shapes already placed:
// every earlier shape must keep half of its pixels visible.
bool fits(const Shape& s, const std::vector<Shape>& placed) {
  for (const Shape& o : placed) {
    const int64_t ax0 = std::max(s.x0, o.x0), ay0 = std::max(s.y0, o.y0), ax1 = std::min(s.x1, o.x1), ay1 = std::min(s.y1, o.y1);
    if (ax0 >= ax1 || ay0 >= ay1) continue;
    double lost = 0, left = 0;
    for (const float v : o.vis) left += v;
    for (int64_t y = ay0; y < ay1; ++y) {
      for (int64_t x = ax0; x < ax1; ++x) {
        lost += o.vis[static_cast<size_t>((y - o.y0) * (o.x1 - o.x0) + (x - o.x0))] *
                s.cov[static_cast<size_t>((y - s.y0) * (s.x1 - s.x0) + (x - s.x0))];
      }
    }
    if (left - lost < 0.5 * o.area) return false;
  }
  return true;
}

void occlude(const Shape& s, std::vector<Shape>* placed) {
  for (Shape& o : *placed) {
    const int64_t ax0 = std::max(s.x0, o.x0), ay0 = std::max(s.y0, o.y0), ax1 = std::min(s.x1, o.x1), ay1 = std::min(s.y1, o.y1);
    for (int64_t y = ay0; y < ay1; ++y) {
      for (int64_t x = ax0; x < ax1; ++x) {
        o.vis[static_cast<size_t>((y - o.y0) * (o.x1 - o.x0) + (x - o.x0))] *=
            1.0f - s.cov[static_cast<size_t>((y - s.y0) * (s.x1 - s.x0) + (x - s.x0))];
      }
    }
  }
}
}  // namespace

DetectImage render_detection_image(const DetectDataOptions& o, uint64_t stream, uint64_t index) {
  SampleRng rng(o.seed, stream, index);
  const int64_t long_side = rng.randint(o.min_size, o.max_size + 1);
  const double la = std::log(o.max_aspect), aspect = std::exp(rng.uniform(-la, la));
  const int64_t W = aspect >= 1 ? long_side : std::max<int64_t>(16, std::llround(long_side * aspect));
  const int64_t H = aspect >= 1 ? std::max<int64_t>(16, std::llround(long_side / aspect)) : long_side;
  const ShapeBackground bg = ShapeBackground::draw(rng);
  const double sigma = rng.uniform(2, 8);
  std::array<double, 3> mean{};
  for (int c = 0; c < 3; ++c) mean[c] = 0.5 * (bg.base[c] + bg.alt[c]);

  std::vector<Shape> shapes;
  const int64_t n = rng.randint(o.min_objects, o.max_objects + 1);
  const double shorter = static_cast<double>(std::min(W, H));
  for (int64_t k = 0; k < n; ++k) {
    Shape s;
    s.kind = static_cast<int>(rng.randint(0, o.classes));
    for (int attempt = 0; attempt < 64; ++attempt) {  // a colour apart from the background and the others
      for (auto& c : s.colour) c = static_cast<uint8_t>(rng.randint(0, 256));
      bool ok = colour_distance(s.colour, mean) >= 200;
      for (const Shape& p : shapes) ok = ok && colour_distance(s.colour, {double(p.colour[0]), double(p.colour[1]), double(p.colour[2])}) >= 100;
      if (ok) break;
    }
    for (int attempt = 0; attempt < 30; ++attempt) {
      const double d = std::exp(rng.uniform(std::log(o.min_object), std::log(o.max_object))) * shorter;
      s.r = d / 2;
      s.cx = rng.uniform(-0.3 * s.r, static_cast<double>(W) + 0.3 * s.r);
      s.cy = rng.uniform(-0.3 * s.r, static_cast<double>(H) + 0.3 * s.r);
      const double rot = rng.uniform(0, 2 * kPi);
      s.cr = std::cos(rot), s.sr = std::sin(rot);
      const int64_t ux0 = static_cast<int64_t>(std::floor(s.cx - s.r)), uy0 = static_cast<int64_t>(std::floor(s.cy - s.r));
      const int64_t ux1 = static_cast<int64_t>(std::ceil(s.cx + s.r)), uy1 = static_cast<int64_t>(std::ceil(s.cy + s.r));
      s.x0 = std::max<int64_t>(ux0, 0), s.y0 = std::max<int64_t>(uy0, 0);
      s.x1 = std::min(ux1, W), s.y1 = std::min(uy1, H);
      s.area = rasterise(s, s.x0, s.y0, s.x1, s.y1, &s.cov);
      const bool cut = ux0 < 0 || uy0 < 0 || ux1 > W || uy1 > H;
      if (cut) {  // at least half of the shape inside the image
        std::vector<float> whole;
        if (s.area < 0.5 * rasterise(s, ux0, uy0, ux1, uy1, &whole)) continue;
      }
      if (s.area < 16 || !fits(s, shapes)) continue;
      s.vis = s.cov;
      occlude(s, &shapes);
      shapes.push_back(std::move(s));
      break;
    }
  }

  // Paint: the noisy background, then the flat shapes in order, blended by coverage.
  std::vector<float> canvas(static_cast<size_t>(W * H * 3));
  for (int64_t y = 0; y < H; ++y) {
    for (int64_t x = 0; x < W; ++x) {
      const double t = bg.mix((x + 0.5) / static_cast<double>(W), (y + 0.5) / static_cast<double>(H));
      for (int c = 0; c < 3; ++c) {
        float& v = canvas[static_cast<size_t>((y * W + x) * 3 + c)];
        if (o.plain_background) {
          v = static_cast<float>(std::round(bg.base[c]));
          continue;
        }
        const double noise = (rng.uniform() + rng.uniform() + rng.uniform() - 1.5) * 2.0 * sigma;
        v = static_cast<float>(bg.base[c] * (1 - t) + bg.alt[c] * t + noise);
      }
    }
  }
  DetectImage out;
  for (const Shape& s : shapes) {
    const int64_t w = s.x1 - s.x0;
    int64_t bx0 = INT64_MAX, by0 = INT64_MAX, bx1 = -1, by1 = -1;
    for (int64_t y = s.y0; y < s.y1; ++y) {
      for (int64_t x = s.x0; x < s.x1; ++x) {
        const size_t i = static_cast<size_t>((y - s.y0) * w + (x - s.x0));
        const float a = s.cov[i];
        float* p = &canvas[static_cast<size_t>((y * W + x) * 3)];
        for (int c = 0; c < 3; ++c) p[c] = p[c] * (1 - a) + static_cast<float>(s.colour[c]) * a;
        if (s.vis[i] >= 0.5f) bx0 = std::min(bx0, x), by0 = std::min(by0, y), bx1 = std::max(bx1, x + 1), by1 = std::max(by1, y + 1);
      }
    }
    if (bx1 < 0) continue;  // nothing left visible by half (cannot happen with the placement rule)
    out.boxes.push_back({static_cast<float>(bx0), static_cast<float>(by0), static_cast<float>(bx1), static_cast<float>(by1),
                         static_cast<int32_t>(s.kind)});
    out.colours.push_back(s.colour);
  }
  out.image = Image(H, W, 3);
  for (size_t i = 0; i < canvas.size(); ++i) out.image.pixels[i] = static_cast<uint8_t>(std::clamp(std::lrint(canvas[i]), 0L, 255L));
  return out;
}

// ---- the writer
namespace {
Json options_json(const DetectDataOptions& o) {
  Json j = Json::object();
  j.set("kind", "detect");
  j.set("generator", "ringgrad shapes-detect v1");
  Json names = Json::array();
  for (int64_t k = 0; k < o.classes; ++k) names.push_back(shape_class_names()[static_cast<size_t>(k)]);
  j.set("classes", names);
  j.set("train_images", o.train_images);
  j.set("val_images", o.val_images);
  j.set("min_size", o.min_size);
  j.set("max_size", o.max_size);
  j.set("max_aspect", o.max_aspect);
  j.set("min_objects", o.min_objects);
  j.set("max_objects", o.max_objects);
  j.set("min_object", o.min_object);
  j.set("max_object", o.max_object);
  j.set("quality", static_cast<int64_t>(o.quality));
  j.set("seed", static_cast<int64_t>(o.seed));
  return j;
}

void check_options(const DetectDataOptions& o) {
  const int64_t nk = static_cast<int64_t>(shape_class_names().size());
  RG_CHECK(!o.out.empty(), "make-data detect: --out is required");
  RG_CHECK(o.classes >= 1 && o.classes <= nk, "make-data detect: --classes must be in 1..", nk, ", got ", o.classes);
  RG_CHECK(o.train_images >= 1 && o.val_images >= 0, "make-data detect: --train must be >= 1 and --val >= 0");
  RG_CHECK(o.min_size >= 32 && o.min_size <= o.max_size && o.max_size <= 4096,
           "make-data detect: image sizes need 32 <= --min-size <= --max-size <= 4096, got ", o.min_size, " and ", o.max_size);
  RG_CHECK(o.max_aspect >= 1 && o.max_aspect <= 4, "make-data detect: --max-aspect must be in [1, 4], got ", o.max_aspect);
  RG_CHECK(o.min_objects >= 0 && o.min_objects <= o.max_objects && o.max_objects <= 64,
           "make-data detect: objects need 0 <= --min-objects <= --max-objects <= 64");
  RG_CHECK(o.min_object > 0 && o.min_object <= o.max_object && o.max_object <= 1,
           "make-data detect: object sizes need 0 < --min-object <= --max-object <= 1 (fractions of the short side)");
  RG_CHECK(o.quality >= 1 && o.quality <= 100, "make-data detect: --quality must be in 1..100");
}

std::string label_text(const DetectImage& d) {
  std::string s;
  char line[96];
  const auto W = static_cast<double>(d.image.width), H = static_cast<double>(d.image.height);
  for (const Box& b : d.boxes) {
    std::snprintf(line, sizeof(line), "%d %.6f %.6f %.6f %.6f\n", b.cls, (b.x1 + b.x2) / 2 / W, (b.y1 + b.y2) / 2 / H,
                  b.width() / W, b.height() / H);
    s += line;
  }
  return s;
}

Json coco_json(const DetectDataOptions& o, const std::vector<DetectImage>& val) {
  Json j = Json::object();
  Json images = Json::array(), anns = Json::array(), cats = Json::array();
  int64_t aid = 1;
  for (size_t i = 0; i < val.size(); ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "%06zu.jpg", i);
    Json im = Json::object();
    im.set("id", static_cast<int64_t>(i + 1));
    im.set("file_name", name);
    im.set("width", val[i].image.width);
    im.set("height", val[i].image.height);
    images.push_back(im);
    for (const Box& b : val[i].boxes) {
      Json a = Json::object();
      a.set("id", aid++);
      a.set("image_id", static_cast<int64_t>(i + 1));
      a.set("category_id", static_cast<int64_t>(b.cls + 1));
      Json bbox = Json::array();
      for (double v : {double(b.x1), double(b.y1), double(b.width()), double(b.height())}) bbox.push_back(v);
      a.set("bbox", bbox);
      a.set("area", static_cast<double>(b.width()) * b.height());
      a.set("iscrowd", int64_t{0});
      anns.push_back(a);
    }
  }
  for (int64_t k = 0; k < o.classes; ++k) {
    Json c = Json::object();
    c.set("id", k + 1);
    c.set("name", shape_class_names()[static_cast<size_t>(k)]);
    c.set("supercategory", "shape");
    cats.push_back(c);
  }
  j.set("images", images);
  j.set("annotations", anns);
  j.set("categories", cats);
  return j;
}
}  // namespace

MakeDataResult make_detect_dataset(const DetectDataOptions& o, bool progress) {
  check_options(o);
  const fs::path root = fs::absolute(fs::path(o.out)).lexically_normal();
  const Json want = options_json(o);
  const fs::path record = root / "dataset.json";
  if (fs::exists(record)) {
    std::ifstream f(record);
    const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const Json have = Json::parse(text);
    RG_CHECK(have.dump() == want.dump(), "make-data detect: '", o.out, "' holds a dataset made with other options\n",
             "  there:     ", have.dump(), "\n  requested: ", want.dump(), "\n  choose another --out or delete the directory");
  }
  const fs::path coco = root / "annotations" / "instances_val.json";
  const bool need_coco = !fs::exists(coco);
  MakeDataResult res;
  const char* splits[2] = {"train", "val"};
  const int64_t counts[2] = {o.train_images, o.val_images};
  std::vector<DetectImage> val(static_cast<size_t>(o.val_images));  // filled when the COCO json is (re)written
  for (int s = 0; s < 2; ++s) {
    fs::create_directories(root / "images" / splits[s]);
    fs::create_directories(root / "labels" / splits[s]);
    std::atomic<int64_t> written{0}, kept{0};
    parallel_for(counts[s], 0, [&](int64_t i) {
      char name[32];
      std::snprintf(name, sizeof(name), "%06lld", static_cast<long long>(i));
      const fs::path img = root / "images" / splits[s] / (std::string(name) + ".jpg");
      const fs::path lab = root / "labels" / splits[s] / (std::string(name) + ".txt");
      const bool have = fs::exists(img) && fs::exists(lab);
      if (have && !(s == 1 && need_coco)) {
        ++kept;
        return;
      }
      // Streams 1000 (train) and 1001 (val): apart from the classification set's 0..127.
      DetectImage d = render_detection_image(o, static_cast<uint64_t>(1000 + s), static_cast<uint64_t>(i));
      if (have) {
        ++kept;
      } else {
        write_file_via_rename(img.string(), encode_jpeg(d.image, o.quality, img.string()));
        write_file_via_rename(lab.string(), label_text(d));
        ++written;
      }
      if (s == 1) val[static_cast<size_t>(i)] = std::move(d);
    });
    if (progress) {
      std::printf("make-data: %s: %lld images (%lld written, %lld already there)\n", (root / "images" / splits[s]).string().c_str(),
                  static_cast<long long>(counts[s]), static_cast<long long>(written.load()), static_cast<long long>(kept.load()));
      std::fflush(stdout);
    }
    res.written += written;
    res.kept += kept;
  }
  if (need_coco) {
    fs::create_directories(coco.parent_path());
    write_file_via_rename(coco.string(), coco_json(o, val).dump() + "\n");
  }
  std::string yaml = "# written by ringgrad make-data detect (ultralytics data.yaml)\npath: " + root.string() +
                     "\ntrain: images/train\nval: images/val\nnc: " + std::to_string(o.classes) + "\nnames: [";
  for (int64_t k = 0; k < o.classes; ++k) yaml += (k ? ", " : "") + shape_class_names()[static_cast<size_t>(k)];
  write_file_via_rename((root / "data.yaml").string(), yaml + "]\n");
  write_file_via_rename(record.string(), want.dump() + "\n");
  return res;
}

}  // namespace rg::data
