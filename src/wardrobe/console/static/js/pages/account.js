// The signed-in staff member's own account: two-step sign-in (TOTP) set-up. In production an admin
// must sign in with a TOTP code before any admin route answers (TOTP_ENROLMENT_REQUIRED).
import { facts, h } from "/kit/js/dom.js";
import { get, post, setUser } from "../api.js";
import { label, t } from "../i18n.js";
import { field, input, notify, section, submitting } from "../ui.js";

function stepForm(testid, specs, buttonText, submit) {
  const form = h(
    "form",
    { class: "record-form", testid, novalidate: true },
    specs.map(([name, text, attrs]) => field(name, text, input(attrs))),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", testid: `${testid}-submit` }, buttonText)),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = Object.fromEntries(specs.map(([name]) => [name, form.elements.namedItem(name).value.trim()]));
    await submitting(form, () => submit(values));
  });
  return form;
}

function totpSection(me, view) {
  if (me.totp_enabled) {
    return section(
      t("account.totp"),
      h("p", {}, t("account.totp.on")),
      stepForm("totp-disable", [["code", t("login.totp"), { inputmode: "numeric", maxlength: 6 }]], t("account.totp.disable"), async ({ code }) => {
        await post("/api/v1/auth/totp/disable", { code });
        notify(t("account.totp.disabled"));
        view.reload();
      }),
    );
  }
  const secretBox = h("div");
  const setup = stepForm("totp-setup", [["password", t("login.password"), { type: "password", autocomplete: "current-password" }]], t("account.totp.start"), async ({ password }) => {
    const answer = await post("/api/v1/auth/totp/setup", { password });
    secretBox.replaceChildren(
      h("p", {}, t("account.totp.scan")),
      facts([
        [t("account.totp.secret"), h("code", { testid: "totp-secret" }, answer.secret)],
        ["URI", h("code", { class: "wrap" }, answer.otpauth_uri)],
      ]),
      stepForm("totp-enable", [["code", t("login.totp"), { inputmode: "numeric", maxlength: 6 }]], t("account.totp.enable"), async ({ code }) => {
        await post("/api/v1/auth/totp/enable", { code });
        notify(t("account.totp.enabled"));
        view.reload();
      }),
    );
  });
  return section(t("account.totp"), h("p", {}, t("account.totp.off")), setup, secretBox);
}

export async function accountPage(view) {
  const me = await get("/api/v1/users/me");
  setUser(me);
  return h(
    "div",
    { testid: "account" },
    h("h1", {}, t("account.title")),
    section(
      null,
      facts([
        ["ID", String(me.id)],
        [t("field.nickname"), me.nickname],
        [t("field.phone"), me.phone_masked],
        [t("field.role"), label("role", me.role)],
      ]),
    ),
    totpSection(me, view),
  );
}
