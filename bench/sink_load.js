// Measures the sink's capacity: several keep-alive connections post prebuilt 500-event
// Segment-shaped batches (same properties as the client workload) for a fixed time.
// Usage: node sink_load.js PORT DURATION_MS CONNECTIONS
// Prints one JSON line: {"requests": ..., "events": ..., "seconds": ..., "events_per_s": ...}
"use strict";
const http = require("node:http");
const crypto = require("node:crypto");

const [port, durationMs, conns] = process.argv.slice(2).map(Number);
const PER_BATCH = 500;

function event(i) {
  return {
    type: "track", userId: `user-${i % 1000}`, event: "Played a Song", messageId: crypto.randomUUID(),
    timestamp: new Date().toISOString(),
    properties: {
      title: `Song ${i}`, artist: "The Benchmarks", plays: i, duration: 215.5 + (i % 7),
      explicit: i % 2 === 0, tags: ["rock", "live", "2024"], bitrate: 320, source: "playlist",
      album: { name: "Loopback", year: 1999, label: { id: 7, name: "127 Records" } },
      played_at: new Date().toISOString(),
    },
    context: { library: { name: "bench", version: "0" } },
  };
}

const bodies = [];
for (let b = 0; b < 20; b++) {
  const batch = [];
  for (let i = 0; i < PER_BATCH; i++) batch.push(event(b * PER_BATCH + i));
  bodies.push(Buffer.from(JSON.stringify({ batch, sentAt: new Date().toISOString(), writeKey: "k" })));
}

const agent = new http.Agent({ keepAlive: true, maxSockets: conns });
let requests = 0;
let failures = 0;
const start = Date.now();
const deadline = start + durationMs;
let running = conns;

function one(k) {
  if (Date.now() >= deadline) {
    running--;
    if (running === 0) done();
    return;
  }
  const body = bodies[(requests + k) % bodies.length];
  const req = http.request(
    { port, host: "127.0.0.1", method: "POST", path: "/v1/batch", agent,
      headers: { "content-type": "application/json", "content-length": body.length } },
    (res) => {
      res.resume();
      res.on("end", () => {
        if (res.statusCode === 200) requests++;
        else failures++;
        one(k);
      });
    },
  );
  req.on("error", () => { failures++; one(k); });
  req.end(body);
}

function done() {
  const seconds = (Date.now() - start) / 1000;
  const events = requests * PER_BATCH;
  process.stdout.write(JSON.stringify({
    requests, failures, events, seconds, events_per_s: events / seconds,
    body_bytes: bodies[0].length,
  }) + "\n");
  agent.destroy();
}

for (let k = 0; k < conns; k++) one(k);
