// SVG chart helpers (see svg.h). Every chart is a plot area with a margin for the axes,
// a linear map from data to pixels, and "nice" tick values (1, 2 or 5 times a power of 10).
#include "safetune/eval/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace safetune::eval::svg {
namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// A coordinate with one decimal: enough for a screen, short in the file.
std::string px(double v) { return fmt("%.1f", v); }

// Tick values covering [lo, hi], about `n` of them.
std::vector<double> ticks(double lo, double hi, int n = 5) {
  std::vector<double> out;
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / n;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  const double step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
  for (double t = std::ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step)
    out.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  return out;
}

std::string tick_label(double v) {
  if (v == 0) return "0";
  const double a = std::abs(v);
  if (a >= 1000 || a < 0.01) return fmt("%.1e", v);
  if (std::abs(v - std::round(v)) < 1e-9) return fmt("%.0f", v);
  return a < 0.1 ? fmt("%.3g", v) : fmt("%.2g", v);
}

struct Frame {
  double left = 56, right = 16, top = 30, bottom = 44;
  ChartSize size;
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  double X(double x) const { return left + (x - x0) / (x1 - x0) * (size.width - left - right); }
  double Y(double y) const { return size.height - bottom - (y - y0) / (y1 - y0) * (size.height - top - bottom); }
};

std::string open_svg(const ChartSize& s, const std::string& title) {
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(s.width) + "\" height=\"" +
         std::to_string(s.height) + "\" viewBox=\"0 0 " + std::to_string(s.width) + " " + std::to_string(s.height) +
         "\" role=\"img\" aria-label=\"" + escape(title) + "\">\n<title>" + escape(title) +
         "</title>\n<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n<text x=\"" + px(s.width / 2.0) +
         "\" y=\"18\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">" + escape(title) + "</text>\n";
}

std::string text_at(double x, double y, const std::string& s, const char* anchor = "middle", int size = 11,
                    const std::string& extra = "") {
  return "<text x=\"" + px(x) + "\" y=\"" + px(y) + "\" text-anchor=\"" + anchor + "\" font-size=\"" +
         std::to_string(size) + "\"" + extra + ">" + escape(s) + "</text>\n";
}

std::string line(double x1, double y1, double x2, double y2, const std::string& stroke, double width = 1,
                 const std::string& extra = "") {
  return "<line x1=\"" + px(x1) + "\" y1=\"" + px(y1) + "\" x2=\"" + px(x2) + "\" y2=\"" + px(y2) + "\" stroke=\"" +
         stroke + "\" stroke-width=\"" + px(width) + "\"" + extra + "/>\n";
}

// Axes with grid lines and tick labels, and the axis titles.
std::string axes(const Frame& f, const std::string& x_label, const std::string& y_label, bool x_ticks = true) {
  std::string s;
  for (double t : ticks(f.y0, f.y1)) {
    s += line(f.left, f.Y(t), f.size.width - f.right, f.Y(t), "#e5e5e5");
    s += text_at(f.left - 6, f.Y(t) + 4, tick_label(t), "end", 10);
  }
  if (x_ticks)
    for (double t : ticks(f.x0, f.x1, 6)) {
      s += line(f.X(t), f.size.height - f.bottom, f.X(t), f.size.height - f.bottom + 4, "#333");
      s += text_at(f.X(t), f.size.height - f.bottom + 16, tick_label(t), "middle", 10);
    }
  s += line(f.left, f.top, f.left, f.size.height - f.bottom, "#333");
  s += line(f.left, f.size.height - f.bottom, f.size.width - f.right, f.size.height - f.bottom, "#333");
  if (!x_label.empty()) s += text_at((f.left + f.size.width - f.right) / 2, f.size.height - 8, x_label, "middle", 11);
  if (!y_label.empty()) {
    const double cx = 14, cy = (f.top + f.size.height - f.bottom) / 2;
    s += text_at(cx, cy, y_label, "middle", 11, " transform=\"rotate(-90 " + px(cx) + " " + px(cy) + ")\"");
  }
  return s;
}

// `colors[i]`: the palette index of names[i] (empty: i).
std::string legend(const std::vector<std::string>& names, double x, double y, const std::vector<size_t>& colors = {}) {
  std::string s;
  for (size_t i = 0; i < names.size(); ++i) {
    const double yy = y + 15.0 * i;
    const std::string& c = color(i < colors.size() ? colors[i] : i);
    s += "<rect x=\"" + px(x) + "\" y=\"" + px(yy - 8) + "\" width=\"10\" height=\"10\" fill=\"" + c + "\"/>\n";
    s += text_at(x + 14, yy + 1, names[i], "start", 10);
  }
  return s;
}

}  // namespace

std::string escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

const std::string& color(size_t i) {
  // Okabe-Ito.
  static const std::vector<std::string> kColors = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                                   "#E69F00", "#56B4E9", "#F0E442", "#000000"};
  return kColors[i % kColors.size()];
}

std::string line_chart(const std::string& title, const std::string& x_label, const std::string& y_label,
                       const std::vector<Series>& series, ChartSize size, double y_min, double y_max) {
  Frame f;
  f.size = size;
  f.right = 110;  // legend: wider for long names (about 6 px a character at its 10 px font)
  for (const auto& s : series)
    if (s.in_legend) f.right = std::max(f.right, 30.0 + 6.0 * static_cast<double>(s.name.size()));
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (const auto& s : series)
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      xlo = std::min(xlo, x), xhi = std::max(xhi, x), ylo = std::min(ylo, y), yhi = std::max(yhi, y);
    }
  if (!std::isfinite(xlo)) xlo = 0, xhi = 1, ylo = 0, yhi = 1;
  if (!std::isnan(y_min)) ylo = y_min;
  if (!std::isnan(y_max)) yhi = y_max;
  if (xhi <= xlo) xhi = xlo + 1;
  if (yhi <= ylo) yhi = ylo + 1;
  f.x0 = xlo, f.x1 = xhi, f.y0 = ylo, f.y1 = yhi;
  std::string s = open_svg(size, title) + axes(f, x_label, y_label);
  std::vector<std::string> names;
  std::vector<size_t> colors;
  for (size_t i = 0; i < series.size(); ++i) {
    const size_t c = series[i].color >= 0 ? static_cast<size_t>(series[i].color) : i;
    if (series[i].in_legend) names.push_back(series[i].name), colors.push_back(c);
    std::string pts;
    for (const auto& [x, y] : series[i].points)
      if (std::isfinite(x) && std::isfinite(y)) pts += px(f.X(x)) + "," + px(f.Y(std::clamp(y, ylo, yhi))) + " ";
    if (!pts.empty())
      s += "<polyline fill=\"none\" stroke=\"" + color(c) + "\" stroke-width=\"" + px(series[i].stroke) +
           "\" points=\"" + pts + "\"/>\n";
  }
  s += legend(names, size.width - f.right + 10, f.top + 8, colors);
  return s + "</svg>\n";
}

std::string grouped_bars(const std::string& title, const std::vector<std::string>& series_names,
                         const std::vector<BarGroup>& groups, ChartSize size, double y_max, double value_scale,
                         const char* value_format) {
  Frame f;
  f.size = size;
  f.right = 110;
  f.y0 = 0;
  f.y1 = y_max;
  for (const auto& g : groups)
    for (double v : g.values)
      if (std::isfinite(v)) f.y1 = std::max(f.y1, v);
  std::string s = open_svg(size, title) + axes(f, "", "", /*x_ticks=*/false);
  const double plot_w = size.width - f.left - f.right;
  const double group_w = groups.empty() ? plot_w : plot_w / groups.size();
  const size_t k = std::max<size_t>(1, series_names.size());
  const double bar_w = group_w * 0.8 / k;
  for (size_t g = 0; g < groups.size(); ++g) {
    const double gx = f.left + group_w * g + group_w * 0.1;
    for (size_t i = 0; i < groups[g].values.size() && i < k; ++i) {
      const double v = groups[g].values[i];
      if (!std::isfinite(v)) continue;
      const double x = gx + bar_w * i, y = f.Y(std::max(0.0, v));
      s += "<rect x=\"" + px(x) + "\" y=\"" + px(y) + "\" width=\"" + px(bar_w * 0.92) + "\" height=\"" +
           px(f.Y(0) - y) + "\" fill=\"" + color(i) + "\"><title>" + escape(groups[g].label + " " + series_names[i]) +
           ": " + fmt(value_format, v * value_scale) + "</title></rect>\n";
      s += text_at(x + bar_w * 0.46, y - 3, fmt(value_format, v * value_scale), "middle", 9);
    }
    s += text_at(f.left + group_w * (g + 0.5), size.height - f.bottom + 16, groups[g].label, "middle", 10);
  }
  s += legend(series_names, size.width - f.right + 10, f.top + 8);
  return s + "</svg>\n";
}

std::string labelled_bars(const std::string& title, const std::vector<std::pair<std::string, double>>& bars,
                          ChartSize size) {
  const double top = 30, row = (size.height - top - 10) / std::max<size_t>(1, bars.size());
  const double label_w = 120, right = 50;
  double lo = 0, hi = 0;
  for (const auto& [_, v] : bars)
    if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (hi - lo <= 0) hi = lo + 1;
  const double w = size.width - label_w - right;
  auto X = [&](double v) { return label_w + (v - lo) / (hi - lo) * w; };
  std::string s = open_svg(size, title);
  s += line(X(0), top, X(0), size.height - 10, "#333");
  for (size_t i = 0; i < bars.size(); ++i) {
    const double y = top + row * i, v = bars[i].second;
    s += text_at(label_w - 6, y + row * 0.7, bars[i].first, "end", 10, " font-family=\"monospace\"");
    if (!std::isfinite(v)) continue;
    const double x0 = X(std::min(0.0, v)), x1 = X(std::max(0.0, v));
    s += "<rect x=\"" + px(x0) + "\" y=\"" + px(y + row * 0.15) + "\" width=\"" + px(std::max(0.5, x1 - x0)) +
         "\" height=\"" + px(row * 0.7) + "\" fill=\"" + color(v >= 0 ? 0 : 1) + "\"/>\n";
    s += text_at(v >= 0 ? x1 + 3 : x0 - 3, y + row * 0.7, fmt("%.3f", v), v >= 0 ? "start" : "end", 9);
  }
  return s + "</svg>\n";
}

std::string scatter(const std::string& title, const std::string& x_label, const std::string& y_label,
                    const std::vector<Point>& points, ChartSize size, double x_min, double x_max, double y_min,
                    double y_max, const std::vector<Series>& lines) {
  Frame f;
  f.size = size;
  f.x0 = x_min, f.x1 = x_max > x_min ? x_max : x_min + 1;
  f.y0 = y_min, f.y1 = y_max > y_min ? y_max : y_min + 1;
  std::string s = open_svg(size, title) + axes(f, x_label, y_label);
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string pts;
    for (const auto& [x, y] : lines[i].points)
      if (std::isfinite(x) && std::isfinite(y)) pts += px(f.X(x)) + "," + px(f.Y(y)) + " ";
    s += "<polyline points=\"" + pts + "\" fill=\"none\" stroke=\"" + color(i) +
         "\" stroke-width=\"1.5\" stroke-dasharray=\"4 3\"><title>" + escape(lines[i].name) + "</title></polyline>\n";
  }
  for (size_t i = 0; i < points.size(); ++i) {
    const Point& p = points[i];
    if (!std::isfinite(p.x) || !std::isfinite(p.y)) continue;
    const std::string& c = color(p.color >= 0 ? static_cast<size_t>(p.color) : i);
    s += "<circle cx=\"" + px(f.X(p.x)) + "\" cy=\"" + px(f.Y(p.y)) + "\" r=\"" + (p.small ? "2.5" : "5") +
         "\" fill=\"" + c + "\"" + (p.small ? " fill-opacity=\"0.5\"" : "") + "><title>" + escape(p.label) +
         "</title></circle>\n";
    if (!p.small) s += text_at(f.X(p.x) + 7, f.Y(p.y) - 6, p.label, "start", 10);
  }
  return s + "</svg>\n";
}

std::string strip_chart(const std::string& title, const std::string& y_label, const std::vector<Strip>& strips,
                        ChartSize size, double y_min, double y_max, double value_scale) {
  Frame f;
  f.size = size;
  f.bottom = 70;  // room for slanted category labels
  f.x0 = 0, f.x1 = static_cast<double>(std::max<size_t>(1, strips.size()));
  f.y0 = y_min, f.y1 = y_max > y_min ? y_max : y_min + 1;
  std::string s = open_svg(size, title) + axes(f, "", y_label, /*x_ticks=*/false);
  const double w = f.X(1) - f.X(0);
  for (size_t i = 0; i < strips.size(); ++i) {
    const Strip& st = strips[i];
    const double cx = f.X(i + 0.5);
    double sum = 0;
    int n = 0;
    for (size_t k = 0; k < st.values.size(); ++k) {
      const double v = st.values[k];
      if (!std::isfinite(v)) continue;
      sum += v;
      ++n;
      // Spread the dots sideways so equal values stay visible.
      const double dx = (static_cast<double>(k) - (st.values.size() - 1) / 2.0) * std::min(6.0, w / 8);
      s += "<circle cx=\"" + px(cx + dx) + "\" cy=\"" + px(f.Y(v)) + "\" r=\"3.5\" fill=\"" + color(i) +
           "\"><title>" + escape(st.label) + ": " + fmt("%.1f", value_scale * v) + "</title></circle>\n";
    }
    if (n > 0) {
      const double m = sum / n;
      s += line(cx - w * 0.3, f.Y(m), cx + w * 0.3, f.Y(m), "#333", 2);
      s += text_at(cx + w * 0.32, f.Y(m) + 4, fmt("%.0f", value_scale * m), "start", 9);
    }
    const double ly = f.size.height - f.bottom + 12;
    s += text_at(cx, ly, st.label, "end", 10, " transform=\"rotate(-30 " + px(cx) + " " + px(ly) + ")\"");
  }
  return s + "</svg>\n";
}

std::string html_page(const std::string& title, const std::string& body) {
  return "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" + escape(title) +
         "</title>\n<style>\n"
         "body{font-family:sans-serif;margin:24px auto;max-width:1180px;color:#222;background:#fff}\n"
         "h1{font-size:22px}h2{font-size:17px;margin-top:28px}\n"
         "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:4px 8px;"
         "text-align:right;font-size:13px}th{background:#f3f3f3}td.l,th.l{text-align:left}\n"
         ".charts{display:flex;flex-wrap:wrap;gap:12px}.note{color:#555;font-size:13px}\n"
         "code,pre{font-size:12px;background:#f6f6f6}pre{padding:6px;white-space:pre-wrap}\n"
         ".pass{color:#067d2e}.fail{color:#b00020}\n"
         "</style>\n</head>\n<body>\n" +
         body + "</body>\n</html>\n";
}

}  // namespace safetune::eval::svg
