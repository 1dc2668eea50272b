// Staff sign in with phone and password; an account with two-step sign-in is asked for its TOTP
// code when the API answers TOTP_REQUIRED. Accounts that are not staff are told so, and the
// session their login opened is ended at once.
import { h } from "/kit/js/dom.js";
import { api, forget, keepTokens } from "../api.js";
import { t } from "../i18n.js";
import { isStaff } from "../permissions.js";
import { describeError, field, input } from "../ui.js";

export function loginPage({ languageSwitch, onSignedIn, notice }) {
  const phone = input({ type: "tel", autocomplete: "username", testid: "login-phone", required: true, maxlength: 20 });
  const password = input({ type: "password", autocomplete: "current-password", testid: "login-password", required: true, maxlength: 128 });
  const totp = input({ inputmode: "numeric", autocomplete: "one-time-code", testid: "login-totp", maxlength: 6, pattern: "[0-9]{6}" });
  const totpField = field("totp_code", t("login.totp"), totp, t("login.totp_hint"));
  totpField.hidden = true;
  const message = h("div", { class: "error-box", role: "alert", testid: "login-error", hidden: !notice }, notice || "");
  const submit = h("button", { type: "submit", class: "primary", testid: "login-submit" }, t("login.submit"));

  function say(text) {
    message.hidden = false;
    message.replaceChildren(text);
  }

  const form = h(
    "form",
    { class: "login card", testid: "login-form", novalidate: true },
    h("h1", {}, t("shell.title")),
    h("p", { class: "muted" }, t("login.intro")),
    field("phone", t("login.phone"), phone),
    field("password", t("login.password"), password),
    totpField,
    message,
    h("div", { class: "actions" }, submit),
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!phone.value.trim() || !password.value) {
      say(t("login.missing"));
      return;
    }
    const body = { method: "password", phone: phone.value.trim(), password: password.value };
    if (!totpField.hidden && totp.value.trim()) body.totp_code = totp.value.trim();
    submit.disabled = true;
    try {
      const answer = await api("POST", "/api/v1/auth/login", { body, auth: false });
      if (!isStaff(answer.user.role)) {
        // End the session this login opened: it has no use here.
        keepTokens(answer, answer.user);
        await api("POST", "/api/v1/auth/logout", { body: {} }).catch(() => null);
        forget();
        say(t("login.no_access"));
        return;
      }
      keepTokens(answer, answer.user);
      onSignedIn();
    } catch (error) {
      if (error.code === "TOTP_REQUIRED" || error.code === "TOTP_INVALID") {
        totpField.hidden = false;
        totp.focus();
      }
      say(error.code === "TOTP_REQUIRED" ? t("login.totp_required") : describeError(error));
    } finally {
      submit.disabled = false;
    }
  });

  return h("div", { class: "login-screen" }, h("div", { class: "login-lang" }, languageSwitch()), form);
}
