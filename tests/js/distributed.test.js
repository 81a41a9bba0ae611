// Distributed mode with the official phoenix client: two connectors and two processors on a
// Kafka-protocol broker (Tansu), as separate processes.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { LongPoll } from "phoenix";
import {
  startTansu, startFawkes, mintToken, connect, closeAll, opened, join, push, collect, sleep, trackPresence, keys,
  startBlockingProxy, openedOverLongPoll,
} from "./helpers.js";

const CAMPAIGN = "donations:campaign:1";
let tansu;
let dataDir;
const processes = [];
let connectorA;
let connectorB;
let kafka;

before(async () => {
  tansu = await startTansu();
  dataDir = mkdtempSync(path.join(tmpdir(), "fawkes-js-kafka-"));
  const group = `js-${Date.now()}`;
  kafka = { FAWKES_KAFKA_BROKERS: tansu.brokers, FAWKES_KAFKA_FETCH_WAIT_MAX_MS: "1" };
  for (let i = 0; i < 2; i++) {
    processes.push(await startFawkes(
      ["processor", "--metrics-listen", "127.0.0.1:0", "--data-dir", dataDir],
      // The tests use the demo campaigns; processors create them only when asked.
      { ...kafka, FAWKES_PROCESSOR_GROUP: group, FAWKES_SEED: "true" },
    ));
  }
  connectorA = await startFawkes(["connector", "--listen", "127.0.0.1:0"], kafka);
  connectorB = await startFawkes(["connector", "--listen", "127.0.0.1:0"], kafka);
  processes.push(connectorA, connectorB);
});

after(async () => {
  for (const p of processes) await p.stop();
  await tansu.stop();
  rmSync(dataDir, { recursive: true, force: true });
});
afterEach(() => closeAll());

test("a donation on connector A reaches a viewer on connector B; the reply stays on A", async () => {
  const donorSocket = connect(connectorA, { params: { token: mintToken("5") } });
  const organizerSocket = connect(connectorB, { params: { token: mintToken("1") } });
  await Promise.all([opened(donorSocket), opened(organizerSocket)]);
  const donor = await join(donorSocket, CAMPAIGN);
  assert.equal(donor.status, "ok");
  const organizer = await join(organizerSocket, CAMPAIGN);
  assert.equal(organizer.status, "ok");

  const repliesOnB = [];
  organizerSocket.onMessage((message) => {
    if (message.event === "phx_reply" && message.topic === CAMPAIGN) repliesOnB.push(message);
  });
  const created = collect(organizer.channel, "donation_created");
  const reply = await push(donor.channel, "new_donation", { amount: "12.34", donor_name: "Aisha" });
  assert.equal(reply.status, "ok");
  const seen = await created.next(10_000);
  assert.equal(seen.donation.donor_name, "Aisha", "the organizer on B sees the name");
  assert.equal(seen.donation.amount, "12.34");
  assert.equal(seen.donation.id, reply.response.donation_id);
  await sleep(300);
  assert.deepEqual(repliesOnB, [], "B never receives the reply meant for A");
});

test("presence crosses connectors, and a killed connector's users leave within its lease", async () => {
  const doc = "collab:document:77";
  // A third connector with a short lease, to be killed.
  const doomed = await startFawkes(["connector", "--listen", "127.0.0.1:0"], { ...kafka, FAWKES_PRESENCE_LEASE: "2s" });
  processes.push(doomed);
  const watch = async (server, user) => {
    const socket = connect(server, { params: { token: mintToken(user) } });
    await opened(socket);
    const channel = socket.channel(doc);
    const tracked = trackPresence(channel);
    await new Promise((resolve, reject) => channel.join().receive("ok", resolve).receive("error", reject));
    return tracked;
  };
  const onB = await watch(connectorB, "31");
  const onDoomed = await watch(doomed, "32");
  await onB.until((l) => keys(l).join() === "31,32", 15_000);
  await onDoomed.until((l) => keys(l).join() === "31,32", 15_000);

  const killedAt = Date.now();
  await doomed.kill("SIGKILL");
  const list = await onB.until((l) => keys(l).join() === "31", 30_000);
  const took = Date.now() - killedAt;
  assert.deepEqual(keys(list), ["31"]);
  console.log(`presence of the killed connector's user went after ${took} ms (lease 2 s)`);
  assert.ok(took >= 1000, `not before the lease lapsed (${took} ms)`);
});

test("long-poll behind a round-robin balancer: one session, requests on both connectors", async () => {
  // No sticky sessions: every request goes to the next connector, WebSockets are refused.
  const balancer = await startBlockingProxy(connectorA.addr, connectorB.addr);
  try {
    const socket = connect(balancer, { transport: LongPoll, params: { token: mintToken("5") } });
    await openedOverLongPoll(socket);
    const campaign = socket.channel(CAMPAIGN);
    const created = collect(campaign, "donation_created");
    await new Promise((resolve, reject) => campaign.join().receive("ok", resolve).receive("error", reject));
    const reply = await push(campaign, "new_donation", { amount: "6.50", donor_name: "Balanced" });
    assert.equal(reply.status, "ok");
    assert.equal((await created.next(10_000)).donation.amount, "6.50");
    // A WebSocket client on connector B donates: the long-poll session, wherever it lives,
    // gets the broadcast.
    const viewer = connect(connectorB, { params: { token: mintToken("6") } });
    await opened(viewer);
    const viewerCampaign = (await join(viewer, CAMPAIGN)).channel;
    assert.equal((await push(viewerCampaign, "new_donation", { amount: "8.25", donor_name: "Omar" })).status, "ok");
    assert.equal((await created.next(10_000)).donation.amount, "8.25");
    assert.ok(balancer.served[0] >= 2 && balancer.served[1] >= 2, `both connectors served: ${balancer.served}`);
    socket.disconnect();
  } finally {
    await balancer.stop();
  }
});
