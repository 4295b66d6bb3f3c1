// The tests' own reading of darknet cfg text, written apart from models/ so that expected shapes,
// parameter counts, FLOPs and .weights layouts are not computed by the code under test: one formula
// per layer type, only for the keys the shipped cfgs use.
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace rg::test::oracle {

struct Layer {
  std::string type;
  std::map<std::string, std::string> kv;
  int64_t c = 0, h = 0, w = 0;  // output
  int64_t params = 0;           // conv weight + (BN weight and bias | conv bias)
  double conv_flops = 0;        // 2 * multiply-adds
  int64_t filters = 0, in_c = 0, size = 0;
  bool bn = false;
  int64_t get(const std::string& k, int64_t d) const {
    auto it = kv.find(k);
    return it == kv.end() ? d : std::stoll(it->second);
  }
};

inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Layers (after [net]) with their output shapes for an input of (3, H, W).
inline std::vector<Layer> layers(const std::string& text, int64_t H, int64_t W) {
  std::vector<Layer> secs;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::string s;
    for (char ch : line) {
      if (ch != ' ' && ch != '\t' && ch != '\r') s += ch;
    }
    if (s.empty() || s[0] == '#') continue;
    if (s[0] == '[') {
      secs.push_back(Layer{s.substr(1, s.size() - 2), {}});
      continue;
    }
    const auto eq = s.find('=');
    secs.back().kv[s.substr(0, eq)] = s.substr(eq + 1);
  }
  secs.erase(secs.begin());  // [net]
  for (size_t i = 0; i < secs.size(); ++i) {
    Layer& l = secs[i];
    const int64_t pc = i ? secs[i - 1].c : 3, ph = i ? secs[i - 1].h : H, pw = i ? secs[i - 1].w : W;
    l.c = pc, l.h = ph, l.w = pw;
    if (l.type == "convolutional") {
      const int64_t f = l.get("filters", 1), k = l.get("size", 1), st = l.get("stride", 1);
      const int64_t pad = l.get("pad", 0) ? k / 2 : 0;
      l.bn = l.get("batch_normalize", 0) != 0;
      l.filters = f, l.in_c = pc, l.size = k;
      l.c = f;
      l.h = (ph + 2 * pad - k) / st + 1;
      l.w = (pw + 2 * pad - k) / st + 1;
      l.params = f * pc * k * k + (l.bn ? 2 * f : f);
      l.conv_flops = 2.0 * static_cast<double>(f * pc * k * k) * static_cast<double>(l.h * l.w);
    } else if (l.type == "maxpool") {
      const int64_t k = l.get("size", 1), st = l.get("stride", 1), p = k - 1;  // darknet's default padding
      l.h = (ph + p - k) / st + 1;
      l.w = (pw + p - k) / st + 1;
    } else if (l.type == "upsample") {
      l.h = ph * l.get("stride", 2);
      l.w = pw * l.get("stride", 2);
    } else if (l.type == "route") {
      std::stringstream ls(l.kv["layers"]);
      std::string item;
      l.c = 0;
      while (std::getline(ls, item, ',')) {
        int64_t r = std::stoll(item);
        if (r < 0) r += static_cast<int64_t>(i);
        l.c += secs[static_cast<size_t>(r)].c;
        l.h = secs[static_cast<size_t>(r)].h;
        l.w = secs[static_cast<size_t>(r)].w;
      }
    }  // shortcut, yolo: the input's shape
  }
  return secs;
}

}  // namespace rg::test::oracle
