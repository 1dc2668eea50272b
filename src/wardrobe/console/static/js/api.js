// The only way the console acts: the public HTTP API, through the kit's client
// (/kit/js/api.js). The tokens live in sessionStorage (gone with the tab, never shared with other
// tabs or later visits), so a refresh needs no lock across tabs.
import { createClient } from "/kit/js/api.js";
import { acceptLanguage } from "./i18n.js";

export { ApiError } from "/kit/js/api.js";

export const { currentSession, keepTokens, setUser, forget, onSignedOut, refreshTokens, freshAccessToken, api, endSession, get, post, patch, put } =
  createClient({ storage: sessionStorage, key: "wardrobe.console.session", lock: null, acceptLanguage });
