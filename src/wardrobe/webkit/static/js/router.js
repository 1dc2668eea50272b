// The hash router of both sites' shells (#/tasks/42?status=failed) and their language switch.
// Routes are [pattern, nav key, page function]; a page function gets a view and returns DOM (or a
// promise of it); what it registered with view.onLeave runs before the next page is shown.
import { h, mount } from "./dom.js";

function parseHash(home) {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, search = ""] = raw.split("?");
  return { path: path || home, query: Object.fromEntries(new URLSearchParams(search)) };
}

// The address of ``path`` with ``query`` (empty values left out).
function hashOf(path, query) {
  const search = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== "" && v != null)).toString();
  return `#/${path}${search ? `?${search}` : ""}`;
}

/**
 * ``routes`` as above, ``home`` the path of an empty hash; ``shell(navKey)`` draws the frame and
 * returns the element a page goes into; ``t`` and ``errorBox`` are the site's; ``onShown()`` runs
 * after a page is shown. show() shows the page of the current hash; leave() runs the clean-ups.
 */
export function createRouter({ routes, home, shell, t, errorBox, onShown = () => null }) {
  let leaving = [];

  function leave() {
    for (const fn of leaving) {
      try {
        fn();
      } catch {
        // a page's clean-up must not stop the next page
      }
    }
    leaving = [];
  }

  async function show() {
    leave();
    const { path, query } = parseHash(home);
    const route = routes.find(([pattern]) => pattern.test(path));
    const [pattern, navKey, pageFn] = route || [null, null, null];
    const page = shell(navKey);
    if (!route) {
      mount(page, h("p", { class: "empty", testid: "not-found" }, t("shell.not_found")));
      return;
    }
    const view = {
      params: pattern.exec(path).slice(1),
      query,
      go: (nextQuery) => {
        location.hash = hashOf(path, nextQuery);
      },
      onLeave: (fn) => leaving.push(fn),
      reload: show,
    };
    try {
      mount(page, await pageFn(view));
    } catch (error) {
      mount(page, errorBox(error));
    }
    onShown();
  }

  return { show, leave };
}

/** The button that switches to the other language (named ``names[lang]``), then ``onSwitch()``. */
export function languageSwitch({ lang, setLang, t }, onSwitch, names) {
  const other = lang() === "zh" ? "en" : "zh";
  return h(
    "button",
    {
      type: "button",
      class: "lang-switch",
      testid: "lang-switch",
      title: t("shell.language"),
      onclick: () => {
        setLang(other);
        onSwitch();
      },
    },
    names[other],
  );
}
