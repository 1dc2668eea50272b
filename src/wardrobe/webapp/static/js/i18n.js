// The app's words and formats, through the kit's i18n (/kit/js/i18n.js): Chinese by default,
// English on request, the choice kept in localStorage (with the tokens: an end user's device stays
// signed in, unlike the console's tabs). Times without the year or the seconds.
import { createI18n } from "/kit/js/i18n.js";
import { STRINGS } from "./strings.js";

export const i18n = createI18n({
  strings: STRINGS,
  storageKey: "wardrobe.app.lang",
  timeFormat: { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" },
});

export const { lang, acceptLanguage, setLang, t, label, formatTime, formatNumber, formatFen } = i18n;

// An operator's text in the user's language: `name_en` (say) in English when the operator wrote
// one, else `name`.
export function localized(record, field) {
  const english = record?.[`${field}_en`];
  return lang() === "en" && english ? english : record?.[field];
}
