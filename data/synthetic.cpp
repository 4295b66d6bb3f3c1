// The synthetic shapes classification dataset: rendering (anti-aliased by 4x4 supersampling) and
// the idempotent ImageFolder writer with its DIR/dataset.json record.
#include "data/synthetic.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "core/json.h"
#include "data/sample_rng.h"

namespace fs = std::filesystem;

namespace rg::data {

const std::vector<std::string>& shape_class_names() {
  static const std::vector<std::string> names = {"circle", "square", "triangle", "cross",
                                                 "ring",   "star",   "bar",      "hexagon"};
  return names;
}

namespace {
constexpr double kPi = 3.14159265358979323846;

// Inside a regular n-gon of circumradius R centred at 0 with a vertex on +u.
bool in_regular_polygon(double u, double v, int n, double R) {
  const double apothem = R * std::cos(kPi / n);
  for (int k = 0; k < n; ++k) {
    const double a = (2 * k + 1) * kPi / n;  // the normal of the edge between vertices k and k+1
    if (u * std::cos(a) + v * std::sin(a) > apothem) return false;
  }
  return true;
}

// Inside a 5-pointed star with outer radius 1 and inner radius ri, a point on +u.
bool in_star(double u, double v, double ri) {
  const double rho = std::hypot(u, v);
  if (rho > 1.0) return false;
  const double sector = 2 * kPi / 5;
  double psi = std::fmod(std::atan2(v, u) + 2 * kPi, sector);
  if (psi > sector / 2) psi = sector - psi;
  // Triangle (O, A = (1, 0), B = ri (cos 36deg, sin 36deg)): P inside when on O's side of AB.
  const double bx = ri * std::cos(sector / 2), by = ri * std::sin(sector / 2);
  const double px = rho * std::cos(psi), py = rho * std::sin(psi);
  const double ex = bx - 1.0, ey = by;
  const double side_p = ex * py - ey * (px - 1.0);
  const double side_o = ex * 0.0 - ey * (0.0 - 1.0);
  return side_p * side_o >= 0;
}

}  // namespace

bool shape_contains(int kind, double u, double v) {
  switch (kind) {
    case 0: return u * u + v * v <= 0.9;                                     // circle
    case 1: return std::abs(u) <= 0.72 && std::abs(v) <= 0.72;               // square
    case 2: return in_regular_polygon(u, v, 3, 1.0);                          // triangle
    case 3: return (std::abs(u) <= 0.28 && std::abs(v) <= 0.95) ||            // cross (+)
                   (std::abs(v) <= 0.28 && std::abs(u) <= 0.95);
    case 4: { const double r2 = u * u + v * v; return r2 <= 0.95 && r2 >= 0.3; }  // ring
    case 5: return in_star(u, v, 0.45);                                       // star
    case 6: return std::abs(u) <= 1.0 && std::abs(v) <= 0.3;                  // bar
    case 7: return in_regular_polygon(u, v, 6, 0.9);                          // hexagon
    default: RG_THROW("shape_contains: unknown shape kind ", kind);
  }
}

namespace {
double clamp255(double x) { return std::clamp(x, 0.0, 255.0); }
}  // namespace

ShapeBackground ShapeBackground::draw(SampleRng& rng) {
  ShapeBackground b;
  for (int c = 0; c < 3; ++c) {
    b.base[c] = rng.uniform(0, 255);
    b.alt[c] = clamp255(b.base[c] + rng.uniform(-50, 50));
  }
  b.pattern = static_cast<int>(rng.randint(0, 3));
  const double ang = rng.uniform(0, 2 * kPi);
  b.ca = std::cos(ang), b.sa = std::sin(ang);
  b.freq = rng.uniform(1.5, 4.0), b.phase = rng.uniform(0, 2 * kPi);
  for (double& g : b.grid) g = rng.uniform();
  return b;
}

double ShapeBackground::mix(double xs, double ys) const {
  if (pattern == 0) return std::clamp(0.5 + 0.7 * ((xs - 0.5) * ca + (ys - 0.5) * sa), 0.0, 1.0);
  if (pattern == 1) return 0.5 + 0.5 * std::sin(2 * kPi * freq * (xs * ca + ys * sa) + phase);
  const double gx = std::clamp(xs, 0.0, 1.0) * kGrid, gy = std::clamp(ys, 0.0, 1.0) * kGrid;
  const int ix = std::min(static_cast<int>(gx), kGrid - 1), iy = std::min(static_cast<int>(gy), kGrid - 1);
  const double fx = gx - ix, fy = gy - iy;
  auto at = [&](int a, int b) { return grid[static_cast<size_t>(b * (kGrid + 1) + a)]; };
  return (at(ix, iy) * (1 - fx) + at(ix + 1, iy) * fx) * (1 - fy) + (at(ix, iy + 1) * (1 - fx) + at(ix + 1, iy + 1) * fx) * fy;
}

Image render_shape_image(int kind, int64_t S, uint64_t seed, uint64_t stream, uint64_t index) {
  RG_CHECK(kind >= 0 && kind < static_cast<int>(shape_class_names().size()), "render_shape_image: kind ", kind,
           " out of range");
  RG_CHECK(S >= 8 && S <= 4096, "render_shape_image: size ", S, " not in 8..4096");
  SampleRng rng(seed, stream, index);

  // Background: a base colour and a nearby second colour, mixed by one of three textures.
  const ShapeBackground bgd = ShapeBackground::draw(rng);
  const auto& base = bgd.base;
  const auto& alt = bgd.alt;
  auto texture = [&](double x, double y) { return bgd.mix(x / S, y / S); };

  // The shape: a colour far enough from the background's, a radius, a centre and a rotation.
  std::array<double, 3> col{};
  for (int attempt = 0; attempt < 32; ++attempt) {
    double dist = 0;
    for (int c = 0; c < 3; ++c) {
      col[c] = rng.uniform(0, 255);
      dist += std::abs(col[c] - 0.5 * (base[c] + alt[c]));
    }
    if (dist >= 180) break;
  }
  const double r = rng.uniform(0.28, 0.45) * static_cast<double>(S);
  const double cx = rng.uniform(0.9 * r, S - 0.9 * r), cy = rng.uniform(0.9 * r, S - 0.9 * r);
  const double rot = rng.uniform(0, 2 * kPi), cr = std::cos(rot), sr = std::sin(rot);
  const double shade = rng.uniform(-0.25, 0.25);  // a light gradient across the shape
  const double sigma = rng.uniform(2, 8);          // pixel noise

  Image img(S, S, 3);
  constexpr int SS = 4;  // supersampling per axis
  for (int64_t y = 0; y < S; ++y) {
    for (int64_t x = 0; x < S; ++x) {
      int hits = 0;
      for (int sy = 0; sy < SS; ++sy) {
        for (int sx = 0; sx < SS; ++sx) {
          const double px = static_cast<double>(x) + (sx + 0.5) / SS - cx;
          const double py = static_cast<double>(y) + (sy + 0.5) / SS - cy;
          const double u = (px * cr + py * sr) / r, v = (-px * sr + py * cr) / r;
          hits += shape_contains(kind, u, v) ? 1 : 0;
        }
      }
      const double alpha = static_cast<double>(hits) / (SS * SS);
      const double t = texture(static_cast<double>(x) + 0.5, static_cast<double>(y) + 0.5);
      const double lit = 1.0 + shade * ((static_cast<double>(y) + 0.5 - cy) / r);
      uint8_t* px = img.at(y, x);
      for (int c = 0; c < 3; ++c) {
        const double bg = base[c] * (1 - t) + alt[c] * t;
        const double fg = clamp255(col[c] * lit);
        // Sum of three uniforms: a cheap bell-shaped noise with standard deviation sigma.
        const double n = (rng.uniform() + rng.uniform() + rng.uniform() - 1.5) * 2.0 * sigma;
        px[c] = static_cast<uint8_t>(clamp255(bg * (1 - alpha) + fg * alpha + n) + 0.5);
      }
    }
  }
  return img;
}

bool dataset_exists(const std::string& dir) { return fs::exists(fs::path(dir) / "dataset.json"); }

void write_file_via_rename(const std::string& path, const std::string& bytes) {
  std::ostringstream tid;
  tid << std::hash<std::thread::id>{}(std::this_thread::get_id());
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + tid.str();
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    RG_CHECK(f, "cannot write '", tmp, "': ", std::strerror(errno));
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    f.flush();
    RG_CHECK(f, "cannot write '", tmp, "': ", std::strerror(errno));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp);
    RG_THROW("cannot rename '", tmp, "' to '", path, "': ", ec.message());
  }
}

namespace {
Json options_json(const ClassifyDataOptions& o) {
  Json j = Json::object();
  j.set("kind", "classify");
  j.set("generator", "ringgrad shapes v1");
  Json names = Json::array();
  for (int64_t k = 0; k < o.classes; ++k) names.push_back(shape_class_names()[static_cast<size_t>(k)]);
  j.set("classes", names);
  j.set("train_per_class", o.train_per_class);
  j.set("val_per_class", o.val_per_class);
  j.set("size", o.size);
  j.set("format", o.format);
  j.set("seed", static_cast<int64_t>(o.seed));
  return j;
}
}  // namespace

MakeDataResult make_classify_dataset(const ClassifyDataOptions& o, bool progress) {
  const int64_t nk = static_cast<int64_t>(shape_class_names().size());
  RG_CHECK(!o.out.empty(), "make-data classify: --out is required");
  RG_CHECK(o.classes >= 2 && o.classes <= nk, "make-data classify: --classes must be in 2..", nk, ", got ", o.classes);
  RG_CHECK(o.train_per_class >= 1 && o.val_per_class >= 0, "make-data classify: --train-per-class must be >= 1 and "
           "--val-per-class >= 0");
  RG_CHECK(o.size >= 8 && o.size <= 4096, "make-data classify: --size must be in 8..4096, got ", o.size);
  RG_CHECK(o.format == "png" || o.format == "jpg", "make-data classify: --format must be png or jpg, got '", o.format,
           "'");
  const fs::path root(o.out);
  const Json want = options_json(o);
  const fs::path record = root / "dataset.json";
  if (fs::exists(record)) {
    std::ifstream f(record);
    const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const Json have = Json::parse(text);
    RG_CHECK(have.dump() == want.dump(), "make-data classify: '", o.out, "' holds a dataset made with other options\n",
             "  there:     ", have.dump(), "\n  requested: ", want.dump(),
             "\n  choose another --out or delete the directory");
  }
  fs::create_directories(root);

  MakeDataResult res;
  const char* splits[2] = {"train", "val"};
  const int64_t per[2] = {o.train_per_class, o.val_per_class};
  for (int s = 0; s < 2; ++s) {
    int64_t written = 0, kept = 0;
    for (int64_t k = 0; k < o.classes; ++k) {
      const fs::path dir = root / splits[s] / shape_class_names()[static_cast<size_t>(k)];
      fs::create_directories(dir);
      for (int64_t i = 0; i < per[s]; ++i) {
        char name[32];
        std::snprintf(name, sizeof(name), "%06lld.%s", static_cast<long long>(i), o.format.c_str());
        const fs::path path = dir / name;
        if (fs::exists(path)) {
          ++kept;
          continue;
        }
        // Streams 0..63 are train classes, 64..127 val classes: every image has its own Philox stream.
        const Image img = render_shape_image(static_cast<int>(k), o.size, o.seed, static_cast<uint64_t>(s * 64 + k),
                                             static_cast<uint64_t>(i));
        const std::string bytes = o.format == "png" ? encode_png(img, path.string()) : encode_jpeg(img, 92, path.string());
        write_file_via_rename(path.string(), bytes);
        ++written;
      }
    }
    if (progress) {
      std::printf("make-data: %s: %lld images in %lld classes (%lld written, %lld already there)\n",
                  (root / splits[s]).string().c_str(), static_cast<long long>(written + kept),
                  static_cast<long long>(o.classes), static_cast<long long>(written), static_cast<long long>(kept));
      std::fflush(stdout);
    }
    res.written += written;
    res.kept += kept;
  }
  write_file_via_rename(record.string(), want.dump() + "\n");
  return res;
}

}  // namespace rg::data
