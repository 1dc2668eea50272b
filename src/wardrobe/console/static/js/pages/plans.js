// What is sold: every plan, active or not; admins create and edit them (a change needs a reason).
import { button, h } from "/kit/js/dom.js";
import { get, patch, post } from "../api.js";
import { formFields, readForm } from "../forms.js";
import { formatFen, formatNumber, formatTime, label, t } from "../i18n.js";
import { can } from "../permissions.js";
import { badge, dataTable, fill, notify, section, submitting } from "../ui.js";

const CHANNELS = ["wechat_jsapi", "wechat_native", "alipay_page", "alipay_wap", "alipay_qr"];

function specs(creating) {
  return [
    { name: "sku", label: "SKU", readOnly: !creating, hint: creating ? t("plan.sku_hint") : null },
    { name: "kind", label: t("field.kind"), type: "select", options: ["membership", "quota_pack"].map((k) => [k, label("plan_kind", k)]) },
    { name: "name", label: t("plan.name") },
    { name: "name_en", label: t("plan.name_en"), nullable: true },
    { name: "price_fen", label: t("plan.price"), type: "yuan", hint: t("plan.price_hint") },
    { name: "quota", label: t("plan.quota"), type: "number" },
    { name: "period_days", label: t("plan.period_days"), type: "number", nullable: true, hint: t("plan.period_hint") },
    { name: "tier", label: t("plan.tier"), nullable: true },
    { name: "features", label: t("plan.features"), type: "list", hint: t("plan.features_hint") },
    { name: "channels", label: t("plan.channels"), type: "checkboxes", options: CHANNELS.map((c) => [c, label("channel", c)]), hint: t("plan.channels_hint") },
    { name: "sort_order", label: t("plan.sort_order"), type: "number" },
    { name: "is_active", label: t("plan.active"), type: "checkbox" },
    { name: "valid_from", label: t("plan.valid_from"), type: "datetime", nullable: true },
    { name: "valid_to", label: t("plan.valid_to"), type: "datetime", nullable: true },
    { name: "reason", label: t("common.reason"), type: "textarea", hint: creating ? t("plan.reason_optional") : null },
  ];
}

function planForm(plan, onSaved, onCancel) {
  const creating = !plan;
  const fieldSpecs = specs(creating);
  const record = plan || { kind: "quota_pack", is_active: true, sort_order: 0, features: [], channels: [] };
  const form = h(
    "form",
    { class: "record-form", testid: "plan-form", novalidate: true },
    h("h2", {}, creating ? t("plan.create") : t("plan.edit", { sku: plan.sku })),
    h("div", { class: "form-grid" }, formFields(fieldSpecs, record)),
    h(
      "div",
      { class: "actions" },
      button(t("common.cancel"), onCancel, { testid: "plan-cancel" }),
      h("button", { type: "submit", class: "primary", testid: "plan-save" }, t("common.save")),
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const saved = await submitting(form, () => {
      const body = readForm(form, fieldSpecs);
      if (creating) return post("/api/v1/admin/plans", body);
      return patch(`/api/v1/admin/plans/${encodeURIComponent(plan.sku)}`, body);
    });
    if (saved) onSaved(saved);
  });
  return form;
}

function plansTable(plans, edit) {
  const editable = can("plans:manage");
  return dataTable({
    testid: "plans-table",
    rows: plans,
    rowId: (plan) => plan.sku,
    columns: [
      { label: "SKU", value: (plan) => plan.sku },
      { label: t("plan.name"), value: (plan) => [plan.name, plan.name_en ? ` / ${plan.name_en}` : ""].join("") },
      { label: t("field.kind"), value: (plan) => label("plan_kind", plan.kind) },
      { label: t("plan.price"), value: (plan) => formatFen(plan.price_fen), class: "num" },
      { label: t("plan.quota"), value: (plan) => formatNumber(plan.quota), class: "num" },
      { label: t("plan.period_days"), value: (plan) => (plan.period_days ? String(plan.period_days) : null), class: "num" },
      { label: t("plan.channels"), value: (plan) => (plan.channels?.length ? plan.channels.map((c) => label("channel", c)).join(", ") : t("plan.all_channels")) },
      { label: t("plan.active"), value: (plan) => badge(plan.is_active ? t("common.yes") : t("common.no"), plan.is_active ? "ok" : "muted") },
      { label: t("plan.validity"), value: (plan) => (plan.valid_from || plan.valid_to ? `${formatTime(plan.valid_from)} – ${formatTime(plan.valid_to)}` : null) },
      { label: "", value: (plan) => (editable ? button(t("common.edit"), () => edit(plan), { testid: "edit-plan" }) : null) },
    ],
  }).el;
}

export function plansPage() {
  const editor = h("div");
  const list = h("div");

  function closeEditor() {
    editor.replaceChildren();
  }

  function open(plan) {
    editor.replaceChildren(
      section(
        null,
        planForm(
          plan,
          (saved) => {
            notify(t("plan.saved", { sku: saved.sku }));
            closeEditor();
            load();
          },
          closeEditor,
        ),
      ),
    );
    editor.scrollIntoView({ block: "start" });
  }

  function load() {
    fill(list, () => get("/api/v1/admin/plans"), (plans) => plansTable(plans, open));
  }

  load();
  return h(
    "div",
    {},
    h("h1", {}, t("nav.plans")),
    h("div", { class: "toolbar" }, can("plans:manage") ? button(t("plan.create"), () => open(null), { testid: "new-plan", class: "primary" }) : null),
    editor,
    list,
  );
}
