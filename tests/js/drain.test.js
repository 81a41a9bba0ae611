// Graceful shutdown with the official phoenix client: a client of connector A, on A's SIGTERM,
// gets `shutdown_notice` and a 1012 close, reconnects to connector B, rejoins its channel
// there and pushes again; A exits 0 within its drain deadline. Two connectors and a processor
// on a Kafka-protocol broker (Tansu), as separate processes.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startTansu, startFawkes, mintToken, connect, closeAll, opened, push, collect } from "./helpers.js";

const CAMPAIGN = "donations:campaign:1";
/** Connector A's drain deadline (`FAWKES_DRAIN_TIMEOUT`), in ms. */
const DEADLINE_MS = 5000;
let tansu;
let dataDir;
const processes = [];
let connectorA;
let connectorB;

before(async () => {
  tansu = await startTansu();
  dataDir = mkdtempSync(path.join(tmpdir(), "fawkes-js-drain-"));
  const kafka = { FAWKES_KAFKA_BROKERS: tansu.brokers, FAWKES_KAFKA_FETCH_WAIT_MAX_MS: "1" };
  processes.push(await startFawkes(
    ["processor", "--metrics-listen", "127.0.0.1:0", "--data-dir", dataDir],
    // One processor owning every partition: no group to settle. The tests use the demo
    // campaigns; processors create them only when asked.
    { ...kafka, FAWKES_PROCESSOR_GROUP: `js-drain-${Date.now()}`, FAWKES_PROCESSOR_PARTITIONS: "0-7", FAWKES_SEED: "true" },
  ));
  connectorA = await startFawkes(
    ["connector", "--listen", "127.0.0.1:0"],
    { ...kafka, FAWKES_DRAIN_WINDOW: "2s", FAWKES_DRAIN_TIMEOUT: `${DEADLINE_MS / 1000}s` },
  );
  connectorB = await startFawkes(["connector", "--listen", "127.0.0.1:0"], kafka);
  processes.push(connectorA, connectorB);
});

after(async () => {
  for (const p of processes) await p.stop();
  await tansu.stop();
  rmSync(dataDir, { recursive: true, force: true });
});
afterEach(() => closeAll());

/** Resolves once `predicate()` holds, checking every 20 ms; rejects after `timeoutMs`. */
function until(predicate, what, timeoutMs = 15_000) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const check = () => {
      if (predicate()) return resolve();
      if (Date.now() - started > timeoutMs) return reject(new Error(`${what} within ${timeoutMs} ms`));
      setTimeout(check, 20);
    };
    check();
  });
}

test("on connector A's shutdown the client reconnects to connector B, rejoins and pushes again", async () => {
  // The client knows both connectors, as an app given several endpoints (or a load balancer)
  // does: phoenix.js asks `endPointURL()` for every connection, and after a close it is
  // pointed at the next connector.
  const servers = [connectorA, connectorB];
  let current = 0;
  const socket = connect(connectorA, {
    params: { token: mintToken("5") },
    reconnectAfterMs: () => 100,
  });
  const endPointURL = socket.endPointURL.bind(socket);
  socket.endPointURL = () => endPointURL().replace(connectorA.addr, servers[current].addr);
  const opens = [];
  const closes = [];
  socket.onOpen(() => opens.push(servers[current].addr));
  socket.onClose((event) => {
    closes.push(event.code);
    current = (current + 1) % servers.length;
  });
  await opened(socket);
  assert.deepEqual(opens, [connectorA.addr]);

  const channel = socket.channel(CAMPAIGN);
  const notices = collect(channel, "shutdown_notice");
  // The join's hooks stay with the channel: phoenix.js's rejoins run them again.
  const joinedOn = [];
  const refusals = [];
  channel
    .join()
    .receive("ok", () => joinedOn.push(opens[opens.length - 1]))
    .receive("error", (response) => refusals.push(response));
  await until(() => joinedOn.length === 1, "joined on A");
  const first = await push(channel, "new_donation", { amount: "3.00", donor_name: "Before" });
  assert.equal(first.status, "ok", JSON.stringify(first));

  const signalled = Date.now();
  const exit = connectorA.kill("SIGTERM").then((ended) => ({ ...ended, took: Date.now() - signalled }));
  const notice = await notices.next(DEADLINE_MS);
  assert.equal(notice.reason, "server shutting down");
  assert.equal(typeof notice.reconnect_delay, "number");
  await until(() => closes.length >= 1, "A closed the socket");
  assert.equal(closes[0], 1012, "closed for a service restart");

  await until(() => joinedOn.length === 2, "rejoined on B");
  assert.equal(joinedOn[1], connectorB.addr, "the rejoin went to B");
  assert.deepEqual(opens, [connectorA.addr, connectorB.addr]);
  assert.deepEqual(refusals, [], "no join was refused on the way");
  const created = collect(channel, "donation_created");
  const second = await push(channel, "new_donation", { amount: "4.00", donor_name: "After" });
  assert.equal(second.status, "ok", JSON.stringify(second));
  const seen = await created.next(10_000);
  assert.equal(seen.donation.id, second.response.donation_id, "B fans out the new donation");

  const { code, signal, took } = await exit;
  assert.equal(signal, null, "A exited by itself");
  assert.equal(code, 0, "A exited 0");
  assert.ok(took < DEADLINE_MS + 2000, `A exited within its deadline (${took} ms)`);
  console.log(`connector A exited ${took} ms after SIGTERM (deadline ${DEADLINE_MS} ms)`);
});
