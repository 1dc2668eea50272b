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
export type Schemas = components["schemas"];
type OkStatus = 200 | 201 | 202;
type JsonOf<R> = R extends {
    content: {
        "application/json": infer J;
    };
} ? J : never;
type DataOf<E> = E extends {
    data: infer D;
} ? D : never;
type Responses<Id extends keyof operations> = operations[Id]["responses"];
/** `data` of the success envelope of an operation (by its operationId). */
export type Data<Id extends keyof operations> = DataOf<JsonOf<Responses<Id>[OkStatus & keyof Responses<Id>]>>;
/** The JSON body an operation takes. */
export type Body<Id extends keyof operations> = operations[Id] extends {
    requestBody?: {
        content: {
            "application/json": infer B;
        };
    };
} ? B : never;
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
    MustResolve<Resolves<Data<"billing_channels_list">>>
];
export interface WardrobeErrorInit {
    code: ErrorCode;
    message: string;
    status: number;
    data?: unknown;
    requestId?: string | null;
}
/** A failure the API (or something in front of it) answered. Branch on `code`, show `message`,
 * quote `requestId` to support. */
export declare class WardrobeError extends Error {
    readonly code: ErrorCode;
    readonly status: number;
    readonly data: unknown;
    readonly requestId: string | null;
    constructor(init: WardrobeErrorInit);
}
/** `data` of a success envelope; anything else throws a `WardrobeError`. */
export declare function unwrap<T>(response: Response): Promise<T>;
export interface Tokens {
    accessToken: string;
    refreshToken: string;
}
/** Where the client keeps the session's tokens (memory, localStorage, wx.setStorage, ...). */
export interface TokenStore {
    load(): Tokens | null | Promise<Tokens | null>;
    save(tokens: Tokens | null): void | Promise<void>;
}
export declare function memoryTokenStore(initial?: Tokens | null): TokenStore;
/** A fresh `Idempotency-Key`: 32 hex digits (crypto's where the platform has it). */
export declare function newIdempotencyKey(): string;
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
export declare class WardrobeClient {
    readonly baseUrl: string;
    readonly tokens: TokenStore;
    private readonly fetchImpl;
    private readonly language;
    private readonly onSessionEnded;
    private readonly newKey;
    private refreshing;
    constructor(options: ClientOptions);
    /** Any operation: `data` of its envelope. An expired access token is refreshed once. */
    request<T>(method: string, path: string, options?: RequestOptions): Promise<T>;
    /** Rotate the token pair now (requests do it themselves when the access token expired). */
    refresh(): Promise<Tokens>;
    requestSmsCode(phone: string, purpose?: CodePurpose): Promise<SmsCodeSent>;
    /** Log in (or sign up) with an SMS code and keep the tokens. */
    loginWithSms(phone: string, code: string, extra?: {
        invite_code?: string;
        totp_code?: string;
    }): Promise<LoginResult>;
    logout(): Promise<Data<"auth_logout">>;
    me(): Promise<User>;
    listFeatures(): Promise<Data<"features_list">>;
    createTask(feature: string, inputs: Body<"tasks_create">["inputs"], options?: {
        idempotencyKey?: string;
    }): Promise<Task>;
    getTask(taskId: string): Promise<Task>;
    /** One page of the user's tasks, newest first: pass `next_cursor` back as `cursor`. */
    listTasks(query?: Query<"tasks_list">): Promise<TaskPage>;
    cancelTask(taskId: string): Promise<Task>;
    /** Poll a task until it succeeded, failed or was canceled (the socket is the live way). */
    waitForTask(taskId: string, options?: WaitOptions): Promise<Task>;
    createUpload(body: Body<"uploads_create">): Promise<UploadGrant>;
    completeUpload(objectKey: string): Promise<StoredObject>;
    /** Grant, PUT the bytes as the grant says (no bearer token: the URL is signed), then have them
     * verified. Use the answer's `object_key` as a task's image input. */
    upload(file: Blob | ArrayBuffer | Uint8Array, options: {
        filename: string;
        contentType: ContentType;
    }): Promise<StoredObject>;
    getQuota(): Promise<Quota>;
    listPlans(): Promise<Data<"billing_plans_list">>;
    listChannels(): Promise<Data<"billing_channels_list">>;
    createOrder(sku: string, channel: PaymentChannel): Promise<Order>;
    getOrder(orderNo: string): Promise<Order>;
    listOrders(query?: Query<"billing_orders_list">): Promise<OrderPage>;
    private resolve;
    private url;
    private attempt;
    /** One refresh at a time: a caller whose token `stale` was already replaced gets the new pair. */
    private refreshAfter;
    private rotate;
}
