// The console's shell: the login gate, the navigation, and the kit's hash router (#/users/42?…)
// whose pages are plain functions that return DOM.
import { h, mount } from "/kit/js/dom.js";
import { createRouter, languageSwitch as switchTo } from "/kit/js/router.js";
import { ApiError, currentSession, endSession, forget, get, onSignedOut, setUser } from "./api.js";
import { i18n, label, t } from "./i18n.js";
import { closeLive } from "./live.js";
import { can, isStaff } from "./permissions.js";
import { errorBox } from "./ui.js";
import { accountPage } from "./pages/account.js";
import { auditPage } from "./pages/audit.js";
import { featuresPage } from "./pages/catalog.js";
import { dashboardPage } from "./pages/dashboard.js";
import { distributorsPage } from "./pages/distributors.js";
import { loginPage } from "./pages/login.js";
import { orderDetailPage, ordersPage } from "./pages/orders.js";
import { plansPage } from "./pages/plans.js";
import { providersPage } from "./pages/providers.js";
import { taskDetailPage, tasksPage } from "./pages/tasks.js";
import { userDetailPage } from "./pages/user_detail.js";
import { usersPage } from "./pages/users.js";

const NAV = [
  { key: "dashboard", permission: "stats:read" },
  { key: "users", permission: "users:read" },
  { key: "tasks", permission: "tasks:read" },
  { key: "orders", permission: "orders:read" },
  { key: "plans", permission: "catalog:read" },
  { key: "features", permission: "catalog:read" },
  { key: "providers", permission: "catalog:read" },
  { key: "distributors", permission: "distributors:review" },
  { key: "audit", permission: "audit:read" },
];

const ROUTES = [
  [/^dashboard$/, "dashboard", dashboardPage],
  [/^users$/, "users", usersPage],
  [/^users\/(\d+)$/, "users", userDetailPage],
  [/^tasks$/, "tasks", tasksPage],
  [/^tasks\/([\w-]+)$/, "tasks", taskDetailPage],
  [/^orders$/, "orders", ordersPage],
  [/^orders\/([\w-]+)$/, "orders", orderDetailPage],
  [/^plans$/, "plans", plansPage],
  [/^features$/, "features", featuresPage],
  [/^providers$/, "providers", providersPage],
  [/^distributors$/, "distributors", distributorsPage],
  [/^audit$/, "audit", auditPage],
  [/^account$/, null, accountPage],
];

const app = document.getElementById("app");
const router = createRouter({ routes: ROUTES, home: "dashboard", shell, t, errorBox });

function languageSwitch() {
  return switchTo(i18n, render, { en: "English", zh: "中文" });
}

async function logout() {
  await endSession();
  closeLive();
  location.hash = "#/dashboard";
  render();
}

function shell(active) {
  const user = currentSession().user;
  const links = NAV.filter((item) => can(item.permission)).map((item) =>
    h("a", { href: `#/${item.key}`, testid: `nav-${item.key}`, class: item.key === active ? "active" : null, "aria-current": item.key === active ? "page" : null }, t(`nav.${item.key}`)),
  );
  const nav = h("nav", { class: "sidebar", testid: "nav", "aria-label": t("shell.navigation") }, links);
  const page = h("main", { class: "page", id: "page", testid: "page" });
  const header = h(
    "header",
    { class: "topbar" },
    h("a", { class: "brand", href: "#/dashboard" }, t("shell.title")),
    h("span", { class: "spacer" }),
    h("a", { class: "whoami", href: "#/account", testid: "whoami" }, `${user.nickname || user.phone_masked || `#${user.id}`} · ${label("role", user.role)}`),
    languageSwitch(),
    h("button", { type: "button", testid: "logout", onclick: logout }, t("shell.logout")),
  );
  mount(app, header, h("div", { class: "body" }, nav, page));
  return page;
}

function render() {
  router.leave();
  document.title = t("shell.title");
  const session = currentSession();
  if (!session || !session.user) {
    mount(app, loginPage({ languageSwitch, onSignedIn: render }));
    return;
  }
  if (!isStaff(session.user.role)) {
    forget();
    mount(app, loginPage({ languageSwitch, onSignedIn: render, notice: t("login.no_access") }));
    return;
  }
  router.show();
}

onSignedOut((code) => {
  closeLive();
  mount(app, loginPage({ languageSwitch, onSignedIn: render, notice: t("login.signed_out", { code }) }));
});

window.addEventListener("hashchange", () => {
  if (currentSession()?.user) router.show();
});

async function boot() {
  if (currentSession()) {
    // The role may have changed since the tokens were kept (this tab, an earlier page load).
    try {
      setUser(await get("/api/v1/users/me"));
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      forget();
    }
  }
  render();
}

boot();
