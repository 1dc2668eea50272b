// The audit log: who did what to which record, why, and what it changed (before / after).
import { h, jsonBlock, link } from "/kit/js/dom.js";
import { get } from "../api.js";
import { formatTime, t } from "../i18n.js";
import { filterBar, pagedTable } from "../ui.js";

function instant(value, endOfDay) {
  if (!value) return undefined;
  return `${value}T${endOfDay ? "23:59:59" : "00:00:00"}Z`;
}

function change(entry) {
  if (entry.before == null && entry.after == null) return null;
  return h(
    "details",
    {},
    h("summary", {}, t("audit.change")),
    h("div", { class: "change" }, h("div", {}, h("strong", {}, t("audit.before")), jsonBlock(entry.before)), h("div", {}, h("strong", {}, t("audit.after")), jsonBlock(entry.after))),
  );
}

export function auditPage(view) {
  const filters = [
    { name: "actor_id", label: t("audit.actor_id"), type: "number" },
    { name: "action", label: t("audit.action"), placeholder: "quota.adjust" },
    { name: "target_type", label: t("audit.target_type"), placeholder: "user" },
    { name: "target_id", label: t("audit.target_id") },
    { name: "from", label: t("field.from"), type: "date" },
    { name: "to", label: t("field.to"), type: "date" },
  ];
  const query = { ...view.query, from: instant(view.query.from, false), to: instant(view.query.to, true) };
  const table = pagedTable({
    testid: "audit-table",
    rowId: (entry) => entry.id,
    load: (cursor) => get("/api/v1/admin/audit-logs", { ...query, limit: 50, cursor }),
    columns: [
      { label: t("field.time"), value: (entry) => formatTime(entry.created_at) },
      { label: t("field.actor"), value: (entry) => (entry.actor_id ? link(`#/users/${entry.actor_id}`, `#${entry.actor_id}`) : t("audit.system")) },
      { label: t("audit.action"), value: (entry) => entry.action },
      { label: t("audit.target"), value: (entry) => `${entry.target_type || ""}${entry.target_id ? ` ${entry.target_id}` : ""}` },
      { label: t("common.reason"), value: (entry) => entry.reason },
      { label: t("audit.change"), value: change },
    ],
  });
  return h("div", {}, h("h1", {}, t("nav.audit")), filterBar(filters, view.query, view.go), table.el);
}
