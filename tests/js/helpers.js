import assert from "node:assert/strict";
// Test helpers: start a real `fawkes dev` on port 0 in a temporary data directory, mint
// tokens the way a host application would (HS256 with the shared secret), and wrap the
// official phoenix client's callbacks in promises.
import { execFileSync, spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import WebSocket from "ws";
import { LongPoll, Presence, Socket } from "phoenix";

export const SECRET = "js-test-secret";
const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = process.env.FAWKES_BIN || path.resolve(here, "../../target/debug/fawkes");

/** Spawns `fawkes <args>` and resolves once it prints its listening line. */
export async function startFawkes(args, env = {}) {
  const child = spawn(BIN, args, {
    env: { ...process.env, FAWKES_JWT_SECRET: SECRET, FAWKES_LOG: "warn", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const line = await new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout });
    rl.once("line", resolve);
    child.once("exit", (code) => reject(new Error(`fawkes ${args[0]} exited with ${code} before listening`)));
  });
  const match = /listening on http:\/\/(\S+)/.exec(line);
  if (!match) throw new Error(`unexpected first line: ${line}`);
  const addr = match[1];
  return {
    addr,
    url: `ws://${addr}/socket`,
    async stop() {
      await this.kill("SIGTERM");
    },
    /**
     * Sends `signal` (SIGKILL: a crash; SIGTERM: a drain) and waits for the process to exit;
     * resolves how it ended, `{code, signal}`.
     */
    async kill(signal) {
      if (child.exitCode !== null || child.signalCode !== null) {
        return { code: child.exitCode, signal: child.signalCode };
      }
      const exited = new Promise((resolve) => child.once("exit", (code, sig) => resolve({ code, signal: sig })));
      child.kill(signal);
      return exited;
    },
  };
}

/** Runs a phoenix client in its own process joined to `topic`; resolves once joined. */
export async function startClientProcess(server, token, topic) {
  const child = spawn(process.execPath, [path.join(here, "client-process.js"), server.url, token, topic], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout });
    rl.once("line", (line) => (line === "joined" ? resolve() : reject(new Error(line))));
    child.once("exit", (code) => reject(new Error(`client process exited with ${code}`)));
  });
  return {
    async kill() {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      await exited;
    },
  };
}

/**
 * Tracks presence on `channel` with the official `Presence` class; `until(predicate)`
 * resolves with the list once an onSync leaves it satisfying `predicate`.
 */
export function trackPresence(channel) {
  const presence = new Presence(channel);
  const waiters = [];
  const events = { syncs: 0, joins: [], leaves: [] };
  const list = () => presence.list((key, { metas }) => ({ key, metas }));
  presence.onJoin((key, current, joined) => events.joins.push({ key, current, joined }));
  presence.onLeave((key, current, left) => events.leaves.push({ key, current, left }));
  presence.onSync(() => {
    events.syncs += 1;
    for (const waiter of [...waiters]) waiter();
  });
  return {
    presence,
    events,
    list,
    until(predicate, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (!predicate(list())) return false;
          waiters.splice(waiters.indexOf(check), 1);
          clearTimeout(timer);
          resolve(list());
          return true;
        };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(check), 1);
          reject(new Error(`presence never matched; last list: ${JSON.stringify(list())}`));
        }, timeoutMs);
        waiters.push(check);
        check();
      });
    },
  };
}

/** Keys of a presence list, sorted. */
export const keys = (list) => list.map((p) => p.key).sort();

export async function startServer() {
  const dataDir = mkdtempSync(path.join(tmpdir(), "fawkes-js-"));
  const server = await startFawkes(["dev", "--listen", "127.0.0.1:0", "--data-dir", dataDir]);
  return {
    ...server,
    async stop() {
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

function tansuBin() {
  if (process.env.FAWKES_TANSU_BIN) return process.env.FAWKES_TANSU_BIN;
  const cargoBin = path.join(process.env.HOME || "", ".cargo/bin/tansu");
  return existsSync(cargoBin) ? cargoBin : "tansu";
}

async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Starts a Tansu broker on a free port and creates the Fawkes topics; fails if it cannot. */
export async function startTansu() {
  const port = await freePort();
  const url = `tcp://127.0.0.1:${port}`;
  const child = spawn(tansuBin(), ["broker", "--listener-url", url, "--advertised-listener-url", url], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout });
    rl.on("line", (line) => line.includes("ready") && resolve());
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`tansu exited with ${code}`)));
  });
  const brokers = `127.0.0.1:${port}`;
  execFileSync(BIN, ["topics", "create"], { env: { ...process.env, FAWKES_KAFKA_BROKERS: brokers } });
  return {
    brokers,
    async stop() {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      await exited;
    },
  };
}

function b64url(value) {
  return Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");
}

export function mintToken(sub, { roles = [], ttl = 3600, secret = SECRET, name } = {}) {
  const header = b64url({ alg: "HS256", typ: "JWT" });
  const body = b64url({ sub, roles, name, exp: Math.floor(Date.now() / 1000) + ttl });
  const signature = createHmac("sha256", secret).update(`${header}.${body}`).digest("base64url");
  return `${header}.${body}.${signature}`;
}

const sockets = new Set();

export function connect(server, opts = {}) {
  const socket = new Socket(server.url, {
    transport: WebSocket,
    reconnectAfterMs: () => 60_000, // a refused socket should not hammer the server in tests
    ...opts,
  });
  sockets.add(socket);
  return socket;
}

export function closeAll() {
  for (const socket of sockets) socket.disconnect();
  sockets.clear();
}

export function opened(socket) {
  return new Promise((resolve, reject) => {
    socket.onOpen(resolve);
    socket.onError(() => reject(new Error("socket error before open")));
    socket.connect();
  });
}

/** Joins and resolves {channel, status, response} for ok and error replies alike. */
export function join(socket, topic, params = {}) {
  const channel = socket.channel(topic, params);
  return new Promise((resolve, reject) => {
    channel
      .join()
      .receive("ok", (response) => resolve({ channel, status: "ok", response }))
      .receive("error", (response) => {
        channel.leave(); // stop phoenix.js from retrying the refused join
        resolve({ channel, status: "error", response });
      })
      .receive("timeout", () => reject(new Error(`join ${topic} timed out`)));
  });
}

/** Pushes and resolves {status, response}. */
export function push(channel, event, payload) {
  return new Promise((resolve, reject) => {
    channel
      .push(event, payload)
      .receive("ok", (response) => resolve({ status: "ok", response }))
      .receive("error", (response) => resolve({ status: "error", response }))
      .receive("timeout", () => reject(new Error(`${event} timed out`)));
  });
}

/** Collects every `event` on `channel`; `next()` resolves the next one not yet taken. */
export function collect(channel, event) {
  const seen = [];
  const waiters = [];
  channel.on(event, (payload) => {
    const waiter = waiters.shift();
    if (waiter) waiter(payload);
    else seen.push(payload);
  });
  return {
    next(timeoutMs = 5000) {
      if (seen.length) return Promise.resolve(seen.shift());
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${event} within ${timeoutMs} ms`)), timeoutMs);
        waiters.push((payload) => {
          clearTimeout(timer);
          resolve(payload);
        });
      });
    },
    pending: () => seen.length,
  };
}

// A broadcast's payload without its stream position (checked to be well formed first):
// positions depend on the run.
export function unpositioned(payload) {
  const { position, ...rest } = payload;
  assert.equal(typeof position?.epoch, "string", `a position in ${JSON.stringify(payload)}`);
  assert.equal(typeof position?.offset, "number");
  return rest;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * An HTTP proxy in front of `targets` (addresses `host:port`) that refuses every WebSocket
 * upgrade, as a network that blocks WebSockets does, and forwards every other request to the
 * next target in turn (a load balancer without sticky sessions when given several).
 * `served[i]` counts the requests target i got.
 */
export async function startBlockingProxy(...targets) {
  const served = targets.map(() => 0);
  const upgrades = { refused: 0 };
  let next = 0;
  const proxy = http.createServer((req, res) => {
    const i = next;
    next = (next + 1) % targets.length;
    served[i] += 1;
    const [host, port] = targets[i].split(":");
    const upstream = http.request({ host, port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    });
    upstream.on("error", () => {
      res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  proxy.on("upgrade", (req, socket) => {
    upgrades.refused += 1;
    socket.end("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
  });
  await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  const addr = `127.0.0.1:${proxy.address().port}`;
  return {
    addr,
    url: `ws://${addr}/socket`,
    served,
    upgrades,
    async stop() {
      proxy.closeAllConnections();
      await new Promise((resolve) => proxy.close(resolve));
    },
  };
}

/** A sessionStorage stand-in for Node (phoenix.js memorizes a fallback in it). */
export class MemoryStorage {
  constructor() { this.items = new Map(); }
  getItem(key) { return this.items.has(key) ? this.items.get(key) : null; }
  setItem(key, value) { this.items.set(key, String(value)); }
  removeItem(key) { this.items.delete(key); }
}

/** Connects `socket` and resolves once it is open over LongPoll (directly or by fallback). */
export function openedOverLongPoll(socket) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("never opened over LongPoll")), 15_000);
    socket.onOpen(() => {
      if (socket.conn instanceof LongPoll) {
        clearTimeout(timer);
        resolve();
      }
    });
    socket.connect();
  });
}
