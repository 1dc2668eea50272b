// The development payment sandbox's checkout page (sandbox-checkout.html), what a platform's
// cashier is to a real payment: it shows what is being bought and for how much (from the URL the
// order gave, ?order_no&amount_fen&name&token), and "pays" through POST
// /api/v1/payments/sandbox/checkout, which needs no login (the token in the URL is the
// authority), then leads back to the app where the balance shows. The amount is sent as the
// number the URL carries: the server checks it against the token and the order.
import { h, link, mount } from "/kit/js/dom.js";
import { api } from "./api.js";
import { formatFen, label, t } from "./i18n.js";
import { errorBox } from "./ui.js";

const BACK = "/app/#/quota";
const root = document.getElementById("checkout");

function params() {
  const query = new URLSearchParams(location.search);
  const amount = query.get("amount_fen") || "";
  return {
    order_no: query.get("order_no") || "",
    amount_fen: /^\d{1,12}$/.test(amount) ? Number(amount) : null,
    name: query.get("name") || "",
    token: query.get("token") || "",
  };
}

function outcome(paid) {
  return h(
    "div",
    { class: "ok-box", role: "status", testid: "checkout-outcome", dataset: { outcome: paid.outcome } },
    h("strong", {}, t("checkout.paid")),
    h("div", { class: "muted" }, label("checkout_outcome", paid.outcome)),
  );
}

function page() {
  const order = params();
  const back = link(BACK, t("checkout.back"), { class: "button", testid: "checkout-back" });
  if (!order.order_no || order.amount_fen === null || !order.token) {
    return [h("h1", {}, t("checkout.title")), h("div", { class: "error-box", role: "alert", testid: "checkout-invalid" }, t("checkout.invalid")), back];
  }
  const result = h("div", { testid: "checkout-result" });
  const pay = h("button", { type: "button", class: "primary wide", testid: "sandbox-pay" }, t("checkout.pay", { amount: formatFen(order.amount_fen) }));
  pay.addEventListener("click", async () => {
    pay.disabled = true;
    result.replaceChildren();
    try {
      const body = { order_no: order.order_no, amount_fen: order.amount_fen, token: order.token };
      const paid = await api("POST", "/api/v1/payments/sandbox/checkout", { body, auth: false });
      result.replaceChildren(outcome(paid));
      pay.hidden = true;
      back.classList.add("primary");
    } catch (error) {
      result.replaceChildren(errorBox(error, "checkout-error"));
      pay.disabled = false;
    }
  });
  return [
    h("h1", {}, t("checkout.title")),
    h("p", { class: "muted" }, t("checkout.sandbox_note")),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, t("checkout.item")),
      h("dd", { testid: "checkout-name" }, order.name || "—"),
      h("dt", {}, t("checkout.order")),
      h("dd", { testid: "checkout-order" }, order.order_no),
      h("dt", {}, t("checkout.amount")),
      h("dd", { testid: "checkout-amount", dataset: { fen: String(order.amount_fen) } }, formatFen(order.amount_fen)),
    ),
    pay,
    result,
    h("div", { class: "actions" }, back),
  ];
}

document.title = t("checkout.title");
mount(root, h("div", { class: "checkout card" }, page()));
