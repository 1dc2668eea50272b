// Providers and their vendor accounts: health (live through provider.health), slots in use
// against the limit, recent failures; a provider's switch (operators), an account's (admins).
import { button, h, link } from "/kit/js/dom.js";
import { get, patch, post } from "../api.js";
import { formatNumber, formatPercent, formatTime, label, t } from "../i18n.js";
import { watchProviderHealth } from "../live.js";
import { can } from "../permissions.js";
import { actionDialog, badge, dataTable, errorBox, loading, notify, section } from "../ui.js";

const HEALTH_KIND = { up: "ok", degraded: "live", down: "bad", half_open: "live" };

function health(state) {
  const value = state?.state || "up";
  const detail = [
    state?.recent_calls !== undefined ? t("provider.calls", { n: formatNumber(state.recent_calls) }) : null,
    state?.failure_rate ? t("provider.failing", { rate: formatPercent(state.failure_rate) }) : null,
  ].filter(Boolean);
  return h("span", {}, badge(label("health", value), HEALTH_KIND[value]), detail.length ? h("small", { class: "muted" }, ` ${detail.join(" · ")}`) : null);
}

function slots(inUse, limit) {
  return `${formatNumber(inUse)} / ${limit === null || limit === undefined ? "∞" : formatNumber(limit)}`;
}

function switchProvider(provider, reload) {
  if (!can("catalog:switch")) return null;
  const off = provider.enabled;
  return button(off ? t("provider.switch_off") : t("provider.switch_on"), async () => {
    const result = await actionDialog({
      title: `${off ? t("provider.switch_off") : t("provider.switch_on")}: ${provider.slug}`,
      description: off ? t("provider.switch_off_hint") : null,
      danger: off,
      submit: ({ reason }) => post(`/api/v1/admin/providers/${encodeURIComponent(provider.slug)}/switch`, { enabled: !off, reason }),
    });
    if (result) {
      notify(t(result.enabled ? "provider.on" : "provider.off", { slug: provider.slug }));
      reload();
    }
  }, { testid: off ? "provider-off" : "provider-on", class: off ? "danger" : null });
}

function switchAccount(account, reload) {
  if (!can("providers:manage")) return null;
  const off = account.enabled;
  return button(off ? t("provider.switch_off") : t("provider.switch_on"), async () => {
    const result = await actionDialog({
      title: `${off ? t("provider.switch_off") : t("provider.switch_on")}: ${account.provider} / ${account.name}`,
      danger: off,
      submit: ({ reason }) => patch(`/api/v1/admin/provider-accounts/${account.id}`, { enabled: !off, reason }),
    });
    if (result) {
      notify(t(result.enabled ? "provider.on" : "provider.off", { slug: `${account.provider}/${account.name}` }));
      reload();
    }
  }, { testid: off ? "account-off" : "account-on", class: off ? "danger" : null });
}

function failures(rows) {
  if (!rows || rows.length === 0) return null;
  return h(
    "details",
    {},
    h("summary", {}, t("provider.recent_failures", { n: rows.length })),
    h(
      "ul",
      { class: "plain" },
      rows.map((row) =>
        h("li", {}, link(`#/tasks/${encodeURIComponent(row.task_id)}`, row.task_id), ` · ${row.step} · ${formatTime(row.at)} · `, typeof row.error === "string" ? row.error : JSON.stringify(row.error)),
      ),
    ),
  );
}

function providersTable(providers, reload) {
  return dataTable({
    testid: "providers-table",
    rows: providers,
    rowId: (provider) => provider.slug,
    columns: [
      { label: t("field.provider"), value: (provider) => provider.slug },
      { label: t("field.kind"), value: (provider) => label("provider_kind", provider.kind) },
      { label: t("provider.health"), value: (provider) => health(provider.health) },
      { label: t("provider.slots"), value: (provider) => slots(provider.in_use, provider.concurrency_limit), class: "num" },
      {
        label: t("field.status"),
        value: (provider) =>
          provider.enabled ? badge(t("provider.in_service"), "ok") : h("span", {}, badge(t("provider.out_of_service"), "bad"), " ", provider.disabled_reason || ""),
      },
      { label: t("provider.failures"), value: (provider) => failures(provider.recent_failures) },
      { label: "", value: (provider) => switchProvider(provider, reload) },
    ],
  });
}

function accountsTable(accounts, live, reload) {
  const now = new Map(live.flatMap((provider) => (provider.accounts || []).map((a) => [a.id, a])));
  return dataTable({
    testid: "accounts-table",
    rows: accounts,
    rowId: (account) => account.id,
    columns: [
      { label: t("field.provider"), value: (account) => account.provider },
      { label: t("provider.account"), value: (account) => account.name },
      { label: t("provider.health"), value: (account) => health(now.get(account.id)?.health) },
      { label: t("provider.slots"), value: (account) => slots(now.get(account.id)?.in_use ?? 0, account.concurrency), class: "num" },
      { label: t("provider.rate"), value: (account) => account.rate },
      { label: t("provider.key"), value: (account) => [account.key_id, label("secret_source", account.secret_source)].filter(Boolean).join(" · ") },
      { label: t("provider.endpoint"), value: (account) => account.endpoint },
      { label: t("field.status"), value: (account) => badge(account.enabled ? t("provider.in_service") : t("provider.out_of_service"), account.enabled ? "ok" : "bad") },
      { label: t("provider.note"), value: (account) => account.note },
      { label: "", value: (account) => switchAccount(account, reload) },
    ],
  }).el;
}

export function providersPage(view) {
  const providersBox = h("div", {}, loading());
  const accountsBox = h("div", {}, loading());
  let table = null;

  async function load() {
    try {
      const [providers, accounts] = await Promise.all([get("/api/v1/admin/providers"), get("/api/v1/admin/provider-accounts")]);
      table = providersTable(providers, load);
      providersBox.replaceChildren(table.el);
      accountsBox.replaceChildren(accountsTable(accounts, providers, load));
    } catch (error) {
      providersBox.replaceChildren(errorBox(error));
      accountsBox.replaceChildren();
    }
  }

  load();
  view.onLeave(
    watchProviderHealth((providers) => {
      if (Array.isArray(providers) && table) table.replace(providers);
    }),
  );
  return h(
    "div",
    {},
    h("h1", {}, t("nav.providers")),
    h("p", { class: "muted live-note" }, t("provider.live")),
    section(t("provider.title"), providersBox),
    section(t("provider.accounts"), accountsBox),
  );
}
