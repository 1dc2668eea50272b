// A task as it runs: status and progress pushed over Socket.IO (live.js) while the page is open,
// or — while the socket is down — read from GET /api/v1/tasks/{id} every few seconds. States only
// move forward: an older snapshot (a slow poll, a late acknowledgement) never replaces a newer
// one. Once it succeeded: each result, a download, and "use as input" for the next feature.
import { button, h, link } from "/kit/js/dom.js";
import { get, post } from "../api.js";
import { formatTime, label, localized, t } from "../i18n.js";
import { live, watchTask } from "../live.js";
import { featureNamed, rememberResult, takeTask } from "../state.js";
import { badge, describeError, errorBox, loading, notify, section } from "../ui.js";

const POLL_MS = 3000;
const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const STATUS_KIND = { succeeded: "ok", failed: "bad", canceled: "muted", running: "live", queued: "live" };

export function statusBadge(status) {
  return badge(label("task_status", status), STATUS_KIND[status], { testid: "task-status", dataset: { status } });
}

const STAGE = { queued: 0, running: 1, succeeded: 2, failed: 2, canceled: 2 };

/** Whether ``next`` may replace ``current``: states move forward (equal times are taken). */
export function newer(current, next) {
  if (!current) return true;
  if (TERMINAL.has(current.status) || STAGE[next.status] < STAGE[current.status]) return false;
  const was = Date.parse(current.updated_at);
  const is = Date.parse(next.updated_at);
  return Number.isNaN(was) || Number.isNaN(is) || is >= was;
}

function progress(task) {
  const value = task.status === "succeeded" ? 100 : Number(task.progress) || 0;
  return h(
    "div",
    { class: "progress-row" },
    h("progress", { max: "100", value: String(value), testid: "task-progress", dataset: { value: String(value) } }),
    h("span", { class: "progress-text" }, `${value}%`),
  );
}

function steps(task) {
  if (!task.steps || task.steps.length === 0) return null;
  return h(
    "ol",
    { class: "steps", testid: "task-steps" },
    task.steps.map((step) => h("li", { class: ["step", `step-${step.status}`], dataset: { status: step.status } }, step.id)),
  );
}

function useAsInput(output) {
  rememberResult(output.key, output.url);
  location.hash = `#/features?use=${encodeURIComponent(output.key)}`;
}

function downloadLink(task, output, testid) {
  const name = `${task.feature}-${output.name}`;
  return link(output.url, t("task.download"), { download: name, target: "_blank", rel: "noopener noreferrer", testid, class: "button" });
}

/** The first picture, large, to download or to take on into another feature. */
function mainResult(task, output) {
  return h(
    "figure",
    { class: "result", testid: "result", dataset: { name: output.name } },
    h("img", { src: output.url, alt: label("output", output.name), testid: "result-image", decoding: "async" }),
    h(
      "figcaption",
      {},
      h("span", { class: "result-name" }, label("output", output.name)),
      h(
        "span",
        { class: "result-actions" },
        downloadLink(task, output, "result-download"),
        output.key ? button(t("task.use_as_input"), () => useAsInput(output), { testid: "use-as-input", class: "primary", dataset: { key: output.key } }) : null,
      ),
    ),
  );
}

/** Other files of the result (smaller previews, other formats): each to download. */
function otherResult(task, output) {
  const image = (output.content_type || "").startsWith("image/");
  return h(
    "li",
    { class: "other-result", testid: "other-result", dataset: { name: output.name } },
    image ? h("img", { class: "thumb", src: output.url, alt: "", loading: "lazy" }) : null,
    h("span", { class: "history-main" }, label("output", output.name)),
    downloadLink(task, output, "other-download"),
  );
}

function results(task) {
  if (task.files_purged_at) return h("p", { class: "muted", testid: "results-purged" }, t("task.purged"));
  const files = (task.outputs || []).filter((output) => output.url);
  const main = files.find((output) => (output.content_type || "").startsWith("image/"));
  const others = files.filter((output) => output !== main);
  const values = (task.outputs || []).filter((output) => !output.url && output.value !== undefined);
  return section(
    t("task.results"),
    main ? mainResult(task, main) : null,
    others.length > 0 ? h("ul", { class: "list other-results" }, others.map((output) => otherResult(task, output))) : null,
    values.map((output) => h("p", {}, h("strong", {}, label("output", output.name)), " ", JSON.stringify(output.value))),
  );
}

function failure(task) {
  const message = task.error?.message || label("task_status", task.status);
  return h(
    "div",
    { class: "error-box", role: "alert", testid: "task-error", dataset: { code: task.error?.code || "" } },
    message,
    task.refunded ? h("div", { class: "muted" }, t("task.refunded")) : null,
  );
}

function actions(task, reload) {
  const list = [link(`#/features/${encodeURIComponent(task.feature)}`, t("task.again"), { class: "button", testid: "run-again" })];
  if (!TERMINAL.has(task.status)) {
    list.unshift(
      button(t("task.cancel"), async (event) => {
        event.target.disabled = true;
        try {
          reload(await post(`/api/v1/tasks/${encodeURIComponent(task.id)}/cancel`), "cancel");
        } catch (error) {
          notify(describeError(error), "error");
          event.target.disabled = false;
        }
      }, { testid: "task-cancel", class: "danger" }),
    );
  }
  return h("div", { class: "toolbar" }, list);
}

function taskView(task, name, via, apply) {
  const queued = task.status === "queued" && task.queue_position !== null && task.queue_position !== undefined;
  return h(
    "div",
    { class: "task-view", testid: "task-view", dataset: { id: task.id, via } },
    link("#/history", `‹ ${t("nav.history")}`, { class: "back" }),
    h("h1", {}, name || task.feature, " ", statusBadge(task.status)),
    h("p", { class: "muted" }, formatTime(task.created_at), " · ", t("feature.cost", { n: task.quota_cost })),
    TERMINAL.has(task.status) ? null : h("p", { class: "muted live-note", testid: "live-note" }, queued ? t("task.queue_position", { n: task.queue_position }) : t("task.working")),
    progress(task),
    steps(task),
    task.status === "failed" || task.status === "canceled" ? failure(task) : null,
    task.status === "succeeded" ? results(task) : null,
    actions(task, apply),
  );
}

export function taskPage(view) {
  const id = decodeURIComponent(view.params[0]);
  const el = h("div", {}, loading());
  let current = null;
  let lastVia = "load";
  let name = null;

  function render() {
    el.replaceChildren(taskView(current, name, lastVia, apply));
  }

  function lookUpName(feature) {
    featureNamed(feature).then((found) => {
      name = localized(found, "name") || null;
      if (name && current) render();
    });
  }

  function apply(task, via) {
    if (!task || task.id !== id || !newer(current, task)) return;
    const same = current && current.status === task.status && current.progress === task.progress && current.updated_at === task.updated_at;
    if (!current) lookUpName(task.feature);
    current = task;
    if (same) return;
    lastVia = via;
    render();
  }

  async function read(via) {
    try {
      apply(await get(`/api/v1/tasks/${encodeURIComponent(id)}`), via);
    } catch (error) {
      if (!current) el.replaceChildren(errorBox(error));
    }
  }

  const created = takeTask(id);
  if (created) apply(created, "create");
  else read("load");
  view.onLeave(watchTask(id, apply));
  // The fallback: while no socket carries pushes, ask.
  const timer = setInterval(() => {
    if (!live() && current && !TERMINAL.has(current.status)) read("poll");
  }, POLL_MS);
  view.onLeave(() => clearInterval(timer));
  return el;
}
