// Record forms (plans, features, pipelines) described by field specs: the controls, and the JSON
// body read back from them. Each control is named as the API names its field, so the 422
// envelope's [{field, message}] lands next to the right control.
//
// spec: {name, label, type, options?, hint?, nullable?, rows?}; types: text, textarea, number,
// yuan (fen in the API, yuan on screen), select, checkbox, checkboxes (a list from options),
// list (comma-separated strings), ids (comma-separated integers), json, datetime.
import { h } from "/kit/js/dom.js";
import { formatFen, parseYuan } from "./i18n.js";
import { field, input, select, textarea } from "./ui.js";

const INTEGER = /^-?\d+$/;

function localDateTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function control(spec, value) {
  switch (spec.type) {
    case "textarea":
      return textarea({ value: value ?? "", rows: spec.rows || 3 });
    case "json":
      return textarea({ value: value === undefined ? "" : JSON.stringify(value, null, 2), rows: spec.rows || 8, class: "code", spellcheck: "false" });
    case "number":
      return input({ type: "number", value: value ?? "", step: "1" });
    case "yuan":
      return input({ inputmode: "decimal", value: value === null || value === undefined ? "" : formatFen(value).replace(/[¥,]/g, "") });
    case "select":
      return select(spec.options, value ?? "");
    case "checkbox":
      return input({ type: "checkbox", checked: Boolean(value) });
    case "checkboxes": {
      const chosen = new Set(value || []);
      return h(
        "div",
        { class: "checks", testid: `field-${spec.name}` },
        spec.options.map(([optionValue, text]) =>
          h("label", { class: "check" }, h("input", { type: "checkbox", value: optionValue, checked: chosen.has(optionValue), dataset: { group: spec.name } }), text),
        ),
      );
    }
    case "list":
    case "ids":
      return input({ value: (value || []).join(", ") });
    case "datetime":
      return input({ type: "datetime-local", value: localDateTime(value) });
    default:
      return input({ value: value ?? "" });
  }
}

/** The fields of ``specs`` filled with ``record``'s values. */
export function formFields(specs, record = {}) {
  return specs.map((spec) => {
    const el = control(spec, record[spec.name]);
    if (spec.type === "checkboxes") {
      const wrap = field(spec.name, spec.label, input({ type: "hidden" }), spec.hint);
      wrap.querySelector("input[type=hidden]").replaceWith(el);
      return wrap;
    }
    if (spec.readOnly) el.disabled = true;
    const wrap = field(spec.name, spec.label, el, spec.hint);
    if (spec.type === "checkbox") wrap.classList.add("field-check");
    return wrap;
  });
}

export class FormProblem extends Error {
  constructor(field, message) {
    super(message);
    this.data = [{ field, message }];
  }

  get fieldErrors() {
    return this.data;
  }
}

function read(spec, form) {
  if (spec.type === "checkboxes") {
    return [...form.querySelectorAll(`input[data-group="${spec.name}"]`)].filter((box) => box.checked).map((box) => box.value);
  }
  const el = form.elements.namedItem(spec.name);
  if (spec.type === "checkbox") return el.checked;
  const text = el.value.trim();
  if (text === "") return spec.nullable ? null : undefined;
  switch (spec.type) {
    case "number":
      // Not a whole number: sent as typed, and the API's 422 says what is wrong with it.
      return INTEGER.test(text) ? Number(text) : text;
    case "yuan": {
      const fen = parseYuan(text);
      return fen === null ? text : fen;
    }
    case "list":
      return text.split(/[,，\s]+/).filter(Boolean);
    case "ids":
      return text.split(/[,，\s]+/).filter(Boolean).map((item) => (INTEGER.test(item) ? Number(item) : item));
    case "json":
      try {
        return JSON.parse(text);
      } catch (error) {
        throw new FormProblem(spec.name, error.message);
      }
    case "datetime": {
      const date = new Date(text);
      return Number.isNaN(date.getTime()) ? text : date.toISOString();
    }
    default:
      return text;
  }
}

/** The JSON body of ``form`` for ``specs`` (read-only and unset optional fields left out). */
export function readForm(form, specs) {
  const body = {};
  for (const spec of specs) {
    if (spec.readOnly) continue;
    const value = read(spec, form);
    if (value !== undefined) body[spec.name] = value;
  }
  return body;
}
