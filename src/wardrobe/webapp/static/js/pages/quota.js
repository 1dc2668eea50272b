// The user's quota (balance, what running tasks hold, what is left to spend, membership), kept
// current by quota.updated pushes, and the ledger of every movement, a page at a time.
import { h, link } from "/kit/js/dom.js";
import { get } from "../api.js";
import { formatNumber, formatTime, label, t } from "../i18n.js";
import { onUserEvent } from "../live.js";
import { fill, pagedList, section } from "../ui.js";

function numbers(quota) {
  return h(
    "div",
    { class: "quota-numbers" },
    h(
      "div",
      { class: "quota-main" },
      h("span", { class: "muted" }, t("quota.balance")),
      h("strong", { class: "big", testid: "quota-balance", dataset: { value: String(quota.balance) } }, formatNumber(quota.balance)),
    ),
    h("div", {}, h("span", { class: "muted" }, t("quota.available")), h("strong", { testid: "quota-available", dataset: { value: String(quota.available) } }, formatNumber(quota.available))),
    h("div", {}, h("span", { class: "muted" }, t("quota.held")), h("strong", { testid: "quota-held" }, formatNumber(quota.held))),
  );
}

function membership(quota) {
  const member = quota.membership;
  if (!member) return h("p", { class: "muted", testid: "membership" }, t("quota.no_membership"));
  return h("p", { testid: "membership" }, t("quota.member_until", { plan: member.plan, date: formatTime(member.expires_at) }));
}

function ledgerItem(row) {
  const sign = row.amount > 0 ? "+" : "";
  return h(
    "li",
    { class: "ledger-item", testid: "ledger-item", dataset: { ref: row.ref, kind: row.kind } },
    h("span", { class: "history-main" }, h("strong", {}, label("ledger", row.kind)), h("span", { class: "muted" }, formatTime(row.created_at))),
    h("span", { class: ["amount", row.amount < 0 ? "amount-out" : row.amount > 0 ? "amount-in" : "amount-zero"] }, `${sign}${formatNumber(row.amount)}`),
    h("span", { class: "muted" }, t("quota.after", { n: formatNumber(row.balance_after) })),
  );
}

export function quotaPage(view) {
  const box = h("div", {});
  const shown = fill(box, () => get("/api/v1/billing/quota"), (quota) => [numbers(quota), membership(quota)]);
  view.onLeave(
    onUserEvent("quota.updated", (quota) => {
      shown.then(() => {
        if (quota && Number.isInteger(quota.balance)) box.querySelector(".quota-numbers")?.replaceWith(numbers(quota));
      });
    }),
  );
  const ledger = pagedList({
    testid: "ledger-list",
    empty: t("quota.ledger_empty"),
    load: (cursor) => get("/api/v1/billing/ledger", { limit: 20, cursor }),
    item: ledgerItem,
  });
  return h(
    "div",
    {},
    h("h1", {}, t("nav.quota")),
    section(null, box, h("div", { class: "actions" }, link("#/plans", t("quota.buy"), { class: "button primary", testid: "go-plans" }))),
    section(t("quota.ledger"), ledger.el),
  );
}
