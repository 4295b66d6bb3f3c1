// The darknet .cfg parser: sections and keys with darknet's defaults into DarknetCfg, the checks that
// name file, line, section and key, the --classes / anchors rewrites, and writing the text back.
#include "models/darknet_cfg.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <optional>
#include <sstream>

#include "core/error.h"

namespace rg::models {

const char* layer_type_name(DarknetLayerType t) {
  switch (t) {
    case DarknetLayerType::Convolutional: return "convolutional";
    case DarknetLayerType::Shortcut: return "shortcut";
    case DarknetLayerType::Route: return "route";
    case DarknetLayerType::Upsample: return "upsample";
    case DarknetLayerType::MaxPool: return "maxpool";
    case DarknetLayerType::Yolo: return "yolo";
  }
  return "?";
}

const char* activation_name(DarknetActivation a) {
  switch (a) {
    case DarknetActivation::Leaky: return "leaky";
    case DarknetActivation::Linear: return "linear";
    case DarknetActivation::Logistic: return "logistic";
    case DarknetActivation::Relu: return "relu";
    case DarknetActivation::Mish: return "mish";
    case DarknetActivation::Swish: return "swish";
  }
  return "?";
}

int64_t DarknetLayer::line_of(const std::string& key) const {
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i].first == key) return key_lines[i];
  }
  return line;
}

int64_t DarknetCfg::max_stride() const {
  int64_t m = 1;
  for (const auto& l : layers) m = std::max(m, (l.factor_num + l.factor_den - 1) / l.factor_den);
  return m;
}

std::string DarknetCfg::where(const DarknetLayer& l, const std::string& key) const {
  std::string s = name + ":" + std::to_string(key.empty() ? l.line : l.line_of(key)) + ": section " +
                  std::to_string(l.index + 1) + " [" + layer_type_name(l.type) + "] (layer " + std::to_string(l.index) +
                  ")";
  if (!key.empty()) s += ", key '" + key + "'";
  return s;
}

namespace {

// ---- text -> raw sections
struct RawSection {
  std::string type;
  int64_t line = 0;
  CfgOptions keys;
  std::vector<int64_t> key_lines;
};

std::string strip_all_space(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') out += c;
  }
  return out;
}

// Darknet removes every blank from a line; we also drop a trailing "# comment", which users write
// after values ("filters=255  # 3*(classes+5)") and darknet's atoi happens to tolerate.
std::vector<RawSection> split_sections(const std::string& text, const std::string& name) {
  std::vector<RawSection> out;
  std::istringstream in(text);
  std::string raw;
  int64_t line_no = 0;
  while (std::getline(in, raw)) {
    ++line_no;
    std::string s = strip_all_space(raw);
    if (s.empty() || s[0] == '#' || s[0] == ';') continue;
    if (const size_t hash = s.find('#'); hash != std::string::npos) s = s.substr(0, hash);
    if (s[0] == '[') {
      RG_CHECK(s.back() == ']' && s.size() > 2, name, ":", line_no, ": malformed section header '", raw, "'");
      RawSection sec;
      sec.type = s.substr(1, s.size() - 2);
      sec.line = line_no;
      out.push_back(std::move(sec));
      continue;
    }
    const size_t eq = s.find('=');
    RG_CHECK(eq != std::string::npos && eq > 0, name, ":", line_no, ": expected 'key=value' or '[section]', got '", raw,
             "'");
    RG_CHECK(!out.empty(), name, ":", line_no, ": key '", s.substr(0, eq), "' before the first section");
    RawSection& sec = out.back();
    const std::string key = s.substr(0, eq);
    for (size_t i = 0; i < sec.keys.size(); ++i) {
      RG_CHECK(sec.keys[i].first != key, name, ":", line_no, ": section ", out.size() - 1, " [", sec.type, "], key '", key,
               "' is given twice (lines ", sec.key_lines[i], " and ", line_no, ")");
    }
    sec.keys.emplace_back(key, s.substr(eq + 1));
    sec.key_lines.push_back(line_no);
  }
  return out;
}

// ---- typed reads of one section's keys; what was never read is an unknown key
class SectionReader {
 public:
  // `prefix`: the location text of the section (DarknetCfg::where without the key).
  SectionReader(const RawSection& sec, std::string file, int64_t section_no, std::string type_for_msg, int64_t layer)
      : sec_(sec), file_(std::move(file)), section_no_(section_no), type_(std::move(type_for_msg)), layer_(layer),
        used_(sec.keys.size(), false) {}

  std::string where(const std::string& key) const {
    int64_t line = sec_.line;
    for (size_t i = 0; i < sec_.keys.size(); ++i) {
      if (sec_.keys[i].first == key) line = sec_.key_lines[i];
    }
    std::string s = file_ + ":" + std::to_string(line) + ": section " + std::to_string(section_no_) + " [" + type_ + "]";
    if (layer_ >= 0) s += " (layer " + std::to_string(layer_) + ")";
    if (!key.empty()) s += ", key '" + key + "'";
    return s;
  }

  std::optional<std::string> str(const std::string& key) {
    for (size_t i = 0; i < sec_.keys.size(); ++i) {
      if (sec_.keys[i].first == key) {
        used_[i] = true;
        return sec_.keys[i].second;
      }
    }
    return std::nullopt;
  }
  bool has(const std::string& key) const {
    for (const auto& kv : sec_.keys) {
      if (kv.first == key) return true;
    }
    return false;
  }
  int64_t integer(const std::string& key, int64_t fallback) {
    const auto v = str(key);
    return v ? parse_int(key, *v) : fallback;
  }
  double number(const std::string& key, double fallback) {
    const auto v = str(key);
    return v ? parse_float(key, *v) : fallback;
  }
  std::vector<int64_t> int_list(const std::string& key) {
    std::vector<int64_t> out;
    if (const auto v = str(key)) {
      for (const auto& item : split_commas(key, *v)) out.push_back(parse_int(key, item));
    }
    return out;
  }
  std::vector<double> float_list(const std::string& key) {
    std::vector<double> out;
    if (const auto v = str(key)) {
      for (const auto& item : split_commas(key, *v)) out.push_back(parse_float(key, item));
    }
    return out;
  }
  // Keys never read: those in `accepted` go to `other` as read, any other is an error.
  void finish(const std::vector<std::string>& accepted, CfgOptions* other) {
    for (size_t i = 0; i < sec_.keys.size(); ++i) {
      if (used_[i]) continue;
      const std::string& k = sec_.keys[i].first;
      RG_CHECK(std::find(accepted.begin(), accepted.end(), k) != accepted.end(), where(k), ": unknown key '", k,
               "' (", type_, " takes: ", known_keys_text(accepted), ")");
      used_[i] = true;
      if (other) other->push_back(sec_.keys[i]);
    }
  }
  void set_known(std::vector<std::string> k) { known_ = std::move(k); }

 private:
  std::string known_keys_text(const std::vector<std::string>& accepted) const {
    std::string s;
    for (const auto& k : known_) s += (s.empty() ? "" : ", ") + k;
    for (const auto& k : accepted) s += (s.empty() ? "" : ", ") + k;
    return s;
  }
  std::vector<std::string> split_commas(const std::string& key, const std::string& v) const {
    std::vector<std::string> out;
    std::string cur;
    for (char c : v) {
      if (c == ',') {
        out.push_back(cur);
        cur.clear();
      } else {
        cur += c;
      }
    }
    out.push_back(cur);
    // Darknet tolerates a trailing comma ("anchors = 10,13, ... 373,326,").
    if (out.size() > 1 && out.back().empty()) out.pop_back();
    for (const auto& s : out) RG_CHECK(!s.empty(), where(key), ": empty item in the list '", v, "'");
    return out;
  }
  int64_t parse_int(const std::string& key, const std::string& v) const {
    int64_t x = 0;
    const char* end = v.data() + v.size();
    const auto r = std::from_chars(v.data(), end, x);
    RG_CHECK(r.ec == std::errc() && r.ptr == end, where(key), ": '", v, "' is not an integer");
    return x;
  }
  double parse_float(const std::string& key, const std::string& v) const {
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    RG_CHECK(!v.empty() && end == v.c_str() + v.size() && std::isfinite(x), where(key), ": '", v,
             "' is not a number");
    return x;
  }

  const RawSection& sec_;
  std::string file_;
  int64_t section_no_;
  std::string type_;
  int64_t layer_;
  std::vector<bool> used_;
  std::vector<std::string> known_;
};

// Darknet [net] keys that only steer its own training loop or augmentation: kept as read.
const std::vector<std::string> kNetAccepted = {
    "power", "gamma", "step", "max_crop", "min_crop", "aspect", "flip", "mosaic", "letter_box", "cutmix", "mixup",
    "blur", "gaussian_noise", "random", "jitter", "adam", "B1", "B2", "eps", "time_steps", "learning_rate_min",
    "sgdr_cycle", "sgdr_mult", "seq_scales", "max_chart_loss", "label_smooth_eps", "resize_step", "track",
    "augment_speed", "sequential_subdivisions", "try_fix_nan", "loss_scale", "dynamic_minibatch",
    "optimized_memory", "workspace_size_limit_MB", "ema_alpha", "mosaic_bound", "show_imgs", "inputs", "rotate"};
// [yolo] keys that steer darknet's own loss or data loading, not the network or the decoding.
const std::vector<std::string> kYoloAccepted = {"random", "resize", "nms_kind", "beta_nms", "max_delta", "iou_thresh",
                                                "label_smooth_eps", "focal_loss", "counters_per_class",
                                                "objectness_smooth", "track_history_size", "sim_thresh", "dets_for_track",
                                                "dets_for_show", "track_ciou_norm", "embedding_layer"};

// Note [Cfg bounds]: sizes are bounded far above any real network so that the layer table's
// products (filters x channels x size^2, output planes) stay inside int64 (a fuzzed
// `filters=511111111111111112` overflowed the parameter count).
constexpr int64_t kMaxChannels = int64_t{1} << 16, kMaxKernel = 255, kMaxStride = 1024, kMaxImage = int64_t{1} << 16;
void check_range(SectionReader& r, const char* key, int64_t v, int64_t lo, int64_t hi) {
  RG_CHECK(v >= lo && v <= hi, r.where(key), ": must be in ", lo, "..", hi, ", got ", v);
}

DarknetNetConfig read_net(SectionReader& r) {
  DarknetNetConfig n;
  r.set_known({"width", "height", "channels", "batch", "subdivisions", "momentum", "decay", "learning_rate", "burn_in",
               "max_batches", "policy", "steps", "scales", "angle", "saturation", "exposure", "hue"});
  n.width = r.integer("width", n.width);
  n.height = r.integer("height", n.height);
  n.channels = r.integer("channels", n.channels);
  RG_CHECK(n.width > 0 && n.height > 0 && n.channels > 0, r.where(""), ": width, height and channels must be positive");
  check_range(r, "width", n.width, 1, kMaxImage);
  check_range(r, "height", n.height, 1, kMaxImage);
  check_range(r, "channels", n.channels, 1, kMaxChannels);
  n.batch = r.integer("batch", n.batch);
  n.subdivisions = r.integer("subdivisions", n.subdivisions);
  n.momentum = r.number("momentum", n.momentum);
  n.decay = r.number("decay", n.decay);
  n.learning_rate = r.number("learning_rate", n.learning_rate);
  n.burn_in = r.integer("burn_in", n.burn_in);
  n.max_batches = r.integer("max_batches", n.max_batches);
  n.policy = r.str("policy").value_or(n.policy);
  n.steps = r.int_list("steps");
  n.scales = r.float_list("scales");
  RG_CHECK(n.steps.size() == n.scales.size(), r.where("scales"), ": ", n.scales.size(), " scales for ", n.steps.size(),
           " steps");
  n.angle = r.number("angle", n.angle);
  n.saturation = r.number("saturation", n.saturation);
  n.exposure = r.number("exposure", n.exposure);
  n.hue = r.number("hue", n.hue);
  r.finish(kNetAccepted, &n.other);
  return n;
}

DarknetActivation read_activation(SectionReader& r, const char* fallback) {
  const std::string a = r.str("activation").value_or(fallback);
  for (auto v : {DarknetActivation::Leaky, DarknetActivation::Linear, DarknetActivation::Logistic,
                 DarknetActivation::Relu, DarknetActivation::Mish, DarknetActivation::Swish}) {
    if (a == activation_name(v)) return v;
  }
  RG_THROW(r.where("activation"), ": unsupported activation '", a,
           "' (supported: leaky, linear, logistic, relu, mish, swish)");
}

// A layer reference: negative relative to `index`, else absolute; it must be an earlier layer.
int64_t layer_ref(SectionReader& r, const std::string& key, int64_t ref, int64_t index) {
  const int64_t abs = ref < 0 ? index + ref : ref;
  RG_CHECK(abs >= 0 && abs < index, r.where(key), ": layer ", ref, (ref < 0 ? " (relative: " + std::to_string(abs) + ")" : ""),
           " does not exist (layer ", index, " can refer to layers 0..", index - 1, ")");
  return abs;
}

void read_conv(SectionReader& r, DarknetLayer& l) {
  r.set_known({"batch_normalize", "filters", "size", "stride", "pad", "padding", "groups", "activation"});
  l.batch_normalize = r.integer("batch_normalize", 0) != 0;
  l.filters = r.integer("filters", 1);
  l.size = r.integer("size", 1);
  l.stride = r.integer("stride", 1);
  const bool pad = r.integer("pad", 0) != 0;
  l.padding = r.integer("padding", 0);
  if (pad) l.padding = l.size / 2;  // darknet: pad=1 overrides padding
  l.groups = r.integer("groups", 1);
  l.activation = read_activation(r, "logistic");
  check_range(r, "filters", l.filters, 1, kMaxChannels);
  check_range(r, "size", l.size, 1, kMaxKernel);
  check_range(r, "stride", l.stride, 1, kMaxStride);
  check_range(r, "padding", l.padding, 0, kMaxKernel);
  check_range(r, "groups", l.groups, 1, kMaxChannels);
  r.finish({}, nullptr);
}

void read_route(SectionReader& r, DarknetLayer& l) {
  r.set_known({"layers", "groups", "group_id"});
  RG_CHECK(r.has("layers"), r.where(""), ": key 'layers' is required");
  for (int64_t ref : r.int_list("layers")) l.inputs.push_back(layer_ref(r, "layers", ref, l.index));
  l.route_groups = r.integer("groups", 1);
  l.group_id = r.integer("group_id", 0);
  RG_CHECK(l.route_groups > 0, r.where("groups"), ": must be positive, got ", l.route_groups);
  RG_CHECK(l.group_id >= 0 && l.group_id < l.route_groups, r.where("group_id"), ": must be in 0..", l.route_groups - 1,
           ", got ", l.group_id);
  r.finish({}, nullptr);
}

void read_shortcut(SectionReader& r, DarknetLayer& l) {
  r.set_known({"from", "activation"});
  RG_CHECK(r.has("from"), r.where(""), ": key 'from' is required");
  const auto from = r.int_list("from");
  RG_CHECK(from.size() == 1, r.where("from"), ": one layer expected, got ", from.size());
  l.inputs.push_back(layer_ref(r, "from", from[0], l.index));
  l.activation = read_activation(r, "linear");
  r.finish({}, nullptr);
}

void read_maxpool(SectionReader& r, DarknetLayer& l) {
  r.set_known({"size", "stride", "padding"});
  l.stride = r.integer("stride", 1);
  l.size = r.integer("size", l.stride);
  l.padding = r.integer("padding", l.size - 1);
  check_range(r, "size", l.size, 1, kMaxKernel);
  check_range(r, "stride", l.stride, 1, kMaxStride);
  check_range(r, "padding", l.padding, 0, kMaxKernel);
  r.finish({}, nullptr);
}

void read_upsample(SectionReader& r, DarknetLayer& l) {
  r.set_known({"stride"});
  l.stride = r.integer("stride", 2);
  RG_CHECK(l.stride > 0, r.where("stride"), ": must be positive (downsampling upsample layers are not supported), got ",
           l.stride);
  check_range(r, "stride", l.stride, 1, kMaxStride);
  r.finish({}, nullptr);
}

YoloHeadSpec read_yolo(SectionReader& r, DarknetLayer& l, CfgOptions* other) {
  r.set_known({"mask", "anchors", "classes", "num", "jitter", "ignore_thresh", "truth_thresh", "scale_x_y",
               "iou_normalizer", "cls_normalizer", "obj_normalizer", "iou_loss"});
  YoloHeadSpec h;
  h.num_classes = r.integer("classes", 20);  // darknet's defaults throughout
  RG_CHECK(h.num_classes > 0, r.where("classes"), ": must be positive, got ", h.num_classes);
  RG_CHECK(r.has("anchors"), r.where(""), ": key 'anchors' is required");
  const auto a = r.float_list("anchors");
  RG_CHECK(a.size() % 2 == 0, r.where("anchors"), ": an even number of values (w,h pairs) expected, got ", a.size());
  for (size_t i = 0; i < a.size(); i += 2) {
    // Past FLT_MAX a float is inf, which the written cfg cannot hold (found by fuzz_darknet_cfg).
    RG_CHECK(a[i] > 0 && a[i + 1] > 0 && a[i] <= FLT_MAX && a[i + 1] <= FLT_MAX, r.where("anchors"), ": anchor ", i / 2,
             " (", a[i], ", ", a[i + 1], ") must be positive and finite in float32");
    h.all_anchors.push_back({static_cast<float>(a[i]), static_cast<float>(a[i + 1])});
  }
  const int64_t total = static_cast<int64_t>(h.all_anchors.size());
  const int64_t num = r.integer("num", total);
  RG_CHECK(num == total, r.where("num"), ": num=", num, " but 'anchors' holds ", total, " (w,h) pairs");
  h.mask = r.int_list("mask");
  if (h.mask.empty()) {
    for (int64_t i = 0; i < total; ++i) h.mask.push_back(i);
  }
  for (int64_t m : h.mask) {
    RG_CHECK(m >= 0 && m < total, r.where("mask"), ": anchor index ", m, " out of range 0..", total - 1);
    h.anchors.push_back(h.all_anchors[static_cast<size_t>(m)]);
  }
  h.jitter = static_cast<float>(r.number("jitter", 0.2));
  h.ignore_thresh = static_cast<float>(r.number("ignore_thresh", 0.5));
  h.truth_thresh = static_cast<float>(r.number("truth_thresh", 1.0));
  h.scale_x_y = static_cast<float>(r.number("scale_x_y", 1.0));
  h.iou_normalizer = static_cast<float>(r.number("iou_normalizer", 0.75));
  h.cls_normalizer = static_cast<float>(r.number("cls_normalizer", 1.0));
  h.obj_normalizer = static_cast<float>(r.number("obj_normalizer", 1.0));
  h.iou_loss = r.str("iou_loss").value_or("mse");
  RG_CHECK(h.iou_loss == "mse" || h.iou_loss == "giou" || h.iou_loss == "diou" || h.iou_loss == "ciou",
           r.where("iou_loss"), ": unsupported '", h.iou_loss, "' (mse, giou, diou, ciou)");
  h.cfg_index = l.index;
  r.finish(kYoloAccepted, other);
  return h;
}

int64_t gcd64(int64_t a, int64_t b) { return std::gcd(a, b); }

// Section names darknet accepts for each layer type we build.
std::optional<DarknetLayerType> section_type(const std::string& s) {
  if (s == "convolutional" || s == "conv") return DarknetLayerType::Convolutional;
  if (s == "shortcut") return DarknetLayerType::Shortcut;
  if (s == "route") return DarknetLayerType::Route;
  if (s == "upsample") return DarknetLayerType::Upsample;
  if (s == "maxpool" || s == "max") return DarknetLayerType::MaxPool;
  if (s == "yolo") return DarknetLayerType::Yolo;
  return std::nullopt;
}

}  // namespace

DarknetCfg parse_darknet_cfg(const std::string& text, const std::string& name) {
  DarknetCfg cfg;
  cfg.name = name;
  const std::vector<RawSection> secs = split_sections(text, name);
  RG_CHECK(!secs.empty(), name, ": no sections (an empty or non-cfg file)");
  RG_CHECK(secs[0].type == "net" || secs[0].type == "network", name, ":", secs[0].line,
           ": the first section must be [net], got [", secs[0].type, "]");
  {
    SectionReader r(secs[0], name, 0, "net", -1);
    cfg.net = read_net(r);
  }
  RG_CHECK(secs.size() > 1, name, ": no layers after [net]");
  for (size_t s = 1; s < secs.size(); ++s) {
    const RawSection& sec = secs[s];
    DarknetLayer l;
    l.index = static_cast<int64_t>(s) - 1;
    l.line = sec.line;
    l.keys = sec.keys;
    l.key_lines = sec.key_lines;
    const auto type = section_type(sec.type);
    RG_CHECK(type.has_value(), name, ":", sec.line, ": section ", s, " (layer ", l.index, "): unknown section [",
             sec.type, "] (supported: net, convolutional, shortcut, route, upsample, maxpool, yolo)");
    l.type = *type;
    SectionReader r(sec, name, static_cast<int64_t>(s), layer_type_name(l.type), l.index);
    switch (l.type) {
      case DarknetLayerType::Convolutional: read_conv(r, l); break;
      case DarknetLayerType::Route: read_route(r, l); break;
      case DarknetLayerType::Shortcut: read_shortcut(r, l); break;
      case DarknetLayerType::MaxPool: read_maxpool(r, l); break;
      case DarknetLayerType::Upsample: read_upsample(r, l); break;
      case DarknetLayerType::Yolo: {
        cfg.heads.push_back(read_yolo(r, l, nullptr));
        l.head = static_cast<int64_t>(cfg.heads.size()) - 1;
        break;
      }
    }
    cfg.layers.push_back(std::move(l));
  }
  resolve_darknet_cfg(cfg);
  return cfg;
}

DarknetCfg load_darknet_cfg(const std::string& path) {
  const std::string file = find_darknet_cfg(path);
  std::ifstream in(file, std::ios::binary);
  RG_CHECK(in, "cannot open darknet cfg '", file, "'");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string name = file;
  if (const size_t slash = name.find_last_of('/'); slash != std::string::npos) name = name.substr(slash + 1);
  return parse_darknet_cfg(ss.str(), name);
}

namespace {
void check_not_yolo(const DarknetCfg& cfg, const DarknetLayer& l, int64_t ref, const std::string& key) {
  RG_CHECK(cfg.layers[static_cast<size_t>(ref)].type != DarknetLayerType::Yolo, cfg.where(l, key),
           ": uses the output of [yolo] layer ", ref,
           ", which is not supported (darknet feeds on its partly activated copy); route around it");
}
std::string shape_text(const DarknetLayer& l) {
  std::string s = std::to_string(l.out_channels) + " channels, stride " + std::to_string(l.factor_num);
  if (l.factor_den != 1) s += "/" + std::to_string(l.factor_den);
  return s;
}
}  // namespace

void resolve_darknet_cfg(DarknetCfg& cfg) {
  for (size_t i = 0; i < cfg.layers.size(); ++i) {
    DarknetLayer& l = cfg.layers[i];
    const DarknetLayer* prev = i ? &cfg.layers[i - 1] : nullptr;
    const int64_t c_in = prev ? prev->out_channels : cfg.net.channels;
    int64_t num = prev ? prev->factor_num : 1, den = prev ? prev->factor_den : 1;
    if (prev && l.type != DarknetLayerType::Route) check_not_yolo(cfg, l, static_cast<int64_t>(i) - 1, "");
    switch (l.type) {
      case DarknetLayerType::Convolutional:
        RG_CHECK(c_in % l.groups == 0 && l.filters % l.groups == 0, cfg.where(l, "groups"), ": ", l.groups,
                 " groups do not divide the input channels (", c_in, ") and filters (", l.filters, ")");
        l.out_channels = l.filters;
        num *= l.stride;
        break;
      case DarknetLayerType::MaxPool:
        l.out_channels = c_in;
        num *= l.stride;
        break;
      case DarknetLayerType::Upsample:
        l.out_channels = c_in;
        den *= l.stride;
        break;
      case DarknetLayerType::Shortcut: {
        const int64_t from = l.inputs[0];
        check_not_yolo(cfg, l, from, "from");
        const DarknetLayer& f = cfg.layers[static_cast<size_t>(from)];
        RG_CHECK(f.out_channels == c_in && f.factor_num * den == num * f.factor_den, cfg.where(l, "from"),
                 ": cannot add layer ", from, " (", shape_text(f), ") to layer ", i - 1, " (", shape_text(*prev), ")");
        l.out_channels = c_in;
        break;
      }
      case DarknetLayerType::Route: {
        l.out_channels = 0;
        for (size_t k = 0; k < l.inputs.size(); ++k) {
          check_not_yolo(cfg, l, l.inputs[k], "layers");
          const DarknetLayer& f = cfg.layers[static_cast<size_t>(l.inputs[k])];
          RG_CHECK(f.out_channels % l.route_groups == 0, cfg.where(l, "groups"), ": ", l.route_groups,
                   " groups do not divide the ", f.out_channels, " channels of layer ", l.inputs[k]);
          const DarknetLayer& f0 = cfg.layers[static_cast<size_t>(l.inputs[0])];
          RG_CHECK(f.factor_num * f0.factor_den == f0.factor_num * f.factor_den, cfg.where(l, "layers"),
                   ": cannot concatenate layer ", l.inputs[k], " (", shape_text(f), ") with layer ", l.inputs[0], " (",
                   shape_text(f0), "): their spatial sizes differ");
          l.out_channels += f.out_channels / l.route_groups;
        }
        const DarknetLayer& f0 = cfg.layers[static_cast<size_t>(l.inputs[0])];
        num = f0.factor_num;
        den = f0.factor_den;
        break;
      }
      case DarknetLayerType::Yolo: {
        YoloHeadSpec& h = cfg.heads[static_cast<size_t>(l.head)];
        RG_CHECK(prev != nullptr, cfg.where(l), ": a [yolo] layer needs an input layer");
        RG_CHECK(c_in == h.channels(), cfg.where(l, "classes"), ": its input, layer ", i - 1, ", has ", c_in,
                 " channels but ", h.num_anchors(), " anchors x (", h.num_classes, " classes + 5) = ", h.channels(),
                 " are needed (set filters=", h.channels(), " in layer ", i - 1, ")");
        RG_CHECK(den == 1 || num % den == 0, cfg.where(l), ": its input's stride ", num, "/", den,
                 " is not a whole number of pixels");
        l.out_channels = c_in;
        h.stride = num / den;
        h.cfg_index = l.index;
        break;
      }
    }
    const int64_t g = gcd64(num, den);
    l.factor_num = num / g;
    l.factor_den = den / g;
  }
}

void set_num_classes(DarknetCfg& cfg, int64_t num_classes) {
  RG_CHECK(num_classes > 0, "set_num_classes: the number of classes must be positive, got ", num_classes);
  RG_CHECK(!cfg.heads.empty(), cfg.name, ": --classes needs [yolo] layers, and this cfg has none");
  for (auto& l : cfg.layers) {
    if (l.type != DarknetLayerType::Yolo) continue;
    YoloHeadSpec& h = cfg.heads[static_cast<size_t>(l.head)];
    RG_CHECK(l.index > 0 && cfg.layers[static_cast<size_t>(l.index - 1)].type == DarknetLayerType::Convolutional,
             cfg.where(l), ": --classes rewrites the convolution feeding each [yolo], but layer ", l.index - 1,
             " is not a convolution");
    h.num_classes = num_classes;
    cfg.layers[static_cast<size_t>(l.index - 1)].filters = h.channels();
  }
  resolve_darknet_cfg(cfg);
}

void set_anchors(DarknetCfg& cfg, const std::vector<std::array<float, 2>>& anchors) {
  for (auto& h : cfg.heads) {
    RG_CHECK(anchors.size() == h.all_anchors.size(), cfg.name, ": ", anchors.size(), " anchors given, the [yolo] of layer ",
             h.cfg_index, " has ", h.all_anchors.size());
    h.all_anchors = anchors;
    for (size_t a = 0; a < h.mask.size(); ++a) h.anchors[a] = anchors[static_cast<size_t>(h.mask[a])];
  }
}

namespace {
template <typename T>
std::string num_text(T v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}
template <typename T>
std::string list_text(const std::vector<T>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + num_text(v[i]);
  return s;
}
std::string anchors_text(const std::vector<std::array<float, 2>>& a) {
  std::string s;
  for (size_t i = 0; i < a.size(); ++i) s += (i ? ",  " : "") + num_text(a[i][0]) + "," + num_text(a[i][1]);
  return s;
}
}  // namespace

std::string darknet_cfg_text(const DarknetCfg& cfg) {
  std::ostringstream o;
  const DarknetNetConfig& n = cfg.net;
  o << "[net]\nbatch=" << n.batch << "\nsubdivisions=" << n.subdivisions << "\nwidth=" << n.width
    << "\nheight=" << n.height << "\nchannels=" << n.channels << "\nmomentum=" << num_text(n.momentum)
    << "\ndecay=" << num_text(n.decay) << "\nangle=" << num_text(n.angle) << "\nsaturation=" << num_text(n.saturation)
    << "\nexposure=" << num_text(n.exposure) << "\nhue=" << num_text(n.hue)
    << "\nlearning_rate=" << num_text(n.learning_rate) << "\nburn_in=" << n.burn_in
    << "\nmax_batches=" << n.max_batches << "\npolicy=" << n.policy << "\n";
  if (!n.steps.empty()) o << "steps=" << list_text(n.steps) << "\nscales=" << list_text(n.scales) << "\n";
  for (const auto& [k, v] : n.other) o << k << "=" << v << "\n";
  for (const auto& l : cfg.layers) {
    o << "\n[" << layer_type_name(l.type) << "]\n";
    if (l.type == DarknetLayerType::Yolo) {
      // The values set_num_classes and set_anchors may have changed come from the typed fields.
      const YoloHeadSpec& h = cfg.heads[static_cast<size_t>(l.head)];
      o << "mask=" << list_text(h.mask) << "\nanchors=" << anchors_text(h.all_anchors) << "\nclasses=" << h.num_classes
        << "\nnum=" << h.all_anchors.size() << "\n";
      for (const auto& [k, v] : l.keys) {
        if (k != "mask" && k != "anchors" && k != "classes" && k != "num") o << k << "=" << v << "\n";
      }
      continue;
    }
    bool wrote_filters = false;
    for (const auto& [k, v] : l.keys) {
      if (l.type == DarknetLayerType::Convolutional && k == "filters") {
        o << "filters=" << l.filters << "\n";
        wrote_filters = true;
      } else {
        o << k << "=" << v << "\n";
      }
    }
    if (l.type == DarknetLayerType::Convolutional && !wrote_filters) o << "filters=" << l.filters << "\n";
  }
  return o.str();
}

// ---- finding the shipped cfg files
#ifndef RG_MODELS_CFG_DIR
#define RG_MODELS_CFG_DIR ""
#endif

namespace {
bool is_file(const std::string& p) {
  std::error_code ec;
  return std::filesystem::is_regular_file(p, ec);
}
std::string exe_dir() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  std::string p(buf, static_cast<size_t>(n));
  const size_t slash = p.find_last_of('/');
  return slash == std::string::npos ? "" : p.substr(0, slash);
}
}  // namespace

std::vector<std::string> darknet_cfg_search_dirs() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("RINGGRAD_CFG_DIR"); env && *env) dirs.emplace_back(env);
  if (const std::string e = exe_dir(); !e.empty()) {
    dirs.push_back(e + "/cfg");
    dirs.push_back(e + "/../share/ringgrad/cfg");
    dirs.push_back(e + "/../models/cfg");
  }
  if (std::string(RG_MODELS_CFG_DIR).size()) dirs.emplace_back(RG_MODELS_CFG_DIR);
  return dirs;
}

std::string find_darknet_cfg(const std::string& name_or_path) {
  if (is_file(name_or_path)) return name_or_path;
  const bool has_slash = name_or_path.find('/') != std::string::npos;
  std::string base = name_or_path;
  if (base.size() < 4 || base.substr(base.size() - 4) != ".cfg") base += ".cfg";
  std::string searched;
  if (!has_slash) {
    for (const auto& d : darknet_cfg_search_dirs()) {
      const std::string p = d + "/" + base;
      if (is_file(p)) return p;
      searched += "\n  " + d;
    }
  }
  RG_THROW("darknet cfg '", name_or_path, "' not found", has_slash ? " (no such file)" : "; searched:", searched,
           has_slash ? "" : "\n(set RINGGRAD_CFG_DIR to add a directory)");
}

}  // namespace rg::models
