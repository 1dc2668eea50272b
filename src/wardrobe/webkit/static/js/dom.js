// Building the page, for both sites. Everything the API sends may come from users (nicknames,
// reasons, prompts, names of files), so text only ever enters the document as text nodes or
// attribute values: no module parses HTML from a string, and the files tests of the kit and of
// each site (tests/fixtures/static_sites.py) keep it that way.

const SVG_NS = "http://www.w3.org/2000/svg";

function applyAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    else if (key === "testid") el.dataset.testid = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "value" && "value" in el) el.value = value;
    else if (key === "checked" || key === "disabled" || key === "selected" || key === "hidden") el[key] = Boolean(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

// Nested arrays are flattened; null, undefined and false are skipped.
function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** h("li", {testid: "item"}, "text", node, [more]): an element; strings become text nodes. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  applyAttrs(el, attrs);
  return append(el, children);
}

/** An SVG element (charts). */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key === "testid") el.setAttribute("data-testid", value);
    else el.setAttribute(key, String(value));
  }
  return append(el, children);
}

/** Replace what ``el`` holds with ``children``. */
export function mount(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Pretty JSON as text (a <pre> of it), for inputs, outputs, before/after. */
export function jsonBlock(value, testid) {
  return h("pre", { class: "json", testid }, value === undefined ? "" : JSON.stringify(value, null, 2));
}

/** A <dl> of [label, value, testid?] entries; values are text or nodes, an empty one a dash. */
export function facts(pairs, testid) {
  return h(
    "dl",
    { class: "facts", testid },
    pairs.filter(Boolean).map(([label, value, id]) => [
      h("dt", {}, label),
      h("dd", { testid: id }, value === null || value === undefined || value === "" ? "—" : value),
    ]),
  );
}

export function button(label, onclick, attrs = {}) {
  return h("button", { type: "button", onclick, ...attrs }, label);
}

export function link(href, label, attrs = {}) {
  return h("a", { href, ...attrs }, label);
}
