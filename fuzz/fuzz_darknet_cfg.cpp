// Fuzzes the darknet .cfg parser (models/darknet_cfg.cpp, darknet_table.cpp): a parse returns layers
// whose references, channels and strides resolve, whose written text parses back to the same text,
// and whose layer table at the [net] size returns or throws rg::Error; or it throws naming the file.
#include "fuzz/fuzz_util.h"
#include "models/darknet_cfg.h"

namespace {
void check_cfg(const rg::models::DarknetCfg& cfg) {
  using rg::models::DarknetLayerType;
  RG_FUZZ_CHECK(!cfg.layers.empty(), "no layers");
  size_t heads = 0;
  for (size_t i = 0; i < cfg.layers.size(); ++i) {
    const auto& l = cfg.layers[i];
    RG_FUZZ_CHECK(l.index == static_cast<int64_t>(i), "layer index");
    RG_FUZZ_CHECK(l.out_channels > 0 && l.factor_num > 0 && l.factor_den > 0, "layer ", i, ": ", l.out_channels,
                  " channels, factor ", l.factor_num, "/", l.factor_den);
    for (int64_t ref : l.inputs) RG_FUZZ_CHECK(ref >= 0 && ref < l.index, "layer ", i, " refers to ", ref);
    if (l.type == DarknetLayerType::Yolo) {
      RG_FUZZ_CHECK(l.head == static_cast<int64_t>(heads), "head index");
      const auto& h = cfg.heads[heads++];
      RG_FUZZ_CHECK(h.stride > 0 && h.cfg_index == l.index && !h.anchors.empty(), "head of layer ", i);
    }
  }
  RG_FUZZ_CHECK(heads == cfg.heads.size(), "heads");
  RG_FUZZ_CHECK(cfg.max_stride() >= 1, "max stride");
}

// The cfg written out parses back, and writes the same text again.
void check_text(const rg::models::DarknetCfg& cfg) {
  const std::string text = rg::models::darknet_cfg_text(cfg);
  rg::models::DarknetCfg again;
  RG_FUZZ_CHECK(rg::fuzz::returns_or_rg_error([&] { again = rg::models::parse_darknet_cfg(text, "again.cfg"); }),
                "the written cfg does not parse:\n", text);
  RG_FUZZ_CHECK(rg::models::darknet_cfg_text(again) == text, "the written cfg changes when read and written again");
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  rg::models::DarknetCfg cfg;
  if (!rg::fuzz::returns_or_rg_error([&] { cfg = rg::models::parse_darknet_cfg(text, "fuzz.cfg"); }, "fuzz.cfg")) {
    return 0;
  }
  check_cfg(cfg);
  check_text(cfg);
  const int64_t ms = cfg.max_stride();
  const int64_t h = (cfg.net.height + ms - 1) / ms * ms, w = (cfg.net.width + ms - 1) / ms * ms;
  std::vector<rg::models::DarknetLayerInfo> rows;
  if (rg::fuzz::returns_or_rg_error([&] { rows = rg::models::darknet_layer_table(cfg, h, w); }, "fuzz.cfg")) {
    RG_FUZZ_CHECK(rows.size() == cfg.layers.size(), "table rows");
    for (const auto& r : rows) RG_FUZZ_CHECK(r.out[0] > 0 && r.out[1] > 0 && r.out[2] > 0 && r.params >= 0, "row ", r.index);
    (void)rg::models::format_darknet_layer_table(rows);
  }
  if (rg::fuzz::returns_or_rg_error([&] { rg::models::set_num_classes(cfg, 3); }, "fuzz.cfg")) {
    check_cfg(cfg);
    for (const auto& hd : cfg.heads) RG_FUZZ_CHECK(hd.num_classes == 3, "classes");
    check_text(cfg);
  }
  return 0;
}
