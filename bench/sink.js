// A fast event-counting HTTP sink for the benchmarks (Node.js, no npm dependencies).
//
// It accepts any POST whose body is a batch in one of the peers' shapes
// ({"batch": [...]} with "messageId" per event for Segment/Rudder/ours, or "uuid" for PostHog),
// optionally gzip/deflate-compressed, counts the events and the DISTINCT ids (so duplicates are
// visible) and stores nothing else. Events are counted when the sink answers 200 ("delivered").
//
// Control endpoints (GET), all answered at once except /_bench/wait:
//   /_bench/reset?delay_ms=D&fail_rate=F&hold=0|1&seed=S   clear counters, set the fault mode
//   /_bench/release                                         answer the requests held by hold=1
//   /_bench/stats                                           counters as JSON
//   /_bench/wait?distinct=N&timeout_ms=T                    answer when distinct >= N (or at T)
//
// Usage: node sink.js [port]   (prints "LISTENING <port>" on stdout once bound to 127.0.0.1)
"use strict";
const http = require("node:http");
const zlib = require("node:zlib");
const { performance } = require("node:perf_hooks");

const KEYS = [Buffer.from('"messageId"'), Buffer.from('"uuid"')];
const OK_BODY = Buffer.from('{"status":1,"success":true}');
const FAIL_BODY = Buffer.from('{"error":"service unavailable (benchmark fault)"}');
const VERIFY_EVERY = 25; // every 25th data request is also checked with a full JSON.parse

const nowMs = () => performance.timeOrigin + performance.now();

let cfg = { delayMs: 0, failRate: 0, hold: false };
let rng = mulberry32(1);
let st;
let ids;
let held = [];
let waiters = [];
let cpuAtReset = process.cpuUsage();

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function resetCounters() {
  st = {
    requests: 0, answered_200: 0, answered_503: 0, bad_requests: 0, events: 0, distinct: 0,
    bytes: 0, max_batch: 0, t_first_request: null, t_last_new: null, t_last_200: null,
    verified: 0, verify_mismatch: 0, paths: {}, encodings: {},
  };
  cpuAtReset = process.cpuUsage();
  ids = new Set();
}

// Finds each id key, skips `: "` with optional spaces, and returns the id strings.
function scanIds(buf) {
  for (const key of KEYS) {
    const out = [];
    let pos = buf.indexOf(key, 0);
    while (pos !== -1) {
      let i = pos + key.length;
      while (i < buf.length && (buf[i] === 0x20 || buf[i] === 0x3a)) i++;
      if (buf[i] === 0x22) {
        const end = buf.indexOf(0x22, i + 1);
        if (end === -1) break;
        out.push(buf.toString("latin1", i + 1, end));
        pos = buf.indexOf(key, end);
      } else {
        pos = buf.indexOf(key, i);
      }
    }
    if (out.length > 0) return out;
  }
  return [];
}

function verify(buf, found) {
  st.verified++;
  try {
    const doc = JSON.parse(buf.toString("utf8"));
    const batch = Array.isArray(doc) ? doc : doc.batch;
    const same = Array.isArray(batch) && batch.length === found.length &&
      batch.every((m, k) => (m.messageId ?? m.uuid) === found[k]);
    if (!same) st.verify_mismatch++;
  } catch {
    st.verify_mismatch++;
  }
}

function decode(req, raw) {
  const enc = (req.headers["content-encoding"] || "identity").toLowerCase();
  st.encodings[enc] = (st.encodings[enc] || 0) + 1;
  if (enc === "gzip") return zlib.gunzipSync(raw);
  if (enc === "deflate") return zlib.inflateSync(raw);
  return raw;
}

function count(found) {
  st.answered_200++;
  st.events += found.length;
  if (found.length > st.max_batch) st.max_batch = found.length;
  const before = ids.size;
  for (const id of found) ids.add(id);
  const t = nowMs();
  st.t_last_200 = t;
  if (ids.size !== before) {
    st.distinct = ids.size;
    st.t_last_new = t;
    wakeWaiters();
  }
}

function answer(res, found) {
  if (res.destroyed) return;
  count(found);
  res.writeHead(200, { "content-type": "application/json", "content-length": OK_BODY.length });
  res.end(OK_BODY);
}

function onData(req, res, raw) {
  st.requests++;
  st.bytes += raw.length;
  st.paths[req.url] = (st.paths[req.url] || 0) + 1;
  if (st.t_first_request === null) st.t_first_request = nowMs();
  let found;
  try {
    const body = decode(req, raw);
    found = scanIds(body);
    if (st.requests % VERIFY_EVERY === 1) verify(body, found);
  } catch {
    st.bad_requests++;
    res.writeHead(400, { "content-type": "application/json" });
    res.end('{"error":"bad body"}');
    return;
  }
  if (cfg.failRate > 0 && rng() < cfg.failRate) {
    st.answered_503++;
    res.writeHead(503, { "content-type": "application/json", "content-length": FAIL_BODY.length });
    res.end(FAIL_BODY);
  } else if (cfg.hold) {
    held.push([res, found]);
  } else if (cfg.delayMs > 0) {
    setTimeout(answer, cfg.delayMs, res, found);
  } else {
    answer(res, found);
  }
}

function wakeWaiters() {
  if (waiters.length === 0) return;
  const still = [];
  for (const w of waiters) {
    if (ids.size >= w.target) finishWaiter(w);
    else still.push(w);
  }
  waiters = still;
}

function finishWaiter(w) {
  clearTimeout(w.timer);
  sendJson(w.res, { reached: ids.size >= w.target, ...snapshot() });
}

function snapshot() {
  const cpu = process.cpuUsage(cpuAtReset); // the sink's own CPU time since the last reset
  return {
    ...st, distinct: ids.size, duplicates: st.events - ids.size, held: held.length,
    cpu_ms: (cpu.user + cpu.system) / 1000,
  };
}

function sendJson(res, obj) {
  const body = Buffer.from(JSON.stringify(obj));
  res.writeHead(200, { "content-type": "application/json", "content-length": body.length });
  res.end(body);
}

function onControl(req, res, url) {
  const q = url.searchParams;
  switch (url.pathname) {
    case "/_bench/reset":
      for (const [r] of held) r.destroy();
      held = [];
      cfg = {
        delayMs: Number(q.get("delay_ms") || 0),
        failRate: Number(q.get("fail_rate") || 0),
        hold: q.get("hold") === "1",
      };
      rng = mulberry32(Number(q.get("seed") || 1));
      resetCounters();
      return sendJson(res, { ok: true, cfg });
    case "/_bench/release": {
      const n = held.length;
      cfg.hold = false;
      const toAnswer = held;
      held = [];
      for (const [r, found] of toAnswer) answer(r, found);
      return sendJson(res, { released: n });
    }
    case "/_bench/stats":
      return sendJson(res, snapshot());
    case "/_bench/wait": {
      const w = { res, target: Number(q.get("distinct") || 0), timer: null };
      if (ids.size >= w.target) return finishWaiter(w);
      const timeout = Math.min(Number(q.get("timeout_ms") || 10000), 600000);
      w.timer = setTimeout(() => {
        waiters = waiters.filter((x) => x !== w);
        finishWaiter(w);
      }, timeout);
      waiters.push(w);
      return undefined;
    }
    default:
      res.writeHead(404);
      return res.end();
  }
}

function handler(req, res) {
  if (req.method === "GET") {
    return onControl(req, res, new URL(req.url, "http://127.0.0.1"));
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => onData(req, res, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
  return undefined;
}

resetCounters();
const server = http.createServer({ noDelay: true, keepAlive: true }, handler);
server.keepAliveTimeout = 120000;
server.headersTimeout = 121000;
server.requestTimeout = 0;
server.on("connection", (sock) => sock.setNoDelay(true));
server.listen(Number(process.argv[2] || 0), "127.0.0.1", () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});
process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));
