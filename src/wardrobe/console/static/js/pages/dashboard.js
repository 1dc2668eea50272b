// The day-to-day overview: GET /api/v1/admin/stats/overview for a range of UTC days.
import { h } from "/kit/js/dom.js";
import { get } from "../api.js";
import { barChart, lineChart } from "../charts.js";
import { formatDuration, formatFen, formatNumber, formatPercent, label, t } from "../i18n.js";
import { dataTable, fill, filterBar, section } from "../ui.js";

const DAY_MS = 86_400_000;

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function stat(testid, title, value, shown) {
  return h(
    "div",
    { class: "stat card", testid, dataset: { value: String(value ?? "") } },
    h("div", { class: "stat-label" }, title),
    h("div", { class: "stat-value" }, shown ?? formatNumber(value)),
  );
}

function totalsRow(totals) {
  return h(
    "div",
    { class: "stats" },
    stat("stat-users", t("dash.new_users"), totals.new_users),
    stat("stat-active-users", t("dash.active_users"), totals.active_users),
    stat("stat-tasks", t("dash.tasks"), totals.tasks),
    stat("stat-failure-rate", t("dash.failure_rate"), totals.failure_rate, formatPercent(totals.failure_rate)),
    stat("stat-revenue", t("dash.revenue"), totals.revenue_fen, formatFen(totals.revenue_fen)),
    stat("stat-refunds", t("dash.refunds"), totals.refunds_fen, formatFen(totals.refunds_fen)),
    stat("stat-quota-granted", t("dash.quota_granted"), totals.quota_granted),
    stat("stat-quota-spent", t("dash.quota_spent"), totals.quota_spent),
  );
}

function byFeature(rows) {
  const totals = new Map();
  for (const row of rows) totals.set(row.feature, (totals.get(row.feature) || 0) + row.count);
  return [...totals].map(([feature, value]) => ({ label: feature, value }));
}

/** The charts of the days in range: tasks, users, revenue, and tasks by feature. */
function charts(data) {
  const labels = data.series.map((row) => row.date.slice(5));
  const values = (field) => data.series.map((row) => row[field]);
  const line = (title, testid, series, format) =>
    section(title, lineChart({ testid, labels, series: series.map(([name, field]) => ({ name, values: values(field) })), format }));
  const count = (v) => formatNumber(Math.round(v));
  return h(
    "div",
    { class: "grid-2" },
    line(t("dash.chart_tasks"), "chart-tasks", [[t("dash.tasks"), "tasks"], [t("dash.tasks_failed"), "tasks_failed"]], count),
    line(t("dash.chart_users"), "chart-users", [[t("dash.new_users"), "new_users"], [t("dash.active_users"), "active_users"]], count),
    line(t("dash.chart_revenue"), "chart-revenue", [[t("dash.revenue"), "revenue_fen"], [t("dash.refunds"), "refunds_fen"]], (fen) => formatFen(Math.round(fen))),
    section(
      t("dash.chart_features"),
      data.tasks_by_feature.length
        ? barChart({ testid: "chart-features", items: byFeature(data.tasks_by_feature), format: formatNumber })
        : h("p", { class: "empty" }, t("common.empty")),
    ),
  );
}

function overview(data) {
  return h(
    "div",
    { testid: "dashboard" },
    totalsRow(data.totals),
    charts(data),
    section(
      t("dash.performance"),
      dataTable({
        testid: "performance-table",
        rows: data.performance,
        rowId: (row) => `${row.feature}/${row.provider}`,
        columns: [
          { label: t("field.feature"), value: (row) => row.feature },
          { label: t("field.provider"), value: (row) => row.provider },
          { label: t("dash.tasks"), value: (row) => formatNumber(row.tasks), class: "num" },
          { label: t("dash.tasks_failed"), value: (row) => formatNumber(row.failed), class: "num" },
          { label: t("dash.failure_rate"), value: (row) => formatPercent(row.failure_rate), class: "num" },
          { label: "p95", value: (row) => formatDuration(row.p95_ms), class: "num" },
        ],
      }).el,
    ),
    section(
      t("dash.by_channel"),
      dataTable({
        testid: "channel-table",
        rows: data.revenue_by_channel,
        rowId: (row) => row.channel,
        columns: [
          { label: t("field.channel"), value: (row) => label("channel", row.channel) },
          { label: t("dash.orders"), value: (row) => formatNumber(row.orders), class: "num" },
          { label: t("dash.revenue"), value: (row) => formatFen(row.revenue_fen), class: "num" },
          { label: t("dash.refunds"), value: (row) => formatFen(row.refunds_fen), class: "num" },
        ],
      }).el,
    ),
  );
}

export function dashboardPage(view) {
  const today = new Date();
  const range = {
    from: view.query.from || isoDay(new Date(today.getTime() - 29 * DAY_MS)),
    to: view.query.to || isoDay(today),
  };
  const body = h("div");
  fill(body, () => get("/api/v1/admin/stats/overview", { ...range, granularity: "day" }), overview);
  return h(
    "div",
    {},
    h("h1", {}, t("nav.dashboard")),
    filterBar(
      [
        { name: "from", label: t("field.from"), type: "date" },
        { name: "to", label: t("field.to"), type: "date" },
      ],
      range,
      view.go,
    ),
    body,
  );
}
