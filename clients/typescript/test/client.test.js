// The committed client.js against a stub fetch: the envelope, typed errors, the bearer token, one
// refresh at a time, Idempotency-Key, the upload steps. Run by tests/clients/test_client_kit.py
// (`node --test clients/typescript/test/client.test.js`), or here with `npm test`.

import assert from "node:assert/strict";
import { test } from "node:test";

import { WardrobeClient, WardrobeError, memoryTokenStore, unwrap } from "../client.js";

const BASE = "https://api.example.test";
const JSON_TYPE = { "Content-Type": "application/json" };

function ok(data, status = 200) {
    const body = { success: true, code: "OK", message: "OK", data, request_id: "req-ok" };
    return new Response(JSON.stringify(body), { status, headers: JSON_TYPE });
}

function failure(status, code, data = null) {
    const body = { success: false, code, message: `${code} said the server`, data, request_id: "req-err" };
    return new Response(JSON.stringify(body), { status, headers: JSON_TYPE });
}

function later(ms, make) {
    return new Promise((resolve) => setTimeout(() => resolve(make()), ms));
}

/** A fetch that records each call and answers with `route(call)`. */
function stubFetch(route) {
    const calls = [];
    const fetch = async (url, init = {}) => {
        const call = {
            url: String(url),
            path: new URL(String(url)).pathname,
            method: init.method ?? "GET",
            headers: { ...(init.headers ?? {}) },
            body: init.body,
        };
        calls.push(call);
        return route(call);
    };
    return { fetch, calls };
}

function client(route, tokens = { accessToken: "a1", refreshToken: "r1" }, extra = {}) {
    const stub = stubFetch(route);
    const store = memoryTokenStore(tokens);
    return { api: new WardrobeClient({ baseUrl: `${BASE}/`, tokens: store, fetch: stub.fetch, ...extra }), store, ...stub };
}

test("unwraps the envelope and sends the bearer token and the language", async () => {
    const quota = { balance: 5, held: 1, available: 4, membership: null };
    const { api, calls } = client(() => ok(quota), undefined, { language: "en" });
    assert.deepEqual(await api.getQuota(), quota);
    assert.equal(calls[0].url, `${BASE}/api/v1/billing/quota`);
    assert.equal(calls[0].headers.Authorization, "Bearer a1");
    assert.equal(calls[0].headers["Accept-Language"], "en");
});

test("a failure is a WardrobeError with the code, status, data and request id", async () => {
    const fields = [{ field: "feature", message: "required" }];
    const { api } = client(() => failure(422, "VALIDATION_FAILED", fields));
    const error = await api.createTask("", {}).then(
        () => assert.fail("no error"),
        (e) => e,
    );
    assert.ok(error instanceof WardrobeError);
    assert.ok(error instanceof Error);
    assert.equal(error.code, "VALIDATION_FAILED");
    assert.equal(error.status, 422);
    assert.deepEqual(error.data, fields);
    assert.equal(error.requestId, "req-err");
    assert.equal(error.message, "VALIDATION_FAILED said the server");
});

test("an answer without the envelope still throws a WardrobeError", async () => {
    const page = new Response("<html>bad gateway</html>", { status: 502, headers: { "X-Request-ID": "edge-1" } });
    await assert.rejects(unwrap(page), { name: "WardrobeError", code: "DEPENDENCY_UNAVAILABLE", status: 502, requestId: "edge-1" });
    const empty = new Response("", { status: 200 });
    await assert.rejects(unwrap(empty), { code: "INTERNAL_ERROR", status: 200 });
});

/** An API whose access token a1 has expired; the refresh rotates r1 into a2/r2 after `refreshMs`. */
function expiringApi(refreshMs = 20) {
    const state = { refreshes: [] };
    const route = (call) => {
        if (call.path === "/api/v1/auth/refresh") {
            state.refreshes.push(call);
            const used = JSON.parse(call.body).refresh_token;
            if (used !== "r1") return failure(401, "AUTH_REFRESH_REUSED");
            return later(refreshMs, () => ok({ access_token: "a2", refresh_token: "r2", token_type: "Bearer", expires_in: 900, refresh_expires_in: 86400 }));
        }
        if (call.headers.Authorization === "Bearer a1") {
            const slow = call.path === "/api/v1/tasks/slow";
            return slow ? later(refreshMs * 4, () => failure(401, "AUTH_TOKEN_EXPIRED")) : failure(401, "AUTH_TOKEN_EXPIRED");
        }
        if (call.headers.Authorization === "Bearer a2") return ok({ path: call.path });
        return failure(401, "AUTH_REQUIRED");
    };
    return { state, route };
}

test("requests on an expired token share one refresh, and the rotated pair is kept", async () => {
    const { state, route } = expiringApi();
    const { api, store, calls } = client(route);
    const answers = await Promise.all([api.getQuota(), api.me(), api.listFeatures(), api.getTask("slow")]);
    assert.deepEqual(
        answers.map((a) => a.path),
        ["/api/v1/billing/quota", "/api/v1/users/me", "/api/v1/features", "/api/v1/tasks/slow"],
    );
    // One refresh, even for the request whose 401 came after it had finished.
    assert.equal(state.refreshes.length, 1);
    assert.equal(state.refreshes[0].headers.Authorization, undefined);
    assert.deepEqual(JSON.parse(state.refreshes[0].body), { refresh_token: "r1" });
    assert.deepEqual(await store.load(), { accessToken: "a2", refreshToken: "r2" });
    assert.equal(calls.filter((c) => c.headers.Authorization === "Bearer a2").length, 4);
});

test("a refused refresh clears the tokens and reports the session ended, once", async () => {
    const ended = [];
    const { route } = expiringApi();
    const { api, store } = client(route, { accessToken: "a1", refreshToken: "stale" }, { onSessionEnded: (e) => ended.push(e.code) });
    const results = await Promise.allSettled([api.getQuota(), api.me()]);
    assert.deepEqual(
        results.map((r) => r.status === "rejected" && r.reason.code),
        ["AUTH_REFRESH_REUSED", "AUTH_REFRESH_REUSED"],
    );
    assert.deepEqual(ended, ["AUTH_REFRESH_REUSED"]);
    assert.equal(await store.load(), null);
});

test("createTask sends an Idempotency-Key, the same one on the retry after a refresh", async () => {
    const { route } = expiringApi(1);
    const { api, calls } = client(route);
    await api.createTask("thumb", { image: "uploads/1/x.png" });
    const posts = calls.filter((c) => c.path === "/api/v1/tasks");
    assert.equal(posts.length, 2);
    const [first, retry] = posts.map((c) => c.headers["Idempotency-Key"]);
    assert.match(first, /^[!-~]{8,128}$/);
    assert.equal(retry, first);
    assert.deepEqual(JSON.parse(posts[1].body), { feature: "thumb", inputs: { image: "uploads/1/x.png" } });
    await api.createTask("thumb", {});
    assert.notEqual(calls.at(-1).headers["Idempotency-Key"], first);
    await api.createTask("thumb", {}, { idempotencyKey: "mine-0001" });
    assert.equal(calls.at(-1).headers["Idempotency-Key"], "mine-0001");
});

test("upload: grant, PUT as granted without the token, then complete", async () => {
    const stored = { object_key: "uploads/1/k.png", content_type: "image/png", size: 4, width: 1, height: 1 };
    for (const url of ["/api/v1/storage/objects/uploads/1/k.png?signature=s", "https://bucket.example.test/k?X-Sig=1"]) {
        const { api, calls } = client((call) => {
            if (call.path === "/api/v1/uploads") {
                const upload = { method: "PUT", url, headers: { "Content-Type": "image/png", "If-None-Match": "*" } };
                return ok({ object_key: "uploads/1/k.png", upload, expires_at: "2030-01-01T00:00:00Z", max_size: 10 });
            }
            if (call.method === "PUT") return url.startsWith("/") ? ok(stored, 201) : new Response("", { status: 200 });
            return ok(stored);
        });
        const bytes = new Uint8Array([137, 80, 78, 71]);
        assert.deepEqual(await api.upload(bytes, { filename: "in.png", contentType: "image/png" }), stored);
        const [grant, put, complete] = calls;
        assert.deepEqual(JSON.parse(grant.body), { filename: "in.png", content_type: "image/png", size: 4 });
        assert.equal(put.url, url.startsWith("/") ? `${BASE}${url}` : url);
        assert.deepEqual(put.headers, { "Content-Type": "image/png", "If-None-Match": "*" });
        assert.equal(put.body, bytes);
        assert.equal(complete.path, "/api/v1/uploads/complete");
        assert.deepEqual(JSON.parse(complete.body), { object_key: "uploads/1/k.png" });
    }
    const { api } = client((call) => {
        if (call.method === "PUT") return new Response("<Error/>", { status: 403 });
        return ok({ object_key: "k", upload: { method: "PUT", url: "https://b.test/k", headers: {} } });
    });
    await assert.rejects(api.upload(new Uint8Array([1]), { filename: "a.png", contentType: "image/png" }), { status: 403 });
});

test("loginWithSms asks for a code, logs in and keeps the tokens", async () => {
    const user = { id: 7 };
    const { api, store, calls } = client((call) => {
        if (call.path === "/api/v1/auth/sms-codes") return ok({ cooldown_seconds: 60, debug_code: "123456" });
        return ok({ access_token: "a9", refresh_token: "r9", expires_in: 900, refresh_expires_in: 1, is_new_user: true, user });
    }, null);
    const sent = await api.requestSmsCode("13912345678");
    const result = await api.loginWithSms("13912345678", sent.debug_code);
    assert.deepEqual(result.user, user);
    assert.deepEqual(JSON.parse(calls[0].body), { phone: "13912345678", purpose: "login" });
    assert.deepEqual(JSON.parse(calls[1].body), { method: "sms", phone: "13912345678", code: "123456" });
    assert.equal(calls[1].headers.Authorization, undefined);
    assert.deepEqual(await store.load(), { accessToken: "a9", refreshToken: "r9" });
});

test("listTasks sends the cursor and filters; waitForTask polls until the task is finished", async () => {
    const statuses = ["queued", "running", "succeeded"];
    const { api, calls } = client((call) => {
        if (call.path === "/api/v1/tasks") return ok({ items: [], next_cursor: null });
        return ok({ id: "t1", status: statuses.shift() });
    });
    await api.listTasks({ cursor: "aWQ6MTA=", status: "failed", feature: undefined });
    assert.equal(calls[0].url, `${BASE}/api/v1/tasks?cursor=aWQ6MTA%3D&status=failed`);
    const done = await api.waitForTask("t1", { intervalMs: 1, maxIntervalMs: 2 });
    assert.equal(done.status, "succeeded");
    assert.equal(calls.filter((c) => c.path === "/api/v1/tasks/t1").length, 3);
});
