// The only way a site acts: the public HTTP API, in its envelope, with the tokens of a login. The
// site says where the tokens live (the console: sessionStorage, gone with the tab; the app:
// localStorage, shared by its tabs) and whether refreshing them is serialised across tabs with a
// Web Lock: a refresh token works once, and the same one presented twice — two tabs, or two racing
// requests — would end the whole session (docs/clients.md). One refresh is in flight per tab; a
// tab that waited for the lock takes the pair another tab got instead of spending its own again.
// The access token is renewed shortly before it expires, or once when an answer says it has.

const REFRESH_MARGIN_MS = 30_000;
// Answers after which a session cannot go on: back to the login page.
const SIGNED_OUT = new Set(["AUTH_REQUIRED", "AUTH_TOKEN_INVALID", "AUTH_SESSION_REVOKED", "AUTH_SESSION_EXPIRED", "AUTH_REFRESH_REUSED", "ACCOUNT_DISABLED"]);

export class ApiError extends Error {
  constructor(status, code, message, data) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.data = data;
  }

  /** [{field, message}] of a 422 envelope, else []. */
  get fieldErrors() {
    return Array.isArray(this.data) ? this.data.filter((item) => item && typeof item.field === "string") : [];
  }
}

/** The envelope's ``data`` of a response, or its error as an ApiError. */
export async function unwrap(response) {
  let envelope = null;
  if ((response.headers.get("content-type") || "").includes("application/json")) {
    envelope = await response.json().catch(() => null);
  }
  if (!response.ok || !envelope || envelope.success === false) {
    const code = envelope?.code || `HTTP_${response.status}`;
    throw new ApiError(response.status, code, envelope?.message || response.statusText, envelope?.data);
  }
  return envelope.data;
}

function url(path, query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

async function request(method, path, { body, query, headers: extra, token, language }) {
  const headers = { Accept: "application/json", "Accept-Language": language, ...(extra || {}) };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(url(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(0, "NETWORK_ERROR", error.message);
  }
  return unwrap(response);
}

/** The kept session ({access, refresh, accessExpiresAt, user}) in ``storage`` under ``key``, and
 * who is told when it ends. */
function sessionStore(storage, key) {
  const signedOutListeners = new Set();

  function load() {
    try {
      const raw = storage.getItem(key);
      return raw ? JSON.parse(raw) : null;
    } catch {
      return null;
    }
  }

  function store(state) {
    if (state) storage.setItem(key, JSON.stringify(state));
    else storage.removeItem(key);
  }

  /** Keep the tokens of a login or refresh answer (and the user of a login). */
  function keepTokens(body, user) {
    const expires = Date.now() + body.expires_in * 1000;
    store({ access: body.access_token, refresh: body.refresh_token, accessExpiresAt: expires, user: user ?? load()?.user ?? null });
  }

  function setUser(user) {
    const state = load();
    if (state) store({ ...state, user });
  }

  function signedOut(code) {
    store(null);
    for (const listener of signedOutListeners) listener(code);
  }

  const onSignedOut = (listener) => void signedOutListeners.add(listener);
  return { load, keepTokens, setUser, forget: () => store(null), signedOut, onSignedOut };
}

function withLock(lock, work) {
  if (lock && navigator.locks && typeof navigator.locks.request === "function") return navigator.locks.request(lock, work);
  return work();
}

/** Renewing the access token: one refresh at a time (in this tab, and across tabs under ``lock``). */
function refresher(session, lock, acceptLanguage) {
  let refreshing = null;

  async function rotate(spent) {
    const state = session.load();
    if (!state) throw new ApiError(401, "AUTH_REQUIRED", "");
    // Another tab rotated the pair while this one waited: its tokens are ours too.
    if (state.refresh !== spent && state.accessExpiresAt - Date.now() > REFRESH_MARGIN_MS) return;
    try {
      const body = { refresh_token: state.refresh };
      session.keepTokens(await request("POST", "/api/v1/auth/refresh", { body, language: acceptLanguage() }));
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) session.signedOut(error.code);
      throw error;
    }
  }

  function refreshTokens() {
    const state = session.load();
    if (!state) return Promise.reject(new ApiError(401, "AUTH_REQUIRED", ""));
    if (!refreshing) {
      refreshing = withLock(lock, () => rotate(state.refresh)).finally(() => {
        refreshing = null;
      });
    }
    return refreshing;
  }

  /** The access token, renewed first if it is about to expire. */
  async function freshAccessToken() {
    const state = session.load();
    if (state && state.accessExpiresAt - Date.now() < REFRESH_MARGIN_MS) await refreshTokens();
    return session.load()?.access ?? null;
  }

  return { refreshTokens, freshAccessToken };
}

/**
 * The API client of one site: the tokens kept in ``storage`` (sessionStorage or localStorage)
 * under ``key``; ``lock``: the name of the Web Lock refreshes take across tabs (none: this tab
 * only); ``acceptLanguage()``: the language error messages come in.
 */
export function createClient({ storage, key, lock, acceptLanguage }) {
  const session = sessionStore(storage, key);
  const { refreshTokens, freshAccessToken } = refresher(session, lock, acceptLanguage);

  /** Call the API; the envelope's ``data`` on success, an ApiError otherwise. */
  async function api(method, path, options = {}) {
    const auth = options.auth !== false;
    if (auth) await freshAccessToken();
    try {
      const token = auth ? session.load()?.access : null;
      return await request(method, path, { ...options, token, language: acceptLanguage() });
    } catch (error) {
      if (!(error instanceof ApiError) || !auth || !session.load()) throw error;
      if (error.code === "AUTH_TOKEN_EXPIRED" && options.retried !== true) {
        await refreshTokens();
        return api(method, path, { ...options, retried: true });
      }
      if (SIGNED_OUT.has(error.code)) session.signedOut(error.code);
      throw error;
    }
  }

  /** End the session at the server (it may already be over) and forget the tokens either way. */
  async function endSession() {
    try {
      await api("POST", "/api/v1/auth/logout", { body: {} });
    } catch {
      // the tokens go either way
    }
    session.forget();
  }

  return {
    currentSession: session.load,
    keepTokens: session.keepTokens,
    setUser: session.setUser,
    forget: session.forget,
    onSignedOut: session.onSignedOut,
    refreshTokens,
    freshAccessToken,
    api,
    endSession,
    get: (path, query) => api("GET", path, { query }),
    post: (path, body, headers) => api("POST", path, { body: body ?? {}, headers }),
    patch: (path, body) => api("PATCH", path, { body }),
    put: (path, body) => api("PUT", path, { body }),
  };
}
