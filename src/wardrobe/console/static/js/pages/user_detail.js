// One user: profile, quota, ledger, sessions, orders, tasks; and what staff may do about them
// (adjust quota, ban or unban, end sessions, change the role), each with a reason for the audit log.
import { button, facts, h, link } from "/kit/js/dom.js";
import { get, patch, post } from "../api.js";
import { formatFen, formatNumber, formatTime, label, t } from "../i18n.js";
import { can } from "../permissions.js";
import { actionDialog, badge, dataTable, errorBox, loading, notify, pagedTable, section } from "../ui.js";
import { ROLES, statusBadge } from "./users.js";

function reasonField() {
  return { name: "reason", label: t("common.reason"), type: "textarea", required: true, max: 255, testid: "reason-input" };
}

function actions(user, view) {
  const base = `/api/v1/admin/users/${user.id}`;
  const done = (text) => {
    notify(text);
    view.reload();
  };
  const list = [];
  if (can("quota:adjust")) {
    list.push(
      button(t("user.adjust_quota"), async () => {
        const result = await actionDialog({
          title: t("user.adjust_quota"),
          description: t("user.adjust_quota_hint"),
          fields: [
            { name: "delta", label: t("user.delta"), type: "number", required: true, min: 1, testid: "delta-input", inputmode: "numeric" },
            reasonField(),
          ],
          submit: ({ delta, reason }) => post(`${base}/quota-adjustments`, { delta: Number(delta), reason }),
        });
        if (result) done(t("user.quota_adjusted", { balance: result.balance }));
      }, { testid: "adjust-quota" }),
    );
  }
  if (can("users:ban")) {
    const banning = user.status === "active";
    list.push(
      button(banning ? t("user.ban") : t("user.unban"), async () => {
        const result = await actionDialog({
          title: banning ? t("user.ban") : t("user.unban"),
          description: banning ? t("user.ban_hint") : null,
          danger: banning,
          fields: [reasonField()],
          submit: ({ reason }) => patch(base, { status: banning ? "disabled" : "active", reason }),
        });
        if (result) done(banning ? t("user.banned") : t("user.unbanned"));
      }, { testid: banning ? "ban-user" : "unban-user", class: banning ? "danger" : null }),
    );
  }
  if (can("sessions:revoke")) {
    list.push(
      button(t("user.end_sessions"), async () => {
        const result = await actionDialog({ title: t("user.end_sessions"), fields: [reasonField()], submit: ({ reason }) => post(`${base}/revoke-sessions`, { reason }) });
        if (result) done(t("user.sessions_ended", { count: result.sessions_revoked }));
      }, { testid: "end-sessions" }),
    );
  }
  if (can("users:write")) {
    list.push(
      button(t("user.change_role"), async () => {
        const result = await actionDialog({
          title: t("user.change_role"),
          fields: [
            { name: "role", label: t("field.role"), type: "select", options: ROLES.map((r) => [r, label("role", r)]), value: user.role, testid: "role-input" },
            reasonField(),
          ],
          submit: ({ role, reason }) => patch(base, { role, reason }),
        });
        if (result) done(t("user.role_changed"));
      }, { testid: "change-role" }),
    );
  }
  return h("div", { class: "toolbar" }, list);
}

function ledgerTable(userId) {
  return pagedTable({
    testid: "ledger-table",
    rowId: (row) => row.id,
    load: (cursor) => get(`/api/v1/admin/users/${userId}/ledger`, { limit: 20, cursor }),
    columns: [
      { label: t("field.time"), value: (row) => formatTime(row.created_at) },
      { label: t("field.kind"), value: (row) => label("ledger", row.kind) },
      { label: t("ledger.amount"), value: (row) => formatNumber(row.amount), class: "num" },
      { label: t("ledger.hold_delta"), value: (row) => formatNumber(row.hold_delta), class: "num" },
      { label: t("ledger.balance_after"), value: (row) => formatNumber(row.balance_after), class: "num" },
      { label: t("ledger.ref"), value: (row) => row.ref },
      { label: t("ledger.note"), value: (row) => row.note },
      { label: t("field.actor"), value: (row) => (row.actor_id ? link(`#/users/${row.actor_id}`, `#${row.actor_id}`) : null) },
    ],
  }).el;
}

function sessionsTable(sessions) {
  return dataTable({
    testid: "sessions-table",
    rows: sessions,
    rowId: (row) => row.id,
    columns: [
      { label: t("session.device"), value: (row) => [row.device, row.client].filter(Boolean).join(" · ") },
      { label: t("session.ip"), value: (row) => row.ip_masked },
      { label: t("field.created_at"), value: (row) => formatTime(row.created_at) },
      { label: t("session.last_used"), value: (row) => formatTime(row.last_used_at) },
      { label: t("session.revoked"), value: (row) => (row.revoked_at ? formatTime(row.revoked_at) : badge(t("session.live"), "ok")) },
    ],
  }).el;
}

function ordersTable(orders) {
  return dataTable({
    testid: "user-orders-table",
    rows: orders,
    rowId: (row) => row.order_no,
    href: (row) => `#/orders/${encodeURIComponent(row.order_no)}`,
    columns: [
      { label: t("order.no"), value: (row) => row.order_no },
      { label: t("order.item"), value: (row) => row.name || row.sku },
      { label: t("order.amount"), value: (row) => formatFen(row.amount_fen), class: "num" },
      { label: t("field.channel"), value: (row) => label("channel", row.channel) },
      { label: t("field.status"), value: (row) => label("order_status", row.status) },
      { label: t("field.created_at"), value: (row) => formatTime(row.created_at) },
    ],
  }).el;
}

export function recentTasksTable(tasks, testid = "user-tasks-table") {
  return dataTable({
    testid,
    rows: tasks,
    rowId: (row) => row.id,
    href: (row) => `#/tasks/${encodeURIComponent(row.id)}`,
    columns: [
      { label: t("task.id"), value: (row) => row.id },
      { label: t("field.feature"), value: (row) => row.feature },
      { label: t("field.status"), value: (row) => label("task_status", row.status) },
      { label: t("task.error"), value: (row) => row.error_code },
      { label: t("field.created_at"), value: (row) => formatTime(row.created_at) },
    ],
  }).el;
}

function detail(data, view) {
  const { user, quota, tasks, distributor } = data;
  const membership = quota.membership
    ? `${quota.membership.name || quota.membership.sku} · ${t("user.expires", { at: formatTime(quota.membership.expires_at) })}`
    : t("user.no_membership");
  const byStatus = Object.entries(tasks.by_status || {}).map(([status, n]) => badge(`${label("task_status", status)} ${n}`));
  return h(
    "div",
    { testid: "user-detail", dataset: { id: String(user.id) } },
    h("h1", {}, `${t("user.title")} #${user.id}`, " ", statusBadge(user.status)),
    actions(user, view),
    h(
      "div",
      { class: "grid-2" },
      section(
        t("user.profile"),
        facts([
          [t("field.nickname"), user.nickname],
          [t("field.phone"), user.phone_masked],
          [t("field.role"), label("role", user.role), "user-role"],
          [t("field.status"), label("user_status", user.status), "user-status"],
          [t("field.invite_code"), user.invite_code],
          [t("field.referrer"), user.referrer_id ? link(`#/users/${user.referrer_id}`, `#${user.referrer_id}`) : null],
          [t("field.created_at"), formatTime(user.created_at)],
          [t("user.distributor"), distributor ? link("#/distributors", label("application_status", distributor.status)) : null],
        ]),
      ),
      section(
        t("user.quota"),
        facts([
          [t("quota.balance"), formatNumber(quota.balance), "quota-balance"],
          [t("quota.held"), formatNumber(quota.held)],
          [t("quota.available"), formatNumber(quota.available), "quota-available"],
          [t("quota.membership"), membership],
        ]),
      ),
    ),
    section(t("user.ledger"), ledgerTable(user.id)),
    section(
      t("user.tasks"),
      h("p", {}, t("user.tasks_total", { total: formatNumber(tasks.total) }), " ", byStatus, " ", link(`#/tasks?user_id=${user.id}`, t("user.all_tasks"))),
      recentTasksTable(tasks.recent),
    ),
    section(t("user.orders"), ordersTable(data.orders), link(`#/orders?user_id=${user.id}`, t("user.all_orders"))),
    section(t("user.sessions"), sessionsTable(data.sessions)),
  );
}

export function userDetailPage(view) {
  const el = h("div", {}, loading());
  get(`/api/v1/admin/users/${view.params[0]}`).then(
    (data) => el.replaceChildren(detail(data, view)),
    (error) => el.replaceChildren(errorBox(error)),
  );
  return el;
}
