// k6 script for bench/realtime.py: an open-model (constant-arrival-rate) load of mixed API calls,
// each iteration one request of a kind drawn by weight, for a user taken round-robin.
//
// Environment (pass with `k6 run -e NAME=value`):
//   BASE_URL     e.g. http://127.0.0.1:8123 (required; realtime.py only ever gives a loopback address)
//   USERS_FILE   absolute path, one line per user: "<access token>\t<public id of one of its tasks>" (required)
//   MIX          "read" (reads only: the cache run) or "mixed" (reads and writes: the 1,000 rps run)
//   RUN_ID       makes the Idempotency-Key of each task creation unique to this run (required for "mixed")
//   RATE         requests started per second (default 500)
//   DURATION     seconds at that rate (default 20)
//   PRE_VUS      VUs allocated before the start (default RATE / 10, at least 20)
//   MAX_VUS      cap on VUs; past it k6 drops iterations instead of queueing (default RATE / 4, >= 50)
//   TIMEOUT      per-request timeout in seconds (default 10)
//   FEATURE      the feature task creations run (default bench_create)
import http from 'k6/http';
import exec from 'k6/execution';
import { SharedArray } from 'k6/data';
import { Counter, Trend } from 'k6/metrics';

const BASE_URL = __ENV.BASE_URL;
const USERS_FILE = __ENV.USERS_FILE;
if (!BASE_URL || !USERS_FILE) {
  throw new Error('BASE_URL and USERS_FILE are required');
}
const MIX = __ENV.MIX || 'read';
const RUN_ID = __ENV.RUN_ID || 'run';
const RATE = parseInt(__ENV.RATE || '500', 10);
const DURATION = parseInt(__ENV.DURATION || '20', 10);
const PRE_VUS = parseInt(__ENV.PRE_VUS || String(Math.max(20, Math.ceil(RATE / 10))), 10);
const MAX_VUS = parseInt(__ENV.MAX_VUS || String(Math.max(50, Math.ceil(RATE / 4))), 10);
const TIMEOUT_S = parseInt(__ENV.TIMEOUT || '10', 10);
const FEATURE = __ENV.FEATURE || 'bench_create';

// What a client app does when it is open, per 100 requests. "read": a user browsing (the feature
// list and the plans come from the cache; profile, quota, task list and task detail from the
// database). "mixed": the same plus the writes of a user at work: starting a task (quota held in
// the same transaction) and editing the profile. With live push the app does not poll a task's
// state, so the task list and detail are read on screen changes only.
const MIXES = {
  read: [
    ['features', 20],
    ['plans', 10],
    ['quota', 15],
    ['me', 20],
    ['tasks', 25],
    ['task', 10],
  ],
  mixed: [
    ['features', 18],
    ['plans', 8],
    ['quota', 14],
    ['me', 18],
    ['tasks', 22],
    ['task', 10],
    ['create', 8],
    ['profile', 2],
  ],
};
if (!MIXES[MIX]) {
  throw new Error(`MIX must be one of ${Object.keys(MIXES).join(', ')}`);
}
// A table of 100 slots, so that picking a kind is one array lookup.
const SLOTS = [];
for (const [kind, weight] of MIXES[MIX]) {
  for (let i = 0; i < weight; i += 1) SLOTS.push(kind);
}
if (SLOTS.length !== 100) {
  throw new Error(`the weights of ${MIX} add up to ${SLOTS.length}, not 100`);
}

const users = new SharedArray('users', () =>
  open(USERS_FILE)
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.length > 0)
    .map((line) => line.split('\t')),
);
if (users.length === 0) {
  throw new Error(`no users in ${USERS_FILE}`);
}

// One latency trend and one counter of rate-limited answers per kind, for the report.
const trends = {};
for (const [kind] of MIXES[MIX]) {
  trends[kind] = new Trend(`kind_${kind}`, true);
}
const rateLimited = new Counter('rate_limited');
const unexpected = new Counter('unexpected_status');

export const options = {
  discardResponseBodies: true,
  summaryTrendStats: ['avg', 'min', 'p(50)', 'p(90)', 'p(95)', 'p(99)', 'max'],
  scenarios: {
    load: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: `${DURATION}s`,
      preAllocatedVUs: PRE_VUS,
      maxVUs: MAX_VUS,
      gracefulStop: `${TIMEOUT_S + 5}s`,
    },
  },
};

// Each user comes from an address of its own (the server trusts 127.0.0.1 as its proxy), so the
// per-address and per-user limits run as in production, one window per address and per user.
function clientAddress(i) {
  return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
}

// A fixed scramble of the iteration number: the kinds interleave evenly, users go round-robin.
function slot(n) {
  return (n * 37 + 11) % 100;
}

export default function () {
  const n = exec.scenario.iterationInTest;
  const index = n % users.length;
  const [token, taskId] = users[index];
  const kind = SLOTS[slot(Math.floor(n / users.length) * 7 + n)];
  const headers = { Authorization: `Bearer ${token}`, 'X-Forwarded-For': clientAddress(index) };
  const params = { headers, timeout: `${TIMEOUT_S}s`, tags: { name: kind } };
  let response;
  switch (kind) {
    case 'features':
      response = http.get(`${BASE_URL}/api/v1/features`, params);
      break;
    case 'plans':
      response = http.get(`${BASE_URL}/api/v1/billing/plans`, params);
      break;
    case 'quota':
      response = http.get(`${BASE_URL}/api/v1/billing/quota`, params);
      break;
    case 'me':
      response = http.get(`${BASE_URL}/api/v1/users/me`, params);
      break;
    case 'tasks':
      response = http.get(`${BASE_URL}/api/v1/tasks?limit=20`, params);
      break;
    case 'task':
      response = http.get(`${BASE_URL}/api/v1/tasks/${taskId}`, params);
      break;
    case 'create':
      headers['Content-Type'] = 'application/json';
      headers['Idempotency-Key'] = `${RUN_ID}-${n}`;
      response = http.post(`${BASE_URL}/api/v1/tasks`, JSON.stringify({ feature: FEATURE, inputs: { text: 'bench' } }), params);
      break;
    case 'profile':
      headers['Content-Type'] = 'application/json';
      response = http.patch(`${BASE_URL}/api/v1/users/me`, JSON.stringify({ bio: `bench ${n % 1000}` }), params);
      break;
    default:
      throw new Error(`unknown kind ${kind}`);
  }
  trends[kind].add(response.timings.duration);
  if (response.status === 429) {
    rateLimited.add(1);
  } else if (response.status >= 300 || response.status === 0) {
    unexpected.add(1, { kind, status: String(response.status) });
  }
}
