// The training pictures: results.csv parsing and its errors, picture sizes, curves found at the
// pixels the axis mapping puts them (known straight lines), NaN and empty cells skipped, titles and
// legends drawn, the confusion matrix's cell colours, annotations and colour bar, and the PNG files.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "data/plot.h"
#include "data_test_util.h"

using namespace rg;
using namespace rg::data;
using rg::test::contains;
using rg::test::error_of;

namespace {

// The axis mapping as data/plot.h documents it, computed here (not with PlotAxes::px/py).
double X(const PlotAxes& a, double x) { return a.left + (x - a.x0) / (a.x1 - a.x0) * a.width; }
double Y(const PlotAxes& a, double y) { return a.top + a.height - (y - a.y0) / (a.y1 - a.y0) * a.height; }

int colour_distance(const uint8_t* p, Rgb c) {
  int d = 0;
  for (size_t k = 0; k < 3; ++k) d = std::max(d, std::abs(static_cast<int>(p[k]) - static_cast<int>(c[k])));
  return d;
}

// True when a pixel within `r` of the continuous point (x, y) has colour c (within tol per channel).
bool colour_near(const Image& img, double x, double y, Rgb c, int r = 1, int tol = 24) {
  const auto cx = static_cast<int64_t>(std::floor(x)), cy = static_cast<int64_t>(std::floor(y));
  for (int64_t yy = cy - r; yy <= cy + r; ++yy) {
    for (int64_t xx = cx - r; xx <= cx + r; ++xx) {
      if (xx < 0 || yy < 0 || xx >= img.width || yy >= img.height) continue;
      if (colour_distance(img.at(yy, xx), c) <= tol) return true;
    }
  }
  return false;
}

// Pixels in [x1, x2) x [y1, y2) that are darker than light grey (text, lines).
int64_t dark_pixels(const Image& img, double x1, double y1, double x2, double y2) {
  int64_t n = 0;
  for (auto y = static_cast<int64_t>(y1); y < static_cast<int64_t>(y2); ++y) {
    for (auto x = static_cast<int64_t>(x1); x < static_cast<int64_t>(x2); ++x) {
      const uint8_t* p = img.at(y, x);
      n += p[0] < 160 && p[1] < 160 && p[2] < 160;
    }
  }
  return n;
}

std::string line_csv(int epochs) {  // y = 2 epoch + 1, z = 10 - epoch
  std::string s = "epoch, train/y , z\n";
  for (int e = 1; e <= epochs; ++e) {
    char row[64];
    std::snprintf(row, sizeof(row), "%d,%d,%d\n", e, 2 * e + 1, 10 - e);
    s += row;
  }
  return s;
}

int64_t count_colour(const Image& img, const PlotAxes& box, Rgb c, int tol = 24) {
  int64_t n = 0;
  for (auto y = static_cast<int64_t>(box.top); y < static_cast<int64_t>(box.top + box.height); ++y) {
    for (auto x = static_cast<int64_t>(box.left); x < static_cast<int64_t>(box.left + box.width); ++x) {
      n += colour_distance(img.at(y, x), c) <= tol;
    }
  }
  return n;
}

}  // namespace

TEST_CASE("results csv: parsing, padded names, empty and text columns, errors name the line") {
  const ResultsTable t = parse_results_csv("  epoch,  a ,b,note\n1, 0.5,,x\n\n2,nan, 3,y\n", "r.csv");
  REQUIRE(t.columns == std::vector<std::string>{"a", "b"});  // "note" is not numeric
  CHECK(t.epoch == std::vector<double>{1, 2});
  CHECK(t.values[0][0] == 0.5);
  CHECK(std::isnan(t.values[0][1]));
  CHECK(std::isnan(t.values[1][0]));
  CHECK(t.values[1][1] == 3);
  CHECK(contains(error_of([] { parse_results_csv("step,a\n1,2\n", "r.csv"); }), "no 'epoch' column"));
  const std::string e = error_of([] { parse_results_csv("epoch,a\n1,2\n2,3,4\n", "r.csv"); });
  CHECK(contains(e, "'r.csv' line 3: 3 cells, the header has 2"));
  CHECK(contains(error_of([] { parse_results_csv("epoch,a\nx,2\n", "r.csv"); }), "line 2: the epoch 'x' is not a number"));
  CHECK(contains(error_of([] { parse_results_csv("", "r.csv"); }), "empty file"));
  CHECK(contains(error_of([] { plot_results_csv("/nonexistent/results.csv", "/tmp/x.png"); }),
                 "cannot read '/nonexistent/results.csv'"));
}

TEST_CASE("results.png: panel grid size, a straight line at the pixels its axes map it to, titles") {
  const ResultsTable t = parse_results_csv(line_csv(10), "line");
  std::vector<PlotAxes> axes;
  const Image img = render_results(t, &axes);
  CHECK(img.width == 2 * 340 + 20);
  CHECK(img.height == 260 + 20);
  REQUIRE(axes.size() == 2);
  const PlotAxes& a = axes[0];
  CHECK(a.x0 < 1);
  CHECK(a.x1 > 10);
  CHECK(a.y0 < 3);
  CHECK(a.y1 > 21);
  CHECK(a.left > 10);
  CHECK(a.left + a.width < 350);
  // between the points (no dots there): y = 2 x + 1 is on the line, 3 off it is not
  for (double x : {1.5, 2.5, 4.25, 6.5, 8.75}) {
    CHECK_MESSAGE(colour_near(img, X(a, x), Y(a, 2 * x + 1), kResultsColour), "x = ", x);
    CHECK_MESSAGE(!colour_near(img, X(a, x), Y(a, 2 * x + 1 + 3), kResultsColour, 1, 80), "x = ", x);
  }
  // a dot on each point: more of the series colour around (3, 7) than around (3.5, 8) between points
  auto near_count = [&](double x, double y) {
    int64_t n = 0;
    for (int dy = -4; dy <= 4; ++dy) {
      for (int dx = -4; dx <= 4; ++dx) {
        n += colour_distance(img.at(static_cast<int64_t>(Y(a, y)) + dy, static_cast<int64_t>(X(a, x)) + dx), kResultsColour) <= 24;
      }
    }
    return n;
  };
  CHECK(near_count(3, 7) >= near_count(3.5, 8) + 6);
  const PlotAxes& b = axes[1];  // z = 10 - epoch: falling
  CHECK(b.left > 350);
  for (double x : {2.5, 5.5}) CHECK(colour_near(img, X(b, x), Y(b, 10 - x), kResultsColour));
  // the frame lies on the axes' border; the title sits above it, nothing dark above the other panel's title
  CHECK(colour_distance(img.at(static_cast<int64_t>(a.top + a.height / 2), static_cast<int64_t>(a.left) - 1), {60, 60, 60}) < 10);
  CHECK(dark_pixels(img, a.left, 10, a.left + a.width, a.top - 2) > 30);
  CHECK(dark_pixels(img, b.left, 10, b.left + b.width, b.top - 2) > 10);
  CHECK(dark_pixels(img, 0, 0, img.width, 10) == 0);
  // twelve columns: 5 per row, 3 rows
  ResultsTable wide;
  wide.epoch = {1, 2, 3};
  for (int c = 0; c < 12; ++c) {
    wide.columns.push_back(std::string(1, static_cast<char>('a' + c)));
    wide.values.push_back({1.0 * c, 2.0, 3.0});
  }
  const Image w = render_results(wide);
  CHECK(w.width == 5 * 340 + 20);
  CHECK(w.height == 3 * 260 + 20);
}

TEST_CASE("results.png: NaN and empty cells are skipped, constant columns and one epoch draw") {
  std::vector<PlotAxes> axes;
  const Image img = render_results(parse_results_csv("epoch,a\n1,1\n2,nan\n3,3\n4,\n5,5\n", "nan"), &axes);
  const PlotAxes& a = axes[0];
  CHECK(a.y0 > 0.5);  // the missing values did not pull the range to 0
  CHECK(a.y1 < 5.5);
  // the line joins the finite neighbours straight across the gaps
  for (double x : {2.0, 4.0, 1.5, 3.5}) CHECK_MESSAGE(colour_near(img, X(a, x), Y(a, x), kResultsColour), "x = ", x);
  CHECK(!colour_near(img, X(a, 2), Y(a, 1.5), kResultsColour, 1, 80));

  std::vector<PlotAxes> ax1;
  const Image one = render_results(parse_results_csv("epoch,a,b,c\n0,0.25,7,\n", "one"), &ax1);  // one epoch
  CHECK(one.width == 3 * 340 + 20);
  CHECK(ax1[0].x0 < 0);
  CHECK(ax1[0].x1 > 0);
  CHECK(ax1[0].y0 < 0.25);
  CHECK(ax1[0].y1 > 0.25);
  CHECK(colour_near(one, X(ax1[0], 0), Y(ax1[0], 0.25), kResultsColour));  // the single dot
  std::vector<PlotAxes> axc;
  const Image flat = render_results(parse_results_csv("epoch,k,zero\n1,4,0\n2,4,0\n3,4,0\n", "flat"), &axc);
  CHECK(axc[0].y0 < 4);
  CHECK(axc[0].y1 > 4);
  CHECK(axc[1].y0 < 0);
  CHECK(axc[1].y1 > 0);
  CHECK(colour_near(flat, X(axc[0], 1.5), Y(axc[0], 4), kResultsColour));
  CHECK(colour_near(flat, X(axc[1], 2.5), Y(axc[1], 0), kResultsColour));
  std::vector<PlotAxes> axn;  // values equal but for rounding noise: drawn as a constant
  const Image noise = render_results(parse_results_csv("epoch,n\n1,0.3\n2,0.30000000000000004\n", "noise"), &axn);
  CHECK(axn[0].y1 - axn[0].y0 == doctest::Approx(0.03));
  CHECK(colour_near(noise, X(axn[0], 1.5), Y(axn[0], 0.3), kResultsColour));
  CHECK(contains(error_of([] { render_results(parse_results_csv("epoch\n1\n", "e")); }), "no numeric column"));
}

TEST_CASE("PR_curve.png: class and mean lines where the axes put them, legend entries, classes without ground truth") {
  std::vector<double> grid(101);
  for (int i = 0; i <= 100; ++i) grid[static_cast<size_t>(i)] = i / 100.0;
  std::vector<std::vector<double>> prec(3, std::vector<double>(101));
  for (size_t i = 0; i <= 100; ++i) {
    prec[0][i] = 1 - 0.5 * grid[i];  // class 0: 1 - r / 2
    prec[1][i] = 0.4;                // class 1: flat at 0.4
    prec[2][i] = 0.9;                // class 2: no ground truth (ap -1): neither drawn nor averaged
  }
  const std::vector<double> ap{0.75, 0.4, -1};
  PlotAxes a, legend;
  const Image img = render_pr_curves(prec, grid, ap, {"circle", "square", "ghost"}, &a, &legend);
  CHECK(a.width == 640);
  CHECK(a.height == 640);
  CHECK(a.x0 == 0);
  CHECK(a.x1 == 1);
  CHECK(img.width > a.left + a.width + legend.width);
  for (double r : {0.1, 0.35, 0.65}) {
    CHECK_MESSAGE(colour_near(img, X(a, r), Y(a, 1 - 0.5 * r), class_colour(0)), "r = ", r);
    CHECK_MESSAGE(colour_near(img, X(a, r), Y(a, 0.4), class_colour(1)), "r = ", r);
    // the mean of the two drawn classes: 0.7 - r / 4 (class 2 left out), thick
    CHECK_MESSAGE(colour_near(img, X(a, r), Y(a, 0.7 - 0.25 * r), kMeanCurveColour, 1, 8), "r = ", r);
    CHECK_MESSAGE(!colour_near(img, X(a, r), Y(a, (0.7 - 0.25 * r) * 2 / 3 + 1.0 / 3), kMeanCurveColour, 2, 60), "r = ", r);
  }
  CHECK(!colour_near(img, X(a, 0.5), Y(a, 0.9), class_colour(2), 1, 30));
  // legend: to the right of the curves, with text in it; 2 class rows and the mean
  CHECK(legend.left > a.left + a.width);
  CHECK(dark_pixels(img, legend.left + 2, legend.top + 2, legend.left + legend.width - 2, legend.top + legend.height - 2) > 100);
  CHECK(count_colour(img, legend, class_colour(0)) > 20);  // the line samples
  CHECK(count_colour(img, legend, class_colour(1)) > 20);
  CHECK(count_colour(img, legend, kMeanCurveColour) > 60);
  CHECK(count_colour(img, legend, class_colour(2)) == 0);
  const double rows3 = legend.height;
  // more than 20 classes: grey lines and a one-row legend
  std::vector<std::vector<double>> many(25, prec[0]);
  std::vector<double> ap25(25, 0.75);
  PlotAxes a25, l25;
  const Image img25 = render_pr_curves(many, grid, ap25, std::vector<std::string>(25, "x"), &a25, &l25);
  CHECK(l25.height < rows3);
  CHECK(colour_near(img25, X(a25, 0.3), Y(a25, 0.85), kMeanCurveColour, 1, 8));
  CHECK(contains(error_of([&] { render_pr_curves(prec, grid, {0.5}, {}); }), "3 precision curves but 1 AP values"));
  CHECK(contains(error_of([&] { render_pr_curves({std::vector<double>(5)}, grid, {0.5}, {}); }),
                 "class 0 has 5 precision values for a recall grid of 101"));
}

TEST_CASE("confusion_matrix.png: normalised cells coloured by value, blank below 0.005, annotations, colour bar") {
  CHECK(blues(0) == Rgb{0xF7, 0xFB, 0xFF});
  CHECK(blues(0.5) == Rgb{0x6B, 0xAE, 0xD6});
  CHECK(blues(1) == Rgb{0x08, 0x30, 0x6B});
  // rows predicted, columns true: column 0 holds 3 correct and 1 missed (0.75, 0.25), column 1
  // (dog) nothing; with c2, column 2 (true background) one false positive of class 0 (1.0).
  const std::vector<std::vector<double>> counts{{3, 0, 0}, {0, 0, 0}, {1, 0, 0}};
  std::vector<std::vector<double>> c2 = counts;
  c2[0][2] = 1;  // a false positive of class 0
  PlotAxes a;
  const Image img = render_confusion_matrix(c2, {"cat", "dog"}, true, &a);
  CHECK(a.x1 == 3);
  CHECK(a.width == a.height);
  CHECK(a.width >= 3 * 28);
  CHECK(a.left + a.width < img.width);
  auto corner = [&](int r, int c) { return img.at(static_cast<int64_t>(Y(a, r) + 3), static_cast<int64_t>(X(a, c) + 3)); };
  CHECK(colour_distance(corner(0, 0), blues(0.75)) <= 1);  // vmax = 1 (column 2's single FP)
  CHECK(colour_distance(corner(2, 0), blues(0.25)) <= 1);
  CHECK(colour_distance(corner(0, 2), blues(1.0)) <= 1);
  CHECK(colour_distance(corner(1, 1), {255, 255, 255}) == 0);  // 0: blank
  // the value written in cell (0, 0) (light text on the dark cell), none in the blank cell
  auto text_pixels = [&](const Image& im, const PlotAxes& ax, int r, int c, Rgb fill) {
    int64_t n = 0;
    for (auto y = static_cast<int64_t>(Y(ax, r) + 4); y < static_cast<int64_t>(Y(ax, r + 1) - 4); ++y) {
      for (auto x = static_cast<int64_t>(X(ax, c) + 4); x < static_cast<int64_t>(X(ax, c + 1) - 4); ++x) {
        n += colour_distance(im.at(y, x), fill) > 40;
      }
    }
    return n;
  };
  CHECK(text_pixels(img, a, 0, 0, blues(0.75)) > 10);
  CHECK(text_pixels(img, a, 1, 1, {255, 255, 255}) == 0);
  // the colour bar right of the matrix: dark at the top, pale at the bottom
  const auto mid_x = static_cast<int64_t>(a.left + a.width + 24 + 11);
  CHECK(colour_distance(img.at(static_cast<int64_t>(a.top + 2), mid_x), blues(1)) <= 12);
  CHECK(colour_distance(img.at(static_cast<int64_t>(a.top + a.height - 3), mid_x), blues(0)) <= 12);
  // labels left of the rows and below the columns, the title above
  CHECK(dark_pixels(img, 0, a.top, a.left - 2, a.top + a.height) > 100);
  CHECK(dark_pixels(img, a.left, a.top + a.height + 2, a.left + a.width, img.height) > 100);
  CHECK(dark_pixels(img, a.left, 0, a.left + a.width, a.top - 2) > 50);
  // raw counts: coloured by count / max count
  PlotAxes r;
  const Image raw = render_confusion_matrix(counts, {"cat", "dog"}, false, &r);
  CHECK(colour_distance(raw.at(static_cast<int64_t>(Y(r, 2) + 3), static_cast<int64_t>(X(r, 0) + 3)), blues(1.0 / 3)) <= 1);
  // 30 classes: no numbers in the cells
  std::vector<std::vector<double>> big(31, std::vector<double>(31, 0));
  for (int i = 0; i < 31; ++i) big[static_cast<size_t>(i)][static_cast<size_t>(i)] = 5;
  PlotAxes b;
  const Image bi = render_confusion_matrix(big, std::vector<std::string>(30, "class"), true, &b);
  CHECK(b.width >= 31 * 10);
  CHECK(text_pixels(bi, b, 3, 3, blues(1)) == 0);
  CHECK(contains(error_of([&] { render_confusion_matrix(counts, {"cat"}); }), "a 3-row matrix for 1 class names"));
}

TEST_CASE("the three pictures are written as PNG files of the rendered size") {
  rg::test::TempDir dir;
  const std::string csv = dir / "results.csv";
  {
    std::ofstream f(csv);
    f << line_csv(4);
  }
  plot_results_csv(csv, dir / "results.png");
  const Image r = read_image(dir / "results.png");
  CHECK(r == render_results(parse_results_csv(line_csv(4), "x")));
  std::vector<double> grid{0, 0.5, 1};
  plot_pr_curves({{1, 0.5, 0}}, grid, {0.5}, {"a"}, dir / "PR_curve.png");
  CHECK(read_image(dir / "PR_curve.png") == render_pr_curves({{1, 0.5, 0}}, grid, {0.5}, {"a"}));
  plot_confusion_matrix({{1, 0}, {0, 0}}, {"a"}, dir / "confusion_matrix.png");
  CHECK(read_image(dir / "confusion_matrix.png").width == render_confusion_matrix({{1, 0}, {0, 0}}, {"a"}).width);
  CHECK(contains(error_of([&] { plot_confusion_matrix({{1, 0}, {0, 0}}, {"a"}, "/nonexistent/dir/cm.png"); }),
                 "/nonexistent/dir/cm.png"));
}
