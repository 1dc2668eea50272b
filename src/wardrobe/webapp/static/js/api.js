// The only way the app acts: the public HTTP API, through the kit's client (/kit/js/api.js). The
// tokens live in localStorage (a phone stays signed in between visits) and are shared by every tab
// of the app, so a refresh is serialised across tabs under a Web Lock (docs/clients.md): a tab
// that waited for it takes the pair another tab got instead of spending its own again.
import { createClient } from "/kit/js/api.js";
import { acceptLanguage } from "./i18n.js";

export { ApiError, unwrap } from "/kit/js/api.js";

export const { currentSession, keepTokens, setUser, forget, onSignedOut, refreshTokens, freshAccessToken, api, endSession, get, post } =
  createClient({ storage: localStorage, key: "wardrobe.app.session", lock: "wardrobe.app.refresh", acceptLanguage });
