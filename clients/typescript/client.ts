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

import type { ErrorCode } from "./error-codes.js";
import type { components, operations } from "./schema.js";

export type { ErrorCode } from "./error-codes.js";
export type { components, operations, paths } from "./schema.js";

// -- Types from the OpenAPI document ----------------------------------------------------------

export type Schemas = components["schemas"];
type OkStatus = 200 | 201 | 202;
type JsonOf<R> = R extends { content: { "application/json": infer J } } ? J : never;
type DataOf<E> = E extends { data: infer D } ? D : never;
type Responses<Id extends keyof operations> = operations[Id]["responses"];
/** `data` of the success envelope of an operation (by its operationId). */
export type Data<Id extends keyof operations> = DataOf<JsonOf<Responses<Id>[OkStatus & keyof Responses<Id>]>>;
/** The JSON body an operation takes. */
export type Body<Id extends keyof operations> = operations[Id] extends {
    requestBody?: { content: { "application/json": infer B } };
}
    ? B
    : never;
/** The query parameters of an operation. */
export type Query<Id extends keyof operations> = NonNullable<operations[Id]["parameters"]["query"]>;

export type Task = Data<"tasks_get">;
export type TaskStatus = Task["status"];
export type TaskPage = Data<"tasks_list">;
export type Feature = Data<"features_list">[number];
export type UploadGrant = Data<"uploads_create">;
export type StoredObject = Data<"uploads_complete">;
export type ContentType = Body<"uploads_create">["content_type"];
export type Quota = Data<"billing_quota_get">;
export type Plan = Data<"billing_plans_list">[number];
export type PaymentChannel = Body<"billing_orders_create">["channel"];
export type Order = Data<"billing_orders_get">;
export type OrderPage = Data<"billing_orders_list">;
export type User = Data<"users_me_get">;
export type LoginResult = Data<"auth_login">;
export type SmsCodeSent = Data<"auth_sms_codes_create">;
export type CodePurpose = Schemas["CodePurpose"];

// Compile-time guard: were an operation above renamed or its answer no longer an envelope, its
// type would silently be `never`; this fails the build instead.
type Resolves<T> = [T] extends [never] ? false : true;
type MustResolve<T extends true> = T;
export type TypesResolve = [
    MustResolve<Resolves<Task>>,
    MustResolve<Resolves<TaskPage>>,
    MustResolve<Resolves<Feature>>,
    MustResolve<Resolves<UploadGrant>>,
    MustResolve<Resolves<StoredObject>>,
    MustResolve<Resolves<Quota>>,
    MustResolve<Resolves<Plan>>,
    MustResolve<Resolves<Order>>,
    MustResolve<Resolves<OrderPage>>,
    MustResolve<Resolves<User>>,
    MustResolve<Resolves<LoginResult>>,
    MustResolve<Resolves<SmsCodeSent>>,
    MustResolve<Resolves<Data<"auth_refresh">>>,
    MustResolve<Resolves<Data<"auth_logout">>>,
    MustResolve<Resolves<Data<"billing_channels_list">>>,
];

const TERMINAL: ReadonlySet<TaskStatus> = new Set<TaskStatus>(["succeeded", "failed", "canceled"]);

// -- Errors and the envelope ------------------------------------------------------------------

export interface WardrobeErrorInit {
    code: ErrorCode;
    message: string;
    status: number;
    data?: unknown;
    requestId?: string | null;
}

/** A failure the API (or something in front of it) answered. Branch on `code`, show `message`,
 * quote `requestId` to support. */
export class WardrobeError extends Error {
    readonly code: ErrorCode;
    readonly status: number;
    readonly data: unknown;
    readonly requestId: string | null;

    constructor(init: WardrobeErrorInit) {
        super(init.message);
        this.name = "WardrobeError";
        this.code = init.code;
        this.status = init.status;
        this.data = init.data ?? null;
        this.requestId = init.requestId ?? null;
    }
}

interface Envelope {
    success: boolean;
    code: string;
    message: string;
    data?: unknown;
    request_id?: string;
}

function asEnvelope(body: unknown): Envelope | null {
    if (typeof body !== "object" || body === null) return null;
    const fields = body as Record<string, unknown>;
    const ok = typeof fields.success === "boolean" && typeof fields.code === "string";
    return ok && typeof fields.message === "string" ? (body as Envelope) : null;
}

/** The code for an answer without the envelope (a proxy's error page, a bucket's refusal). */
function codeForStatus(status: number): ErrorCode {
    if (status === 404) return "NOT_FOUND";
    if (status === 413) return "PAYLOAD_TOO_LARGE";
    if (status === 429) return "RATE_LIMITED";
    if (status === 502 || status === 503 || status === 504) return "DEPENDENCY_UNAVAILABLE";
    return "INTERNAL_ERROR";
}

/** `data` of a success envelope; anything else throws a `WardrobeError`. */
export async function unwrap<T>(response: Response): Promise<T> {
    const text = await response.text();
    let parsed: unknown;
    try {
        parsed = text === "" ? undefined : JSON.parse(text);
    } catch {
        parsed = undefined;
    }
    const envelope = asEnvelope(parsed);
    const requestId = envelope?.request_id ?? response.headers.get("X-Request-ID");
    if (envelope !== null && envelope.success && response.ok) return envelope.data as T;
    if (envelope !== null && !envelope.success) {
        const { message, data } = envelope;
        throw new WardrobeError({ code: envelope.code as ErrorCode, message, status: response.status, data, requestId });
    }
    const message = `HTTP ${response.status} without the API's envelope`;
    throw new WardrobeError({ code: codeForStatus(response.status), message, status: response.status, requestId });
}

// -- Tokens -----------------------------------------------------------------------------------

export interface Tokens {
    accessToken: string;
    refreshToken: string;
}

/** Where the client keeps the session's tokens (memory, localStorage, wx.setStorage, ...). */
export interface TokenStore {
    load(): Tokens | null | Promise<Tokens | null>;
    save(tokens: Tokens | null): void | Promise<void>;
}

export function memoryTokenStore(initial: Tokens | null = null): TokenStore {
    let tokens = initial;
    return {
        load: () => tokens,
        save: (next) => {
            tokens = next;
        },
    };
}

/** A fresh `Idempotency-Key`: 32 hex digits (crypto's where the platform has it). */
export function newIdempotencyKey(): string {
    const crypto = (globalThis as { crypto?: Partial<Crypto> }).crypto;
    if (typeof crypto?.randomUUID === "function") return crypto.randomUUID().replace(/-/g, "");
    const bytes = new Uint8Array(16);
    if (typeof crypto?.getRandomValues === "function") crypto.getRandomValues(bytes);
    else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// -- The client -------------------------------------------------------------------------------

export interface ClientOptions {
    /** The API's origin, e.g. "https://api.example.com" ("" for the page's own origin). */
    baseUrl: string;
    tokens?: TokenStore;
    fetch?: typeof fetch;
    /** Sent as Accept-Language: the language of error messages (zh-CN by default). */
    language?: string;
    /** Called once a refresh is refused (the session ended): send the user to log in. */
    onSessionEnded?: (error: WardrobeError) => void;
    newIdempotencyKey?: () => string;
}

export type QueryValue = string | number | boolean | null | undefined;

export interface RequestOptions {
    query?: Record<string, QueryValue>;
    body?: unknown;
    headers?: Record<string, string>;
    /** Send the bearer token (default true). */
    auth?: boolean;
}

export interface WaitOptions {
    intervalMs?: number;
    maxIntervalMs?: number;
    timeoutMs?: number;
}

export class WardrobeClient {
    readonly baseUrl: string;
    readonly tokens: TokenStore;
    private readonly fetchImpl: typeof fetch;
    private readonly language: string | undefined;
    private readonly onSessionEnded: ((error: WardrobeError) => void) | undefined;
    private readonly newKey: () => string;
    private refreshing: Promise<Tokens> | null = null;

    constructor(options: ClientOptions) {
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
    async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
        const tokens = options.auth === false ? null : await this.tokens.load();
        try {
            return await this.attempt<T>(method, path, options, tokens?.accessToken ?? null);
        } catch (error) {
            if (tokens === null || !(error instanceof WardrobeError) || error.code !== "AUTH_TOKEN_EXPIRED") throw error;
            const fresh = await this.refreshAfter(tokens.accessToken);
            return this.attempt<T>(method, path, options, fresh.accessToken);
        }
    }

    /** Rotate the token pair now (requests do it themselves when the access token expired). */
    async refresh(): Promise<Tokens> {
        const current = await this.tokens.load();
        return this.refreshAfter(current?.accessToken ?? "");
    }

    // Auth

    requestSmsCode(phone: string, purpose: CodePurpose = "login"): Promise<SmsCodeSent> {
        const body: Body<"auth_sms_codes_create"> = { phone, purpose };
        return this.request("POST", "/api/v1/auth/sms-codes", { body, auth: purpose !== "login" });
    }

    /** Log in (or sign up) with an SMS code and keep the tokens. */
    async loginWithSms(
        phone: string,
        code: string,
        extra: { invite_code?: string; totp_code?: string } = {},
    ): Promise<LoginResult> {
        const body: Schemas["SmsLogin"] = { method: "sms", phone, code, ...extra };
        const result = await this.request<LoginResult>("POST", "/api/v1/auth/login", { body, auth: false });
        await this.tokens.save({ accessToken: result.access_token, refreshToken: result.refresh_token });
        return result;
    }

    async logout(): Promise<Data<"auth_logout">> {
        try {
            return await this.request("POST", "/api/v1/auth/logout");
        } finally {
            await this.tokens.save(null);
        }
    }

    me(): Promise<User> {
        return this.request("GET", "/api/v1/users/me");
    }

    // Features and tasks

    listFeatures(): Promise<Data<"features_list">> {
        return this.request("GET", "/api/v1/features");
    }

    createTask(
        feature: string,
        inputs: Body<"tasks_create">["inputs"],
        options: { idempotencyKey?: string } = {},
    ): Promise<Task> {
        const body: Body<"tasks_create"> = { feature, inputs };
        const headers = { "Idempotency-Key": options.idempotencyKey ?? this.newKey() };
        return this.request("POST", "/api/v1/tasks", { body, headers });
    }

    getTask(taskId: string): Promise<Task> {
        return this.request("GET", `/api/v1/tasks/${encodeURIComponent(taskId)}`);
    }

    /** One page of the user's tasks, newest first: pass `next_cursor` back as `cursor`. */
    listTasks(query: Query<"tasks_list"> = {}): Promise<TaskPage> {
        return this.request("GET", "/api/v1/tasks", { query });
    }

    cancelTask(taskId: string): Promise<Task> {
        return this.request("POST", `/api/v1/tasks/${encodeURIComponent(taskId)}/cancel`);
    }

    /** Poll a task until it succeeded, failed or was canceled (the socket is the live way). */
    async waitForTask(taskId: string, options: WaitOptions = {}): Promise<Task> {
        const { intervalMs = 1000, maxIntervalMs = 10_000, timeoutMs = 600_000 } = options;
        const deadline = Date.now() + timeoutMs;
        let delay = intervalMs;
        for (;;) {
            const task = await this.getTask(taskId);
            if (TERMINAL.has(task.status)) return task;
            if (Date.now() + delay > deadline) throw new Error(`task ${taskId} still ${task.status}`);
            await new Promise((resolve) => setTimeout(resolve, delay));
            delay = Math.min(delay * 2, maxIntervalMs);
        }
    }

    // Uploads

    createUpload(body: Body<"uploads_create">): Promise<UploadGrant> {
        return this.request("POST", "/api/v1/uploads", { body });
    }

    completeUpload(objectKey: string): Promise<StoredObject> {
        const body: Body<"uploads_complete"> = { object_key: objectKey };
        return this.request("POST", "/api/v1/uploads/complete", { body });
    }

    /** Grant, PUT the bytes as the grant says (no bearer token: the URL is signed), then have them
     * verified. Use the answer's `object_key` as a task's image input. */
    async upload(
        file: Blob | ArrayBuffer | Uint8Array,
        options: { filename: string; contentType: ContentType },
    ): Promise<StoredObject> {
        const size = file instanceof Uint8Array || file instanceof ArrayBuffer ? file.byteLength : file.size;
        const grant = await this.createUpload({ filename: options.filename, content_type: options.contentType, size });
        const { method, url, headers } = grant.upload;
        const put = await this.fetchImpl(this.resolve(url), { method, headers, body: file as BodyInit });
        if (!put.ok) await unwrap(put);
        return this.completeUpload(grant.object_key);
    }

    // Billing

    getQuota(): Promise<Quota> {
        return this.request("GET", "/api/v1/billing/quota");
    }

    listPlans(): Promise<Data<"billing_plans_list">> {
        return this.request("GET", "/api/v1/billing/plans", { auth: false });
    }

    listChannels(): Promise<Data<"billing_channels_list">> {
        return this.request("GET", "/api/v1/billing/channels", { auth: false });
    }

    createOrder(sku: string, channel: PaymentChannel): Promise<Order> {
        const body: Body<"billing_orders_create"> = { sku, channel };
        return this.request("POST", "/api/v1/billing/orders", { body });
    }

    getOrder(orderNo: string): Promise<Order> {
        return this.request("GET", `/api/v1/billing/orders/${encodeURIComponent(orderNo)}`);
    }

    listOrders(query: Query<"billing_orders_list"> = {}): Promise<OrderPage> {
        return this.request("GET", "/api/v1/billing/orders", { query });
    }

    // Internals

    private resolve(url: string): string {
        return /^https?:\/\//i.test(url) ? url : `${this.baseUrl}${url}`;
    }

    private url(path: string, query: Record<string, QueryValue> | undefined): string {
        const pairs = Object.entries(query ?? {}).filter((pair): pair is [string, string | number | boolean] => {
            return pair[1] !== undefined && pair[1] !== null;
        });
        const search = new URLSearchParams(pairs.map(([name, value]) => [name, String(value)])).toString();
        return `${this.baseUrl}${path}${search === "" ? "" : `?${search}`}`;
    }

    private async attempt<T>(method: string, path: string, options: RequestOptions, access: string | null): Promise<T> {
        const headers: Record<string, string> = { Accept: "application/json", ...options.headers };
        if (this.language !== undefined) headers["Accept-Language"] = this.language;
        if (access !== null) headers.Authorization = `Bearer ${access}`;
        const init: RequestInit = { method, headers };
        if (options.body !== undefined) {
            headers["Content-Type"] = "application/json";
            init.body = JSON.stringify(options.body);
        }
        return unwrap<T>(await this.fetchImpl(this.url(path, options.query), init));
    }

    /** One refresh at a time: a caller whose token `stale` was already replaced gets the new pair. */
    private refreshAfter(stale: string): Promise<Tokens> {
        if (this.refreshing !== null) return this.refreshing;
        const running = this.rotate(stale);
        this.refreshing = running;
        const done = () => {
            if (this.refreshing === running) this.refreshing = null;
        };
        running.then(done, done);
        return running;
    }

    private async rotate(stale: string): Promise<Tokens> {
        const current = await this.tokens.load();
        if (current === null) {
            throw new WardrobeError({ code: "AUTH_REQUIRED", message: "Not logged in", status: 401 });
        }
        if (current.accessToken !== stale) return current;
        const body: Body<"auth_refresh"> = { refresh_token: current.refreshToken };
        try {
            const pair = await this.attempt<Data<"auth_refresh">>("POST", "/api/v1/auth/refresh", { body }, null);
            const next = { accessToken: pair.access_token, refreshToken: pair.refresh_token };
            await this.tokens.save(next);
            return next;
        } catch (error) {
            if (error instanceof WardrobeError && error.status === 401) {
                await this.tokens.save(null);
                this.onSessionEnded?.(error);
            }
            throw error;
        }
    }
}
