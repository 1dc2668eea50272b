// The app's words, in Chinese (the default) and English. Values of enumerations are keyed
// "<kind>.<value>" (label() in i18n.js). tests/webapp/test_webapp_files.py checks that both
// languages have the same keys and that every key the modules use exists.
import { EN } from "./strings_en.js";
import { ZH } from "./strings_zh.js";

export const STRINGS = { zh: ZH, en: EN };
