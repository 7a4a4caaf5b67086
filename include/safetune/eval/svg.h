// Small SVG charts for self-contained HTML reports: no scripts, no network, every chart
// an inline <svg> element. Values are plain doubles; non-finite ones are skipped.
#pragma once
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace safetune::eval::svg {

// Text escaped for HTML/XML content and attribute values (& < > " ').
std::string escape(std::string_view text);

// The i-th colour of a fixed qualitative palette (colour-blind safe, cycles).
const std::string& color(size_t i);

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y)
  int color = -1;         // palette index; -1: the series' own index
  double stroke = 1.8;    // line width
  bool in_legend = true;  // false: drawn, not named (e.g. one seed beside the mean)
};

struct ChartSize {
  int width = 560, height = 300;
};

// Lines over a shared x axis, with a legend. y_min/y_max NaN = from the data.
std::string line_chart(const std::string& title, const std::string& x_label, const std::string& y_label,
                       const std::vector<Series>& series, ChartSize size = {}, double y_min = 0.0,
                       double y_max = std::numeric_limits<double>::quiet_NaN());

// Grouped vertical bars: one group per category, one bar per series in each group, the
// value written above each bar with `value_format` (printf, e.g. "%.0f%%" with scale 100).
struct BarGroup {
  std::string label;
  std::vector<double> values;  // one per series name
};
std::string grouped_bars(const std::string& title, const std::vector<std::string>& series_names,
                         const std::vector<BarGroup>& groups, ChartSize size = {}, double y_max = 1.0,
                         double value_scale = 100.0, const char* value_format = "%.0f");

// Horizontal bars with a label each (e.g. tokens and their weights); negative values
// extend left of the zero line.
std::string labelled_bars(const std::string& title, const std::vector<std::pair<std::string, double>>& bars,
                          ChartSize size = {});

// Points with a label each, over optional lines (e.g. a parameter sweep's curve).
struct Point {
  double x = 0, y = 0;
  std::string label;   // drawn beside the point unless `small`
  int color = -1;      // palette index; -1: the point's own index
  bool small = false;  // a small unlabelled dot (e.g. one seed of a mean)
};
std::string scatter(const std::string& title, const std::string& x_label, const std::string& y_label,
                    const std::vector<Point>& points, ChartSize size = {}, double x_min = 0, double x_max = 1,
                    double y_min = 0, double y_max = 1, const std::vector<Series>& lines = {});

// One column per category: its values as dots (e.g. one per seed) and their mean as a
// bar, so the spread is seen, not just the mean.
struct Strip {
  std::string label;
  std::vector<double> values;
};
std::string strip_chart(const std::string& title, const std::string& y_label, const std::vector<Strip>& strips,
                        ChartSize size = {}, double y_min = 0, double y_max = 1, double value_scale = 100.0);

// A whole HTML document: title (escaped), a small inline stylesheet, `body` as given.
std::string html_page(const std::string& title, const std::string& body);

}  // namespace safetune::eval::svg
