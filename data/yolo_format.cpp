// YOLO format: data.yaml (Note [data.yaml]), image listing, label paths, and the per-image label
// check (Note [Bad labels]) through the shared cache (Note [Label cache]).
#include "data/yolo_format.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "data/label_check.h"
#include "data/yaml_util.h"

namespace fs = std::filesystem;

namespace rg::data {

// ---- data.yaml
const std::vector<std::string>& DataYaml::split(const std::string& name) const {
  if (name == "train") return train;
  if (name == "val") return val;
  if (name == "test") return test;
  RG_THROW("data.yaml: unknown split '", name, "' (train, val or test)");
}

namespace {
std::string resolve(const fs::path& base, const std::string& p) {
  const fs::path q(p);
  std::string s = (q.is_absolute() ? q : base / q).lexically_normal().string();
  if (s.size() > 1 && s.back() == '/') s.pop_back();  // "root/." normalises to "root/"
  return s;
}

std::vector<std::string> read_sources(const YAML::Node& doc, const std::string& key, const fs::path& root,
                                      const std::string& file) {
  const YAML::Node v = doc[key];
  std::vector<std::string> out;
  if (!v.IsDefined() || v.IsNull()) return out;
  if (v.IsScalar()) {
    out.push_back(resolve(root, v.Scalar()));
  } else if (v.IsSequence()) {
    for (const auto& e : v) {
      RG_CHECK(e.IsScalar(), yaml_where(file, e), ": '", key, "' entries must be paths");
      out.push_back(resolve(root, e.Scalar()));
    }
  } else {
    RG_THROW(yaml_where(file, v), ": '", key, "' must be a path or a list of paths");
  }
  return out;
}

std::vector<std::string> read_names(const YAML::Node& doc, const std::string& file) {
  const YAML::Node v = doc["names"];
  std::vector<std::string> names;
  if (!v.IsDefined() || v.IsNull()) return names;
  if (v.IsSequence()) {
    for (const auto& e : v) {
      RG_CHECK(e.IsScalar(), yaml_where(file, e), ": 'names' entries must be strings");
      names.push_back(e.Scalar());
    }
    return names;
  }
  RG_CHECK(v.IsMap(), yaml_where(file, v), ": 'names' must be a list or a map {0: name, ...}");
  std::vector<std::pair<long long, std::string>> kv;
  for (const auto& e : v) {
    long long k = -1;
    RG_CHECK(e.first.IsScalar() && YAML::convert<long long>::decode(e.first, k) && e.second.IsScalar(),
             yaml_where(file, e.first), ": 'names' keys must be class indices and values names");
    kv.emplace_back(k, e.second.Scalar());
  }
  std::sort(kv.begin(), kv.end());
  for (size_t i = 0; i < kv.size(); ++i) {
    RG_CHECK(kv[i].first == static_cast<long long>(i), yaml_where(file, v), ": 'names' keys must be 0..",
             kv.size() - 1, " without gaps; class ", i, " is missing");
    names.push_back(kv[i].second);
  }
  return names;
}
}  // namespace

DataYaml read_data_yaml(const std::string& path) {
  const YAML::Node doc = load_yaml_file(path);
  RG_CHECK(doc.IsMap(), "'", path, "': expected a mapping with train, val, nc and names");
  DataYaml d;
  d.file = path;
  const fs::path dir = fs::absolute(fs::path(path)).parent_path();
  d.root = resolve(dir, doc["path"].IsDefined() && !doc["path"].IsNull() ? yaml_string(doc, "path", path) : ".");
  d.train = read_sources(doc, "train", d.root, path);
  d.val = read_sources(doc, "val", d.root, path);
  d.test = read_sources(doc, "test", d.root, path);
  d.names = read_names(doc, path);
  if (doc["nc"].IsDefined() && !doc["nc"].IsNull()) {
    d.nc = yaml_int(doc, "nc", path);
    RG_CHECK(d.nc >= 1, yaml_where(path, doc["nc"]), ": 'nc' must be >= 1, got ", d.nc);
    if (d.names.empty()) {
      for (int64_t k = 0; k < d.nc; ++k) d.names.push_back("class" + std::to_string(k));  // ultralytics' default
    }
    RG_CHECK(static_cast<int64_t>(d.names.size()) == d.nc, yaml_where(path, doc["nc"]), ": 'nc' is ", d.nc,
             " but 'names' has ", d.names.size(), " entries");
  } else {
    RG_CHECK(!d.names.empty(), "'", path, "': needs 'names' (or 'nc')");
    d.nc = static_cast<int64_t>(d.names.size());
  }
  RG_CHECK(!d.train.empty() || !d.val.empty(), "'", path, "': needs 'train' or 'val'");
  return d;
}

// ---- listing
namespace {
bool is_listed_image(const fs::path& p) {
  std::string ext = p.extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  static const char* kExts[] = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dng", ".mpo"};
  return std::any_of(std::begin(kExts), std::end(kExts), [&](const char* e) { return ext == e; });
}
}  // namespace

std::vector<std::string> list_yolo_images(const std::vector<std::string>& sources) {
  std::vector<std::string> files;
  for (const std::string& src : sources) {
    std::error_code ec;
    if (fs::is_directory(src, ec)) {
      for (const auto& e : fs::recursive_directory_iterator(src, fs::directory_options::follow_directory_symlink)) {
        if (e.is_regular_file() && is_listed_image(e.path())) files.push_back(e.path().string());
      }
    } else if (fs::is_regular_file(src, ec)) {
      std::ifstream f(src);
      RG_CHECK(f, "cannot read the image list '", src, "': ", std::strerror(errno));
      const fs::path parent = fs::path(src).parent_path();
      std::string line;
      while (std::getline(f, line)) {
        while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
        size_t b = 0;
        while (b < line.size() && std::isspace(static_cast<unsigned char>(line[b]))) ++b;
        if (b == line.size()) continue;
        const std::string entry = line.substr(b);
        if (is_listed_image(entry)) files.push_back(resolve(parent, entry));
      }
    } else {
      RG_THROW("image source '", src, "' does not exist (neither a folder nor an image list)");
    }
  }
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());
  return files;
}

std::string image_to_label_path(const std::string& image) {
  std::string p = image;
  const size_t k = p.rfind("/images/");
  if (k != std::string::npos) p.replace(k, 8, "/labels/");
  const size_t slash = p.rfind('/'), dot = p.rfind('.');
  if (dot != std::string::npos && (slash == std::string::npos || dot > slash)) p.erase(dot);
  return p + ".txt";
}

std::string yolo_cache_path(const std::vector<std::string>& sources, const std::vector<std::string>& label_files) {
  std::error_code ec;
  if (sources.size() == 1 && fs::is_regular_file(sources[0], ec)) {
    return fs::path(sources[0]).replace_extension(".cache").string();
  }
  RG_CHECK(!label_files.empty(), "yolo_cache_path: no label files");
  return fs::path(label_files[0]).parent_path().string() + ".cache";
}

// ---- one label file
namespace {
bool parse_number(const std::string& tok, double* v) {
  char* end = nullptr;
  errno = 0;
  *v = std::strtod(tok.c_str(), &end);
  return end == tok.c_str() + tok.size() && !tok.empty() && errno != ERANGE && std::isfinite(*v);
}

void check_label_line(CheckedImage* c, const std::string& file, int64_t line_no, const std::vector<std::string>& tok,
                      int64_t nc, double tol) {
  const size_t n = tok.size();
  auto malformed = [&](const std::string& why) { c->problems.push_back({LabelIssue::Malformed, file, line_no, why}); };
  if (n != 5 && (n < 7 || n % 2 == 0)) {
    return malformed("expected 'class cx cy w h' (or 'class x1 y1 x2 y2 ...'), got " + std::to_string(n) + " fields");
  }
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) {
    if (!parse_number(tok[i], &v[i])) return malformed("'" + tok[i] + "' is not a finite number");
  }
  if (v[0] != std::floor(v[0])) return malformed("class '" + tok[0] + "' is not an integer");
  if (v[0] < 0 || v[0] >= static_cast<double>(nc)) {
    c->problems.push_back({LabelIssue::ClassOutOfRange, file, line_no,
                           "class " + tok[0] + " out of range [0, " + std::to_string(nc) + ")"});
    return;
  }
  const auto cls = static_cast<int32_t>(v[0]);
  const auto W = static_cast<double>(c->width), H = static_cast<double>(c->height);
  Box b;
  if (n == 5) {
    b = box_from_yolo(cls, v[1], v[2], v[3], v[4], W, H);
  } else {  // a polygon (segment label): its bounding box
    double x1 = v[1], x2 = v[1], y1 = v[2], y2 = v[2];
    for (size_t i = 1; i + 1 < n; i += 2) {
      x1 = std::min(x1, v[i]), x2 = std::max(x2, v[i]);
      y1 = std::min(y1, v[i + 1]), y2 = std::max(y2, v[i + 1]);
    }
    b = {static_cast<float>(x1 * W), static_cast<float>(y1 * H), static_cast<float>(x2 * W), static_cast<float>(y2 * H), cls};
  }
  add_checked_box(c, b, tol, file, line_no);
}

CheckedImage check_yolo_image(const std::string& image, const std::string& label, int64_t nc, double tol) {
  CheckedImage c;
  c.image = image;
  if (!check_image_file(&c)) return c;
  std::ifstream f(label);
  if (!f) return c;  // no label file: a background image
  std::string line;
  int64_t line_no = 0;
  while (std::getline(f, line)) {
    ++line_no;
    std::istringstream ss(line);
    std::vector<std::string> tok;
    for (std::string t; ss >> t;) tok.push_back(t);
    if (!tok.empty()) check_label_line(&c, label, line_no, tok, nc, tol);
  }
  return c;
}
}  // namespace

DetectionDataset load_yolo_sources(const std::vector<std::string>& sources, std::vector<std::string> names,
                                   const LabelCheckOptions& opts) {
  RG_CHECK(!names.empty(), "load_yolo: no class names");
  const std::vector<std::string> images = list_yolo_images(sources);
  std::string joined;
  for (const auto& s : sources) joined += (joined.empty() ? "" : ", ") + s;
  RG_CHECK(!images.empty(), "no images found in ", joined);
  std::vector<std::pair<std::string, std::string>> files;
  std::vector<std::string> labels;
  for (const auto& im : images) {
    labels.push_back(image_to_label_path(im));
    files.emplace_back(im, labels.back());
  }
  const auto nc = static_cast<int64_t>(names.size());
  std::vector<std::string> settings = {"yolo v1", std::to_string(opts.clip_tolerance)};
  settings.insert(settings.end(), names.begin(), names.end());
  const LabelCacheKey key{"yolo", hash_settings(settings), {}};
  LabelReport report;
  report.source = fs::path(labels[0]).parent_path().string();
  auto checked = check_with_cache(yolo_cache_path(sources, labels), key, files,
                                  [&](int64_t i) {
                                    const auto& [im, lb] = files[static_cast<size_t>(i)];
                                    return check_yolo_image(im, lb, nc, opts.clip_tolerance);
                                  },
                                  opts, &report);
  return assemble_dataset(std::move(names), std::move(checked), std::move(report), opts);
}

DetectionDataset load_yolo(const DataYaml& data, const std::string& split, const LabelCheckOptions& opts) {
  const auto& sources = data.split(split);
  RG_CHECK(!sources.empty(), "'", data.file, "' has no '", split, "' split");
  return load_yolo_sources(sources, data.names, opts);
}

}  // namespace rg::data
