// The app's shell: the login gate, a header (quota, language, sign out), a tab bar at the bottom
// (in reach of a thumb), and the kit's hash router (#/tasks/…) whose pages are plain functions
// that return DOM. Whatever fails shows as a message in the page, never as a blank screen.
import { h, mount } from "/kit/js/dom.js";
import { createRouter, languageSwitch as switchTo } from "/kit/js/router.js";
import { ApiError, currentSession, endSession, forget, get, onSignedOut, setUser } from "./api.js";
import { formatNumber, i18n, t } from "./i18n.js";
import { closeLive, connectLive, onUserEvent } from "./live.js";
import { forgetState } from "./state.js";
import { describeError, errorBox, notify } from "./ui.js";
import { featurePage, galleryPage } from "./pages/features.js";
import { historyPage } from "./pages/history.js";
import { loginPage } from "./pages/login.js";
import { finishWeChatLogin } from "./pages/wechat_login.js";
import { orderPage } from "./pages/orders.js";
import { plansPage } from "./pages/plans.js";
import { quotaPage } from "./pages/quota.js";
import { taskPage } from "./pages/task.js";

const NAV = ["features", "history", "quota", "plans"];

const ROUTES = [
  [/^features$/, "features", galleryPage],
  [/^features\/([\w-]+)$/, "features", featurePage],
  [/^tasks\/([\w-]+)$/, "history", taskPage],
  [/^history$/, "history", historyPage],
  [/^quota$/, "quota", quotaPage],
  [/^plans$/, "plans", plansPage],
  [/^orders\/([\w-]+)$/, "plans", orderPage],
];

const app = document.getElementById("app");
const router = createRouter({ routes: ROUTES, home: "features", shell, t, errorBox, onShown: () => window.scrollTo(0, 0) });
let unwatchQuota = null;

function languageSwitch() {
  return switchTo(i18n, render, { en: "EN", zh: "中文" });
}

async function logout() {
  await endSession();
  signOutHere();
  location.hash = "#/features";
  render();
}

function signOutHere() {
  closeLive();
  unwatchQuota = null;
  forgetState();
  forget();
}

function quotaChip() {
  const chip = h("a", { class: "quota-chip", href: "#/quota", testid: "header-quota", title: t("quota.available") }, "…");
  const show = (quota) => {
    chip.dataset.value = String(quota.available);
    chip.replaceChildren(t("shell.quota", { n: formatNumber(quota.available) }));
  };
  get("/api/v1/billing/quota").then(show, () => chip.replaceChildren("—"));
  if (unwatchQuota) unwatchQuota();
  unwatchQuota = onUserEvent("quota.updated", (quota) => {
    if (quota && Number.isInteger(quota.available) && chip.isConnected) show(quota);
  });
  return chip;
}

function shell(active) {
  const header = h(
    "header",
    { class: "topbar" },
    h("a", { class: "brand", href: "#/features" }, t("shell.title")),
    h("span", { class: "spacer" }),
    quotaChip(),
    languageSwitch(),
    h("button", { type: "button", class: "logout", testid: "logout", onclick: logout }, t("shell.logout")),
  );
  const nav = h(
    "nav",
    { class: "tabbar", testid: "nav", "aria-label": t("shell.navigation") },
    NAV.map((key) => h("a", { href: `#/${key}`, testid: `nav-${key}`, class: key === active ? "active" : null, "aria-current": key === active ? "page" : null }, t(`nav.${key}`))),
  );
  const page = h("main", { class: "page", id: "page", testid: "page" });
  mount(app, header, page, nav);
  return page;
}

function render() {
  router.leave();
  document.title = t("shell.title");
  const session = currentSession();
  if (!session || !session.user) {
    mount(app, loginPage({ languageSwitch, onSignedIn: signedIn }));
    return;
  }
  connectLive();
  router.show();
}

function signedIn() {
  render();
}

onSignedOut((code) => {
  signOutHere();
  router.leave();
  mount(app, loginPage({ languageSwitch, onSignedIn: signedIn, notice: t("login.signed_out", { code }) }));
});

window.addEventListener("hashchange", () => {
  if (currentSession()?.user) router.show();
});

// Never a silent failure: what no page caught is said in a notice (and still logged).
window.addEventListener("unhandledrejection", (event) => notify(describeError(event.reason), "error"));

async function boot() {
  const wechat = finishWeChatLogin();
  if (wechat) {
    const notice = await wechat;
    if (notice) {
      mount(app, loginPage({ languageSwitch, onSignedIn: signedIn, notice }));
      return;
    }
  }
  if (currentSession()) {
    try {
      setUser(await get("/api/v1/users/me"));
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 401 || error.status === 403) forget();
    }
  }
  render();
}

boot().catch((error) => mount(app, errorBox(error)));
