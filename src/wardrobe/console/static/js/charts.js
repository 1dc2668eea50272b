// Two small SVG charts of our own instead of a chart library: the dashboard needs a daily line
// and a few horizontal bars, which take a hundred lines here, where a library would add tens of
// kilobytes to vendor, pin and audit. SVG also keeps the labels as text nodes (escaped like the
// rest of the page), scales with the layout through its viewBox, and takes its colours from
// console.css, so the strict style-src of the CSP holds.
import { h, svg } from "/kit/js/dom.js";

const WIDTH = 640;
const PAD = { top: 12, right: 16, bottom: 28, left: 56 };

function niceMax(value) {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * magnitude) return step * magnitude;
  }
  return 10 * magnitude;
}

function legend(series) {
  return h(
    "div",
    { class: "legend" },
    series.map((s, i) => h("span", { class: `legend-item series-${i}` }, h("span", { class: "swatch" }), s.name)),
  );
}

/** Daily values: ``labels`` (dates) on x, one line per ``series`` {name, values}. */
export function lineChart({ labels, series, format = String, testid, height = 220 }) {
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = height - PAD.top - PAD.bottom;
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.values)));
  const x = (i) => PAD.left + (labels.length <= 1 ? plotW / 2 : (i * plotW) / (labels.length - 1));
  const y = (v) => PAD.top + plotH - (v / max) * plotH;
  const chart = svg("svg", { viewBox: `0 0 ${WIDTH} ${height}`, class: "chart", role: "img", testid });
  for (let i = 0; i <= 4; i += 1) {
    const value = (max * i) / 4;
    chart.append(
      svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(value), y2: y(value), class: "grid" }),
      svg("text", { x: PAD.left - 6, y: y(value) + 4, class: "axis", "text-anchor": "end" }, format(value)),
    );
  }
  const ticks = labels.length <= 1 ? [0] : [0, Math.floor((labels.length - 1) / 2), labels.length - 1];
  for (const i of new Set(ticks)) {
    if (labels[i] === undefined) continue;
    chart.append(svg("text", { x: x(i), y: height - 8, class: "axis", "text-anchor": "middle" }, labels[i]));
  }
  series.forEach((s, index) => {
    const points = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    chart.append(svg("polyline", { points, class: `line series-${index}` }));
    s.values.forEach((v, i) => {
      chart.append(svg("circle", { cx: x(i), cy: y(v), r: 2.5, class: `dot series-${index}` }, svg("title", {}, `${labels[i]} · ${s.name}: ${format(v)}`)));
    });
  });
  return h("figure", { class: "chart-box" }, chart, legend(series));
}

/** Horizontal bars: ``items`` {label, value}, largest first. */
export function barChart({ items, format = String, testid }) {
  const sorted = [...items].sort((a, b) => b.value - a.value);
  const rowH = 26;
  const height = Math.max(1, sorted.length) * rowH + 8;
  const labelW = 160;
  const max = niceMax(Math.max(0, ...sorted.map((item) => item.value)));
  const plotW = WIDTH - labelW - 80;
  const chart = svg("svg", { viewBox: `0 0 ${WIDTH} ${height}`, class: "chart", role: "img", testid });
  sorted.forEach((item, i) => {
    const top = 4 + i * rowH;
    const w = Math.max(1, (item.value / max) * plotW);
    chart.append(
      svg("text", { x: labelW - 8, y: top + 17, class: "axis", "text-anchor": "end" }, item.label),
      svg("rect", { x: labelW, y: top + 4, width: w, height: rowH - 8, rx: 3, class: "bar series-0" }, svg("title", {}, `${item.label}: ${format(item.value)}`)),
      svg("text", { x: labelW + w + 6, y: top + 17, class: "value" }, format(item.value)),
    );
  });
  return h("figure", { class: "chart-box" }, chart);
}
