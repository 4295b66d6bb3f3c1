// Pascal VOC xml through expat (line numbers for every object), checked per image and cached.
#include "data/voc_format.h"

#include <expat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <unordered_map>

#include "core/error.h"
#include "data/label_check.h"

namespace fs = std::filesystem;

namespace rg::data {

const std::vector<std::string>& voc_classes() {
  static const std::vector<std::string> names = {
      "aeroplane", "bicycle", "bird",  "boat",      "bottle", "bus",         "car",   "cat",   "chair", "cow",
      "diningtable", "dog",   "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",  "train", "tvmonitor"};
  return names;
}

namespace {
struct VocObject {
  int64_t line = 0;
  std::string name;
  std::string difficult;
  std::string coord[4];  // xmin, ymin, xmax, ymax as written
  bool has[4] = {false, false, false, false};
};

struct VocXml {
  std::string filename;
  std::vector<VocObject> objects;
  std::string error;  // an XML error, with error_line
  int64_t error_line = 0;
};

// Element path -> fields. Only annotation/filename and annotation/object/{name, difficult,
// bndbox/{xmin, ymin, xmax, ymax}} are read (object/part/... boxes are body parts, not objects).
struct XmlState {
  XML_Parser parser = nullptr;
  VocXml* out = nullptr;
  std::vector<std::string> path;
  std::string text;
};

void XMLCALL on_start(void* ud, const XML_Char* name, const XML_Char**) {
  auto* s = static_cast<XmlState*>(ud);
  s->path.emplace_back(name);
  s->text.clear();
  if (s->path.size() == 2 && s->path[1] == "object") {
    s->out->objects.emplace_back();
    s->out->objects.back().line = static_cast<int64_t>(XML_GetCurrentLineNumber(s->parser));
  }
}

void XMLCALL on_text(void* ud, const XML_Char* t, int len) { static_cast<XmlState*>(ud)->text.append(t, static_cast<size_t>(len)); }

std::string trimmed(const std::string& t) {
  size_t b = 0, e = t.size();
  while (b < e && std::isspace(static_cast<unsigned char>(t[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(t[e - 1]))) --e;
  return t.substr(b, e - b);
}

void XMLCALL on_end(void* ud, const XML_Char*) {
  auto* s = static_cast<XmlState*>(ud);
  const auto& p = s->path;
  const std::string v = trimmed(s->text);
  if (p.size() == 2 && p[1] == "filename") s->out->filename = v;
  if (p.size() >= 3 && p[1] == "object" && !s->out->objects.empty()) {
    VocObject& o = s->out->objects.back();
    if (p.size() == 3 && p[2] == "name") o.name = v;
    if (p.size() == 3 && p[2] == "difficult") o.difficult = v;
    if (p.size() == 4 && p[2] == "bndbox") {
      static const char* kKeys[4] = {"xmin", "ymin", "xmax", "ymax"};
      for (int k = 0; k < 4; ++k) {
        if (p[3] == kKeys[k]) o.coord[k] = v, o.has[k] = true;
      }
    }
  }
  s->path.pop_back();
  s->text.clear();
}

VocXml parse_voc_xml(const std::string& path) {
  VocXml out;
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    out.error = std::string("cannot read: ") + std::strerror(errno);
    return out;
  }
  const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::unique_ptr<std::remove_pointer_t<XML_Parser>, void (*)(XML_Parser)> parser(XML_ParserCreate(nullptr), XML_ParserFree);
  RG_CHECK(parser, "expat: cannot create a parser");
  XmlState st{parser.get(), &out, {}, {}};
  XML_SetUserData(parser.get(), &st);
  XML_SetElementHandler(parser.get(), on_start, on_end);
  XML_SetCharacterDataHandler(parser.get(), on_text);
  if (XML_Parse(parser.get(), bytes.data(), static_cast<int>(bytes.size()), XML_TRUE) == XML_STATUS_ERROR) {
    out.error = std::string("XML error: ") + XML_ErrorString(XML_GetErrorCode(parser.get()));
    out.error_line = static_cast<int64_t>(XML_GetCurrentLineNumber(parser.get()));
  }
  return out;
}

bool parse_coord(const std::string& t, double* v) {
  char* end = nullptr;
  *v = std::strtod(t.c_str(), &end);
  return !t.empty() && end == t.c_str() + t.size() && std::isfinite(*v);
}

CheckedImage check_voc_image(const std::string& xml, const VocXml& doc, const std::string& image,
                             const std::vector<std::string>& classes, const LabelCheckOptions& opts) {
  CheckedImage c;
  c.image = image;
  if (!doc.error.empty()) {  // the image cannot be used without its labels
    c.problems.push_back({LabelIssue::Malformed, xml, doc.error_line, doc.error});
    return c;
  }
  if (!check_image_file(&c)) return c;
  for (const VocObject& o : doc.objects) {
    auto bad = [&](LabelIssue k, const std::string& why) { c.problems.push_back({k, xml, o.line, why}); };
    const auto it = std::find(classes.begin(), classes.end(), o.name);
    if (o.name.empty()) {
      bad(LabelIssue::Malformed, "object without a name");
      continue;
    }
    if (it == classes.end()) {
      bad(LabelIssue::ClassOutOfRange, "class '" + o.name + "' is not in the class list");
      continue;
    }
    double v[4];
    bool ok = true;
    for (int k = 0; k < 4 && ok; ++k) ok = o.has[k] && parse_coord(o.coord[k], &v[k]);
    if (!ok) {
      bad(LabelIssue::Malformed, "bndbox needs numeric xmin, ymin, xmax and ymax");
      continue;
    }
    if (!o.difficult.empty() && o.difficult != "0" && !opts.keep_difficult) {
      ++c.skipped;
      continue;
    }
    const Box b{static_cast<float>(v[0] - 1), static_cast<float>(v[1] - 1), static_cast<float>(v[2]),
                static_cast<float>(v[3]), static_cast<int32_t>(it - classes.begin())};
    add_checked_box(&c, b, opts.clip_tolerance, xml, o.line);
  }
  return c;
}

std::vector<std::string> voc_ids(const fs::path& root, const std::string& image_set) {
  std::vector<std::string> ids;
  if (image_set.empty()) {
    const fs::path ann = root / "Annotations";
    std::error_code ec;
    RG_CHECK(fs::is_directory(ann, ec), "VOC: '", ann.string(), "' is not a folder");
    for (const auto& e : fs::directory_iterator(ann)) {
      if (e.is_regular_file() && e.path().extension() == ".xml") ids.push_back(e.path().stem().string());
    }
    std::sort(ids.begin(), ids.end());
  } else {
    const fs::path list = root / "ImageSets" / "Main" / (image_set + ".txt");
    std::ifstream f(list);
    RG_CHECK(f, "VOC: cannot read the image set '", list.string(), "': ", std::strerror(errno));
    for (std::string line; std::getline(f, line);) {
      const std::string id = trimmed(line.substr(0, line.find_first_of(" \t")));
      if (!id.empty()) ids.push_back(id);
    }
  }
  RG_CHECK(!ids.empty(), "VOC: no annotations in '", root.string(), "'", image_set.empty() ? "" : " for set '" + image_set + "'");
  return ids;
}
}  // namespace

DetectionDataset load_voc(const std::string& root_dir, const std::string& image_set, std::vector<std::string> classes,
                          const LabelCheckOptions& opts) {
  const fs::path root(root_dir);
  const std::vector<std::string> ids = voc_ids(root, image_set);
  const auto n = static_cast<int64_t>(ids.size());
  std::vector<std::string> xmls;
  for (const auto& id : ids) xmls.push_back((root / "Annotations" / (id + ".xml")).string());
  const bool given = !classes.empty();
  std::vector<std::string> settings = {"voc v1", std::to_string(opts.clip_tolerance), opts.keep_difficult ? "difficult" : "-"};
  if (given) settings.insert(settings.end(), classes.begin(), classes.end());
  else settings.emplace_back("<classes from the xml files>");
  const LabelCacheKey key{"voc", hash_settings(settings), {}};
  const std::string cache_path =
      (root / (image_set.empty() ? "Annotations.cache" : "Annotations." + image_set + ".cache")).string();
  LabelCache cache = opts.use_cache ? read_label_cache(cache_path, key) : LabelCache{};

  // An xml whose stamp matches its cache entry is not read again: the entry knows its image.
  std::unordered_map<std::string, const CheckedImage*> by_xml;
  for (const auto& e : cache.entries) by_xml.emplace(e.label, &e);
  std::vector<const CheckedImage*> known(ids.size(), nullptr);
  std::vector<VocXml> docs(ids.size());
  std::vector<char> parsed(ids.size(), 0);
  auto parse = [&](int64_t i) {
    const auto k = static_cast<size_t>(i);
    if (!parsed[k]) docs[k] = parse_voc_xml(xmls[k]), parsed[k] = 1;
  };
  for (size_t i = 0; i < ids.size(); ++i) {
    auto it = by_xml.find(xmls[i]);
    if (it != by_xml.end() && it->second->label_stamp == file_stamp(xmls[i])) known[i] = it->second;
  }
  const bool all_known = cache.valid && std::all_of(known.begin(), known.end(), [](auto* p) { return p != nullptr; });
  if (!given && all_known) {
    classes = cache.extra;
  } else if (!given) {  // the class list is every name in the xml files
    parallel_for(n, opts.threads, parse);
    std::set<std::string> found;
    for (const auto& d : docs) {
      for (const auto& o : d.objects) {
        if (!o.name.empty()) found.insert(o.name);
      }
    }
    classes.assign(found.begin(), found.end());
    RG_CHECK(!classes.empty(), "VOC: no object names in '", root_dir, "/Annotations' and no class list given");
    if (classes != cache.extra) cache = LabelCache{};  // other classes: every label changes meaning
  } else {
    parallel_for(n, opts.threads, [&](int64_t i) {
      if (!known[static_cast<size_t>(i)]) parse(i);
    });
  }
  std::vector<std::pair<std::string, std::string>> files;
  for (size_t i = 0; i < ids.size(); ++i) {
    std::string image;
    if (known[i] && cache.valid) {
      image = known[i]->image;
    } else {
      parse(static_cast<int64_t>(i));
      image = (root / "JPEGImages" / (docs[i].filename.empty() ? ids[i] + ".jpg" : docs[i].filename)).string();
    }
    files.emplace_back(std::move(image), xmls[i]);
  }
  LabelReport report;
  report.source = (root / "Annotations").string();
  auto checked = check_with_cache(
      cache_path, key, files,
      [&](int64_t i) {
        parse(i);  // each index is checked by one thread only
        const auto k = static_cast<size_t>(i);
        return check_voc_image(xmls[k], docs[k], files[k].first, classes, opts);
      },
      opts, &report, &cache, classes);
  return assemble_dataset(std::move(classes), std::move(checked), std::move(report), opts);
}

}  // namespace rg::data
