// The training pictures ultralytics users open after a run, drawn on data/draw: results.png (one
// panel per results.csv column), PR_curve.png (per-class and mean precision against recall at IoU
// 0.5) and confusion_matrix.png. Each is written as PNG through a temporary name and a rename.
#pragma once

#include <string>
#include <vector>

#include "data/draw.h"
#include "data/image.h"

namespace rg::data {

// results.png: one small panel per numeric column of results.csv except the epoch (ultralytics'
// plot_results): the column name as the title, the values against the epoch, points and a line.
// Empty cells and NaN are skipped (the line joins the finite points around them); a column with no
// finite value gets an empty panel saying so. Errors name the file and line (no "epoch" column, an
// epoch that is not a number, a row with the wrong number of cells).
void plot_results_csv(const std::string& csv_path, const std::string& png_path);

// PR_curve.png: per class precision against recall at IoU 0.5 (thin lines, legend "name 0.873" with
// the class AP@0.5 when there are at most 20 classes) and their mean (thick, legend "all classes
// 0.912 mAP@0.5"). precision[c] is sampled on recall_grid (the same length). A class whose ap50 is
// negative (no ground truth, as metrics::evaluate_detections reports it) is left out of the lines,
// the legend and the mean.
void plot_pr_curves(const std::vector<std::vector<double>>& precision, const std::vector<double>& recall_grid,
                    const std::vector<double>& ap50, const std::vector<std::string>& names,
                    const std::string& png_path);

// confusion_matrix.png: counts (nc + 1) x (nc + 1), rows = predicted class, columns = true class, the
// last row/column "background"; normalised per column when normalize (ultralytics' plot), cell values
// written in the cells when nc < 30, a colour bar. names has nc entries.
void plot_confusion_matrix(const std::vector<std::vector<double>>& counts, const std::vector<std::string>& names,
                           const std::string& png_path, bool normalize = true);

// The pictures' colours: results.png's series (matplotlib's tab:blue), PR_curve.png's mean curve
// (matplotlib's "blue"); PR_curve.png's class k is class_colour(k), as in the boxes drawn on images
// (grey when there are more than 20 classes).
inline constexpr Rgb kResultsColour{31, 119, 180}, kMeanCurveColour{0, 0, 255};

// The same pictures as images, for callers that place or test them without a file. results.png has
// 5 panels of 340 x 260 pixels per row (fewer when there are fewer columns) inside a 10-pixel
// margin; PR_curve.png's curve area is 640 x 640; confusion_matrix.png's cells are at least 28
// pixels (nc < 30, annotated) or 10 pixels wide, the matrix about 720 pixels.
struct ResultsTable {
  std::vector<std::string> columns;         // the numeric columns after "epoch"
  std::vector<double> epoch;                // (rows)
  std::vector<std::vector<double>> values;  // (columns, rows), NaN where the cell was empty or NaN
};
// Parses results.csv text (cells may be padded with spaces); `name` is used in error messages. A
// column with a cell that is neither empty nor a number is not numeric and left out.
ResultsTable parse_results_csv(const std::string& text, const std::string& name);

// Where data lands in a picture: the plot area [left, left + width] x [top, top + height] in pixel
// coordinates (pixel (i, j) covers [i, i + 1) x [j, j + 1)); data x0 maps to left and x1 to left +
// width, y0 to the bottom (top + height) and y1 to the top. The frame is drawn on this border.
struct PlotAxes {
  double left = 0, top = 0, width = 0, height = 0;
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  double px(double x) const { return left + (x - x0) / (x1 - x0) * width; }
  double py(double y) const { return top + height - (y - y0) / (y1 - y0) * height; }
};
// axes (optional) receives each panel's mapping, in column order.
Image render_results(const ResultsTable& table, std::vector<PlotAxes>* axes = nullptr);
// axes receives the curve area's mapping (recall 0..1, precision 0..1); legend the legend box
// (left, top, width, height, in the same pixel coordinates; width 0 when there is none).
Image render_pr_curves(const std::vector<std::vector<double>>& precision, const std::vector<double>& recall_grid,
                       const std::vector<double>& ap50, const std::vector<std::string>& names,
                       PlotAxes* axes = nullptr, PlotAxes* legend = nullptr);
// axes receives the cells' mapping: x (true class) 0..nc+1 left to right, y (predicted class) 0 at
// the top, nc + 1 at the bottom (x0 = 0, x1 = nc + 1, y0 = nc + 1, y1 = 0); cell (r, c) is the square
// [px(c), px(c + 1)) x [py(r), py(r + 1)).
Image render_confusion_matrix(const std::vector<std::vector<double>>& counts, const std::vector<std::string>& names,
                              bool normalize = true, PlotAxes* axes = nullptr);

// matplotlib's "Blues" colour map (ColorBrewer's 9 blues, linearly interpolated) at t in [0, 1].
Rgb blues(double t);

}  // namespace rg::data
