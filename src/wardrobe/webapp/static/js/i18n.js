// Chinese by default, English on request; the choice is kept in localStorage (with the tokens:
// an end user's device stays signed in, unlike the console's tabs).
import { STRINGS } from "./strings.js";

const KEY = "wardrobe.app.lang";
const LANGS = ["zh", "en"];
let current = LANGS.includes(localStorage.getItem(KEY)) ? localStorage.getItem(KEY) : "zh";

export function lang() {
  return current;
}

/** The Accept-Language the API answers error messages in. */
export function acceptLanguage() {
  return current === "zh" ? "zh-CN" : "en";
}

export function setLang(value) {
  if (!LANGS.includes(value)) return;
  current = value;
  localStorage.setItem(KEY, value);
  document.documentElement.lang = acceptLanguage();
}

/** The text of ``key`` in the current language, with {name} placeholders filled in. */
export function t(key, vars) {
  const text = STRINGS[current][key] ?? STRINGS.zh[key] ?? key;
  if (!vars) return text;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

/** A value of an enumeration (a status, a channel, a ledger kind) in words, or the value itself. */
export function label(kind, value) {
  if (value === null || value === undefined || value === "") return "—";
  const key = `${kind}.${value}`;
  return STRINGS[current][key] ?? STRINGS.zh[key] ?? String(value);
}

function locale() {
  return current === "zh" ? "zh-CN" : "en-GB";
}

export function formatTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return new Intl.DateTimeFormat(locale(), {
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    hour12: false,
  }).format(date);
}

export function formatNumber(value) {
  if (value === null || value === undefined) return "—";
  return new Intl.NumberFormat(locale()).format(value);
}

/** Fen (an integer) as yuan: 990 -> "¥9.90". Integer arithmetic, no floating point. */
export function formatFen(fen) {
  if (fen === null || fen === undefined || !Number.isInteger(fen)) return "—";
  const sign = fen < 0 ? "-" : "";
  const abs = Math.abs(fen);
  const yuan = Math.trunc(abs / 100);
  const cents = String(abs % 100).padStart(2, "0");
  return `${sign}¥${new Intl.NumberFormat(locale()).format(yuan)}.${cents}`;
}

setLang(current);
