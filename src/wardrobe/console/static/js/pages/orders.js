// Orders: the list (by status or user), an order with its refunds, and a refund with a reason.
import { button, facts, h, link } from "/kit/js/dom.js";
import { get, post } from "../api.js";
import { formatFen, formatNumber, formatTime, label, parseYuan, t } from "../i18n.js";
import { can } from "../permissions.js";
import { actionDialog, badge, dataTable, errorBox, filterBar, loading, notify, pagedTable, section } from "../ui.js";

const ORDER_STATUSES = ["pending", "paid", "fulfilled", "closed", "refunding", "partially_refunded", "refunded"];
const REFUNDABLE = new Set(["paid", "fulfilled", "partially_refunded"]);
const STATUS_KIND = { fulfilled: "ok", paid: "ok", closed: "muted", refunded: "muted", refunding: "live", partially_refunded: "live" };

export function ordersPage(view) {
  const filters = [
    { name: "status", label: t("field.status"), options: ORDER_STATUSES.map((s) => [s, label("order_status", s)]) },
    { name: "user_id", label: t("field.user_id"), type: "number" },
  ];
  const table = pagedTable({
    testid: "orders-table",
    rowId: (order) => order.order_no,
    href: (order) => `#/orders/${encodeURIComponent(order.order_no)}`,
    load: (cursor) => get("/api/v1/admin/orders", { ...view.query, limit: 20, cursor }),
    columns: [
      { label: t("order.no"), value: (order) => order.order_no },
      { label: t("order.item"), value: (order) => order.name || order.sku },
      { label: t("order.amount"), value: (order) => formatFen(order.amount_fen), class: "num" },
      { label: t("order.refunded"), value: (order) => formatFen(order.refunded_fen), class: "num" },
      { label: t("field.channel"), value: (order) => label("channel", order.channel) },
      { label: t("field.status"), value: (order) => badge(label("order_status", order.status), STATUS_KIND[order.status]) },
      { label: t("order.paid_at"), value: (order) => formatTime(order.paid_at) },
      { label: t("field.created_at"), value: (order) => formatTime(order.created_at) },
    ],
  });
  return h("div", {}, h("h1", {}, t("nav.orders")), filterBar(filters, view.query, view.go), table.el);
}

function refundButton(order, view) {
  if (!can("orders:refund") || !REFUNDABLE.has(order.status)) return null;
  const left = order.paid_fen - order.refunded_fen;
  return button(t("order.refund"), async () => {
    const result = await actionDialog({
      title: t("order.refund"),
      description: t("order.refund_hint", { left: formatFen(left) }),
      danger: true,
      fields: [
        { name: "amount", label: t("order.refund_amount"), hint: t("order.refund_amount_hint"), inputmode: "decimal", testid: "refund-amount" },
        { name: "reason", label: t("common.reason"), type: "textarea", required: true, max: 255, testid: "reason-input" },
      ],
      submit: ({ amount, reason }) => {
        const body = { reason };
        if (amount) {
          const fen = parseYuan(amount);
          if (fen === null || fen <= 0) throw new Error(t("order.bad_amount"));
          body.amount_fen = fen;
        }
        return post(`/api/v1/admin/orders/${encodeURIComponent(order.order_no)}/refund`, body);
      },
    });
    if (result) {
      notify(t("order.refund_requested", { no: result.refund_no }));
      view.reload();
    }
  }, { testid: "refund-order", class: "danger" });
}

function orderDetail(order, view) {
  return h(
    "div",
    { testid: "order-detail", dataset: { id: order.order_no, status: order.status } },
    h("h1", {}, `${t("order.title")} ${order.order_no} `, badge(label("order_status", order.status), STATUS_KIND[order.status])),
    h("div", { class: "toolbar" }, refundButton(order, view)),
    section(
      t("order.summary"),
      facts([
        [t("field.user"), link(`#/users/${order.user_id}`, `#${order.user_id}`)],
        [t("order.item"), `${order.name || ""} (${order.sku})`],
        [t("field.kind"), label("plan_kind", order.kind)],
        [t("order.amount"), formatFen(order.amount_fen)],
        [t("order.paid"), formatFen(order.paid_fen)],
        [t("order.refunded"), formatFen(order.refunded_fen), "order-refunded"],
        [t("order.quota"), formatNumber(order.quota)],
        [t("order.quota_clawed"), formatNumber(order.quota_clawed)],
        [t("field.channel"), label("channel", order.channel)],
        [t("order.transaction"), order.transaction_id],
        [t("field.status"), label("order_status", order.status), "order-status"],
        [t("field.created_at"), formatTime(order.created_at)],
        [t("order.paid_at"), formatTime(order.paid_at)],
      ]),
    ),
    section(
      t("order.refunds"),
      dataTable({
        testid: "refunds-table",
        rows: order.refunds || [],
        rowId: (refund) => refund.refund_no,
        columns: [
          { label: t("order.refund_no"), value: (refund) => refund.refund_no },
          { label: t("order.amount"), value: (refund) => formatFen(refund.amount_fen), class: "num" },
          { label: t("order.quota"), value: (refund) => formatNumber(refund.quota), class: "num" },
          { label: t("field.status"), value: (refund) => label("refund_status", refund.status) },
          { label: t("common.reason"), value: (refund) => refund.reason },
          { label: t("field.created_at"), value: (refund) => formatTime(refund.created_at) },
          { label: t("order.settled_at"), value: (refund) => formatTime(refund.settled_at) },
        ],
      }).el,
    ),
  );
}

export function orderDetailPage(view) {
  const no = decodeURIComponent(view.params[0]);
  const el = h("div", {}, loading());
  get(`/api/v1/admin/orders/${encodeURIComponent(no)}`).then(
    (order) => el.replaceChildren(orderDetail(order, view)),
    (error) => el.replaceChildren(errorBox(error)),
  );
  return el;
}
