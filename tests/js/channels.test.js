// The official phoenix client (npm `phoenix`) against a real fawkes server.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { startServer, mintToken, connect, closeAll, opened, join, push, collect, sleep, unpositioned } from "./helpers.js";

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server.stop();
});
afterEach(() => closeAll());

const CAMPAIGN = "donations:campaign:1";

test("connects without a token, with a token param, and with authToken", async () => {
  const anonymous = connect(server);
  await opened(anonymous);
  assert.equal((await join(anonymous, "donations:lobby")).status, "ok");

  const withParam = connect(server, { params: { token: mintToken("1") } });
  await opened(withParam);
  // Campaign 2 is private to its organizer (2) and member (3): user 1 is refused, so the
  // token was read and checked.
  const refused = await join(withParam, "donations:campaign:2");
  assert.deepEqual([refused.status, refused.response], ["error", { reason: "unauthorized" }]);

  const withAuthToken = connect(server, { authToken: mintToken("3") });
  await opened(withAuthToken);
  assert.equal((await join(withAuthToken, "donations:campaign:2")).status, "ok");
});

test("refused tokens never open the socket", async () => {
  for (const token of [
    mintToken("1", { secret: "wrong-secret" }),
    mintToken("1", { ttl: -3600 }),
    "not-a-jwt",
  ]) {
    const socket = connect(server, { params: { token } });
    await assert.rejects(opened(socket), /socket error before open/);
    assert.notEqual(socket.connectionState(), "open");
    socket.disconnect();
  }
});

test("join ok, refused, not found and unmatched", async () => {
  const socket = connect(server, { params: { token: mintToken("5") } });
  await opened(socket);
  const lobby = await join(socket, "donations:lobby");
  assert.equal(lobby.status, "ok");
  const states = [];
  const campaign = socket.channel(CAMPAIGN);
  campaign.on("campaign_state", (payload) => states.push(payload));
  await new Promise((resolve) => campaign.join().receive("ok", resolve));
  await sleep(100);
  assert.equal(states.length, 1);
  assert.equal(states[0].campaign.name, "Ramadan Food Drive");
  assert.equal(states[0].campaign.goal, "10000.00");

  assert.deepEqual((await join(socket, "admin:ops")).response, { reason: "unauthorized" });
  assert.deepEqual((await join(socket, "donations:campaign:404")).response, { reason: "not found" });
  assert.deepEqual((await join(socket, "room:lobby")).response, { reason: "unmatched topic" });
});

test("a donation as seen by the donor, the organizer and a third viewer", async () => {
  const donorSocket = connect(server, { params: { token: mintToken("5") } });
  const organizerSocket = connect(server, { params: { token: mintToken("1") } });
  const viewerSocket = connect(server);
  await Promise.all([opened(donorSocket), opened(organizerSocket), opened(viewerSocket)]);
  const donor = (await join(donorSocket, CAMPAIGN)).channel;
  const organizer = (await join(organizerSocket, CAMPAIGN)).channel;
  const viewer = (await join(viewerSocket, CAMPAIGN)).channel;
  const seen = {
    donor: collect(donor, "donation_created"),
    organizer: collect(organizer, "donation_created"),
    viewer: collect(viewer, "donation_created"),
  };

  const probeSocket = connect(server);
  await opened(probeSocket);
  const before = await new Promise((resolve) => {
    const probe = probeSocket.channel(CAMPAIGN);
    probe.on("campaign_state", ({ campaign }) => resolve(campaign));
    probe.join();
  });
  const start = Number(before.total);

  const reply = await push(donor, "new_donation", { amount: "19.99", donor_name: "Aisha" });
  assert.equal(reply.status, "ok");
  assert.ok(reply.response.donation_id);
  const second = await push(donor, "new_donation", { amount: 0.01, donor_name: "Omar" });
  assert.equal(second.status, "ok");

  const expectedTotal = (start + 20).toFixed(2);
  const o1 = await seen.organizer.next();
  assert.equal(o1.donation.donor_name, "Aisha");
  assert.equal(o1.donation.amount, "19.99");
  assert.equal(o1.donation.currency, "USD");
  assert.equal(o1.donation.id, reply.response.donation_id);
  assert.equal((await seen.organizer.next()).new_total, expectedTotal);
  for (const who of ["donor", "viewer"]) {
    const first = await seen[who].next();
    assert.equal(first.donation.donor_name, "Anonymous", `${who} must not see the name`);
    assert.equal(first.donation.amount, "19.99");
    const next = await seen[who].next();
    assert.equal(next.donation.donor_name, "Anonymous");
    assert.equal(next.new_total, expectedTotal);
  }
});

test("validation errors name every field", async () => {
  const socket = connect(server);
  await opened(socket);
  const { channel } = await join(socket, CAMPAIGN);
  const reply = await push(channel, "new_donation", { amount: "-3", donor_name: "x".repeat(101), currency: "EUR" });
  assert.equal(reply.status, "error");
  assert.deepEqual(reply.response.errors, {
    amount: ["must be greater than 0"],
    donor_name: ["should be at most 100 character(s)"],
    currency: ["must match the campaign currency (USD)"],
  });
  const precise = await push(channel, "new_donation", { amount: "1.001", donor_name: "A" });
  assert.deepEqual(precise.response.errors, { amount: ["must have at most 2 decimal places"] });
  const unknown = await push(channel, "sing", {});
  assert.deepEqual(unknown, { status: "error", response: { reason: "unknown event" } });
});

test("update_goal is for organizers and admins, and one donation can cross several milestones", async () => {
  const admin = connect(server, { params: { token: mintToken("9", { roles: ["admin"] }) } });
  const stranger = connect(server, { params: { token: mintToken("6") } });
  const lobbySocket = connect(server);
  await Promise.all([opened(admin), opened(stranger), opened(lobbySocket)]);

  // A fresh campaign so totals start at zero, created through the admin channel.
  const ops = (await join(admin, "admin:ops")).channel;
  const created = await push(ops, "create_campaign", {
    name: "Milestones", goal: "1000", currency: "USD", visibility: "public", organizer_ids: ["7"],
  });
  assert.equal(created.status, "ok");
  const topic = `donations:campaign:${created.response.campaign.id}`;
  const organizerSocket = connect(server, { params: { token: mintToken("7") } });
  await opened(organizerSocket);

  const organizer = (await join(organizerSocket, topic)).channel;
  const other = (await join(stranger, topic)).channel;
  const lobby = (await join(lobbySocket, "donations:lobby")).channel;
  const milestones = collect(other, "milestone_reached");
  const lobbyMilestones = collect(lobby, "milestone_reached");
  const goals = collect(other, "goal_updated");

  assert.deepEqual(await push(other, "update_goal", { new_goal: "10" }), { status: "error", response: { reason: "unauthorized" } });
  const updated = await push(organizer, "update_goal", { new_goal: "2000" });
  assert.equal(updated.status, "ok");
  assert.equal(updated.response.campaign.goal, "2000.00");
  assert.deepEqual(unpositioned(await goals.next()), { new_goal: "2000.00" });
  const byAdmin = await push((await join(admin, topic)).channel, "update_goal", { new_goal: "1000" });
  assert.equal(byAdmin.status, "ok");

  // 800 of 1000 crosses 25, 50 and 75 % with one donation, in ascending order.
  assert.equal((await push(other, "new_donation", { amount: "800", donor_name: "Big" })).status, "ok");
  for (const expected of [25, 50, 75]) {
    assert.deepEqual(unpositioned(await milestones.next()), { campaign_id: created.response.campaign.id, milestone: expected });
    assert.equal((await lobbyMilestones.next()).milestone, expected);
  }
  assert.equal((await push(other, "new_donation", { amount: "100", donor_name: "Small" })).status, "ok");
  await sleep(200);
  assert.equal(milestones.pending(), 0, "no threshold is announced twice");
  assert.equal((await push(other, "new_donation", { amount: "100", donor_name: "Last" })).status, "ok");
  assert.equal((await milestones.next()).milestone, 100);
});
