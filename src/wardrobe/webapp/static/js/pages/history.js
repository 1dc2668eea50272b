// The user's tasks, newest first, a page at a time (keyset cursors: "more" asks for the next);
// each opens its task view.
import { h } from "/kit/js/dom.js";
import { get } from "../api.js";
import { formatTime, localized, t } from "../i18n.js";
import { loadFeatures } from "../state.js";
import { pagedList } from "../ui.js";
import { statusBadge } from "./task.js";

function thumbnail(task) {
  const image = (task.outputs || []).find((output) => output.url && (output.content_type || "").startsWith("image/"));
  return image ? h("img", { class: "thumb", src: image.url, alt: "", loading: "lazy" }) : h("span", { class: "thumb thumb-empty" });
}

export function historyPage() {
  const names = new Map();
  const list = pagedList({
    testid: "history-list",
    empty: t("history.empty"),
    load: async (cursor) => {
      if (names.size === 0) {
        const features = await loadFeatures().catch(() => []);
        for (const feature of features) names.set(feature.key, localized(feature, "name"));
      }
      return get("/api/v1/tasks", { limit: 20, cursor });
    },
    item: (task) =>
      h(
        "li",
        { testid: "history-item", dataset: { id: task.id, status: task.status } },
        h(
          "a",
          { class: "history-item", href: `#/tasks/${encodeURIComponent(task.id)}` },
          thumbnail(task),
          h("span", { class: "history-main" }, h("strong", {}, names.get(task.feature) || task.feature), h("span", { class: "muted" }, formatTime(task.created_at))),
          statusBadge(task.status),
        ),
      ),
  });
  return h("div", {}, h("h1", {}, t("nav.history")), list.el);
}
