// `ringgrad model --cfg X [...]`: darknet's layer table for a cfg (shapes, parameters, BFLOPs), one eval
// forward saving each head's raw output, and darknet .weights conversion (load, save, cutoff).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "apps/arg_utils.h"
#include "apps/commands.h"
#include "autograd/grad_mode.h"
#include "core/error.h"
#include "core/random.h"
#include "data/image.h"
#include "models/darknet.h"
#include "models/darknet_weights.h"
#include "nn/checkpoint.h"

namespace rg::app {

namespace {

void model_usage() {
  std::printf(
      "usage: ringgrad model --cfg CFG [--img N] [--classes N] [--weights W [--cutoff N]] [--seed S]\n"
      "                      [--input FILE --save-outputs OUT.safetensors] [--save-weights OUT.weights]\n"
      "                      [--save-cfg OUT.cfg] [--device cpu|cuda:0]\n\n"
      "Prints darknet's layer table of CFG at N x N (default: the cfg's width and height): index, type,\n"
      "filters, size/stride, input -> output (W x H x C), parameters and BFLOPs, then the totals and heads.\n"
      "CFG is a path or a shipped cfg's name (yolov3.cfg, yolov3-tiny.cfg, yolov3-spp.cfg).\n"
      "  --classes N     rewrite the heads for N classes (filters = (N + 5) * anchors per head)\n"
      "  --weights W     darknet .weights (--cutoff N: only layers 0..N-1, as darknet53.conv.74), or a\n"
      "                  .safetensors state_dict with ultralytics' names (a 'module.' prefix is dropped)\n"
      "  --input FILE    an image (letterboxed to N x N, pad 114) or a .safetensors holding `input`\n"
      "                  (B, 3, H, W) f32 in [0, 1]; --save-outputs writes each head's raw output\n"
      "                  (B, A * (5 + C), H, W) as head.<i>, and the input used as `input`\n"
      "  --save-weights  write the model (freshly initialised from --seed, or loaded) in darknet format\n"
      "  --save-cfg      write the cfg as used (after --classes)\n");
}

// Letterbox as evaluation does it (until data/ provides one): scale to fit N x N keeping the aspect
// ratio (bilinear), centre, pad with 114. Returns (1, 3, N, N) f32 in [0, 1].
Tensor letterbox_image(const std::string& path, int64_t n) {
  const data::Image img = data::read_image(path, 3);
  const double r = std::min(static_cast<double>(n) / static_cast<double>(img.height),
                            static_cast<double>(n) / static_cast<double>(img.width));
  const int64_t nw = std::lround(static_cast<double>(img.width) * r), nh = std::lround(static_cast<double>(img.height) * r);
  const data::Image scaled = (nw == img.width && nh == img.height) ? img : data::resize_bilinear(img, nh, nw);
  const double dw = static_cast<double>(n - nw) / 2, dh = static_cast<double>(n - nh) / 2;
  const int64_t top = std::lround(dh - 0.1), left = std::lround(dw - 0.1);
  // crop() reads `fill` outside the image: a crop starting at (-top, -left) is the padded canvas.
  const data::Image boxed = data::crop(scaled, -top, -left, n, n, 114);
  std::printf("input: %s %lldx%lld -> letterboxed %lldx%lld (scale %.4f, pad left %lld, top %lld)\n", path.c_str(),
              static_cast<long long>(img.width), static_cast<long long>(img.height), static_cast<long long>(n),
              static_cast<long long>(n), r, static_cast<long long>(left), static_cast<long long>(top));
  std::vector<float> chw(static_cast<size_t>(3 * n * n));
  for (int64_t y = 0; y < n; ++y) {
    for (int64_t x = 0; x < n; ++x) {
      const uint8_t* p = boxed.at(y, x);
      for (int64_t c = 0; c < 3; ++c) chw[static_cast<size_t>((c * n + y) * n + x)] = static_cast<float>(p[c]) / 255.0f;
    }
  }
  return from_vector<float>(chw, {1, 3, n, n});
}

Tensor load_input(const std::string& path, int64_t n) {
  if (path.size() > 12 && path.substr(path.size() - 12) == ".safetensors") {
    const nn::SafeTensors st = nn::load_safetensors(path);
    const Tensor* t = nn::find(st.tensors, "input");
    RG_CHECK(t, "'", path, "' holds no tensor named 'input'");
    RG_CHECK(t->dim() == 4 && t->size(1) == 3 && t->dtype() == DType::f32, "'", path,
             "': `input` must be (B, 3, H, W) f32, got ", t->describe());
    std::printf("input: %s %s\n", path.c_str(), t->describe().c_str());
    return *t;
  }
  return letterbox_image(path, n);
}

void load_weights(models::Darknet& m, const std::string& path, int64_t cutoff) {
  if (path.size() > 12 && path.substr(path.size() - 12) == ".safetensors") {
    RG_CHECK(cutoff < 0, "--cutoff applies to darknet .weights files only");
    nn::StateDict sd;
    for (auto& [k, t] : nn::load_safetensors(path).tensors) sd.emplace_back(k.rfind("module.", 0) == 0 ? k.substr(7) : k, t);
    m.load_state_dict(sd, /*strict=*/true);
    std::printf("weights: %s (state_dict, %zu tensors)\n", path.c_str(), sd.size());
    return;
  }
  const models::DarknetWeightsHeader h = models::load_darknet_weights(m, path, cutoff);
  std::printf("weights: %s (darknet %d.%d.%d, seen %llu%s)\n", path.c_str(), h.major, h.minor, h.revision,
              static_cast<unsigned long long>(h.seen),
              cutoff >= 0 ? (", layers 0.." + std::to_string(cutoff - 1)).c_str() : "");
}

void print_heads(const models::Darknet& m, int64_t h, int64_t w) {
  for (size_t i = 0; i < m.heads().size(); ++i) {
    const models::YoloHeadSpec& s = m.heads()[i];
    std::printf("head %zu: layer %lld, stride %lld, grid %lldx%lld, %lld classes, anchors", i,
                static_cast<long long>(s.cfg_index), static_cast<long long>(s.stride),
                static_cast<long long>(s.grid_w(w)), static_cast<long long>(s.grid_h(h)),
                static_cast<long long>(s.num_classes));
    for (const auto& a : s.anchors) std::printf(" %gx%g", a[0], a[1]);
    std::printf("\n");
  }
}

// Every value in its domain and every input file present, before the cfg is parsed and the model built.
void check_model_options(const Args& args) {
  const int64_t img = parse_int(args, "--img", 32), classes = parse_int(args, "--classes", 1);
  const int64_t cutoff = parse_int(args, "--cutoff", 0), seed = parse_int(args, "--seed", 0);
  RG_CHECK(img >= 32 && img % 32 == 0, "model: --img must be a positive multiple of 32, got ", img);
  RG_CHECK(classes >= 1, "model: --classes must be >= 1, got ", classes);
  RG_CHECK(cutoff >= 0, "model: --cutoff must be >= 0, got ", cutoff);
  RG_CHECK(seed >= 0, "model: --seed must be >= 0, got ", seed);
  (void)Device::parse(last_opt(args, "--device", "cpu"));
  for (const char* name : {"--weights", "--input"}) {  // --cfg: a bundled name or a path (find_darknet_cfg)
    const std::string p = last_opt(args, name, "");
    RG_CHECK(p.empty() || std::filesystem::is_regular_file(p), "model: ", name, " '", p, "': no such file");
  }
}

}  // namespace

int cmd_model(const Args& args) {
  if (args.empty() || has_flag(args, "-h") || has_flag(args, "--help")) {
    model_usage();
    return args.empty() ? 2 : 0;
  }
  check_known_flags(args,
                    {"--cfg", "--img", "--classes", "--weights", "--cutoff", "--seed", "--input", "--save-outputs",
                     "--save-weights", "--save-cfg", "--device"},
                    {}, "model");
  const std::string cfg_path = last_opt(args, "--cfg", "");
  RG_CHECK(!cfg_path.empty(), "model: --cfg is required");
  check_model_options(args);
  models::DarknetCfg cfg = models::load_darknet_cfg(cfg_path);
  if (flag_given(args, "--classes")) models::set_num_classes(cfg, parse_int(args, "--classes", 80));
  const int64_t img = parse_int(args, "--img", 0);
  const int64_t h = img ? img : cfg.net.height, w = img ? img : cfg.net.width;
  std::printf("%s: %lld layers, %zu yolo heads, input %lldx%lld\n", cfg.name.c_str(),
              static_cast<long long>(cfg.layers.size()), cfg.heads.size(), static_cast<long long>(w),
              static_cast<long long>(h));
  std::printf("%s", models::format_darknet_layer_table(models::darknet_layer_table(cfg, h, w)).c_str());

  manual_seed(static_cast<uint64_t>(parse_int(args, "--seed", 0)));
  auto model = std::make_shared<models::Darknet>(cfg);
  print_heads(*model, h, w);
  const std::string weights = last_opt(args, "--weights", "");
  if (!weights.empty()) load_weights(*model, weights, parse_int(args, "--cutoff", -1));
  const Device device = Device::parse(last_opt(args, "--device", "cpu"));
  model->to(device);

  const std::string input = last_opt(args, "--input", ""), outputs = last_opt(args, "--save-outputs", "");
  RG_CHECK(input.empty() == outputs.empty(), "model: --input and --save-outputs go together");
  if (!input.empty()) {
    const Tensor x = load_input(input, img ? img : std::max(h, w));
    model->eval();
    NoGradGuard ng;
    const std::vector<Tensor> heads = model->forward_heads(x.to(device));
    nn::StateDict out{{"input", x}};
    for (size_t i = 0; i < heads.size(); ++i) {
      out.emplace_back("head." + std::to_string(i), heads[i].to(kCPU, DType::f32));
      std::printf("head.%zu: %s\n", i, out.back().second.describe().c_str());
    }
    nn::save_safetensors(outputs, out, {{"cfg", cfg.name}});
    std::printf("wrote %s\n", outputs.c_str());
  }
  if (const std::string p = last_opt(args, "--save-weights", ""); !p.empty()) {
    models::save_darknet_weights(*model, p);
    std::printf("wrote %s (darknet 0.2.5, %lld bytes of tensors)\n", p.c_str(),
                static_cast<long long>(models::darknet_weights_payload_bytes(*model)));
  }
  if (const std::string p = last_opt(args, "--save-cfg", ""); !p.empty()) {
    nn::atomic_write_file(p, models::darknet_cfg_text(model->cfg()));
    std::printf("wrote %s\n", p.c_str());
  }
  return 0;
}

}  // namespace rg::app
