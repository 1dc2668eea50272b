// The only way the console acts: the public HTTP API, in its envelope. Tokens live in
// sessionStorage (gone with the tab, never shared with other tabs or later visits); the access
// token is renewed through POST /api/v1/auth/refresh shortly before it expires, or once when an
// answer says it has.
import { acceptLanguage } from "./i18n.js";

const STORE = "wardrobe.console.session";
const REFRESH_MARGIN_MS = 30_000;
// Answers after which this session cannot go on: back to the login page.
const SIGNED_OUT = new Set(["AUTH_REQUIRED", "AUTH_TOKEN_INVALID", "AUTH_SESSION_REVOKED", "AUTH_REFRESH_REUSED", "ACCOUNT_DISABLED"]);

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

let state = load();
const signedOutListeners = new Set();
let refreshing = null;

function load() {
  try {
    const raw = sessionStorage.getItem(STORE);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

function store() {
  if (state) sessionStorage.setItem(STORE, JSON.stringify(state));
  else sessionStorage.removeItem(STORE);
}

export function currentSession() {
  return state;
}

export function accessToken() {
  return state ? state.access : null;
}

/** Keep the tokens of a login or refresh answer (and the user of a login). */
export function keepTokens(body, user) {
  state = {
    access: body.access_token,
    refresh: body.refresh_token,
    accessExpiresAt: Date.now() + body.expires_in * 1000,
    user: user ?? state?.user ?? null,
  };
  store();
}

export function setUser(user) {
  if (!state) return;
  state.user = user;
  store();
}

export function forget() {
  state = null;
  store();
}

export function onSignedOut(listener) {
  signedOutListeners.add(listener);
}

function signedOut(code) {
  forget();
  for (const listener of signedOutListeners) listener(code);
}

/** One refresh at a time: a refresh token works once, a second use would end the session. */
export function refreshTokens() {
  if (!state) return Promise.reject(new ApiError(401, "AUTH_REQUIRED", ""));
  if (!refreshing) {
    const token = state.refresh;
    refreshing = request("POST", "/api/v1/auth/refresh", { body: { refresh_token: token }, auth: false })
      .then((body) => keepTokens(body))
      .catch((error) => {
        if (error instanceof ApiError && error.status === 401) signedOut(error.code);
        throw error;
      })
      .finally(() => {
        refreshing = null;
      });
  }
  return refreshing;
}

export async function freshAccessToken() {
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

async function request(method, path, { body, query, auth = true } = {}) {
  const headers = { Accept: "application/json", "Accept-Language": acceptLanguage() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (auth && state) headers.Authorization = `Bearer ${state.access}`;
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
    if (!(error instanceof ApiError) || !auth || !state) throw error;
    if (error.code === "AUTH_TOKEN_EXPIRED" && options.retried !== true) {
      await refreshTokens();
      return api(method, path, { ...options, retried: true });
    }
    if (SIGNED_OUT.has(error.code)) signedOut(error.code);
    throw error;
  }
}

export const get = (path, query) => api("GET", path, { query });
export const post = (path, body) => api("POST", path, { body: body ?? {} });
export const patch = (path, body) => api("PATCH", path, { body });
export const put = (path, body) => api("PUT", path, { body });
