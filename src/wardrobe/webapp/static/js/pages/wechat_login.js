// WeChat QR login on the web: the API gives WeChat's QR page URL and a state, the browser goes
// there, and WeChat sends it back to /app/?code=…&state=…. The state is kept in sessionStorage
// and a callback that does not carry it is refused here, before the API is asked: that is what
// keeps someone else's login link from signing this browser into their account.
import { h } from "/kit/js/dom.js";
import { api, keepTokens } from "../api.js";
import { t } from "../i18n.js";
import { describeError } from "../ui.js";

const STATE_KEY = "wardrobe.wechat_state";

// A button that starts the QR login, shown only when the deployment offers it.
export function wechatLoginButton(say) {
  const button = h("button", { type: "button", class: "wechat", testid: "wechat-login", hidden: true }, t("login.wechat"));
  api("GET", "/api/v1/auth/methods", { auth: false }).then(
    (methods) => {
      button.hidden = !methods.wechat_web;
    },
    () => {},
  );
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const start = await api("GET", "/api/v1/auth/wechat/web/authorize", { auth: false });
      sessionStorage.setItem(STATE_KEY, start.state);
      location.assign(start.url);
    } catch (error) {
      button.disabled = false;
      say(describeError(error));
    }
  });
  return button;
}

// On the way back from WeChat: null when this page load is not a WeChat callback, else a promise
// of a notice to show on the login page ("" when signed in).
export function finishWeChatLogin() {
  const query = new URLSearchParams(location.search);
  if (!query.has("state") || location.pathname.indexOf("/app") !== 0) return null;
  const code = query.get("code");
  const state = query.get("state");
  const expected = sessionStorage.getItem(STATE_KEY);
  sessionStorage.removeItem(STATE_KEY);
  history.replaceState(null, "", location.pathname + location.hash);
  if (!expected || state !== expected) return Promise.resolve(t("login.wechat_foreign"));
  if (!code) return Promise.resolve(t("login.wechat_refused"));
  return api("POST", "/api/v1/auth/login", { body: { method: "wechat_web", code, state }, auth: false }).then(
    (answer) => {
      keepTokens(answer, answer.user);
      return "";
    },
    (error) => describeError(error),
  );
}
