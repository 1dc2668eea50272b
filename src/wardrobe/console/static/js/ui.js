// Widgets every page uses: tables with keyset paging, forms that show the API's per-field
// errors, dialogs that ask for a reason before an action, notices. What the app has too is the
// kit's (/kit/js/ui.js); how an error reads is the console's own (with its code).
import { h } from "/kit/js/dom.js";
import { clearErrors, errorSlot, feedback, field, placeFormError } from "/kit/js/ui.js";
import { ApiError } from "./api.js";
import { t } from "./i18n.js";

export { badge, clearErrors, field, notify, section } from "/kit/js/ui.js";

/** The words of a failure: the API's own message (in the chosen language) and its code. */
export function describeError(error) {
  if (error instanceof ApiError) {
    if (error.code === "NETWORK_ERROR") return t("error.network");
    return `${error.message} (${error.code})`;
  }
  return String(error?.message || error);
}

export function errorBox(error, testid = "error") {
  const box = h("div", { class: "error-box", role: "alert", testid }, describeError(error));
  if (error instanceof ApiError && error.code === "TOTP_ENROLMENT_REQUIRED") {
    box.append(" ", h("a", { href: "#/account" }, t("account.totp.enrol")));
  }
  return box;
}

export const { loading, fill, pager } = feedback({ t, errorBox });

// -- tables ------------------------------------------------------------------------------------

/**
 * A table; each row ``data-testid="row"`` with ``data-id`` = rowId(row). Columns: {label, value
 * (row) -> text or node, class}. ``href(row)`` makes rows open a detail page.
 */
export function dataTable({ testid, columns, rows = [], rowId, href, empty = t("common.empty") }) {
  const body = h("tbody");
  const table = h(
    "table",
    { class: "data", testid },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.class, scope: "col" }, c.label)))),
    body,
  );
  const none = h("p", { class: "empty", testid: `${testid}-empty`, hidden: rows.length > 0 }, empty);

  function rowOf(row) {
    const target = href ? href(row) : null;
    const tr = h("tr", { testid: "row", dataset: { id: String(rowId(row)) }, class: target ? "clickable" : null });
    columns.forEach((column, index) => {
      let value = column.value(row);
      if (value === null || value === undefined || value === "") value = "—";
      if (index === 0 && target && !(value instanceof Node)) value = h("a", { href: target }, value);
      tr.append(h("td", { class: column.class, "data-label": column.label }, value));
    });
    if (target) {
      tr.addEventListener("click", (event) => {
        if (event.target.closest("a, button, input, select, textarea")) return;
        location.hash = target;
      });
    }
    return tr;
  }

  function add(more) {
    body.append(...more.map(rowOf));
    none.hidden = body.children.length > 0;
  }

  add(rows);
  return {
    el: h("div", { class: "table-wrap" }, table, none),
    add,
    replace(next) {
      body.replaceChildren();
      add(next);
    },
  };
}

/** A table fed page by page by ``load(cursor)`` -> {items, next_cursor}. */
export function pagedTable({ load, ...options }) {
  const table = dataTable(options);
  const paged = pager(load, table.add);
  return { el: h("div", {}, table.el, paged.el), ready: paged.ready };
}

// -- forms -------------------------------------------------------------------------------------

export function input(attrs = {}) {
  return h("input", { type: "text", autocomplete: "off", ...attrs });
}

export function textarea(attrs = {}) {
  return h("textarea", { rows: 3, ...attrs });
}

export function select(options, value, attrs = {}) {
  return h(
    "select",
    attrs,
    options.map(([optionValue, text]) => h("option", { value: optionValue, selected: optionValue === value }, text)),
  );
}

/** Show an error on the form: each {field, message} of a 422 next to its field (a nested path
 * such as "definition.steps.0.id" goes to the field "definition"), the rest above the buttons. */
export function showErrors(form, error) {
  clearErrors(form);
  const rest = [];
  const items = Array.isArray(error?.fieldErrors) ? error.fieldErrors : [];
  for (const item of items) {
    const name = item.field.split(".")[0];
    const slot = errorSlot(form, item.field) || errorSlot(form, name);
    if (slot) {
      slot.hidden = false;
      slot.append(h("div", {}, item.field === name ? item.message : `${item.field}: ${item.message}`));
    } else {
      rest.push(`${item.field}: ${item.message}`);
    }
  }
  if (items.length === 0 || rest.length > 0) {
    const box = errorBox(error, "form-error");
    for (const line of rest) box.append(h("div", {}, line));
    placeFormError(form, box);
  }
}

/** Run ``submit`` with the busy state of ``form`` shown; errors go onto the form. */
export async function submitting(form, submit) {
  const buttons = [...form.querySelectorAll("button")];
  buttons.forEach((b) => (b.disabled = true));
  clearErrors(form);
  try {
    return await submit();
  } catch (error) {
    showErrors(form, error);
    return undefined;
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

// -- dialogs -----------------------------------------------------------------------------------

function dialogField(spec) {
  let control;
  if (spec.type === "select") control = select(spec.options, spec.value ?? "");
  else if (spec.type === "textarea") control = textarea({ value: spec.value ?? "", maxlength: spec.max });
  else control = input({ type: spec.type || "text", value: spec.value ?? "", maxlength: spec.max, inputmode: spec.inputmode });
  if (spec.required) control.required = true;
  if (spec.testid) control.dataset.testid = spec.testid;
  return field(spec.name, spec.label, control, spec.hint);
}

/**
 * A modal form: fields (a required "reason" by default), confirm and cancel. ``submit(values)``
 * runs the action; its error stays in the dialog (a 403's message, a 409's), success closes it.
 * Resolves with what ``submit`` returned, or null if cancelled.
 */
export function actionDialog({ title, description, fields, confirmLabel, danger = false, submit }) {
  const specs = fields ?? [{ name: "reason", label: t("common.reason"), type: "textarea", required: true, max: 500, testid: "reason-input" }];
  return new Promise((resolve) => {
    const confirm = h("button", { type: "submit", class: danger ? "danger" : "primary", testid: "dialog-confirm" }, confirmLabel || t("common.confirm"));
    const cancel = h("button", { type: "button", testid: "dialog-cancel" }, t("common.cancel"));
    const form = h(
      "form",
      { method: "dialog", class: "dialog-form", novalidate: true },
      h("h2", {}, title),
      description ? h("p", { class: "muted" }, description) : null,
      specs.map(dialogField),
      h("div", { class: "actions" }, cancel, confirm),
    );
    const dialog = h("dialog", { class: "dialog", testid: "dialog" }, form);
    let result = null;
    cancel.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(result);
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const values = {};
      for (const spec of specs) {
        const control = form.elements.namedItem(spec.name);
        values[spec.name] = control.value.trim();
      }
      const missing = specs.filter((spec) => spec.required && values[spec.name].length < (spec.min ?? 2));
      if (missing.length > 0) {
        clearErrors(form);
        for (const spec of missing) {
          const slot = errorSlot(form, spec.name);
          slot.hidden = false;
          slot.append(t("common.required", { min: spec.min ?? 2 }));
        }
        return;
      }
      const done = await submitting(form, async () => ({ value: await submit(values) }));
      if (done) {
        result = done.value ?? true;
        dialog.close();
      }
    });
    document.body.append(dialog);
    dialog.showModal();
    form.querySelector("input, textarea, select")?.focus();
  });
}

// -- filters -----------------------------------------------------------------------------------

/**
 * A row of filters kept in the page's address (#/tasks?status=failed), so a filtered list can be
 * linked to and survives a reload. ``specs``: {name, label, type?, options?}.
 */
export function filterBar(specs, values, onApply) {
  const controls = specs.map((spec) => {
    let control;
    if (spec.options) control = select([["", t("common.any")], ...spec.options], values[spec.name] ?? "");
    else control = input({ type: spec.type || "text", value: values[spec.name] ?? "", placeholder: spec.placeholder });
    control.dataset.testid = `filter-${spec.name}`;
    return field(spec.name, spec.label, control);
  });
  const form = h(
    "form",
    { class: "filters", testid: "filters" },
    controls,
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "primary", testid: "filter-apply" }, t("common.search")),
      h("button", { type: "reset", testid: "filter-reset" }, t("common.reset")),
    ),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = {};
    for (const spec of specs) {
      const value = form.elements.namedItem(spec.name).value.trim();
      if (value) next[spec.name] = value;
    }
    onApply(next);
  });
  form.addEventListener("reset", (event) => {
    event.preventDefault();
    onApply({});
  });
  return form;
}
