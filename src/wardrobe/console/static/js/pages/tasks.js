// Tasks of every user: filters, and a task's detail with its step timeline, kept live through the
// Socket.IO hub while the page is open; cancel (with refund) or retry (at no charge), with a reason.
import { button, facts, h, jsonBlock, link } from "/kit/js/dom.js";
import { get, post } from "../api.js";
import { formatDuration, formatNumber, formatTime, label, t } from "../i18n.js";
import { watchTask } from "../live.js";
import { can } from "../permissions.js";
import { actionDialog, badge, dataTable, errorBox, filterBar, loading, notify, pagedTable, section } from "../ui.js";

export const TASK_STATUSES = ["queued", "running", "succeeded", "failed", "canceled"];
const STATUS_KIND = { succeeded: "ok", failed: "bad", canceled: "muted", running: "live", queued: "live" };

export function taskBadge(status) {
  return badge(label("task_status", status), STATUS_KIND[status]);
}

/** A datetime-local value ("2024-05-01T08:00") as an ISO instant, or undefined. */
function instant(value) {
  if (!value) return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
}

export function tasksPage(view) {
  const filters = [
    { name: "user_id", label: t("field.user_id"), type: "number" },
    { name: "status", label: t("field.status"), options: TASK_STATUSES.map((s) => [s, label("task_status", s)]) },
    { name: "feature", label: t("field.feature") },
    { name: "provider", label: t("field.provider") },
    { name: "error_code", label: t("task.error") },
    { name: "from", label: t("field.from"), type: "datetime-local" },
    { name: "to", label: t("field.to"), type: "datetime-local" },
  ];
  const query = { ...view.query, from: instant(view.query.from), to: instant(view.query.to) };
  const table = pagedTable({
    testid: "tasks-table",
    rowId: (task) => task.id,
    href: (task) => `#/tasks/${encodeURIComponent(task.id)}`,
    load: (cursor) => get("/api/v1/admin/tasks", { ...query, limit: 20, cursor }),
    columns: [
      { label: t("task.id"), value: (task) => task.id },
      { label: t("field.user"), value: (task) => link(`#/users/${task.user_id}`, `#${task.user_id}`) },
      { label: t("field.feature"), value: (task) => task.feature },
      { label: t("field.status"), value: (task) => taskBadge(task.status) },
      { label: t("task.providers"), value: (task) => (task.providers || []).join(", ") },
      { label: t("task.error"), value: (task) => task.error_code },
      { label: t("task.cost"), value: (task) => `${formatNumber(task.quota_cost)}${task.refunded ? ` · ${t("task.refunded")}` : ""}`, class: "num" },
      { label: t("task.duration"), value: (task) => formatDuration(task.duration_ms), class: "num" },
      { label: t("field.created_at"), value: (task) => formatTime(task.created_at) },
    ],
  });
  return h("div", {}, h("h1", {}, t("nav.tasks")), filterBar(filters, view.query, view.go), table.el);
}

function timeline(steps) {
  if (!steps || steps.length === 0) return h("p", { class: "empty" }, t("task.no_steps"));
  return h(
    "ol",
    { class: "timeline", testid: "timeline" },
    steps.map((step) =>
      h(
        "li",
        { class: ["step", `step-${step.status}`], testid: "step", dataset: { id: step.step_id, status: step.status } },
        h("div", { class: "step-head" }, h("strong", {}, step.step_id), " ", badge(label("step_status", step.status), STATUS_KIND[step.status])),
        h(
          "div",
          { class: "step-meta" },
          [
            step.provider ? `${t("field.provider")}: ${step.provider}${step.account ? ` / ${step.account}` : ""}` : null,
            step.attempts ? t("task.attempts", { n: step.attempts }) : null,
            step.vendor_task_id ? `${t("task.vendor_job")}: ${step.vendor_task_id}` : null,
            step.started_at ? `${formatTime(step.started_at)} → ${step.finished_at ? formatTime(step.finished_at) : "…"}` : null,
            step.duration_ms !== null && step.duration_ms !== undefined ? formatDuration(step.duration_ms) : null,
          ]
            .filter(Boolean)
            .join(" · "),
        ),
        step.error ? h("div", { class: "step-error", testid: "step-error" }, typeof step.error === "string" ? step.error : JSON.stringify(step.error)) : null,
      ),
    ),
  );
}

/** Results: files as links (signed URLs, opened in a new tab), values as JSON. */
function outputs(items) {
  if (!items || items.length === 0) return h("p", { class: "empty" }, t("common.empty"));
  return h(
    "ul",
    { class: "plain", testid: "task-outputs" },
    items.map((item) =>
      h(
        "li",
        {},
        h("strong", {}, item.name),
        " ",
        item.url
          ? h("a", { href: item.url, target: "_blank", rel: "noopener noreferrer" }, item.content_type || t("task.open"))
          : jsonBlock(item.value),
      ),
    ),
  );
}

function taskActions(task, view) {
  const list = [];
  const act = (verb, testid, danger) =>
    button(t(`task.${verb}`), async () => {
      const result = await actionDialog({
        title: t(`task.${verb}`),
        description: t(`task.${verb}_hint`),
        danger,
        submit: ({ reason }) => post(`/api/v1/admin/tasks/${encodeURIComponent(task.id)}/${verb}`, { reason }),
      });
      if (!result) return;
      notify(t(`task.${verb}_done`));
      if (verb === "retry" && result.id) location.hash = `#/tasks/${encodeURIComponent(result.id)}`;
      else view.reload();
    }, { testid, class: danger ? "danger" : null });
  if (can("tasks:act") && (task.status === "queued" || task.status === "running")) list.push(act("cancel", "cancel-task", true));
  if (can("tasks:act") && task.status === "failed" && !task.retried_by) list.push(act("retry", "retry-task", false));
  return h("div", { class: "toolbar" }, list);
}

function ledgerRows(rows) {
  return dataTable({
    testid: "task-ledger-table",
    rows: rows || [],
    rowId: (row) => row.id,
    columns: [
      { label: t("field.time"), value: (row) => formatTime(row.created_at) },
      { label: t("field.kind"), value: (row) => label("ledger", row.kind) },
      { label: t("ledger.amount"), value: (row) => formatNumber(row.amount), class: "num" },
      { label: t("ledger.hold_delta"), value: (row) => formatNumber(row.hold_delta), class: "num" },
      { label: t("ledger.balance_after"), value: (row) => formatNumber(row.balance_after), class: "num" },
      { label: t("ledger.ref"), value: (row) => row.ref },
    ],
  }).el;
}

function actionRows(rows) {
  return dataTable({
    testid: "task-actions-table",
    rows: rows || [],
    rowId: (row) => row.action,
    columns: [
      { label: t("field.time"), value: (row) => formatTime(row.created_at) },
      { label: t("audit.action"), value: (row) => row.action },
      { label: t("field.actor"), value: (row) => (row.actor_id ? link(`#/users/${row.actor_id}`, `#${row.actor_id}`) : null) },
      { label: t("common.reason"), value: (row) => row.reason },
    ],
  }).el;
}

function taskDetail(task, view) {
  const hold = task.hold
    ? `${formatNumber(task.hold.amount)} · ${label("hold_status", task.hold.status)}${task.hold.settled_at ? ` · ${formatTime(task.hold.settled_at)}` : ""}`
    : null;
  return h(
    "div",
    { testid: "task-detail", dataset: { id: task.id, status: task.status } },
    h("h1", {}, `${t("task.title")} ${task.id} `, h("span", { testid: "task-status" }, taskBadge(task.status))),
    taskActions(task, view),
    h(
      "div",
      { class: "grid-2" },
      section(
        t("task.summary"),
        facts([
          [t("field.user"), link(`#/users/${task.user_id}`, `#${task.user_id}`)],
          [t("field.feature"), task.feature],
          [t("task.progress"), task.progress !== undefined && task.progress !== null ? `${task.progress}%` : null],
          [t("task.cost"), formatNumber(task.quota_cost)],
          [t("task.refunded"), task.refunded ? t("common.yes") : t("common.no")],
          [t("task.hold"), hold],
          [t("task.error"), task.error_code ? `${task.error_code}${task.error_message ? ` — ${task.error_message}` : ""}` : null, "task-error"],
          [t("field.created_at"), formatTime(task.created_at)],
          [t("task.started"), formatTime(task.started_at)],
          [t("task.finished"), formatTime(task.finished_at)],
          [t("task.duration"), formatDuration(task.duration_ms)],
          [t("task.retry_of"), task.retry_of ? link(`#/tasks/${encodeURIComponent(task.retry_of)}`, task.retry_of) : null],
          [t("task.retried_by"), task.retried_by ? link(`#/tasks/${encodeURIComponent(task.retried_by)}`, task.retried_by) : null],
          // The request id of the task's creation, on every log line of its run and in its pushes.
          [t("task.trace"), task.trace_id, "task-trace"],
        ]),
      ),
      section(t("task.timeline"), h("p", { class: "muted live-note", testid: "live-note" }, t("task.live")), timeline(task.steps)),
    ),
    section(t("task.ledger"), ledgerRows(task.ledger)),
    section(t("task.actions"), actionRows(task.actions)),
    h("div", { class: "grid-2" }, section(t("task.inputs"), jsonBlock(task.inputs, "task-inputs")), section(t("task.outputs"), outputs(task.outputs))),
  );
}

export function taskDetailPage(view) {
  const id = decodeURIComponent(view.params[0]);
  const el = h("div", {}, loading());
  let pending = null;

  async function load() {
    try {
      el.replaceChildren(taskDetail(await get(`/api/v1/admin/tasks/${encodeURIComponent(id)}`), view));
    } catch (error) {
      el.replaceChildren(errorBox(error));
    }
  }

  // A push carries the user's view of the task; the staff view (steps, ledger) is read again,
  // at most one read in flight, and one more if pushes arrived meanwhile.
  function onUpdate() {
    if (pending) {
      pending.again = true;
      return;
    }
    pending = { again: false };
    load().finally(() => {
      const again = pending.again;
      pending = null;
      if (again) onUpdate();
    });
  }

  load();
  view.onLeave(watchTask(id, onUpdate));
  return el;
}
