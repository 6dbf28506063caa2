// Send a scenario file with a real Node.js client.
// Usage: node send_node.js PACKAGE URL WRITE_KEY SCENARIO.json (NODE_PATH finds PACKAGE).
// Each client runs with its defaults (rudder-sdk-node gzips); exits 1 when it reported errors.
"use strict";
const fs = require("fs");

function segmentClient(key, url, errors) {
  const { Analytics } = require("@segment/analytics-node");
  const client = new Analytics({ writeKey: key, host: url });
  client.on("error", (err) => errors.push(String((err && err.reason) || err)));
  return { client, done: () => client.closeAndFlush({ timeout: 30000 }) };
}

function rudderClient(key, url, errors) {
  const Analytics = require("@rudderstack/rudder-sdk-node");
  const client = new Analytics(key, {
    dataPlaneUrl: url,
    errorHandler: (err) => errors.push(String(err)),
  });
  const done = () =>
    new Promise((resolve) => client.flush((err) => resolve(err && errors.push(String(err)))));
  return { client, done };
}

async function main() {
  const [pkg, url, key, path] = process.argv.slice(2);
  const errors = [];
  const make = pkg === "@segment/analytics-node" ? segmentClient : rudderClient;
  const { client, done } = make(key, url, errors);
  for (const message of JSON.parse(fs.readFileSync(path, "utf8"))) {
    const { type, ...fields } = message;
    client[type]({ ...fields, timestamp: new Date(message.timestamp) });
  }
  await done();
  if (errors.length) {
    console.error(errors.join("\n"));
    process.exit(1);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(2);
});
