// Sign in (or up: a new phone gets a new account) with a code sent by SMS. In development the
// API answers with the code itself (debug_code), which is shown here so the app can be tried
// without a phone; a production answer never carries it.
import { h } from "/kit/js/dom.js";
import { api, keepTokens } from "../api.js";
import { t } from "../i18n.js";
import { describeError, field } from "../ui.js";
import { wechatLoginButton } from "./wechat_login.js";

function countdown(sendButton, seconds) {
  let left = seconds;
  sendButton.disabled = true;
  const tick = () => {
    if (left <= 0 || !sendButton.isConnected) {
      clearInterval(timer);
      sendButton.disabled = false;
      sendButton.textContent = t("login.send_code");
      return;
    }
    sendButton.textContent = t("login.resend_in", { n: left });
    left -= 1;
  };
  const timer = setInterval(tick, 1000);
  tick();
}

export function loginPage({ languageSwitch, onSignedIn, notice }) {
  const phone = h("input", { type: "tel", autocomplete: "tel", inputmode: "tel", testid: "login-phone", maxlength: 20, placeholder: "13800000000" });
  const code = h("input", { inputmode: "numeric", autocomplete: "one-time-code", testid: "login-code", maxlength: 6, pattern: "[0-9]{6}" });
  const invite = h("input", { testid: "login-invite", maxlength: 20, autocomplete: "off" });
  const sendCode = h("button", { type: "button", testid: "send-code" }, t("login.send_code"));
  const debug = h("p", { class: "debug-code", hidden: true });
  const message = h("div", { class: "error-box", role: "alert", testid: "login-error", hidden: !notice }, notice || "");
  const submit = h("button", { type: "submit", class: "primary", testid: "login-submit" }, t("login.submit"));

  function say(text) {
    message.hidden = !text;
    message.replaceChildren(text || "");
  }

  sendCode.addEventListener("click", async () => {
    say("");
    if (!phone.value.trim()) {
      say(t("login.phone_missing"));
      return;
    }
    sendCode.disabled = true;
    try {
      const sent = await api("POST", "/api/v1/auth/sms-codes", { body: { phone: phone.value.trim(), purpose: "login" }, auth: false });
      debug.hidden = !sent.debug_code;
      debug.replaceChildren(t("login.debug_code"), " ", h("strong", { testid: "debug-code" }, sent.debug_code || ""));
      countdown(sendCode, sent.cooldown_seconds || 60);
      code.focus();
    } catch (error) {
      sendCode.disabled = false;
      say(describeError(error));
    }
  });

  const form = h(
    "form",
    { class: "login card", testid: "login-form", novalidate: true },
    h("h1", {}, t("shell.title")),
    h("p", { class: "muted" }, t("login.intro")),
    field("phone", t("login.phone"), phone),
    h("div", { class: "code-row" }, field("code", t("login.code"), code), sendCode),
    debug,
    h("details", { class: "invite" }, h("summary", {}, t("login.have_invite")), field("invite_code", t("login.invite"), invite)),
    message,
    h("div", { class: "actions" }, submit),
    h("div", { class: "actions alt-login" }, wechatLoginButton(say)),
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!phone.value.trim() || !/^\d{6}$/.test(code.value.trim())) {
      say(t("login.missing"));
      return;
    }
    const body = { method: "sms", phone: phone.value.trim(), code: code.value.trim() };
    if (invite.value.trim()) body.invite_code = invite.value.trim();
    submit.disabled = true;
    try {
      const answer = await api("POST", "/api/v1/auth/login", { body, auth: false });
      keepTokens(answer, answer.user);
      onSignedIn(answer.is_new_user);
    } catch (error) {
      say(describeError(error));
    } finally {
      submit.disabled = false;
    }
  });

  return h("div", { class: "login-screen" }, h("div", { class: "login-lang" }, languageSwitch()), form);
}
