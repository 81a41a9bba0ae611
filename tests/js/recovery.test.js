// Recovery of missed broadcasts with the official phoenix client: a channel whose params are a
// closure sends the last position it saw on every rejoin (docs/CHANNELS.md).
import { test, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { startFawkes, mintToken, connect, closeAll, opened, join, push, sleep } from "./helpers.js";

const CAMPAIGN = "donations:campaign:1";
const servers = [];

async function server(extra = []) {
  const dataDir = mkdtempSync(path.join(tmpdir(), "fawkes-js-"));
  const started = await startFawkes(
    ["dev", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--channel-rate-limit", "0", ...extra],
  );
  servers.push({ started, dataDir });
  return started;
}

after(async () => {
  for (const { started, dataDir } of servers) {
    await started.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
afterEach(() => closeAll());

async function until(check, what, ms = 20_000, debug = null) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(debug?.())}`);
    await sleep(20);
  }
}

/**
 * A TCP proxy in front of `srv` whose `cut()` resets every connection through it, as a lost
 * network does: the server sees the socket die without a leave, the client reconnects.
 */
async function cuttable(srv) {
  const open = new Set();
  let down = false;
  const proxy = net.createServer((client) => {
    if (down) {
      client.resetAndDestroy(); // the network is still down
      return;
    }
    const [host, port] = srv.addr.split(":");
    const upstream = net.connect(Number(port), host);
    open.add(client);
    open.add(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
  });
  await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  const addr = `127.0.0.1:${proxy.address().port}`;
  return {
    url: `ws://${addr}/socket`,
    cut() {
      for (const s of open) s.resetAndDestroy();
    },
    /** Cuts every connection and refuses new ones until `up()`. */
    down() {
      down = true;
      this.cut();
    },
    up() {
      down = false;
    },
    close() {
      proxy.close();
      this.cut();
    },
  };
}

/** A watcher as an app would write it: remembers the last position, sends it on rejoin. */
async function watcher(srv, user) {
  const socket = connect(srv, { params: { token: mintToken(user) }, reconnectAfterMs: () => 50 });
  await opened(socket);
  const state = { socket, last: null, seen: [], joins: [], states: [] };
  const channel = socket.channel(CAMPAIGN, () => (state.last ? { since: state.last } : {}));
  channel.on("donation_created", (payload) => {
    state.seen.push(payload);
    state.last = payload.position;
  });
  channel.on("campaign_state", (payload) => state.states.push(payload));
  channel.join().receive("ok", (reply) => {
    state.joins.push(reply);
    if (reply.recovered !== true) state.last = reply.position;
  });
  await until(() => state.joins.length === 1, "the first join");
  return state;
}

test("a connection cut during a burst rejoins and recovers every donation, in order, once", async () => {
  const srv = await server();
  const proxy = await cuttable(srv);
  const watching = await watcher(proxy, "7");
  const donor = connect(srv, { params: { token: mintToken("8") } });
  await opened(donor);
  const { channel } = await join(donor, CAMPAIGN);
  const replies = [];
  for (let i = 0; i < 50; i++) {
    replies.push(push(channel, "new_donation", { amount: "1.00", donor_name: `D${i}` }));
    if (i === 10) {
      // The watcher's network goes down mid-burst (no clean leave) until the burst is over.
      await until(() => watching.seen.length >= 3, "the first broadcasts");
      proxy.down();
    }
  }
  const ids = (await Promise.all(replies)).map((r) => {
    assert.equal(r.status, "ok");
    return r.response.donation_id;
  });
  const before = watching.seen.length;
  assert.ok(before < 50, `some were missed while away (${before} seen)`);
  proxy.up();
  await until(() => watching.seen.length >= 50 && watching.joins.length >= 2, "all 50 after the rejoin", 20_000, () => ({ seen: watching.seen.length, joins: watching.joins, offsets: watching.seen.map((p) => p.position.offset) }));
  await sleep(300); // anything more would be a duplicate
  assert.equal(watching.joins.length, 2, "joined, then rejoined once");
  assert.equal(watching.joins[1].recovered, true, JSON.stringify(watching.joins[1]));
  assert.deepEqual(watching.seen.map((p) => p.donation.id), ids, "all 50, in order, no duplicate");
  // (Presence diffs of the rejoin share the topic's stream: offsets rise, not always by one.)
  const offsets = watching.seen.map((p) => p.position.offset);
  offsets.forEach((offset, i) => i > 0 && assert.ok(offset > offsets[i - 1], `${offsets}`));
  proxy.close();
});

test("a client away longer than the history is told it was not recovered and gets fresh state", async () => {
  const srv = await server(["--history-age", "1s"]);
  const watching = await watcher(srv, "7");
  const donor = connect(srv, { params: { token: mintToken("8") } });
  await opened(donor);
  const { channel } = await join(donor, CAMPAIGN);
  assert.equal((await push(channel, "new_donation", { amount: "1.00", donor_name: "Seen" })).status, "ok");
  await until(() => watching.seen.length === 1, "the first donation");
  watching.socket.disconnect(); // away: no reconnect until asked
  for (let i = 0; i < 5; i++) {
    assert.equal((await push(channel, "new_donation", { amount: "2.00", donor_name: "Missed" })).status, "ok");
  }
  await sleep(1500); // longer than the history's age
  const states = watching.states.length;
  watching.socket.connect();
  await until(() => watching.joins.length === 2, "the rejoin");
  assert.equal(watching.joins[1].recovered, false);
  await until(() => watching.states.length > states, "a fresh campaign_state");
  assert.equal(watching.states.at(-1).campaign.donation_count, 6, "the state includes what was missed");
  assert.equal(watching.seen.length, 1, "nothing replayed");
});
