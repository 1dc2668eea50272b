// k6 script for bench/run.py: an open-model load (constant-arrival-rate) on one GET endpoint,
// each request carrying a different user's Bearer token.
//
// Environment (pass with `k6 run -e NAME=value`):
//   BASE_URL     e.g. http://127.0.0.1:8123 (required; run.py only ever gives a loopback address)
//   TOKENS_FILE  absolute path, one access token per line (required)
//   TARGET_PATH  default /api/v1/users/me (the Express baseline uses /tasks)
//   RATE         requests started per second (default 500)
//   DURATION     seconds at that rate (default 20)
//   PRE_VUS      VUs allocated before the start (default RATE / 10, at least 20)
//   MAX_VUS      cap on VUs; past it k6 drops iterations instead of queueing (default RATE / 4, >= 50)
//   TIMEOUT      per-request timeout (default 10s)
import http from 'k6/http';
import exec from 'k6/execution';
import { SharedArray } from 'k6/data';

const BASE_URL = __ENV.BASE_URL;
const TOKENS_FILE = __ENV.TOKENS_FILE;
if (!BASE_URL || !TOKENS_FILE) {
  throw new Error('BASE_URL and TOKENS_FILE are required');
}
const TARGET_PATH = __ENV.TARGET_PATH || '/api/v1/users/me';
const RATE = parseInt(__ENV.RATE || '500', 10);
const DURATION = parseInt(__ENV.DURATION || '20', 10);
const PRE_VUS = parseInt(__ENV.PRE_VUS || String(Math.max(20, Math.ceil(RATE / 10))), 10);
const MAX_VUS = parseInt(__ENV.MAX_VUS || String(Math.max(50, Math.ceil(RATE / 4))), 10);
const TIMEOUT = __ENV.TIMEOUT || '10s';

// One copy of the tokens for all VUs, not one per VU.
const tokens = new SharedArray('tokens', () =>
  open(TOKENS_FILE)
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.length > 0),
);
if (tokens.length === 0) {
  throw new Error(`no tokens in ${TOKENS_FILE}`);
}

const URL = `${BASE_URL}${TARGET_PATH}`;

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
      gracefulStop: '5s',
    },
  },
};

// Each user comes from an address of its own, as real clients do; the server trusts 127.0.0.1 as
// its proxy (WARDROBE_TRUSTED_PROXIES), so the per-address limits are enforced and paid for.
function clientAddress(i) {
  return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
}

export default function () {
  // Round-robin over the users: consecutive requests never share a token.
  const index = exec.scenario.iterationInTest % tokens.length;
  http.get(URL, {
    headers: { Authorization: `Bearer ${tokens[index]}`, 'X-Forwarded-For': clientAddress(index) },
    timeout: TIMEOUT,
    tags: { name: TARGET_PATH },
  });
}
