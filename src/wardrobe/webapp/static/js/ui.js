// Widgets every page uses: notices, the API's errors in words (a 422's fields next to their
// controls), lists fed page by page through keyset cursors, badges.
import { ApiError } from "./api.js";
import { h, mount } from "./dom.js";
import { t } from "./i18n.js";

// -- notices -----------------------------------------------------------------------------------

function toasts() {
  let box = document.getElementById("toasts");
  if (!box) {
    box = h("div", { id: "toasts", class: "toasts", role: "status" });
    document.body.append(box);
  }
  return box;
}

export function notify(text, kind = "ok") {
  const item = h("div", { class: ["toast", `toast-${kind}`], testid: "toast" }, text);
  toasts().append(item);
  setTimeout(() => item.remove(), kind === "ok" ? 4000 : 8000);
}

/** The words of a failure: the API's own message (in the chosen language). */
export function describeError(error) {
  if (error instanceof ApiError) {
    if (error.code === "NETWORK_ERROR") return t("error.network");
    return error.message || error.code;
  }
  return String(error?.message || error);
}

/** A failure for the user: its message, a validation error's fields, and the code for support. */
export function errorBox(error, testid = "error") {
  const box = h("div", { class: "error-box", role: "alert", testid, dataset: { code: error?.code || "" } }, describeError(error));
  if (error instanceof ApiError) {
    const fields = error.fieldErrors;
    if (fields.length > 0) box.append(h("ul", { class: "plain" }, fields.map((item) => h("li", {}, `${item.field}: ${item.message}`))));
    if (error.code === "QUOTA_INSUFFICIENT") box.append(" ", h("a", { href: "#/plans", testid: "error-buy" }, t("error.buy_more")));
    if (error.code !== "NETWORK_ERROR") box.append(h("small", { class: "error-code" }, error.code));
  }
  return box;
}

export function loading() {
  return h("div", { class: "loading", testid: "loading" }, t("common.loading"));
}

/** Render what ``load()`` gives into ``el`` (with ``render``), or the error it fails with. */
export async function fill(el, load, render) {
  mount(el, loading());
  try {
    const value = await load();
    mount(el, render(value));
    return value;
  } catch (error) {
    mount(el, errorBox(error));
    return undefined;
  }
}

export function badge(text, kind, attrs = {}) {
  return h("span", { class: ["badge", kind ? `badge-${kind}` : null], ...attrs }, text);
}

export function section(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", {}, title) : null, ...children);
}

// -- lists -------------------------------------------------------------------------------------

/** A list fed page by page by ``load(cursor)`` -> {items, next_cursor}; ``item(row)`` -> <li>. */
export function pagedList({ testid, load, item, empty = t("common.empty") }) {
  const list = h("ul", { class: "list", testid });
  const none = h("p", { class: "empty", testid: `${testid}-empty`, hidden: true }, empty);
  const status = h("div", { class: "pager" });
  const more = h("button", { type: "button", testid: "more", hidden: true }, t("common.more"));
  let cursor = null;

  async function next() {
    more.disabled = true;
    mount(status, loading());
    try {
      const page = await load(cursor);
      list.append(...page.items.map(item));
      cursor = page.next_cursor;
      status.replaceChildren();
      none.hidden = list.children.length > 0;
      more.hidden = !cursor;
    } catch (error) {
      mount(status, errorBox(error));
    } finally {
      more.disabled = false;
    }
  }

  more.addEventListener("click", next);
  const ready = next();
  return { el: h("div", {}, list, none, status, h("div", { class: "pager" }, more)), ready };
}

// -- forms -------------------------------------------------------------------------------------

/** A labelled control with a slot for its errors; ``control`` gets name=``name``. */
export function field(name, labelText, control, hint) {
  control.name = name;
  control.id = control.id || `f-${name}-${Math.random().toString(36).slice(2, 8)}`;
  if (!control.dataset.testid) control.dataset.testid = `field-${name}`;
  return h(
    "div",
    { class: "field", dataset: { field: name } },
    h("label", { for: control.id }, labelText),
    control,
    hint ? h("small", { class: "hint" }, hint) : null,
    h("div", { class: "field-error", testid: `error-${name}`, hidden: true }),
  );
}

export function clearErrors(form) {
  for (const slot of form.querySelectorAll(".field-error")) {
    slot.hidden = true;
    slot.replaceChildren();
  }
  for (const box of form.querySelectorAll(".form-error")) box.remove();
}

/** Show an error on ``form``: each {field, message} of a 422 next to its field (``inputs.image``
 * goes to the field "image"; ``prefix`` is what the API puts before the form's own names), the
 * rest above the buttons. */
export function showErrors(form, error, prefix = "") {
  clearErrors(form);
  const rest = [];
  for (const item of error?.fieldErrors || []) {
    const name = item.field.startsWith(prefix) ? item.field.slice(prefix.length).split(".")[0] : null;
    const slot = name ? form.querySelector(`.field[data-field="${CSS.escape(name)}"] .field-error`) : null;
    if (slot) {
      slot.hidden = false;
      slot.append(h("div", {}, item.message));
    } else {
      rest.push(item);
    }
  }
  if (rest.length > 0 || (error?.fieldErrors || []).length === 0) {
    const shown = rest.length > 0 && error instanceof ApiError ? new ApiError(error.status, error.code, error.message, rest) : error;
    const box = errorBox(shown, "form-error");
    box.classList.add("form-error");
    const actions = form.querySelector(".actions");
    if (actions) actions.before(box);
    else form.append(box);
  }
}
