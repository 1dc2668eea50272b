// Widgets both sites build on: notices, a region filled by what a load gives, a form field with a
// slot for its errors, and keyset paging (the "more" button under a list or a table). The words
// come from the site's t(), and a failure looks as the site's errorBox() makes it.
import { h, mount } from "./dom.js";

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

export function section(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", {}, title) : null, ...children);
}

export function badge(text, kind, attrs = {}) {
  return h("span", { class: ["badge", kind ? `badge-${kind}` : null], ...attrs }, text);
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

/** The error slot of the field ``name`` of ``form``, or null. */
export function errorSlot(form, name) {
  return form.querySelector(`.field[data-field="${CSS.escape(name)}"] .field-error`);
}

export function clearErrors(form) {
  for (const slot of form.querySelectorAll(".field-error")) {
    slot.hidden = true;
    slot.replaceChildren();
  }
  for (const box of form.querySelectorAll(".form-error")) box.remove();
}

/** Put ``box`` (an error of the whole form) above the form's buttons. */
export function placeFormError(form, box) {
  box.classList.add("form-error");
  const actions = form.querySelector(".actions");
  if (actions) actions.before(box);
  else form.append(box);
}

// -- what needs the site's words ---------------------------------------------------------------

/** loading(), fill() and pager() with the site's ``t`` and ``errorBox(error)``. */
export function feedback({ t, errorBox }) {
  function loading() {
    return h("div", { class: "loading", testid: "loading" }, t("common.loading"));
  }

  /** Render what ``load()`` gives into ``el`` (with ``render``), or the error it fails with. */
  async function fill(el, load, render) {
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

  /**
   * Keyset paging: ``load(cursor)`` -> {items, next_cursor}, each page's items handed to
   * ``add(items)``. ``el``: the status and the "more" button, to put under what ``add`` fills;
   * ``ready``: the first page's promise.
   */
  function pager(load, add) {
    const status = h("div", { class: "pager" });
    const more = h("button", { type: "button", testid: "more", hidden: true }, t("common.more"));
    let cursor = null;

    async function next() {
      more.disabled = true;
      mount(status, loading());
      try {
        const page = await load(cursor);
        add(page.items);
        cursor = page.next_cursor;
        status.replaceChildren();
        more.hidden = !cursor;
      } catch (error) {
        mount(status, errorBox(error));
      } finally {
        more.disabled = false;
      }
    }

    more.addEventListener("click", next);
    return { el: [status, h("div", { class: "pager" }, more)], ready: next() };
  }

  return { loading, fill, pager };
}
