// Widgets every page uses: notices, the API's errors in words (a 422's fields next to their
// controls), lists fed page by page through keyset cursors, badges. What the console has too is
// the kit's (/kit/js/ui.js); how an error reads is the app's own (its code small, for support).
import { h } from "/kit/js/dom.js";
import { clearErrors, errorSlot, feedback, placeFormError } from "/kit/js/ui.js";
import { ApiError } from "./api.js";
import { t } from "./i18n.js";

export { badge, clearErrors, field, notify, section } from "/kit/js/ui.js";

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

export const { loading, fill, pager } = feedback({ t, errorBox });

// -- lists -------------------------------------------------------------------------------------

/** A list fed page by page by ``load(cursor)`` -> {items, next_cursor}; ``item(row)`` -> <li>. */
export function pagedList({ testid, load, item, empty = t("common.empty") }) {
  const list = h("ul", { class: "list", testid });
  const none = h("p", { class: "empty", testid: `${testid}-empty`, hidden: true }, empty);
  const paged = pager(load, (items) => {
    list.append(...items.map(item));
    none.hidden = list.children.length > 0;
  });
  return { el: h("div", {}, list, none, paged.el), ready: paged.ready };
}

// -- forms -------------------------------------------------------------------------------------

/** Show an error on ``form``: each {field, message} of a 422 next to its field (``inputs.image``
 * goes to the field "image"; ``prefix`` is what the API puts before the form's own names), the
 * rest above the buttons. */
export function showErrors(form, error, prefix = "") {
  clearErrors(form);
  const rest = [];
  for (const item of error?.fieldErrors || []) {
    const name = item.field.startsWith(prefix) ? item.field.slice(prefix.length).split(".")[0] : null;
    const slot = name ? errorSlot(form, name) : null;
    if (slot) {
      slot.hidden = false;
      slot.append(h("div", {}, item.message));
    } else {
      rest.push(item);
    }
  }
  if (rest.length > 0 || (error?.fieldErrors || []).length === 0) {
    const shown = rest.length > 0 && error instanceof ApiError ? new ApiError(error.status, error.code, error.message, rest) : error;
    placeFormError(form, errorBox(shown, "form-error"));
  }
}
