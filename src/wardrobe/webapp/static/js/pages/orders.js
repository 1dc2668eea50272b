// An order after it was placed: what its platform needs to be paid (WeChat Pay's code_url, for a
// QR code; Alipay's qr_code or pay_url; WeChat JSAPI only inside WeChat), and its status, kept
// current by order.updated pushes or, while the socket is down, by reading it every few seconds.
// The payment page's own "success" is never trusted: only the order's status says it was paid.
import { h, link } from "/kit/js/dom.js";
import { get } from "../api.js";
import { formatFen, formatTime, label, t } from "../i18n.js";
import { live, onUserEvent } from "../live.js";
import { badge, errorBox, loading, section } from "../ui.js";
import { sandboxCheckout } from "./plans.js";

const POLL_MS = 3000;
const DONE = new Set(["fulfilled", "closed", "refunded", "partially_refunded", "refunding"]);

function payInstructions(order) {
  const params = order.pay_params || {};
  const rows = [];
  const checkout = sandboxCheckout(order);
  if (checkout) rows.push(h("p", {}, link(checkout, t("order.open_checkout"), { class: "button primary", testid: "pay-link" })));
  if (params.code_url) rows.push(h("p", {}, t("order.scan_wechat")), h("code", { class: "pay-code", testid: "pay-code" }, params.code_url));
  if (params.qr_code) rows.push(h("p", {}, t("order.scan_alipay")), h("code", { class: "pay-code", testid: "pay-code" }, params.qr_code));
  if (params.pay_url) rows.push(h("p", {}, link(params.pay_url, t("order.open_alipay"), { class: "button primary", target: "_blank", rel: "noopener noreferrer", testid: "pay-link" })));
  if (order.channel === "wechat_jsapi") rows.push(h("p", { class: "muted" }, t("order.in_wechat")));
  rows.push(h("p", { class: "muted" }, t("order.dev_note")));
  return section(t("order.how_to_pay"), rows);
}

function orderView(order) {
  const kind = order.status === "fulfilled" ? "ok" : order.status === "pending" ? "live" : "muted";
  return h(
    "div",
    { testid: "order-view", dataset: { no: order.order_no, status: order.status } },
    h("h1", {}, order.name, " ", badge(label("order_status", order.status), kind, { testid: "order-status", dataset: { status: order.status } })),
    h("p", { class: "muted" }, `${t("order.number")} ${order.order_no} · ${label("channel", order.channel)} · ${formatFen(order.amount_fen)}`),
    order.status === "pending" ? payInstructions(order) : null,
    order.status === "pending" ? h("p", { class: "muted" }, t("order.expires", { time: formatTime(order.expires_at) })) : null,
    order.status === "fulfilled" ? h("p", { class: "ok-box", testid: "order-done" }, t("order.fulfilled"), " ", link("#/quota", t("nav.quota"))) : null,
  );
}

export function orderPage(view) {
  const no = decodeURIComponent(view.params[0]);
  const el = h("div", {}, loading());
  let current = null;

  async function read() {
    try {
      current = await get(`/api/v1/billing/orders/${encodeURIComponent(no)}`);
      el.replaceChildren(orderView(current));
    } catch (error) {
      if (!current) el.replaceChildren(errorBox(error));
    }
  }

  read();
  view.onLeave(
    onUserEvent("order.updated", (order) => {
      if (order?.order_no === no) {
        current = order;
        el.replaceChildren(orderView(order));
      }
    }),
  );
  const timer = setInterval(() => {
    if (!live() && current && !DONE.has(current.status)) read();
  }, POLL_MS);
  view.onLeave(() => clearInterval(timer));
  return el;
}
