// The gallery of what the user may run, and a feature's form (generated from its form_schema).
// With ?use=<result key> the gallery is a chooser: pick the feature the result goes into next,
// and its first image input holds that key (the API takes the user's own results as inputs).
import { h, link } from "/kit/js/dom.js";
import { ApiError, post } from "../api.js";
import { localized, t } from "../i18n.js";
import { imageFields, schemaForm } from "../schema_form.js";
import { loadFeatures, rememberTask, resultUrl } from "../state.js";
import { clearErrors, fill, showErrors } from "../ui.js";

function withUse(href, use) {
  return use ? `${href}?use=${encodeURIComponent(use)}` : href;
}

function cost(feature) {
  return t("feature.cost", { n: feature.quota_cost });
}

function card(feature, use) {
  return h(
    "a",
    { class: "feature-card card", href: withUse(`#/features/${encodeURIComponent(feature.key)}`, use), testid: "feature-card", dataset: { key: feature.key } },
    h("h2", {}, localized(feature, "name")),
    h("p", { class: "muted" }, localized(feature, "description")),
    h("span", { class: "badge" }, cost(feature)),
  );
}

function chooserBanner(use) {
  const url = resultUrl(use);
  return h(
    "div",
    { class: "chooser card", testid: "chooser-banner" },
    url ? h("img", { class: "thumb", src: url, alt: "" }) : null,
    h("div", {}, h("strong", {}, t("feature.choose_for_result")), h("p", { class: "muted" }, t("feature.choose_hint"))),
    link("#/features", t("common.cancel"), { class: "chooser-cancel" }),
  );
}

export function galleryPage(view) {
  const use = view.query.use || "";
  const grid = h("div", { class: "feature-grid", testid: "feature-grid" });
  fill(grid, loadFeatures, (features) => {
    const shown = use ? features.filter((feature) => imageFields(feature.form_schema).length > 0) : features;
    if (shown.length === 0) return h("p", { class: "empty", testid: "features-empty" }, t("feature.none"));
    return shown.map((feature) => card(feature, use));
  });
  return h("div", {}, h("h1", {}, t("nav.features")), use ? chooserBanner(use) : null, grid);
}

function idempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function featureForm(feature, use) {
  const images = imageFields(feature.form_schema);
  const given = use && images.length > 0 ? { [images[0]]: { key: use, url: resultUrl(use) } } : {};
  const submit = h("button", { type: "submit", class: "primary wide", testid: "run-submit" }, t("feature.run", { n: feature.quota_cost }));
  const form = h("form", { class: "card feature-form", testid: "feature-form", dataset: { key: feature.key }, novalidate: true });
  const controls = schemaForm(feature.form_schema, { given, onBusy: () => (submit.disabled = controls.busy()) });
  // One key per intent: a retry of the same inputs after no answer (the network) or a 5xx reuses
  // it, so the API never runs (or charges) the same request twice; any other change is a new task.
  let attempt = null;

  form.append(...controls.fields, h("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    if (controls.busy()) return;
    const missing = controls.missingImages();
    if (missing.length > 0) {
      const data = missing.map((name) => ({ field: `inputs.${name}`, message: t("form.image_required") }));
      showErrors(form, new ApiError(422, "VALIDATION_FAILED", t("form.image_required"), data), "inputs.");
      return;
    }
    const body = { feature: feature.key, inputs: controls.read() };
    const text = JSON.stringify(body);
    if (!attempt || attempt.text !== text || attempt.answered) attempt = { text, key: idempotencyKey(), answered: false };
    submit.disabled = true;
    try {
      const task = await post("/api/v1/tasks", body, { "Idempotency-Key": attempt.key });
      rememberTask(task);
      location.hash = `#/tasks/${encodeURIComponent(task.id)}`;
    } catch (error) {
      attempt.answered = error instanceof ApiError && error.status >= 400 && error.status < 500;
      showErrors(form, error, "inputs.");
    } finally {
      submit.disabled = controls.busy();
    }
  });
  return form;
}

export function featurePage(view) {
  const key = decodeURIComponent(view.params[0]);
  const use = view.query.use || "";
  const el = h("div", {});
  fill(el, loadFeatures, (features) => {
    const feature = features.find((item) => item.key === key);
    if (!feature) return h("p", { class: "empty", testid: "not-found" }, t("feature.unknown"));
    return [
      link(withUse("#/features", use), `‹ ${t("nav.features")}`, { class: "back" }),
      h("h1", {}, localized(feature, "name")),
      h("p", { class: "muted" }, localized(feature, "description"), " · ", cost(feature)),
      featureForm(feature, use),
    ];
  });
  return el;
}
