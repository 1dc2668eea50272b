// Words and formats, for a site that brings its own words: Chinese by default, English on
// request, the choice kept in localStorage under the site's own key (a language is no secret,
// whichever storage the site keeps its tokens in).

const LANGS = ["zh", "en"];

/**
 * The i18n of one site. ``strings``: {zh: {key: text}, en: {…}}, values of enumerations keyed
 * "<kind>.<value>" (for label()); ``storageKey``: where the choice is kept; ``timeFormat``: the
 * Intl.DateTimeFormat options of formatTime(). Sets the page's language at once.
 */
export function createI18n({ strings, storageKey, timeFormat }) {
  const stored = localStorage.getItem(storageKey);
  let current = LANGS.includes(stored) ? stored : "zh";
  const locale = () => (current === "zh" ? "zh-CN" : "en-GB");
  const words = (key) => strings[current][key] ?? strings.zh[key];

  /** The Accept-Language the API answers error messages in. */
  function acceptLanguage() {
    return current === "zh" ? "zh-CN" : "en";
  }

  function setLang(value) {
    if (!LANGS.includes(value)) return;
    current = value;
    localStorage.setItem(storageKey, value);
    document.documentElement.lang = acceptLanguage();
  }

  /** The text of ``key`` in the current language, with {name} placeholders filled in. */
  function t(key, vars) {
    const text = words(key) ?? key;
    if (!vars) return text;
    return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
  }

  /** A value of an enumeration (a status, a role, a channel) in words, or the value itself. */
  function label(kind, value) {
    if (value === null || value === undefined || value === "") return "—";
    return words(`${kind}.${value}`) ?? String(value);
  }

  function formatTime(iso) {
    if (!iso) return "—";
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return String(iso);
    return new Intl.DateTimeFormat(locale(), { ...timeFormat, hour12: false }).format(date);
  }

  function formatNumber(value) {
    if (value === null || value === undefined) return "—";
    return new Intl.NumberFormat(locale()).format(value);
  }

  /** Fen (an integer) as yuan: 990 -> "¥9.90". Integer arithmetic, no floating point. */
  function formatFen(fen) {
    if (fen === null || fen === undefined || !Number.isInteger(fen)) return "—";
    const sign = fen < 0 ? "-" : "";
    const abs = Math.abs(fen);
    const yuan = Math.trunc(abs / 100);
    const cents = String(abs % 100).padStart(2, "0");
    return `${sign}¥${new Intl.NumberFormat(locale()).format(yuan)}.${cents}`;
  }

  setLang(current);
  return { lang: () => current, acceptLanguage, setLang, t, label, formatTime, formatNumber, formatFen };
}
