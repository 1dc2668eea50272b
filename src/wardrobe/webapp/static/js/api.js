// The only way the app acts: the public HTTP API, in its envelope. The tokens live in
// localStorage (a phone stays signed in between visits) and are shared by every tab of the app, so
// refreshing them is serialised across tabs too: a refresh token works once, and the same one
// presented twice — two tabs, or two racing requests — would end the whole session
// (docs/clients.md). One refresh is in flight per tab, under a Web Lock held across tabs; a tab
// that waited for the lock takes the pair another tab got instead of spending its own again.
import { acceptLanguage } from "./i18n.js";

const STORE = "wardrobe.app.session";
const LOCK = "wardrobe.app.refresh";
const REFRESH_MARGIN_MS = 30_000;
// Answers after which this session cannot go on: back to the login page.
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

const signedOutListeners = new Set();
let refreshing = null;

function load() {
  try {
    const raw = localStorage.getItem(STORE);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

function store(state) {
  if (state) localStorage.setItem(STORE, JSON.stringify(state));
  else localStorage.removeItem(STORE);
}

export function currentSession() {
  return load();
}

export function accessToken() {
  return load()?.access ?? null;
}

/** Keep the tokens of a login or refresh answer (and the user of a login). */
export function keepTokens(body, user) {
  store({
    access: body.access_token,
    refresh: body.refresh_token,
    accessExpiresAt: Date.now() + body.expires_in * 1000,
    user: user ?? load()?.user ?? null,
  });
}

export function setUser(user) {
  const state = load();
  if (state) store({ ...state, user });
}

export function forget() {
  store(null);
}

export function onSignedOut(listener) {
  signedOutListeners.add(listener);
}

function signedOut(code) {
  forget();
  for (const listener of signedOutListeners) listener(code);
}

function withLock(work) {
  if (navigator.locks && typeof navigator.locks.request === "function") return navigator.locks.request(LOCK, work);
  return work();
}

async function rotate(spent) {
  const state = load();
  if (!state) throw new ApiError(401, "AUTH_REQUIRED", "");
  // Another tab rotated the pair while this one waited: its tokens are ours too.
  if (state.refresh !== spent && state.accessExpiresAt - Date.now() > REFRESH_MARGIN_MS) return;
  try {
    keepTokens(await request("POST", "/api/v1/auth/refresh", { body: { refresh_token: state.refresh }, auth: false }));
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) signedOut(error.code);
    throw error;
  }
}

/** One refresh at a time, in this tab and across tabs. */
export function refreshTokens() {
  const state = load();
  if (!state) return Promise.reject(new ApiError(401, "AUTH_REQUIRED", ""));
  if (!refreshing) {
    refreshing = withLock(() => rotate(state.refresh)).finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

export async function freshAccessToken() {
  const state = load();
  if (state && state.accessExpiresAt - Date.now() < REFRESH_MARGIN_MS) await refreshTokens();
  return accessToken();
}

function url(path, query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

async function request(method, path, { body, query, headers: extra, auth = true } = {}) {
  const headers = { Accept: "application/json", "Accept-Language": acceptLanguage(), ...(extra || {}) };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const token = auth ? accessToken() : null;
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

/** Call the API; the envelope's ``data`` on success, an ApiError otherwise. */
export async function api(method, path, options = {}) {
  const auth = options.auth !== false;
  if (auth) await freshAccessToken();
  try {
    return await request(method, path, options);
  } catch (error) {
    if (!(error instanceof ApiError) || !auth || !load()) throw error;
    if (error.code === "AUTH_TOKEN_EXPIRED" && options.retried !== true) {
      await refreshTokens();
      return api(method, path, { ...options, retried: true });
    }
    if (SIGNED_OUT.has(error.code)) signedOut(error.code);
    throw error;
  }
}

export const get = (path, query) => api("GET", path, { query });
export const post = (path, body, headers) => api("POST", path, { body: body ?? {}, headers });
