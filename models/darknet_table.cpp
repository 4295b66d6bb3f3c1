// darknet_layer_table: every layer's input and output shape at an input size, its parameters and
// darknet's BFLOPs, with the spatial checks (concatenation, addition, grids) that depend on the size.
#include <cstdio>
#include <string>

#include "core/error.h"
#include "models/darknet_cfg.h"

namespace rg::models {

namespace {
using Chw = std::array<int64_t, 3>;

std::string chw_text(const Chw& s) {
  return std::to_string(s[0]) + " x " + std::to_string(s[1]) + " x " + std::to_string(s[2]);
}

std::string join(const std::vector<int64_t>& v, const char* sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + std::to_string(v[i]);
  return s;
}

// Output (C, H, W) of one layer given its input and the outputs so far; fills the row's text.
Chw layer_output(const DarknetCfg& cfg, const DarknetLayer& l, const Chw& in, const std::vector<Chw>& outs,
                 int64_t input_h, int64_t input_w, DarknetLayerInfo& row) {
  char buf[64];
  switch (l.type) {
    case DarknetLayerType::Convolutional: {
      const int64_t oh = (in[1] + 2 * l.padding - l.size) / l.stride + 1;
      const int64_t ow = (in[2] + 2 * l.padding - l.size) / l.stride + 1;
      RG_CHECK(in[1] + 2 * l.padding >= l.size && in[2] + 2 * l.padding >= l.size, cfg.where(l, "size"), ": a ", l.size,
               "x", l.size, " kernel does not fit its input ", chw_text(in));
      std::snprintf(buf, sizeof buf, "%2lld x%2lld/%2lld", static_cast<long long>(l.size), static_cast<long long>(l.size),
                    static_cast<long long>(l.stride));
      row.type = "conv";
      row.detail = buf;
      if (l.groups > 1) row.detail += " g" + std::to_string(l.groups);
      row.filters = l.filters;
      const int64_t per_filter = in[0] / l.groups * l.size * l.size;
      row.params = l.filters * per_filter + (l.batch_normalize ? 2 * l.filters : l.filters);
      row.bflops = 2.0 * static_cast<double>(l.filters) * static_cast<double>(per_filter) * static_cast<double>(oh * ow) /
                   1e9;
      return {l.filters, oh, ow};
    }
    case DarknetLayerType::MaxPool: {
      RG_CHECK(in[1] + l.padding >= l.size && in[2] + l.padding >= l.size, cfg.where(l, "size"), ": a ", l.size, "x",
               l.size, " window does not fit its input ", chw_text(in));
      std::snprintf(buf, sizeof buf, "%2lld x%2lld/%2lld", static_cast<long long>(l.size), static_cast<long long>(l.size),
                    static_cast<long long>(l.stride));
      row.type = "max";
      row.detail = buf;
      const Chw out{in[0], (in[1] + l.padding - l.size) / l.stride + 1, (in[2] + l.padding - l.size) / l.stride + 1};
      row.bflops = static_cast<double>(l.size * l.size * out[0] * out[1] * out[2]) / 1e9;  // a compare per window cell
      return out;
    }
    case DarknetLayerType::Upsample:
      row.type = "upsample";
      row.detail = std::to_string(l.stride) + "x";
      return {in[0], in[1] * l.stride, in[2] * l.stride};
    case DarknetLayerType::Shortcut: {
      const Chw& f = outs[static_cast<size_t>(l.inputs[0])];
      RG_CHECK(f == in, cfg.where(l, "from"), ": cannot add layer ", l.inputs[0], " (", chw_text(f), ") to layer ",
               l.index - 1, " (", chw_text(in), ")");
      row.type = "shortcut";
      row.detail = "from " + std::to_string(l.inputs[0]);
      row.bflops = static_cast<double>(in[0] * in[1] * in[2]) / 1e9;  // one add per output
      return in;
    }
    case DarknetLayerType::Route: {
      Chw out = outs[static_cast<size_t>(l.inputs[0])];
      out[0] = 0;
      for (int64_t ref : l.inputs) {
        const Chw& f = outs[static_cast<size_t>(ref)];
        RG_CHECK(f[1] == out[1] && f[2] == out[2], cfg.where(l, "layers"), ": cannot concatenate layer ", ref, " (",
                 chw_text(f), ") with layer ", l.inputs[0], " (", chw_text(outs[static_cast<size_t>(l.inputs[0])]), ")");
        out[0] += f[0] / l.route_groups;
      }
      row.type = "route";
      row.detail = join(l.inputs, " ");
      if (l.route_groups > 1) row.detail += " (" + std::to_string(l.group_id) + "/" + std::to_string(l.route_groups) + ")";
      return out;
    }
    case DarknetLayerType::Yolo: {
      const YoloHeadSpec& h = cfg.heads[static_cast<size_t>(l.head)];
      RG_CHECK(in[1] * h.stride == input_h && in[2] * h.stride == input_w, cfg.where(l), ": its grid (", in[1], " x ",
               in[2], ") is not the input ", input_h, " x ", input_w, " / stride ", h.stride,
               " (unpadded convolutions before it?)");
      row.type = "yolo";
      row.detail = "mask " + join(h.mask, ",");
      return in;
    }
  }
  return in;
}
}  // namespace

std::vector<DarknetLayerInfo> darknet_layer_table(const DarknetCfg& cfg, int64_t height, int64_t width) {
  const int64_t ms = cfg.max_stride();
  RG_CHECK(height > 0 && width > 0 && height % ms == 0 && width % ms == 0, cfg.name, ": the input ", height, "x", width,
           " is not a multiple of the network's largest stride ", ms);
  std::vector<Chw> outs;
  std::vector<DarknetLayerInfo> rows;
  for (const auto& l : cfg.layers) {
    DarknetLayerInfo row;
    row.index = l.index;
    row.in = l.index ? outs.back() : Chw{cfg.net.channels, height, width};
    row.out = layer_output(cfg, l, row.in, outs, height, width, row);
    RG_CHECK(row.out[1] > 0 && row.out[2] > 0, cfg.where(l), ": output ", chw_text(row.out), " is empty at input ",
             height, "x", width);
    outs.push_back(row.out);
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string format_darknet_layer_table(const std::vector<DarknetLayerInfo>& rows) {
  std::string s;
  char buf[256];
  std::snprintf(buf, sizeof buf, "%5s %-9s %7s  %-12s %20s     %-20s %10s %8s\n", "layer", "type", "filters",
                "size/strd", "input", "output", "params", "BFLOPs");
  s += buf;
  int64_t params = 0;
  double bflops = 0;
  for (const auto& r : rows) {
    auto shape = [](const Chw& c) {
      char b[64];
      std::snprintf(b, sizeof b, "%4lld x%4lld x%5lld", static_cast<long long>(c[2]), static_cast<long long>(c[1]),
                    static_cast<long long>(c[0]));
      return std::string(b);
    };
    const std::string filters = r.filters ? std::to_string(r.filters) : "";
    const std::string fl = r.bflops > 0 ? [&] {
      char b[32];
      std::snprintf(b, sizeof b, "%.3f", r.bflops);
      return std::string(b);
    }() : "";
    std::snprintf(buf, sizeof buf, "%5lld %-9s %7s  %-12s %20s  -> %-20s %10s %8s\n", static_cast<long long>(r.index),
                  r.type.c_str(), filters.c_str(), r.detail.c_str(), shape(r.in).c_str(), shape(r.out).c_str(),
                  r.params ? std::to_string(r.params).c_str() : "", fl.c_str());
    s += buf;
    params += r.params;
    bflops += r.bflops;
  }
  std::snprintf(buf, sizeof buf, "Total: %zu layers, %lld parameters (%.2f M), %.3f BFLOPs (shapes are W x H x C)\n",
                rows.size(), static_cast<long long>(params), static_cast<double>(params) / 1e6, bflops);
  s += buf;
  return s;
}

}  // namespace rg::models
