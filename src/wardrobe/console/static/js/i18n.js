// The console's words and formats, through the kit's i18n (/kit/js/i18n.js): Chinese by default,
// English on request, the choice kept in localStorage (it is not a secret, unlike the tokens,
// which stay in sessionStorage). Times to the second, with the year.
import { createI18n } from "/kit/js/i18n.js";
import { STRINGS } from "./strings.js";

export const i18n = createI18n({
  strings: STRINGS,
  storageKey: "wardrobe.console.lang",
  timeFormat: { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" },
});

export const { lang, acceptLanguage, setLang, t, label, formatTime, formatNumber, formatFen } = i18n;

/** "9.9" / "9.90" / "10" yuan -> fen, or null if it is not an amount. */
export function parseYuan(text) {
  const match = /^\s*(\d{1,9})(?:\.(\d{1,2}))?\s*$/.exec(text || "");
  if (!match) return null;
  return Number(match[1]) * 100 + Number((match[2] || "").padEnd(2, "0"));
}

export function formatPercent(ratio) {
  if (ratio === null || ratio === undefined) return "—";
  return `${(ratio * 100).toFixed(1)}%`;
}

export function formatDuration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}
