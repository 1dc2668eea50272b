// k6 script for bench/tasks_flow.py: an open-model load (constant-arrival-rate) of POST /api/v1/tasks.
//
// Request number i of the whole run (i = OFFSET + this stage's iteration number) goes to the user
// picked by a fixed hash of SEED + i, with the Idempotency-Key RUN_ID-i. tasks_flow.py recomputes the
// same hash, so it knows how many creations were offered to each user without a per-request log, and
// finds each accepted request again by its key in the tasks table.
//
// Environment (pass with `k6 run -e NAME=value`):
//   BASE_URL     e.g. http://127.0.0.1:8123 (required; tasks_flow.py only ever gives a loopback address)
//   TOKENS_FILE  absolute path, one access token per line, in user order (required)
//   FEATURE      the feature key to run (required)
//   RUN_ID       prefix of every Idempotency-Key (required, unique per run)
//   SEED         seed of the user choice (default 0)
//   OFFSET       request number of this stage's first request (default 0)
//   RATE         requests started per second (default 100)
//   DURATION     seconds at that rate (default 10)
//   PRE_VUS      VUs allocated before the start (default RATE / 10, at least 20)
//   MAX_VUS      cap on VUs; past it k6 drops iterations instead of queueing (default RATE / 4, >= 50)
//   TIMEOUT      per-request timeout in seconds (default 10); the stage's graceful stop is longer, so
//                every request started gets its answer (or its timeout) and is counted
//
// Answers: 202 counts as `created`, 402 QUOTA_INSUFFICIENT as `quota_insufficient`; anything else is
// written to the log as "REJECT <request number> <status> <code>" for tasks_flow.py to tally.
import http from 'k6/http';
import exec from 'k6/execution';
import { SharedArray } from 'k6/data';
import { Counter, Trend } from 'k6/metrics';

const BASE_URL = __ENV.BASE_URL;
const TOKENS_FILE = __ENV.TOKENS_FILE;
const FEATURE = __ENV.FEATURE;
const RUN_ID = __ENV.RUN_ID;
if (!BASE_URL || !TOKENS_FILE || !FEATURE || !RUN_ID) {
  throw new Error('BASE_URL, TOKENS_FILE, FEATURE and RUN_ID are required');
}
const SEED = parseInt(__ENV.SEED || '0', 10);
const OFFSET = parseInt(__ENV.OFFSET || '0', 10);
const RATE = parseInt(__ENV.RATE || '100', 10);
const DURATION = parseInt(__ENV.DURATION || '10', 10);
const PRE_VUS = parseInt(__ENV.PRE_VUS || String(Math.max(20, Math.ceil(RATE / 10))), 10);
const MAX_VUS = parseInt(__ENV.MAX_VUS || String(Math.max(50, Math.ceil(RATE / 4))), 10);
const TIMEOUT_S = parseInt(__ENV.TIMEOUT || '10', 10);

const tokens = new SharedArray('tokens', () =>
  open(TOKENS_FILE)
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.length > 0),
);
if (tokens.length === 0) {
  throw new Error(`no tokens in ${TOKENS_FILE}`);
}

const created = new Counter('created');
const quotaInsufficient = new Counter('quota_insufficient');
const requestNumber = new Trend('request_number'); // min and max prove the numbers were contiguous

const URL = `${BASE_URL}/api/v1/tasks`;
const BODY = JSON.stringify({ feature: FEATURE, inputs: { text: 'bench' } });

export const options = {
  summaryTrendStats: ['avg', 'min', 'p(50)', 'p(90)', 'p(95)', 'p(99)', 'max'],
  // Declared so that the summary carries the latency of each kind of answer on its own.
  thresholds: {
    'http_req_duration{status:202}': ['max>=0'],
    'http_req_duration{status:402}': ['max>=0'],
  },
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

// lowbias32 (Chris Wellons): a well-mixed 32-bit hash; tasks_flow.py has the same function.
function pick(n, users) {
  let x = (SEED + n) >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return (x >>> 0) % users;
}

export default function () {
  const n = OFFSET + exec.scenario.iterationInTest;
  requestNumber.add(n);
  const response = http.post(URL, BODY, {
    headers: {
      Authorization: `Bearer ${tokens[pick(n, tokens.length)]}`,
      'Content-Type': 'application/json',
      'Idempotency-Key': `${RUN_ID}-${n}`,
    },
    timeout: `${TIMEOUT_S}s`,
    responseType: 'text',
    tags: { name: 'POST /api/v1/tasks' },
  });
  if (response.status === 202) {
    created.add(1);
    return;
  }
  let code = 'none';
  try {
    code = JSON.parse(response.body).code || 'none';
  } catch (_) {
    // not an envelope (a timeout, a proxy page): the status says enough
  }
  if (response.status === 402 && code === 'QUOTA_INSUFFICIENT') {
    quotaInsufficient.add(1);
    return;
  }
  console.warn(`REJECT ${n} ${response.status} ${code}`);
}
