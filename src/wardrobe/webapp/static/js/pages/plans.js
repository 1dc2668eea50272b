// Buying: the plans on sale now, the payment channels this deployment takes, then an order. The
// development sandbox's order opens its checkout page (pay_params.checkout_url, this origin);
// WeChat Pay and Alipay orders show their payment parameters on the order's page (orders.js).
import { h } from "/kit/js/dom.js";
import { ApiError, get, post } from "../api.js";
import { formatFen, formatNumber, label, localized, t } from "../i18n.js";
import { errorBox, fill } from "../ui.js";

export const CHECKOUT_PAGE = "/app/sandbox-checkout.html";
// WeChat Pay's JSAPI pays inside WeChat only (the mini program): a web page cannot.
const NOT_ON_THE_WEB = new Set(["wechat_jsapi"]);

function planName(plan) {
  return localized(plan, "name");
}

/** The channels ``plan`` may be paid on here: its own list (empty: all) within the deployment's and the web's. */
function channelsOf(plan, channels) {
  const usable = channels.filter((channel) => !NOT_ON_THE_WEB.has(channel));
  return plan.channels && plan.channels.length > 0 ? usable.filter((channel) => plan.channels.includes(channel)) : usable;
}

function planCard(plan, choose) {
  const details = [t("plans.quota", { n: formatNumber(plan.quota) })];
  if (plan.period_days) details.push(t("plans.period", { n: plan.period_days }));
  return h(
    "button",
    { type: "button", class: "plan-card card", testid: "plan-card", dataset: { sku: plan.sku }, "aria-pressed": "false", onclick: () => choose(plan) },
    h("span", { class: "plan-kind muted" }, label("plan_kind", plan.kind)),
    h("strong", { class: "plan-name" }, planName(plan)),
    h("span", { class: "plan-price" }, formatFen(plan.price_fen)),
    h("span", { class: "muted" }, details.join(" · ")),
  );
}

/** Where a sandbox order pays: only this origin's checkout page is ever opened. */
export function sandboxCheckout(order) {
  const target = order?.pay_params?.checkout_url;
  if (typeof target !== "string") return null;
  const url = new URL(target, location.href);
  return url.origin === location.origin && url.pathname === CHECKOUT_PAGE ? url.href : null;
}

function buyBar(plans, channels) {
  let chosen = null;
  const select = h("select", { testid: "channel-select", "aria-label": t("plans.channel") });
  const summary = h("span", { class: "buy-summary", testid: "buy-summary" }, t("plans.pick"));
  const buy = h("button", { type: "button", class: "primary", testid: "buy-submit", disabled: true }, t("plans.buy"));
  const problem = h("div", {});

  function choose(plan) {
    chosen = plan;
    for (const card of document.querySelectorAll('[data-testid="plan-card"]')) card.setAttribute("aria-pressed", String(card.dataset.sku === plan.sku));
    const usable = channelsOf(plan, channels);
    select.replaceChildren(...usable.map((channel) => h("option", { value: channel }, label("channel", channel))));
    summary.replaceChildren(`${planName(plan)} · ${formatFen(plan.price_fen)}`);
    buy.disabled = usable.length === 0;
    problem.replaceChildren(usable.length === 0 ? errorBox(new ApiError(409, "PAYMENT_CHANNEL_UNAVAILABLE", t("plans.no_channel"))) : "");
  }

  buy.addEventListener("click", async () => {
    if (!chosen || !select.value) return;
    buy.disabled = true;
    problem.replaceChildren();
    try {
      const order = await post("/api/v1/billing/orders", { sku: chosen.sku, channel: select.value });
      const checkout = order.channel === "sandbox" ? sandboxCheckout(order) : null;
      if (checkout) location.assign(checkout);
      else location.hash = `#/orders/${encodeURIComponent(order.order_no)}`;
    } catch (error) {
      problem.replaceChildren(errorBox(error, "buy-error"));
      buy.disabled = false;
    }
  });
  const cards = plans.map((plan) => planCard(plan, choose));
  const bar = h("div", { class: "buy-bar card" }, summary, h("label", { class: "channel" }, t("plans.channel"), select), buy);
  return [h("div", { class: "plan-grid", testid: "plan-grid" }, cards), problem, bar];
}

export function plansPage() {
  const el = h("div", {});
  fill(
    el,
    () => Promise.all([get("/api/v1/billing/plans"), get("/api/v1/billing/channels")]),
    ([plans, channels]) => {
      if (plans.length === 0) return h("p", { class: "empty", testid: "plans-empty" }, t("plans.none"));
      return buyBar(plans, channels);
    },
  );
  return h("div", {}, h("h1", {}, t("nav.plans")), el);
}
