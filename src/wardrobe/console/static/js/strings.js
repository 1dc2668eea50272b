// The console's words, in Chinese (the default) and English. Values of enumerations are keyed
// "<kind>.<value>" (label() in i18n.js). tests/console/test_console_files.py checks that every key
// the modules use exists in both languages.
import { EN } from "./strings_en.js";
import { ZH } from "./strings_zh.js";

export const STRINGS = { zh: ZH, en: EN };
