// Distributor applications: approve or reject (operators); reveal an applicant's full ID number
// (admins only: every reveal is audited with its reason, and the API's refusal is shown as is).
import { button, h, link } from "/kit/js/dom.js";
import { get, post } from "../api.js";
import { formatTime, label, t } from "../i18n.js";
import { can } from "../permissions.js";
import { actionDialog, badge, filterBar, notify, pagedTable } from "../ui.js";

const STATUSES = ["pending", "approved", "rejected"];
const KIND = { pending: "live", approved: "ok", rejected: "bad" };

function actions(application, view) {
  const base = `/api/v1/admin/distributors/applications/${application.id}`;
  const list = [];
  if (can("distributors:review") && application.status === "pending") {
    list.push(
      button(t("distributor.approve"), async () => {
        const result = await actionDialog({
          title: t("distributor.approve"),
          fields: [{ name: "reason", label: t("distributor.note"), type: "textarea", max: 500, testid: "reason-input" }],
          submit: ({ reason }) => post(`${base}/approve`, reason ? { reason } : {}),
        });
        if (result) {
          notify(t("distributor.approved"));
          view.reload();
        }
      }, { testid: "approve", class: "primary" }),
      button(t("distributor.reject"), async () => {
        const result = await actionDialog({ title: t("distributor.reject"), danger: true, submit: ({ reason }) => post(`${base}/reject`, { reason }) });
        if (result) {
          notify(t("distributor.rejected"));
          view.reload();
        }
      }, { testid: "reject", class: "danger" }),
    );
  }
  if (can("distributors:reveal")) {
    const shown = h("span", { class: "revealed", testid: "revealed-id" });
    list.push(
      button(t("distributor.reveal"), async () => {
        const result = await actionDialog({
          title: t("distributor.reveal"),
          description: t("distributor.reveal_hint"),
          submit: ({ reason }) => post(`${base}/reveal-id`, { reason }),
        });
        if (result) shown.replaceChildren(result.id_number);
      }, { testid: "reveal-id" }),
      shown,
    );
  }
  return h("div", { class: "row-actions" }, list);
}

export function distributorsPage(view) {
  const table = pagedTable({
    testid: "distributors-table",
    rowId: (application) => application.id,
    load: (cursor) => get("/api/v1/admin/distributors/applications", { ...view.query, limit: 20, cursor }),
    columns: [
      { label: "ID", value: (application) => String(application.id), class: "num" },
      { label: t("field.user"), value: (application) => link(`#/users/${application.user_id}`, `#${application.user_id}`) },
      { label: t("distributor.real_name"), value: (application) => application.real_name },
      { label: t("field.phone"), value: (application) => application.phone_masked },
      { label: t("distributor.id_number"), value: (application) => application.id_number_masked },
      { label: t("field.status"), value: (application) => badge(label("application_status", application.status), KIND[application.status]) },
      { label: t("distributor.review"), value: (application) => [application.review_reason, application.reviewed_at ? formatTime(application.reviewed_at) : null].filter(Boolean).join(" · ") },
      { label: t("field.created_at"), value: (application) => formatTime(application.created_at) },
      { label: "", value: (application) => actions(application, view) },
    ],
  });
  return h(
    "div",
    {},
    h("h1", {}, t("nav.distributors")),
    filterBar([{ name: "status", label: t("field.status"), options: STATUSES.map((s) => [s, label("application_status", s)]) }], view.query, view.go),
    table.el,
  );
}
