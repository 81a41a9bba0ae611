// phoenix.js in a real headless Chromium page (Debian's `chromium`, driven by playwright-core):
// the page, served from its own origin, connects through a proxy that refuses WebSocket
// upgrades and falls back to long-poll (`longPollFallbackMs`), or uses `transport: LongPoll`
// directly. Cross-origin: every ndjson POST is preceded by a CORS preflight, and the server
// checks the page's origin (`--check-origin`).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startFawkes, startBlockingProxy, mintToken } from "./helpers.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.FAWKES_CHROMIUM || "/usr/bin/chromium";
const PHOENIX = readFileSync(path.join(here, "node_modules/phoenix/priv/static/phoenix.mjs"));

// The page: connects as the query says, joins the campaign, donates, waits for the broadcast,
// and leaves what it saw in `window.result`.
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>fawkes long-poll</title>
<script type="module">
import { Socket, LongPoll } from "/phoenix.mjs";
const q = new URLSearchParams(location.search);
const opts = { params: { token: q.get("token") }, reconnectAfterMs: () => 60000 };
if (q.get("mode") === "fallback") opts.longPollFallbackMs = 500; else opts.transport = LongPoll;
const answer = (push) => new Promise((resolve) => push
  .receive("ok", () => resolve("ok"))
  .receive("error", (e) => resolve(JSON.stringify(e)))
  .receive("timeout", () => resolve("timeout")));
const result = {};
try {
  const socket = new Socket(q.get("endpoint"), opts);
  await new Promise((resolve) => {
    socket.onOpen(() => { if (socket.conn instanceof LongPoll) resolve(); });
    socket.connect();
  });
  result.transport = "LongPoll";
  const channel = socket.channel("donations:campaign:1");
  const created = new Promise((resolve) => channel.on("donation_created", resolve));
  result.join = await answer(channel.join());
  result.donation = await answer(channel.push("new_donation", { amount: "1.25", donor_name: "Browser" }));
  result.broadcast = (await created).donation.amount;
  result.memorized = sessionStorage.getItem("phx:fallback:LongPoll");
} catch (error) {
  result.error = String(error);
}
window.result = result;
</script>`;

let pages;
let pageOrigin;
let server;
let proxy;
let browser;
let dataDir;

before(async () => {
  pages = http.createServer((req, res) => {
    if (req.url.startsWith("/phoenix.mjs")) {
      res.writeHead(200, { "content-type": "text/javascript" });
      res.end(PHOENIX);
    } else {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end(PAGE);
    }
  });
  await new Promise((resolve) => pages.listen(0, "127.0.0.1", resolve));
  pageOrigin = `http://127.0.0.1:${pages.address().port}`;
  dataDir = mkdtempSync(path.join(tmpdir(), "fawkes-js-browser-"));
  server = await startFawkes([
    "dev", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--check-origin", pageOrigin,
  ]);
  proxy = await startBlockingProxy(server.addr);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close();
  await proxy?.stop();
  await server?.stop();
  await new Promise((resolve) => pages.close(resolve));
  rmSync(dataDir, { recursive: true, force: true });
});

/** Opens the page with `query` and resolves what it saw. */
async function run(query) {
  const page = await browser.newPage();
  try {
    await page.goto(`${pageOrigin}/?${new URLSearchParams(query)}`);
    await page.waitForFunction(() => window.result !== undefined, null, { timeout: 30_000 });
    return await page.evaluate(() => window.result);
  } finally {
    await page.close();
  }
}

test("Chromium: WebSockets blocked by a proxy, phoenix.js falls back to long-poll and works", async () => {
  const refused = proxy.upgrades.refused;
  const result = await run({ endpoint: proxy.url, mode: "fallback", token: mintToken("21") });
  assert.deepEqual(result, {
    transport: "LongPoll",
    join: "ok",
    donation: "ok",
    broadcast: "1.25",
    memorized: "true",
  });
  assert.ok(proxy.upgrades.refused > refused, "the page tried a WebSocket first");
});

test("Chromium: transport LongPoll straight to the server", async () => {
  const result = await run({ endpoint: server.url, mode: "longpoll", token: mintToken("22") });
  assert.deepEqual(result, {
    transport: "LongPoll",
    join: "ok",
    donation: "ok",
    broadcast: "1.25",
    memorized: null,
  });
});
