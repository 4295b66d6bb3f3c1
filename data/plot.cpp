// The training pictures (data/plot.h): a small canvas on data/draw (anti-aliased lines and dots,
// aligned and rotated text, axes with 1-2-5 ticks), then results.png, PR_curve.png and
// confusion_matrix.png on it.
#include "data/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/error.h"
#include "data/synthetic.h"

namespace rg::data {

namespace {

constexpr Rgb kWhite{255, 255, 255}, kBlack{0, 0, 0}, kFrame{60, 60, 60}, kGrid{225, 225, 225};
const double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---- canvas
enum class Align { Start, Centre, End };

class Canvas {
 public:
  Canvas(int64_t h, int64_t w) : img_(h, w, 3, 255), font_(Font::standard()) {}
  Image& image() { return img_; }
  const Font& font() const { return font_; }
  int64_t text_width(const std::string& s, int64_t px) const { return font_.text_width(s, px); }

  // Text whose box is aligned at (x, y): ha along x (start = left), va along y (start = top).
  void text(double x, double y, const std::string& s, int64_t px, Rgb c, Align ha = Align::Start,
            Align va = Align::Start) {
    const double w = static_cast<double>(text_width(s, px)), h = static_cast<double>(px);
    const double l = ha == Align::Start ? x : ha == Align::Centre ? x - w / 2 : x - w;
    const double t = va == Align::Start ? y : va == Align::Centre ? y - h / 2 : y - h;
    font_.draw(&img_, std::lround(l), std::lround(t), s, c, px);
  }
  // Text turned 90 degrees counter-clockwise (read bottom to top), its rotated box centred at (cx, cy).
  void vtext(double cx, double cy, const std::string& s, int64_t px, Rgb c) {
    const int64_t w = text_width(s, px);
    if (w <= 0) return;
    Image tmp(px, w, 3, 255);
    font_.draw(&tmp, 0, 0, s, kBlack, px);
    const int64_t left = std::lround(cx - static_cast<double>(px) / 2), top = std::lround(cy - static_cast<double>(w) / 2);
    for (int64_t y = 0; y < px; ++y) {
      for (int64_t x = 0; x < w; ++x) blend(left + y, top + (w - 1 - x), c, 255 - tmp.at(y, x)[0]);
    }
  }
  void rect(double x1, double y1, double x2, double y2, Rgb c) {
    fill_rect(&img_, std::lround(x1), std::lround(y1), std::lround(x2), std::lround(y2), c);
  }
  void frame(double x1, double y1, double x2, double y2, Rgb c, int64_t t = 1) {
    const int64_t l = std::lround(x1), u = std::lround(y1), r = std::lround(x2), b = std::lround(y2);
    fill_rect(&img_, l - t, u - t, r + t, u, c);
    fill_rect(&img_, l - t, b, r + t, b + t, c);
    fill_rect(&img_, l - t, u, l, b, c);
    fill_rect(&img_, r, u, r + t, b, c);
  }
  // A polyline of the given width (pixels), anti-aliased; coverage is the maximum over the segments
  // so that joints are not drawn twice. Non-finite points break nothing: callers pass finite ones.
  void polyline(const std::vector<std::array<double, 2>>& pts, double width, Rgb c) {
    Coverage cov(img_.width, img_.height);
    for (size_t i = 0; i + 1 < pts.size(); ++i) cov.segment(pts[i], pts[i + 1], width / 2);
    if (pts.size() == 1) cov.segment(pts[0], pts[0], width / 2);
    composite(cov, c);
  }
  void dots(const std::vector<std::array<double, 2>>& pts, double radius, Rgb c) {
    Coverage cov(img_.width, img_.height);
    for (const auto& p : pts) cov.segment(p, p, radius);
    composite(cov, c);
  }

 private:
  struct Coverage {
    int64_t w, h, x1, y1, x2, y2;  // dirty box [x1, x2) x [y1, y2)
    std::vector<float> a;
    Coverage(int64_t w_, int64_t h_) : w(w_), h(h_), x1(w_), y1(h_), x2(0), y2(0), a(static_cast<size_t>(w_ * h_), 0.f) {}
    // A capsule of radius r around segment p-q: coverage = clamp(r + 0.5 - distance of the pixel centre).
    void segment(const std::array<double, 2>& p, const std::array<double, 2>& q, double r) {
      const int64_t lx = std::max<int64_t>(0, static_cast<int64_t>(std::floor(std::min(p[0], q[0]) - r - 1)));
      const int64_t ly = std::max<int64_t>(0, static_cast<int64_t>(std::floor(std::min(p[1], q[1]) - r - 1)));
      const int64_t hx = std::min<int64_t>(w, static_cast<int64_t>(std::ceil(std::max(p[0], q[0]) + r + 1)));
      const int64_t hy = std::min<int64_t>(h, static_cast<int64_t>(std::ceil(std::max(p[1], q[1]) + r + 1)));
      const double dx = q[0] - p[0], dy = q[1] - p[1], len2 = dx * dx + dy * dy;
      for (int64_t y = ly; y < hy; ++y) {
        for (int64_t x = lx; x < hx; ++x) {
          const double cx = x + 0.5 - p[0], cy = y + 0.5 - p[1];
          const double t = len2 > 0 ? std::clamp((cx * dx + cy * dy) / len2, 0.0, 1.0) : 0.0;
          const double ex = cx - t * dx, ey = cy - t * dy;
          const double v = std::clamp(r + 0.5 - std::sqrt(ex * ex + ey * ey), 0.0, 1.0);
          float& dst = a[static_cast<size_t>(y * w + x)];
          dst = std::max(dst, static_cast<float>(v));
        }
      }
      x1 = std::min(x1, lx), y1 = std::min(y1, ly), x2 = std::max(x2, hx), y2 = std::max(y2, hy);
    }
  };
  void composite(const Coverage& cov, Rgb c) {
    for (int64_t y = cov.y1; y < cov.y2; ++y) {
      for (int64_t x = cov.x1; x < cov.x2; ++x) {
        blend(x, y, c, static_cast<int>(std::lround(cov.a[static_cast<size_t>(y * cov.w + x)] * 255)));
      }
    }
  }
  void blend(int64_t x, int64_t y, Rgb c, int a) {
    if (x < 0 || y < 0 || x >= img_.width || y >= img_.height || a <= 0) return;
    uint8_t* p = img_.at(y, x);
    for (size_t k = 0; k < 3; ++k) p[k] = static_cast<uint8_t>((p[k] * (255 - a) + c[k] * a + 127) / 255);
  }

  Image img_;
  const Font& font_;
};

// ---- axes
// Ticks at multiples of a 1-2-5 step inside [lo, hi], about `target` of them.
std::vector<double> nice_ticks(double lo, double hi, int target, bool integer, double* step_out) {
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  double step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
  if (integer) step = std::max(1.0, std::round(step));
  std::vector<double> ticks;
  for (double k = std::ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9 && ticks.size() < 50; k += 1) {
    const double v = k * step;
    ticks.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
  }
  *step_out = step;
  return ticks;
}

std::string tick_label(double v, double step) {
  char buf[32];
  const int decimals = std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
  if (decimals <= 4 && std::fabs(v) < 1e6) {
    std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  } else {
    std::snprintf(buf, sizeof(buf), "%.3g", v);
  }
  return buf;
}

struct AxisStyle {
  int64_t tick_px = 12;
  int x_ticks = 5, y_ticks = 5;
  bool x_integer = false;
};

// Grid, frame, ticks and tick labels of `a` (its ranges already set).
void draw_axes(Canvas& cv, const PlotAxes& a, const AxisStyle& st) {
  double xs = 1, ys = 1;
  const std::vector<double> xt = nice_ticks(std::min(a.x0, a.x1), std::max(a.x0, a.x1), st.x_ticks, st.x_integer, &xs);
  const std::vector<double> yt = nice_ticks(std::min(a.y0, a.y1), std::max(a.y0, a.y1), st.y_ticks, false, &ys);
  const double bottom = a.top + a.height, right = a.left + a.width;
  for (double v : xt) cv.rect(a.px(v), a.top, a.px(v) + 1, bottom, kGrid);
  for (double v : yt) cv.rect(a.left, a.py(v), right, a.py(v) + 1, kGrid);
  cv.frame(a.left, a.top, right, bottom, kFrame);
  for (double v : xt) {
    cv.rect(a.px(v), bottom, a.px(v) + 1, bottom + 5, kFrame);
    cv.text(a.px(v), bottom + 7, tick_label(v, xs), st.tick_px, kBlack, Align::Centre, Align::Start);
  }
  for (double v : yt) {
    cv.rect(a.left - 5, a.py(v), a.left, a.py(v) + 1, kFrame);
    cv.text(a.left - 8, a.py(v), tick_label(v, ys), st.tick_px, kBlack, Align::End, Align::Centre);
  }
}

// matplotlib's default data margins: 5% of the span on each side; a single value gets +-5% of itself.
// A span below 1e-9 of the values (rounding noise) counts as a single value.
void padded_range(double lo, double hi, double* a, double* b) {
  if (!(hi - lo > 1e-9 * std::max(std::fabs(lo), std::fabs(hi)))) {
    const double mid = lo + (hi - lo) / 2;
    const double pad = mid != 0 ? std::fabs(mid) * 0.05 : 0.05;
    *a = mid - pad, *b = mid + pad;
    return;
  }
  const double pad = (hi - lo) * 0.05;
  *a = lo - pad, *b = hi + pad;
}

void save_png(const Image& img, const std::string& png_path) { write_file_via_rename(png_path, encode_png(img, png_path)); }

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r"), e = s.find_last_not_of(" \t\r");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> out;
  std::string cell;
  std::stringstream ss(line);
  while (std::getline(ss, cell, ',')) out.push_back(trim(cell));
  if (!line.empty() && line.back() == ',') out.emplace_back();
  return out;
}

// A number (strtod's syntax, nan and inf included) or nothing.
bool parse_number(const std::string& s, double* v) {
  if (s.empty()) return false;
  char* end = nullptr;
  *v = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size();
}

}  // namespace

Rgb blues(double t) {
  static constexpr uint32_t kStops[9] = {0xF7FBFF, 0xDEEBF7, 0xC6DBEF, 0x9ECAE1, 0x6BAED6,
                                         0x4292C6, 0x2171B5, 0x08519C, 0x08306B};
  t = std::isfinite(t) ? std::clamp(t, 0.0, 1.0) : 0.0;
  const double pos = t * 8;
  const int i = std::min(7, static_cast<int>(pos));
  const double f = pos - i;
  Rgb c{};
  for (int k = 0; k < 3; ++k) {
    const int sh = 16 - 8 * k;
    const double a = (kStops[i] >> sh) & 0xFF, b = (kStops[i + 1] >> sh) & 0xFF;
    c[static_cast<size_t>(k)] = static_cast<uint8_t>(std::lround(a + (b - a) * f));
  }
  return c;
}

// ---- results.png
ResultsTable parse_results_csv(const std::string& text, const std::string& name) {
  std::stringstream in(text);
  std::string line;
  std::vector<std::string> header;
  int64_t line_no = 0;
  while (header.empty() && std::getline(in, line)) {
    ++line_no;
    if (!trim(line).empty()) header = split_csv_line(line);
  }
  RG_CHECK(!header.empty(), "results csv '", name, "': empty file, no header");
  const auto ep = std::find(header.begin(), header.end(), "epoch");
  RG_CHECK(ep != header.end(), "results csv '", name, "' line ", line_no, ": no 'epoch' column in the header '", line,
           "'");
  const size_t ecol = static_cast<size_t>(ep - header.begin()), n = header.size();
  std::vector<std::vector<double>> cols(n);
  std::vector<uint8_t> numeric(n, 1);
  while (std::getline(in, line)) {
    ++line_no;
    if (trim(line).empty()) continue;
    const std::vector<std::string> cells = split_csv_line(line);
    RG_CHECK(cells.size() == n, "results csv '", name, "' line ", line_no, ": ", cells.size(), " cells, the header has ",
             n);
    for (size_t c = 0; c < n; ++c) {
      double v = kNaN;
      if (!cells[c].empty() && !parse_number(cells[c], &v)) {
        numeric[c] = 0;
        v = kNaN;
      }
      cols[c].push_back(v);
    }
    RG_CHECK(std::isfinite(cols[ecol].back()), "results csv '", name, "' line ", line_no, ": the epoch '", cells[ecol],
             "' is not a number");
  }
  ResultsTable t;
  t.epoch = cols[ecol];
  for (size_t c = 0; c < n; ++c) {
    if (c == ecol || !numeric[c]) continue;
    t.columns.push_back(header[c]);
    t.values.push_back(std::move(cols[c]));
  }
  return t;
}

namespace {

// One panel: the column's finite values against the epoch, a line through them and a dot on each.
void draw_results_panel(Canvas& cv, double left, double top, double pw, double ph, const std::string& title,
                        const std::vector<double>& epoch, const std::vector<double>& values, PlotAxes* out) {
  const int64_t title_px = 15, tick_px = 12;
  std::vector<std::array<double, 2>> pts;
  double ylo = INFINITY, yhi = -INFINITY, xlo = INFINITY, xhi = -INFINITY;
  for (size_t i = 0; i < epoch.size(); ++i) {
    xlo = std::min(xlo, epoch[i]), xhi = std::max(xhi, epoch[i]);
    if (!std::isfinite(values[i])) continue;
    ylo = std::min(ylo, values[i]), yhi = std::max(yhi, values[i]);
    pts.push_back({epoch[i], values[i]});
  }
  PlotAxes a;
  if (epoch.empty()) xlo = 0, xhi = 1;
  if (xhi > xlo) {
    padded_range(xlo, xhi, &a.x0, &a.x1);
  } else {
    a.x0 = xlo - 1, a.x1 = xhi + 1;  // one epoch: a window of +-1 around it
  }
  if (pts.empty()) ylo = 0, yhi = 1;
  padded_range(ylo, yhi, &a.y0, &a.y1);
  // the y tick labels decide the left margin
  double ys = 1;
  int64_t label_w = 0;
  for (double v : nice_ticks(a.y0, a.y1, 5, false, &ys)) label_w = std::max(label_w, cv.text_width(tick_label(v, ys), tick_px));
  a.left = left + static_cast<double>(label_w) + 14;
  a.top = top + title_px + 14;
  a.width = left + pw - 14 - a.left;
  a.height = top + ph - tick_px - 14 - a.top;
  cv.text(a.left + a.width / 2, top + 6, title, title_px, kBlack, Align::Centre, Align::Start);
  draw_axes(cv, a, {tick_px, 5, 5, true});
  if (pts.empty()) {
    cv.text(a.left + a.width / 2, a.top + a.height / 2, "no values", tick_px, {150, 150, 150}, Align::Centre,
            Align::Centre);
  }
  std::vector<std::array<double, 2>> px;
  for (const auto& p : pts) px.push_back({a.px(p[0]), a.py(p[1])});
  cv.polyline(px, 2.0, kResultsColour);
  cv.dots(px, 3.0, kResultsColour);
  if (out) *out = a;
}

}  // namespace

Image render_results(const ResultsTable& table, std::vector<PlotAxes>* axes) {
  const int64_t n = static_cast<int64_t>(table.columns.size());
  RG_CHECK(n > 0, "plot_results: results.csv has no numeric column besides 'epoch'");
  RG_CHECK(table.values.size() == table.columns.size(), "plot_results: ", table.columns.size(), " columns but ",
           table.values.size(), " value lists");
  const int64_t cols = std::min<int64_t>(n, 5), rows = (n + cols - 1) / cols;
  const int64_t pw = 340, ph = 260, margin = 10;
  Canvas cv(rows * ph + 2 * margin, cols * pw + 2 * margin);
  if (axes) axes->assign(static_cast<size_t>(n), PlotAxes{});
  for (int64_t i = 0; i < n; ++i) {
    const auto& v = table.values[static_cast<size_t>(i)];
    RG_CHECK(v.size() == table.epoch.size(), "plot_results: column '", table.columns[static_cast<size_t>(i)], "' has ",
             v.size(), " values for ", table.epoch.size(), " epochs");
    draw_results_panel(cv, static_cast<double>(margin + (i % cols) * pw), static_cast<double>(margin + (i / cols) * ph),
                       pw, ph, table.columns[static_cast<size_t>(i)], table.epoch, v,
                       axes ? &(*axes)[static_cast<size_t>(i)] : nullptr);
  }
  return std::move(cv.image());
}

void plot_results_csv(const std::string& csv_path, const std::string& png_path) {
  std::ifstream f(csv_path, std::ios::binary);
  RG_CHECK(f, "plot_results_csv: cannot read '", csv_path, "'");
  std::stringstream ss;
  ss << f.rdbuf();
  save_png(render_results(parse_results_csv(ss.str(), csv_path)), png_path);
}

// ---- PR_curve.png
Image render_pr_curves(const std::vector<std::vector<double>>& precision, const std::vector<double>& recall_grid,
                       const std::vector<double>& ap50, const std::vector<std::string>& names, PlotAxes* axes_out,
                       PlotAxes* legend_out) {
  const size_t K = precision.size(), n = recall_grid.size();
  RG_CHECK(ap50.size() == K, "plot_pr_curves: ", K, " precision curves but ", ap50.size(), " AP values");
  RG_CHECK(n >= 2, "plot_pr_curves: the recall grid has ", n, " points, at least 2 are needed");
  for (size_t k = 0; k < K; ++k) {
    RG_CHECK(precision[k].size() == n, "plot_pr_curves: class ", k, " has ", precision[k].size(),
             " precision values for a recall grid of ", n);
  }
  std::vector<size_t> shown;  // classes with ground truth
  for (size_t k = 0; k < K; ++k) {
    if (ap50[k] >= 0) shown.push_back(k);
  }
  const bool per_class_legend = !shown.empty() && shown.size() <= 20;
  const int64_t title_px = 20, label_px = 16, tick_px = 14, legend_px = 15;
  auto label_of = [&](size_t k, double ap) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), " %.3f", ap);
    return (k < names.size() ? names[k] : std::to_string(k)) + buf;
  };
  double map = 0;
  for (size_t k : shown) map += ap50[k] / static_cast<double>(shown.size());
  char mean_label[64];
  std::snprintf(mean_label, sizeof(mean_label), "all classes %.3f mAP@0.5", map);
  std::vector<std::string> entries;
  if (per_class_legend) {
    for (size_t k : shown) entries.push_back(label_of(k, ap50[k]));
  }
  if (!shown.empty()) entries.emplace_back(mean_label);
  const Font& font = Font::standard();
  int64_t legend_w = 0;
  for (const auto& e : entries) legend_w = std::max(legend_w, font.text_width(e, legend_px) + 56);
  PlotAxes a;
  a.left = 90, a.top = 60, a.width = 640, a.height = 640;
  const int64_t W = static_cast<int64_t>(a.left + a.width) + 30 + std::max<int64_t>(legend_w, 200) + 20;
  Canvas cv(static_cast<int64_t>(a.top + a.height) + 70, W);
  cv.text(a.left + a.width / 2, 18, "Precision-Recall Curve", title_px, kBlack, Align::Centre, Align::Start);
  draw_axes(cv, a, {tick_px, 5, 5, false});
  cv.text(a.left + a.width / 2, a.top + a.height + tick_px + 16, "Recall", label_px, kBlack, Align::Centre, Align::Start);
  cv.vtext(a.left - 62, a.top + a.height / 2, "Precision", label_px, kBlack);
  std::vector<double> mean(n, 0.0);
  for (size_t k : shown) {
    std::vector<std::array<double, 2>> pts(n);
    for (size_t i = 0; i < n; ++i) {
      const double p = std::isfinite(precision[k][i]) ? precision[k][i] : 0.0;
      pts[i] = {a.px(recall_grid[i]), a.py(p)};
      mean[i] += p / static_cast<double>(shown.size());
    }
    cv.polyline(pts, 1.5, per_class_legend ? class_colour(static_cast<int64_t>(k)) : Rgb{150, 150, 150});
  }
  const Rgb mean_colour = kMeanCurveColour;
  if (!shown.empty()) {
    std::vector<std::array<double, 2>> pts(n);
    for (size_t i = 0; i < n; ++i) pts[i] = {a.px(recall_grid[i]), a.py(mean[i])};
    cv.polyline(pts, 4.0, mean_colour);
  } else {
    cv.text(a.left + a.width / 2, a.top + a.height / 2, "no ground truth", label_px, {150, 150, 150}, Align::Centre,
            Align::Centre);
  }
  PlotAxes legend;
  if (!entries.empty()) {
    const double row = legend_px + 8;
    legend.left = a.left + a.width + 30, legend.top = a.top;
    legend.width = static_cast<double>(legend_w), legend.height = row * static_cast<double>(entries.size()) + 12;
    cv.frame(legend.left, legend.top, legend.left + legend.width, legend.top + legend.height, {200, 200, 200});
    for (size_t e = 0; e < entries.size(); ++e) {
      const bool is_mean = e + 1 == entries.size();
      const Rgb c = is_mean ? mean_colour : class_colour(static_cast<int64_t>(shown[e]));
      const double y = legend.top + 6 + row * static_cast<double>(e) + row / 2;
      cv.polyline({{legend.left + 10, y}, {legend.left + 40, y}}, is_mean ? 4.0 : 2.0, c);
      cv.text(legend.left + 48, y, entries[e], legend_px, kBlack, Align::Start, Align::Centre);
    }
  }
  if (axes_out) *axes_out = a;
  if (legend_out) *legend_out = legend;
  return std::move(cv.image());
}

void plot_pr_curves(const std::vector<std::vector<double>>& precision, const std::vector<double>& recall_grid,
                    const std::vector<double>& ap50, const std::vector<std::string>& names, const std::string& png_path) {
  save_png(render_pr_curves(precision, recall_grid, ap50, names), png_path);
}

// ---- confusion_matrix.png
namespace {

// The matrix shown: per column normalised when asked (column sums + 1e-9, as ultralytics), and
// values below 0.005 left blank (NaN), as ultralytics' plot.
std::vector<std::vector<double>> shown_matrix(const std::vector<std::vector<double>>& counts, bool normalize) {
  const size_t n = counts.size();
  std::vector<std::vector<double>> m = counts;
  for (size_t c = 0; c < n && normalize; ++c) {
    double s = 0;
    for (size_t r = 0; r < n; ++r) s += counts[r][c];
    for (size_t r = 0; r < n; ++r) m[r][c] = counts[r][c] / (s + 1e-9);
  }
  for (auto& row : m) {
    for (double& v : row) {
      if (!(v >= 0.005)) v = kNaN;
    }
  }
  return m;
}

// A vertical colour bar from 0 (bottom) to vmax (top) with its ticks.
void draw_colour_bar(Canvas& cv, double left, double top, double width, double height, double vmax, int64_t tick_px) {
  for (int64_t y = 0; y < static_cast<int64_t>(height); ++y) {
    const double t = 1.0 - (static_cast<double>(y) + 0.5) / height;
    cv.rect(left, top + static_cast<double>(y), left + width, top + static_cast<double>(y) + 1, blues(t));
  }
  cv.frame(left, top, left + width, top + height, kFrame);
  double step = 1;
  for (double v : nice_ticks(0, vmax, 5, false, &step)) {
    const double y = top + height - v / vmax * height;
    cv.rect(left + width, y, left + width + 5, y + 1, kFrame);
    cv.text(left + width + 8, y, tick_label(v, step), tick_px, kBlack, Align::Start, Align::Centre);
  }
}

}  // namespace

Image render_confusion_matrix(const std::vector<std::vector<double>>& counts, const std::vector<std::string>& names,
                              bool normalize, PlotAxes* axes_out) {
  const size_t n = counts.size(), nc = names.size();
  RG_CHECK(n == nc + 1, "plot_confusion_matrix: a ", n, "-row matrix for ", nc, " class names (expected ", nc + 1, ")");
  for (size_t r = 0; r < n; ++r) {
    RG_CHECK(counts[r].size() == n, "plot_confusion_matrix: row ", r, " has ", counts[r].size(), " values, not ", n);
  }
  const std::vector<std::vector<double>> m = shown_matrix(counts, normalize);
  double vmax = 0;
  for (const auto& row : m) {
    for (double v : row) vmax = std::isfinite(v) ? std::max(vmax, v) : vmax;
  }
  if (vmax <= 0) vmax = 1;
  const bool annotate = nc < 30;
  const double cell = std::max(annotate ? 28.0 : 10.0, std::floor(720.0 / static_cast<double>(n)));
  const int64_t title_px = 20, label_px = 16, tick_px = static_cast<int64_t>(std::clamp(cell * 0.6, 9.0, 14.0));
  std::vector<std::string> labels(names);
  labels.emplace_back("background");
  Canvas probe(1, 1);
  int64_t widest = 0;
  for (const auto& l : labels) widest = std::max(widest, probe.text_width(l, tick_px));
  const bool vertical_x = static_cast<double>(widest) > cell - 4;  // x labels turned when they do not fit
  PlotAxes a;
  a.left = 40 + static_cast<double>(label_px) + static_cast<double>(widest), a.top = 56;
  a.width = a.height = cell * static_cast<double>(n);
  a.x0 = 0, a.x1 = static_cast<double>(n), a.y0 = static_cast<double>(n), a.y1 = 0;
  const double xlab_h = vertical_x ? static_cast<double>(widest) : static_cast<double>(tick_px);
  Canvas cv(static_cast<int64_t>(a.top + a.height + xlab_h + label_px + 34),
            static_cast<int64_t>(a.left + a.width + 130));
  cv.text(a.left + a.width / 2, 16, normalize ? "Confusion Matrix Normalized" : "Confusion Matrix", title_px, kBlack,
          Align::Centre, Align::Start);
  for (size_t r = 0; r < n; ++r) {
    for (size_t c = 0; c < n; ++c) {
      const double v = m[r][c];
      if (!std::isfinite(v)) continue;  // blank
      const Rgb col = blues(v / vmax);
      cv.rect(a.px(static_cast<double>(c)), a.py(static_cast<double>(r)), a.px(static_cast<double>(c + 1)),
              a.py(static_cast<double>(r + 1)), col);
      if (!annotate) continue;
      char buf[32];
      std::snprintf(buf, sizeof(buf), normalize ? "%.2f" : "%.0f", v);
      const double lum = 0.2126 * col[0] + 0.7152 * col[1] + 0.0722 * col[2];
      int64_t px = static_cast<int64_t>(std::clamp(cell * 0.3, 9.0, 18.0));
      while (px > 7 && static_cast<double>(cv.text_width(buf, px)) > cell - 4) --px;
      cv.text(a.px(c + 0.5), a.py(r + 0.5), buf, px, lum > 0.408 * 255 ? kBlack : kWhite, Align::Centre, Align::Centre);
    }
  }
  cv.frame(a.left, a.top, a.left + a.width, a.top + a.height, kFrame);
  const double bottom = a.top + a.height;
  for (size_t i = 0; i < n; ++i) {
    const double c = static_cast<double>(i) + 0.5;
    cv.text(a.left - 6, a.py(c), labels[i], tick_px, kBlack, Align::End, Align::Centre);
    if (vertical_x) {
      cv.vtext(a.px(c), bottom + 6 + static_cast<double>(cv.text_width(labels[i], tick_px)) / 2, labels[i], tick_px, kBlack);
    } else {
      cv.text(a.px(c), bottom + 6, labels[i], tick_px, kBlack, Align::Centre, Align::Start);
    }
  }
  cv.text(a.left + a.width / 2, bottom + xlab_h + 14, "True", label_px, kBlack, Align::Centre, Align::Start);
  cv.vtext(14 + static_cast<double>(label_px) / 2, a.top + a.height / 2, "Predicted", label_px, kBlack);
  draw_colour_bar(cv, a.left + a.width + 24, a.top, 22, a.height, vmax, 13);
  if (axes_out) *axes_out = a;
  return std::move(cv.image());
}

void plot_confusion_matrix(const std::vector<std::vector<double>>& counts, const std::vector<std::string>& names,
                           const std::string& png_path, bool normalize) {
  save_png(render_confusion_matrix(counts, names, normalize), png_path);
}

}  // namespace rg::data
