// A feature's form, generated from its form_schema (JSON Schema): an image input (`format:
// "image-key"`) is a file input that uploads the picture as soon as it is chosen (upload.js) and
// holds its object key — or holds the key of an earlier result given to it; enumerations are
// selects, numbers number inputs with their bounds, booleans checkboxes, other strings text. Each
// control is named as the schema names its property, so the API's 422 (`inputs.<name>`) lands
// next to it. The run button waits while an upload is under way (busy()).
import { h } from "/kit/js/dom.js";
import { t } from "./i18n.js";
import { IMAGE_TYPES, uploadImage } from "./upload.js";
import { errorBox, field } from "./ui.js";

const INTEGER = /^-?\d+$/;

export function isImage(prop) {
  return prop && prop.type === "string" && prop.format === "image-key";
}

/** The names of the schema's image inputs, in the schema's order. */
export function imageFields(schema) {
  return Object.entries(schema?.properties || {})
    .filter(([, prop]) => isImage(prop))
    .map(([name]) => name);
}

function imageControl(name, given, onBusy) {
  const state = { key: given?.key || null, busy: false, preview: null };
  const file = h("input", { type: "file", accept: IMAGE_TYPES.join(","), testid: "file-input", dataset: { field: name } });
  const preview = h("img", { class: "preview", testid: "image-preview", alt: "", hidden: !given?.url, src: given?.url || null });
  const status = h("div", { class: "upload-status", testid: "upload-status", dataset: { state: state.key ? "done" : "idle" } }, given?.key ? t("form.using_result") : "");

  function show(stateName, text) {
    status.dataset.state = stateName;
    status.replaceChildren(text);
  }

  file.addEventListener("change", async () => {
    const chosen = file.files && file.files[0];
    if (!chosen) return;
    state.key = null;
    if (!IMAGE_TYPES.includes(chosen.type)) {
      show("error", t("form.bad_type"));
      return;
    }
    if (state.preview) URL.revokeObjectURL(state.preview);
    state.preview = URL.createObjectURL(chosen);
    preview.src = state.preview;
    preview.hidden = false;
    state.busy = true;
    onBusy();
    show("uploading", t("form.uploading"));
    try {
      state.key = await uploadImage(chosen);
      show("done", t("form.uploaded"));
    } catch (error) {
      show("error", "");
      status.append(errorBox(error, "upload-error"));
    } finally {
      state.busy = false;
      onBusy();
    }
  });
  return { image: true, el: file, before: preview, after: status, read: () => state.key ?? undefined, busy: () => state.busy };
}

function valueControl(prop) {
  if (Array.isArray(prop.enum)) {
    const select = h("select", {}, prop.enum.map((value, index) => h("option", { value: String(index), selected: value === prop.default }, String(value))));
    return { el: select, read: () => prop.enum[Number(select.value)] };
  }
  if (prop.type === "boolean") {
    const box = h("input", { type: "checkbox", checked: prop.default === true });
    return { el: box, read: () => box.checked };
  }
  if (prop.type === "integer" || prop.type === "number") {
    const integer = prop.type === "integer";
    const box = h("input", { type: "number", inputmode: integer ? "numeric" : "decimal", step: integer ? "1" : "any", min: prop.minimum, max: prop.maximum, value: prop.default ?? "" });
    return {
      el: box,
      read: () => {
        const text = box.value.trim();
        if (text === "") return undefined;
        // Not a number of the right kind: sent as typed, and the API's 422 says what is wrong.
        if (integer) return INTEGER.test(text) ? Number(text) : text;
        return Number.isFinite(Number(text)) ? Number(text) : text;
      },
    };
  }
  const long = !prop.maxLength || prop.maxLength > 100;
  const box = long ? h("textarea", { rows: 3, maxlength: prop.maxLength }) : h("input", { type: "text", maxlength: prop.maxLength });
  box.value = typeof prop.default === "string" ? prop.default : "";
  return { el: box, read: () => (box.value.trim() === "" ? undefined : box.value) };
}

/**
 * The controls of ``schema``; ``given`` = {name: {key, url}} fills image inputs with keys the user
 * already has (a result). ``onBusy()`` is called when an upload starts or ends.
 */
export function schemaForm(schema, { given = {}, onBusy = () => {} } = {}) {
  const required = new Set(schema?.required || []);
  const controls = [];
  const fields = Object.entries(schema?.properties || {}).map(([name, prop]) => {
    const control = isImage(prop) ? imageControl(name, given[name], onBusy) : valueControl(prop);
    controls.push([name, control]);
    const title = `${prop.title || name}${required.has(name) ? " *" : ""}`;
    const wrap = field(name, title, control.el, prop.description);
    if (control.before) control.el.before(control.before);
    if (control.after) control.el.after(control.after);
    if (isImage(prop)) wrap.classList.add("field-image");
    if (prop.type === "boolean") wrap.classList.add("field-check");
    return wrap;
  });
  return {
    fields,
    busy: () => controls.some(([, control]) => control.image && control.busy()),
    /** The task's inputs; unset optional values left out. */
    read() {
      const inputs = {};
      for (const [name, control] of controls) {
        const value = control.read();
        if (value !== undefined) inputs[name] = value;
      }
      return inputs;
    },
    /** Required image inputs that hold no key yet. */
    missingImages: () => controls.filter(([name, control]) => required.has(name) && control.image && control.read() === undefined).map(([name]) => name),
  };
}
