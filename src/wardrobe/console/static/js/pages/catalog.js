// Features and their pipelines. Operators flip a feature's kill switch (with a reason); admins
// edit features and save new pipeline versions, and see the API's validation per field.
import { button, h, jsonBlock } from "/kit/js/dom.js";
import { get, post, put } from "../api.js";
import { formFields, readForm } from "../forms.js";
import { formatNumber, formatTime, label, t } from "../i18n.js";
import { can } from "../permissions.js";
import { actionDialog, badge, dataTable, fill, notify, section, submitting } from "../ui.js";

const FEATURE_SPECS = () => [
  { name: "key", label: t("feature.key"), hint: t("feature.key_hint") },
  { name: "name", label: t("feature.name") },
  { name: "description", label: t("feature.description"), type: "textarea" },
  { name: "name_en", label: t("feature.name_en"), nullable: true },
  { name: "description_en", label: t("feature.description_en"), type: "textarea", nullable: true },
  { name: "quota_cost", label: t("feature.quota_cost"), type: "number" },
  { name: "pipeline_key", label: t("feature.pipeline") },
  { name: "access_scope", label: t("feature.access_scope"), type: "select", options: ["plan", "whitelist"].map((s) => [s, label("access_scope", s)]) },
  { name: "plan_required", label: t("feature.plan_required"), nullable: true, hint: t("feature.plan_required_hint") },
  { name: "allowed_accounts", label: t("feature.allowed_accounts"), type: "ids", hint: t("feature.allowed_accounts_hint") },
  { name: "rate_limit_policy", label: t("feature.rate_limit"), nullable: true, hint: "10/minute;100/day" },
  { name: "sort_order", label: t("plan.sort_order"), type: "number" },
  { name: "is_enabled", label: t("feature.enabled"), type: "checkbox" },
  { name: "form_schema", label: t("feature.form_schema"), type: "json", rows: 10 },
];

const PIPELINE_SPECS = () => [
  { name: "key", label: t("pipeline.key") },
  { name: "definition", label: t("pipeline.definition"), type: "json", rows: 16 },
];

function recordForm({ testid, title, specs, record, save, onDone, onCancel }) {
  const form = h(
    "form",
    { class: "record-form", testid, novalidate: true },
    h("h2", {}, title),
    h("div", { class: "form-grid" }, formFields(specs, record)),
    h(
      "div",
      { class: "actions" },
      button(t("common.cancel"), onCancel, { testid: `${testid}-cancel` }),
      h("button", { type: "submit", class: "primary", testid: `${testid}-save` }, t("common.save")),
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const saved = await submitting(form, () => save(readForm(form, specs)));
    if (saved) onDone(saved);
  });
  return form;
}

function switchButton(feature, reload) {
  if (!can("catalog:switch") || feature.deleted_at) return null;
  const turningOff = feature.is_enabled;
  return button(turningOff ? t("feature.switch_off") : t("feature.switch_on"), async () => {
    const result = await actionDialog({
      title: `${turningOff ? t("feature.switch_off") : t("feature.switch_on")}: ${feature.key}`,
      description: turningOff ? t("feature.switch_off_hint") : null,
      danger: turningOff,
      submit: ({ reason }) => post(`/api/v1/admin/features/${feature.id}/switch`, { enabled: !turningOff, reason }),
    });
    if (result) {
      notify(result.is_enabled ? t("feature.on", { key: feature.key }) : t("feature.off", { key: feature.key }));
      reload();
    }
  }, { testid: turningOff ? "switch-off" : "switch-on", class: turningOff ? "danger" : null });
}

function featuresTable(features, { edit, reload }) {
  return dataTable({
    testid: "features-table",
    rows: features,
    rowId: (feature) => feature.id,
    columns: [
      { label: t("feature.key"), value: (feature) => feature.key },
      { label: t("feature.name"), value: (feature) => feature.name },
      {
        label: t("field.status"),
        value: (feature) =>
          feature.deleted_at
            ? badge(t("feature.retired"), "muted")
            : badge(feature.is_enabled ? t("feature.is_on") : t("feature.is_off"), feature.is_enabled ? "ok" : "bad"),
      },
      { label: t("feature.quota_cost"), value: (feature) => formatNumber(feature.quota_cost), class: "num" },
      { label: t("feature.access_scope"), value: (feature) => label("access_scope", feature.access_scope) },
      { label: t("feature.pipeline"), value: (feature) => feature.pipeline_key },
      { label: t("feature.rate_limit"), value: (feature) => feature.rate_limit_policy },
      { label: t("field.updated_at"), value: (feature) => formatTime(feature.updated_at) },
      {
        label: "",
        value: (feature) =>
          h(
            "div",
            { class: "row-actions" },
            switchButton(feature, reload),
            can("catalog:write") && !feature.deleted_at ? button(t("common.edit"), () => edit(feature), { testid: "edit-feature" }) : null,
          ),
      },
    ],
  }).el;
}

function pipelinesTable(pipelines, show) {
  return dataTable({
    testid: "pipelines-table",
    rows: pipelines,
    rowId: (pipeline) => pipeline.id,
    columns: [
      { label: t("pipeline.key"), value: (pipeline) => pipeline.key },
      { label: t("pipeline.version"), value: (pipeline) => `v${pipeline.version}`, class: "num" },
      { label: t("pipeline.steps"), value: (pipeline) => (pipeline.definition?.steps || []).map((s) => s.id).join(" → ") },
      { label: t("field.created_at"), value: (pipeline) => formatTime(pipeline.created_at) },
      { label: "", value: (pipeline) => button(t("pipeline.show"), () => show(pipeline), { testid: "show-pipeline" }) },
    ],
  }).el;
}

/** The form of a new feature (``feature`` null) or of an existing one. */
function featureForm(feature, onSaved, onCancel) {
  const creating = !feature;
  return recordForm({
    testid: "feature-form",
    title: creating ? t("feature.create") : t("feature.edit", { key: feature.key }),
    specs: FEATURE_SPECS(),
    record: feature || { access_scope: "plan", is_enabled: true, quota_cost: 1, sort_order: 0, allowed_accounts: [], form_schema: { type: "object", properties: {}, additionalProperties: false } },
    save: (body) => (creating ? post("/api/v1/admin/features", body) : put(`/api/v1/admin/features/${feature.id}`, body)),
    onDone: (saved) => {
      notify(t("feature.saved", { key: saved.key }));
      onSaved();
    },
    onCancel,
  });
}

/** The form of a new pipeline, or of a new version of ``base``. */
function pipelineForm(base, onSaved, onCancel) {
  return recordForm({
    testid: "pipeline-form",
    title: t("pipeline.create"),
    specs: PIPELINE_SPECS(),
    record: base ? { key: base.key, definition: base.definition } : { definition: { steps: [], outputs: {} } },
    save: (body) => post("/api/v1/admin/pipelines", body),
    onDone: (saved) => {
      notify(t("pipeline.saved", { key: saved.key, version: saved.version }));
      onSaved();
    },
    onCancel,
  });
}

export function featuresPage() {
  const editor = h("div");
  const features = h("div");
  const pipelines = h("div");
  const close = () => editor.replaceChildren();

  function loadFeatures() {
    fill(features, () => get("/api/v1/admin/features"), (rows) => featuresTable(rows, { edit: editFeature, reload: loadFeatures }));
  }

  function loadPipelines() {
    fill(pipelines, () => get("/api/v1/admin/pipelines"), (rows) => pipelinesTable(rows, showPipeline));
  }

  function openEditor(form) {
    editor.replaceChildren(section(null, form));
    editor.scrollIntoView({ block: "start" });
  }

  function editFeature(feature) {
    const saved = () => {
      close();
      loadFeatures();
    };
    openEditor(featureForm(feature, saved, close));
  }

  function showPipeline(pipeline) {
    openEditor(
      h(
        "div",
        { testid: "pipeline-view" },
        h("h2", {}, `${pipeline.key} v${pipeline.version}`),
        jsonBlock(pipeline.definition),
        h(
          "div",
          { class: "actions" },
          button(t("common.close"), close),
          can("catalog:write") ? button(t("pipeline.new_version"), () => newPipeline(pipeline), { class: "primary", testid: "new-version" }) : null,
        ),
      ),
    );
  }

  function newPipeline(base) {
    const saved = () => {
      close();
      loadPipelines();
    };
    openEditor(pipelineForm(base, saved, close));
  }

  loadFeatures();
  loadPipelines();
  return h(
    "div",
    {},
    h("h1", {}, t("nav.features")),
    h(
      "div",
      { class: "toolbar" },
      can("catalog:write") ? button(t("feature.create"), () => editFeature(null), { testid: "new-feature", class: "primary" }) : null,
      can("catalog:write") ? button(t("pipeline.create"), () => newPipeline(null), { testid: "new-pipeline" }) : null,
    ),
    editor,
    section(t("feature.title"), features),
    section(t("pipeline.title"), pipelines),
  );
}
