// The official phoenix client over long-poll: with `transport: LongPoll`, and falling back to
// it (`longPollFallbackMs`) when a proxy refuses WebSocket upgrades.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { LongPoll } from "phoenix";
import {
  startServer, startBlockingProxy, MemoryStorage, openedOverLongPoll, mintToken, connect, closeAll, opened, push, collect, trackPresence, keys,
} from "./helpers.js";

const CAMPAIGN = "donations:campaign:1";
let server;
let proxy;

before(async () => {
  server = await startServer();
  proxy = await startBlockingProxy(server.addr);
});
after(async () => {
  await proxy.stop();
  await server.stop();
});
afterEach(() => closeAll());

/** Joins `topic` on a new channel whose events are being collected; resolves the channel. */
function joined(channel) {
  return new Promise((resolve, reject) => {
    channel
      .join()
      .receive("ok", () => resolve(channel))
      .receive("error", (response) => reject(new Error(`join refused: ${JSON.stringify(response)}`)))
      .receive("timeout", () => reject(new Error("join timed out")));
  });
}

test("transport: LongPoll joins, pushes, gets replies, broadcasts, presence and rate limits", async () => {
  const socket = connect(server, { transport: LongPoll, params: { token: mintToken("5", { name: "Aisha" }) } });
  await openedOverLongPoll(socket);
  const campaign = socket.channel(CAMPAIGN);
  const presence = trackPresence(campaign);
  const states = collect(campaign, "campaign_state");
  const created = collect(campaign, "donation_created");
  await joined(campaign);
  assert.equal((await states.next()).campaign.name, "Ramadan Food Drive");
  await presence.until((list) => keys(list).includes("5"));

  // A WebSocket viewer appears in the long-poll client's presence; its donation reaches it.
  const viewer = connect(server, { params: { token: mintToken("6", { name: "Omar" }) } });
  await opened(viewer);
  const viewerCampaign = viewer.channel(CAMPAIGN);
  const viewerPresence = trackPresence(viewerCampaign);
  await joined(viewerCampaign);
  await presence.until((list) => keys(list).includes("6"));
  await viewerPresence.until((list) => keys(list).includes("5"));
  const viewed = collect(viewerCampaign, "donation_created");
  assert.equal((await push(viewerCampaign, "new_donation", { amount: "5.00", donor_name: "Omar" })).status, "ok");
  assert.equal((await created.next(10_000)).donation.amount, "5.00");

  // The long-poll client's own donation: its reply, and the broadcast on both transports.
  const reply = await push(campaign, "new_donation", { amount: "2.50", donor_name: "Aisha" });
  assert.equal(reply.status, "ok");
  assert.ok(reply.response.donation_id);
  assert.equal((await created.next(10_000)).donation.amount, "2.50");
  await viewed.next(10_000);
  await viewed.next(10_000);

  // Eleven pushes in one tick go out as one POST batch: the eleventh is over 10/s.
  const lobby = await joined(socket.channel("donations:lobby"));
  const answers = await Promise.all(Array.from({ length: 11 }, () => push(lobby, "ping", {})));
  const limited = answers.filter((a) => a.response.reason === "rate limit exceeded");
  assert.ok(limited.length >= 1, JSON.stringify(answers));

  // Leaving the campaign: the viewer sees the long-poll user go.
  await new Promise((resolve) => campaign.leave().receive("ok", resolve));
  await viewerPresence.until((list) => !keys(list).includes("5"));
  socket.disconnect();
});

test("longPollFallbackMs: WebSockets refused by a proxy, the client falls back and memorizes it", async () => {
  const storage = new MemoryStorage();
  const socket = connect(proxy, {
    longPollFallbackMs: 500,
    sessionStorage: storage,
    params: { token: mintToken("7") },
  });
  await openedOverLongPoll(socket);
  assert.ok(proxy.upgrades.refused >= 1, "the WebSocket was tried first");
  assert.equal(storage.getItem("phx:fallback:LongPoll"), "true");
  const campaign = socket.channel(CAMPAIGN);
  const created = collect(campaign, "donation_created");
  await joined(campaign);
  const reply = await push(campaign, "new_donation", { amount: "1.75", donor_name: "Fallback" });
  assert.equal(reply.status, "ok");
  assert.equal((await created.next(10_000)).donation.amount, "1.75");

  // Memorized: a new socket with the same storage goes straight to LongPoll.
  const refusedBefore = proxy.upgrades.refused;
  const again = connect(proxy, { longPollFallbackMs: 500, sessionStorage: storage });
  await openedOverLongPoll(again);
  assert.equal(proxy.upgrades.refused, refusedBefore, "no WebSocket tried");
});

test("a session gone on the server: phoenix.js reconnects over long-poll and rejoins", async () => {
  const socket = connect(server, {
    transport: LongPoll,
    params: { token: mintToken("8") },
    reconnectAfterMs: () => 100,
  });
  await openedOverLongPoll(socket);
  const campaign = socket.channel(CAMPAIGN);
  const states = collect(campaign, "campaign_state");
  await joined(campaign);
  await states.next();
  // The user's sessions are disconnected: the held poll ends, the next finds the session gone
  // (410 with a token held: close 3410), and the client opens a new session and rejoins.
  const errors = [];
  socket.onError((error) => errors.push(error));
  const service = mintToken("ops", { roles: ["service"] });
  const answer = await fetch(`http://${server.addr}/api/disconnect`, {
    method: "POST",
    headers: { authorization: `Bearer ${service}`, "content-type": "application/json" },
    body: JSON.stringify({ user_id: "8" }),
  });
  assert.equal(answer.status, 202);
  await states.next(15_000);
  assert.ok(errors.includes(410), `the session was reported gone: ${JSON.stringify(errors)}`);
  const reply = await push(campaign, "new_donation", { amount: "3.00", donor_name: "Again" });
  assert.equal(reply.status, "ok");
});
