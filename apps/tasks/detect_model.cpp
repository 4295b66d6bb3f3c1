// The detector's model side shared by training, `ringgrad val` and `ringgrad detect`: which cfg and
// classes a run trains (Note [Detector classes]), initial weights, and loading a trained detector
// from a checkpoint or a darknet .weights + .cfg pair (apps/tasks/detect_eval.h).
#include <filesystem>

#include "apps/tasks/detect.h"
#include "apps/tasks/detect_eval.h"
#include "core/error.h"
#include "models/darknet_weights.h"
#include "nn/checkpoint.h"

namespace fs = std::filesystem;

namespace rg::app {

namespace {
bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

bool is_train_state(const std::string& k) {
  for (const char* p : {"optimizer.", "scheduler.", "scaler.", "ema."}) {
    if (k.rfind(p, 0) == 0) return true;
  }
  return false;
}

// The model's tensors of a safetensors file: the EMA's ("ema.module.<name>") when asked and present,
// else every tensor that is not training state, without a "module." prefix.
nn::StateDict model_tensors(const nn::SafeTensors& st, bool prefer_ema, bool* used_ema) {
  nn::StateDict sd;
  *used_ema = false;
  if (prefer_ema) {
    for (const auto& [k, t] : st.tensors) {
      if (k.rfind("ema.module.", 0) == 0) sd.emplace_back(k.substr(11), t);
    }
    *used_ema = !sd.empty();
    if (*used_ema) return sd;
  }
  for (const auto& [k, t] : st.tensors) {
    if (!is_train_state(k)) sd.emplace_back(k.rfind("module.", 0) == 0 ? k.substr(7) : k, t);
  }
  return sd;
}

std::string join_first(const std::vector<std::string>& v, size_t n) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < n; ++i) s += (i ? ", " : "") + v[i];
  if (v.size() > n) s += ", ...";
  return s;
}
}  // namespace

models::DarknetCfg detector_cfg(const std::string& cfg, std::optional<bool> rewrite, int64_t nc,
                                const std::string& data_what, std::string* note) {
  const bool shipped = !fs::exists(cfg);  // a name looked up among the shipped cfgs (find_darknet_cfg)
  models::DarknetCfg c = models::load_darknet_cfg(cfg);
  RG_CHECK(!c.heads.empty(), "cfg '", cfg, "' has no [yolo] layer: not a detector");
  const int64_t have = c.heads[0].num_classes;
  note->clear();
  if (have == nc) return c;
  const bool do_rewrite = rewrite.value_or(shipped);
  RG_CHECK(do_rewrite, "cfg '", cfg, "' detects ", have, " classes (classes=", have, " in its [yolo] layers) but ",
           data_what, " has nc ", nc,
           ": edit the cfg (classes= in each [yolo], filters=(classes+5)*3 in the convolution before it), or pass "
           "--rewrite-classes to rewrite it to ",
           nc);
  models::set_num_classes(c, nc);
  *note = "cfg " + c.name + ": " + std::to_string(have) + " classes rewritten to the data's " + std::to_string(nc) +
          " (each [yolo] classes=" + std::to_string(nc) + ", filters=" +
          std::to_string((nc + 5) * c.heads[0].num_anchors()) + " before it)";
  return c;
}

std::string load_initial_weights(models::Darknet& model, const std::string& path, int64_t cutoff) {
  RG_CHECK(fs::exists(path), "--weights '", path, "' does not exist");
  if (!ends_with(path, ".safetensors")) {
    const models::DarknetWeightsHeader h = models::load_darknet_weights(model, path, cutoff);
    return "weights: " + path + " (darknet " + std::to_string(h.major) + "." + std::to_string(h.minor) + "." +
           std::to_string(h.revision) + (cutoff >= 0 ? ", layers 0.." + std::to_string(cutoff - 1) : ", every layer") +
           ")";
  }
  RG_CHECK(cutoff < 0, "--cutoff applies to darknet .weights files only, not '", path, "'");
  const nn::SafeTensors st = nn::load_safetensors(path);
  bool ema = false;
  const nn::StateDict given = model_tensors(st, true, &ema);
  const nn::StateDict mine = model.state_dict();
  nn::StateDict take;
  std::vector<std::string> skipped;
  for (const auto& [k, t] : mine) {
    const Tensor* g = nn::find(given, k);
    if (g && g->sizes() == t.sizes()) {
      take.emplace_back(k, *g);
    } else {
      skipped.push_back(k + (g ? " (shape " + shape_str(g->sizes()) + " vs " + shape_str(t.sizes()) + ")" : " (absent)"));
    }
  }
  RG_CHECK(!take.empty(), "--weights '", path, "' has no tensor matching the model's names and shapes (the model's "
           "start with ", mine.empty() ? "?" : mine[0].first, ")");
  model.load_state_dict(take, /*strict=*/false);
  std::string s = "weights: " + path + (ema ? " (EMA)" : "") + ": " + std::to_string(take.size()) + "/" +
                  std::to_string(mine.size()) + " tensors transferred";
  if (!skipped.empty()) s += "; not loaded: " + join_first(skipped, 4);
  return s;
}

LoadedDetector load_detector(const std::string& weights, const std::string& cfg, bool prefer_ema) {
  RG_CHECK(!weights.empty(), "--weights is required");
  RG_CHECK(fs::exists(weights), "--weights '", weights, "' does not exist");
  LoadedDetector d;
  if (!ends_with(weights, ".safetensors")) {
    RG_CHECK(!cfg.empty(), "--weights '", weights, "' is a darknet .weights file: give its network with --cfg");
    d.model = std::make_shared<models::Darknet>(models::load_darknet_cfg(cfg));
    const models::DarknetWeightsHeader h = models::load_darknet_weights(*d.model, weights);
    d.img = d.model->net().width == d.model->net().height ? d.model->net().width : 0;
    d.what = weights + " (darknet " + std::to_string(h.major) + "." + std::to_string(h.minor) + "." +
             std::to_string(h.revision) + ", " + d.model->cfg().name + ")";
    return d;
  }
  const nn::SafeTensors st = nn::load_safetensors(weights);
  std::string cfg_text, cfg_name, kind = "state_dict";
  if (const std::string* m = st.meta("trainer")) {
    const Json t = Json::parse(*m);
    const Json* f = t.find("format");
    RG_CHECK(f && f->is_string() && f->as_string() == kDetectFormat, "'", weights,
             "' is a ringgrad checkpoint of another task (format ", f && f->is_string() ? f->as_string() : "?",
             "), not a detector");
    cfg_text = t["cfg_text"].as_string();
    if (const Json* n = t.find("cfg"); n && n->is_string()) cfg_name = n->as_string();
    for (const auto& n : t["names"].as_array()) d.names.push_back(n.as_string());
    d.img = t["img"].as_int();
    d.config = t["config"];
    kind = "ringgrad checkpoint, epoch " + std::to_string(t["epoch"].as_int());
  }
  RG_CHECK(!cfg.empty() || !cfg_text.empty(), "'", weights,
           "' is a plain state_dict without a network description: give its cfg with --cfg");
  models::DarknetCfg c = cfg.empty() ? models::parse_darknet_cfg(cfg_text, weights + ":cfg") : models::load_darknet_cfg(cfg);
  if (cfg.empty() && !cfg_name.empty()) c.name = cfg_name;  // the cfg the run trained, as its metadata names it
  d.model = std::make_shared<models::Darknet>(c);
  bool ema = false;
  d.model->load_state_dict(model_tensors(st, prefer_ema, &ema), /*strict=*/true);
  d.what = weights + " (" + kind + (ema ? ", EMA weights" : "") + ", " + c.name + ")";
  return d;
}

const std::vector<std::string>& coco80_names() {
  static const std::vector<std::string> names = {
      "person",        "bicycle",      "car",           "motorcycle",    "airplane",     "bus",
      "train",         "truck",        "boat",          "traffic light", "fire hydrant", "stop sign",
      "parking meter", "bench",        "bird",          "cat",           "dog",          "horse",
      "sheep",         "cow",          "elephant",      "bear",          "zebra",        "giraffe",
      "backpack",      "umbrella",     "handbag",       "tie",           "suitcase",     "frisbee",
      "skis",          "snowboard",    "sports ball",   "kite",          "baseball bat", "baseball glove",
      "skateboard",    "surfboard",    "tennis racket", "bottle",        "wine glass",   "cup",
      "fork",          "knife",        "spoon",         "bowl",          "banana",       "apple",
      "sandwich",      "orange",       "broccoli",      "carrot",        "hot dog",      "pizza",
      "donut",         "cake",         "chair",         "couch",         "potted plant", "bed",
      "dining table",  "toilet",       "tv",            "laptop",        "mouse",        "remote",
      "keyboard",      "cell phone",   "microwave",     "oven",          "toaster",      "sink",
      "refrigerator",  "book",         "clock",         "vase",          "scissors",     "teddy bear",
      "hair drier",    "toothbrush"};
  return names;
}

std::vector<std::string> names_or_default(const std::vector<std::string>& names, int64_t nc) {
  if (static_cast<int64_t>(names.size()) == nc) return names;
  if (nc == 80) return coco80_names();
  std::vector<std::string> out;
  for (int64_t k = 0; k < nc; ++k) out.push_back("class" + std::to_string(k));
  return out;
}

}  // namespace rg::app
