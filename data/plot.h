// The training pictures ultralytics users open after a run, drawn on data/draw: results.png (one
// panel per results.csv column), PR_curve.png (per-class and mean precision against recall at IoU
// 0.5) and confusion_matrix.png. Each is written as PNG through a temporary name and a rename.
#pragma once

#include <string>
#include <vector>

#include "data/image.h"

namespace rg::data {

// results.png: one small panel per numeric column of results.csv except the epoch (ultralytics'
// plot_results): the column name as the title, the values against the epoch, points and a line.
// Empty cells and NaN are skipped (the line joins the finite points around them); a column with no
// finite value gets an empty panel saying so. Errors name the file and line (no "epoch" column, a
// cell that is not a number, a row with the wrong number of cells).
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

// The same pictures as images, for callers that place or test them without a file.
struct ResultsTable {
  std::vector<std::string> columns;        // every column after "epoch"
  std::vector<double> epoch;               // (rows)
  std::vector<std::vector<double>> values;  // (columns, rows), NaN where the cell was empty or NaN
};
// Parses results.csv text; `name` is used in error messages.
ResultsTable parse_results_csv(const std::string& text, const std::string& name);
Image render_results(const ResultsTable& table);
Image render_pr_curves(const std::vector<std::vector<double>>& precision, const std::vector<double>& recall_grid,
                       const std::vector<double>& ap50, const std::vector<std::string>& names);
Image render_confusion_matrix(const std::vector<std::vector<double>>& counts, const std::vector<std::string>& names,
                              bool normalize = true);

}  // namespace rg::data
