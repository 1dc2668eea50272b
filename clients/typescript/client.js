/**
 * A thin fetch client for the Wardrobe API (see ../README.md and docs/clients.md).
 *
 * - Every answer comes in the envelope `{success, code, message, data, request_id}`: the helpers
 *   return `data`, and a failure throws a `WardrobeError` whose `code` is one of the API's error
 *   codes (error-codes.d.ts, generated from the OpenAPI document).
 * - `Authorization: Bearer` comes from a `TokenStore`. A request answered `AUTH_TOKEN_EXPIRED` is
 *   sent again once after a refresh; refreshes are serialised (one in flight per client), since
 *   `POST /api/v1/auth/refresh` rotates the refresh token and a token presented twice ends the
 *   session. A refresh answered 401 clears the store and calls `onSessionEnded`: log in again.
 * - `createTask` sends an `Idempotency-Key` (a new one per call unless given: pass your own to
 *   retry a creation whose answer was lost).
 *
 * Edit this file, then `python3 dev.py clients` compiles it into client.js and client.d.ts.
 */
const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
/** A failure the API (or something in front of it) answered. Branch on `code`, show `message`,
 * quote `requestId` to support. */
export class WardrobeError extends Error {
    constructor(init) {
        super(init.message);
        this.name = "WardrobeError";
        this.code = init.code;
        this.status = init.status;
        this.data = init.data ?? null;
        this.requestId = init.requestId ?? null;
    }
}
function asEnvelope(body) {
    if (typeof body !== "object" || body === null)
        return null;
    const fields = body;
    const ok = typeof fields.success === "boolean" && typeof fields.code === "string";
    return ok && typeof fields.message === "string" ? body : null;
}
/** The code for an answer without the envelope (a proxy's error page, a bucket's refusal). */
function codeForStatus(status) {
    if (status === 404)
        return "NOT_FOUND";
    if (status === 413)
        return "PAYLOAD_TOO_LARGE";
    if (status === 429)
        return "RATE_LIMITED";
    if (status === 502 || status === 503 || status === 504)
        return "DEPENDENCY_UNAVAILABLE";
    return "INTERNAL_ERROR";
}
/** `data` of a success envelope; anything else throws a `WardrobeError`. */
export async function unwrap(response) {
    const text = await response.text();
    let parsed;
    try {
        parsed = text === "" ? undefined : JSON.parse(text);
    }
    catch {
        parsed = undefined;
    }
    const envelope = asEnvelope(parsed);
    const requestId = envelope?.request_id ?? response.headers.get("X-Request-ID");
    if (envelope !== null && envelope.success && response.ok)
        return envelope.data;
    if (envelope !== null && !envelope.success) {
        const { message, data } = envelope;
        throw new WardrobeError({ code: envelope.code, message, status: response.status, data, requestId });
    }
    const message = `HTTP ${response.status} without the API's envelope`;
    throw new WardrobeError({ code: codeForStatus(response.status), message, status: response.status, requestId });
}
export function memoryTokenStore(initial = null) {
    let tokens = initial;
    return {
        load: () => tokens,
        save: (next) => {
            tokens = next;
        },
    };
}
/** A fresh `Idempotency-Key`: 32 hex digits (crypto's where the platform has it). */
export function newIdempotencyKey() {
    const crypto = globalThis.crypto;
    if (typeof crypto?.randomUUID === "function")
        return crypto.randomUUID().replace(/-/g, "");
    const bytes = new Uint8Array(16);
    if (typeof crypto?.getRandomValues === "function")
        crypto.getRandomValues(bytes);
    else
        for (let i = 0; i < bytes.length; i++)
            bytes[i] = Math.floor(Math.random() * 256);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
export class WardrobeClient {
    constructor(options) {
        this.refreshing = null;
        this.baseUrl = options.baseUrl.replace(/\/+$/, "");
        this.tokens = options.tokens ?? memoryTokenStore();
        if (options.fetch === undefined && typeof globalThis.fetch !== "function") {
            throw new TypeError("this platform has no fetch: pass options.fetch");
        }
        this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
        this.language = options.language;
        this.onSessionEnded = options.onSessionEnded;
        this.newKey = options.newIdempotencyKey ?? newIdempotencyKey;
    }
    /** Any operation: `data` of its envelope. An expired access token is refreshed once. */
    async request(method, path, options = {}) {
        const tokens = options.auth === false ? null : await this.tokens.load();
        try {
            return await this.attempt(method, path, options, tokens?.accessToken ?? null);
        }
        catch (error) {
            if (tokens === null || !(error instanceof WardrobeError) || error.code !== "AUTH_TOKEN_EXPIRED")
                throw error;
            const fresh = await this.refreshAfter(tokens.accessToken);
            return this.attempt(method, path, options, fresh.accessToken);
        }
    }
    /** Rotate the token pair now (requests do it themselves when the access token expired). */
    async refresh() {
        const current = await this.tokens.load();
        return this.refreshAfter(current?.accessToken ?? "");
    }
    // Auth
    requestSmsCode(phone, purpose = "login") {
        const body = { phone, purpose };
        return this.request("POST", "/api/v1/auth/sms-codes", { body, auth: purpose !== "login" });
    }
    /** Log in (or sign up) with an SMS code and keep the tokens. */
    async loginWithSms(phone, code, extra = {}) {
        const body = { method: "sms", phone, code, ...extra };
        const result = await this.request("POST", "/api/v1/auth/login", { body, auth: false });
        await this.tokens.save({ accessToken: result.access_token, refreshToken: result.refresh_token });
        return result;
    }
    async logout() {
        try {
            return await this.request("POST", "/api/v1/auth/logout");
        }
        finally {
            await this.tokens.save(null);
        }
    }
    me() {
        return this.request("GET", "/api/v1/users/me");
    }
    // Features and tasks
    listFeatures() {
        return this.request("GET", "/api/v1/features");
    }
    createTask(feature, inputs, options = {}) {
        const body = { feature, inputs };
        const headers = { "Idempotency-Key": options.idempotencyKey ?? this.newKey() };
        return this.request("POST", "/api/v1/tasks", { body, headers });
    }
    getTask(taskId) {
        return this.request("GET", `/api/v1/tasks/${encodeURIComponent(taskId)}`);
    }
    /** One page of the user's tasks, newest first: pass `next_cursor` back as `cursor`. */
    listTasks(query = {}) {
        return this.request("GET", "/api/v1/tasks", { query });
    }
    cancelTask(taskId) {
        return this.request("POST", `/api/v1/tasks/${encodeURIComponent(taskId)}/cancel`);
    }
    /** Poll a task until it succeeded, failed or was canceled (the socket is the live way). */
    async waitForTask(taskId, options = {}) {
        const { intervalMs = 1000, maxIntervalMs = 10000, timeoutMs = 600000 } = options;
        const deadline = Date.now() + timeoutMs;
        let delay = intervalMs;
        for (;;) {
            const task = await this.getTask(taskId);
            if (TERMINAL.has(task.status))
                return task;
            if (Date.now() + delay > deadline)
                throw new Error(`task ${taskId} still ${task.status}`);
            await new Promise((resolve) => setTimeout(resolve, delay));
            delay = Math.min(delay * 2, maxIntervalMs);
        }
    }
    // Uploads
    createUpload(body) {
        return this.request("POST", "/api/v1/uploads", { body });
    }
    completeUpload(objectKey) {
        const body = { object_key: objectKey };
        return this.request("POST", "/api/v1/uploads/complete", { body });
    }
    /** Grant, PUT the bytes as the grant says (no bearer token: the URL is signed), then have them
     * verified. Use the answer's `object_key` as a task's image input. */
    async upload(file, options) {
        const size = file instanceof Uint8Array || file instanceof ArrayBuffer ? file.byteLength : file.size;
        const grant = await this.createUpload({ filename: options.filename, content_type: options.contentType, size });
        const { method, url, headers } = grant.upload;
        const put = await this.fetchImpl(this.resolve(url), { method, headers, body: file });
        if (!put.ok)
            await unwrap(put);
        return this.completeUpload(grant.object_key);
    }
    // Billing
    getQuota() {
        return this.request("GET", "/api/v1/billing/quota");
    }
    listPlans() {
        return this.request("GET", "/api/v1/billing/plans", { auth: false });
    }
    listChannels() {
        return this.request("GET", "/api/v1/billing/channels", { auth: false });
    }
    createOrder(sku, channel) {
        const body = { sku, channel };
        return this.request("POST", "/api/v1/billing/orders", { body });
    }
    getOrder(orderNo) {
        return this.request("GET", `/api/v1/billing/orders/${encodeURIComponent(orderNo)}`);
    }
    listOrders(query = {}) {
        return this.request("GET", "/api/v1/billing/orders", { query });
    }
    // Internals
    resolve(url) {
        return /^https?:\/\//i.test(url) ? url : `${this.baseUrl}${url}`;
    }
    url(path, query) {
        const pairs = Object.entries(query ?? {}).filter((pair) => {
            return pair[1] !== undefined && pair[1] !== null;
        });
        const search = new URLSearchParams(pairs.map(([name, value]) => [name, String(value)])).toString();
        return `${this.baseUrl}${path}${search === "" ? "" : `?${search}`}`;
    }
    async attempt(method, path, options, access) {
        const headers = { Accept: "application/json", ...options.headers };
        if (this.language !== undefined)
            headers["Accept-Language"] = this.language;
        if (access !== null)
            headers.Authorization = `Bearer ${access}`;
        const init = { method, headers };
        if (options.body !== undefined) {
            headers["Content-Type"] = "application/json";
            init.body = JSON.stringify(options.body);
        }
        return unwrap(await this.fetchImpl(this.url(path, options.query), init));
    }
    /** One refresh at a time: a caller whose token `stale` was already replaced gets the new pair. */
    refreshAfter(stale) {
        if (this.refreshing !== null)
            return this.refreshing;
        const running = this.rotate(stale);
        this.refreshing = running;
        const done = () => {
            if (this.refreshing === running)
                this.refreshing = null;
        };
        running.then(done, done);
        return running;
    }
    async rotate(stale) {
        const current = await this.tokens.load();
        if (current === null) {
            throw new WardrobeError({ code: "AUTH_REQUIRED", message: "Not logged in", status: 401 });
        }
        if (current.accessToken !== stale)
            return current;
        const body = { refresh_token: current.refreshToken };
        try {
            const pair = await this.attempt("POST", "/api/v1/auth/refresh", { body }, null);
            const next = { accessToken: pair.access_token, refreshToken: pair.refresh_token };
            await this.tokens.save(next);
            return next;
        }
        catch (error) {
            if (error instanceof WardrobeError && error.status === 401) {
                await this.tokens.save(null);
                this.onSessionEnded?.(error);
            }
            throw error;
        }
    }
}
