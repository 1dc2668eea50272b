// Users: search by phone (exact), id or invite code; the list never shows a full phone number.
import { h } from "/kit/js/dom.js";
import { get } from "../api.js";
import { formatTime, label, t } from "../i18n.js";
import { badge, filterBar, pagedTable } from "../ui.js";

export const ROLES = ["user", "distributor", "operator", "admin"];
export const USER_STATUSES = ["active", "disabled"];

export function statusBadge(status) {
  return badge(label("user_status", status), status === "active" ? "ok" : "bad");
}

export function usersPage(view) {
  const filters = [
    { name: "phone", label: t("field.phone"), type: "tel", placeholder: "138…" },
    { name: "id", label: t("field.user_id"), type: "number" },
    { name: "invite_code", label: t("field.invite_code") },
    { name: "role", label: t("field.role"), options: ROLES.map((r) => [r, label("role", r)]) },
    { name: "status", label: t("field.status"), options: USER_STATUSES.map((s) => [s, label("user_status", s)]) },
  ];
  const table = pagedTable({
    testid: "users-table",
    rowId: (user) => user.id,
    href: (user) => `#/users/${user.id}`,
    load: (cursor) => get("/api/v1/admin/users", { ...view.query, limit: 20, cursor }),
    columns: [
      { label: "ID", value: (user) => String(user.id), class: "num" },
      { label: t("field.nickname"), value: (user) => user.nickname },
      { label: t("field.phone"), value: (user) => user.phone_masked },
      { label: t("field.role"), value: (user) => label("role", user.role) },
      { label: t("field.status"), value: (user) => statusBadge(user.status) },
      { label: t("field.invite_code"), value: (user) => user.invite_code },
      { label: t("field.referrer"), value: (user) => (user.referrer_id ? h("a", { href: `#/users/${user.referrer_id}` }, `#${user.referrer_id}`) : null) },
      { label: t("field.created_at"), value: (user) => formatTime(user.created_at) },
    ],
  });
  return h("div", {}, h("h1", {}, t("nav.users")), filterBar(filters, view.query, view.go), table.el);
}
