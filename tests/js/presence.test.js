// Presence with the official phoenix client's `Presence` class against a real fawkes server.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import {
  startServer, startClientProcess, mintToken, connect, closeAll, opened, join, push, trackPresence, keys,
} from "./helpers.js";

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server.stop();
});
afterEach(() => closeAll());

async function member(user, topic, opts = {}) {
  const socket = connect(server, { params: { token: mintToken(user, { name: `User ${user}` }) }, ...opts });
  await opened(socket);
  const channel = socket.channel(topic);
  const tracked = trackPresence(channel);
  await new Promise((resolve, reject) => {
    channel.join().receive("ok", resolve).receive("error", reject);
  });
  return { socket, channel, ...tracked };
}

test("two clients see each other join, update metas and leave", async () => {
  const doc = "collab:document:41";
  const a = await member("7", doc);
  const b = await member("8", doc);
  for (const client of [a, b]) {
    const list = await client.until((l) => keys(l).join() === "7,8");
    const seven = list.find((p) => p.key === "7").metas;
    assert.equal(seven.length, 1);
    assert.equal(seven[0].name, "User 7");
    assert.equal(seven[0].typing, false);
    assert.equal(seven[0].cursor_position, null);
    assert.equal(typeof seven[0].phx_ref, "string");
  }

  const before = b.list().find((p) => p.key === "8").metas[0];
  assert.equal((await push(b.channel, "cursor_moved", { position: 120 })).status, "ok");
  const moved = await a.until((l) => l.find((p) => p.key === "8")?.metas[0].cursor_position === 120);
  const after = moved.find((p) => p.key === "8").metas;
  assert.equal(after.length, 1, "the update replaced the meta");
  assert.equal(after[0].phx_ref_prev, before.phx_ref);
  const update = a.events.joins.find((j) => j.key === "8" && j.current);
  assert.ok(update, "onJoin saw the update with the previous presence");

  assert.equal((await push(b.channel, "typing", { typing: true })).status, "ok");
  await a.until((l) => l.find((p) => p.key === "8")?.metas[0].typing === true);

  await new Promise((resolve) => b.channel.leave().receive("ok", resolve));
  const left = await a.until((l) => keys(l).join() === "7");
  assert.deepEqual(keys(left), ["7"]);
  assert.ok(a.events.leaves.some((l) => l.key === "8"), "onLeave fired");
});

test("a user with two tabs is one key with two metas", async () => {
  const campaign = "donations:campaign:1";
  const watcher = await member("5", campaign);
  const tab1 = await member("9", campaign);
  const tab2 = await member("9", campaign);
  const list = await watcher.until((l) => l.find((p) => p.key === "9")?.metas.length === 2);
  const refs = list.find((p) => p.key === "9").metas.map((m) => m.phx_ref);
  assert.notEqual(refs[0], refs[1]);
  tab2.socket.disconnect();
  await watcher.until((l) => l.find((p) => p.key === "9")?.metas.length === 1);
  tab1.socket.disconnect();
  await watcher.until((l) => !keys(l).includes("9"));
});

test("an abruptly killed client disappears", async () => {
  const doc = "collab:document:42";
  const watcher = await member("7", doc);
  const victim = await startClientProcess(server, mintToken("66"), doc);
  await watcher.until((l) => keys(l).includes("66"));
  await victim.kill();
  const list = await watcher.until((l) => !keys(l).includes("66"));
  assert.deepEqual(keys(list), ["7"]);
});

test("onSync fires again after a rejoin, with a fresh state", async () => {
  const campaign = "donations:campaign:1";
  const other = await member("21", campaign);
  const a = await member("20", campaign, { reconnectAfterMs: () => 50, rejoinAfterMs: () => 50 });
  await a.until((l) => keys(l).includes("20") && keys(l).includes("21"));
  const joinRef = a.channel.joinRef();
  const syncs = a.events.syncs;
  // Drop the connection under the client (not a clean disconnect): phoenix.js reconnects and
  // rejoins with a new join_ref; the Presence waits for a new presence_state before syncing.
  a.socket.conn.close(4000, "test drop");
  await a.until(() => a.channel.joinRef() !== joinRef && a.events.syncs > syncs);
  const list = await a.until((l) => keys(l).includes("20") && keys(l).includes("21"));
  assert.equal(list.find((p) => p.key === "20").metas.length, 1, "the old join's meta is gone");
  assert.ok(other);
});
