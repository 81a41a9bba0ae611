// The official phoenix client on the moderation, waqf and report channels: pushes that
// follow a reply reach the channel's handlers in order, and broadcasts shaped per socket
// arrive as each user may see them.
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

async function socketFor(sub, roles = []) {
  const socket = connect(server, { params: { token: mintToken(sub, { roles }) } });
  await opened(socket);
  return socket;
}

test("a report streams its progress, then the user's donations, to the requesting channel", async () => {
  const year = new Date().getUTCFullYear();
  const donor = (await join(await socketFor("40"), CAMPAIGN)).channel;
  const first = await push(donor, "new_donation", { amount: "12.00", donor_name: "Aisha" });
  const second = await push(donor, "new_donation", { amount: 7.5, donor_name: "Aisha" });
  assert.equal(first.status, "ok");

  const reports = (await join(await socketFor("40"), "reports:user:40")).channel;
  const otherTab = (await join(await socketFor("40"), "reports:user:40")).channel;
  const seen = [];
  reports.on("report_progress", ({ percent }) => seen.push(percent));
  const ready = collect(reports, "report_ready");
  const strayed = collect(otherTab, "report_ready");

  const reply = await push(reports, "generate_report", { type: "donations", year });
  assert.deepEqual(reply, { status: "ok", response: { status: "started" } });
  const { report } = await ready.next();
  assert.deepEqual(seen, [0, 25, 50, 75, 100], "every step, in order, before the report");
  assert.deepEqual(
    report.donations.map((d) => [d.id, d.amount]),
    [
      [second.response.donation_id, "7.50"],
      [first.response.donation_id, "12.00"],
    ],
  );
  assert.deepEqual(report.donation_totals, { USD: "19.50" });
  await sleep(200);
  assert.equal(strayed.pending(), 0, "the user's other socket is not sent the report");

  const invalid = await push(reports, "generate_report", { type: "annual", year: year + 1 });
  assert.deepEqual(invalid.response.errors, { year: [`must be a year from 2000 to ${year}`] });
});

test("a rejection by a super admin reaches the campaign's subscribers once; an admin may not reject", async () => {
  const donor = (await join(await socketFor("41"), CAMPAIGN)).channel;
  const { response } = await push(donor, "new_donation", { amount: "30.00", donor_name: "Omar" });
  const anonymous = connect(server);
  await opened(anonymous);
  const viewer = (await join(anonymous, CAMPAIGN)).channel;
  const moderated = collect(viewer, "donation_moderated");

  const admin = (await join(await socketFor("42", ["admin"]), "admin:ops")).channel;
  const refused = await push(admin, "moderate_donation", { donation_id: response.donation_id, action: "reject" });
  assert.deepEqual(refused, { status: "error", response: { reason: "insufficient permissions" } });

  const chief = (await join(await socketFor("43", ["super_admin"]), "admin:ops")).channel;
  const rejected = await push(chief, "moderate_donation", { donation_id: response.donation_id, action: "reject" });
  assert.equal(rejected.status, "ok");
  assert.equal(rejected.response.donation.status, "rejected");
  const told = await moderated.next();
  assert.equal(told.donation_id, response.donation_id);
  assert.equal(told.new_total, rejected.response.new_total);
  // Retried (as an app would after a timeout): the same answer, nothing announced again.
  const again = await push(chief, "moderate_donation", { donation_id: response.donation_id, action: "reject" });
  assert.deepEqual(again, rejected);
  await sleep(200);
  assert.equal(moderated.pending(), 0);
});

test("waqf_created on waqf:public: the trustee, a beneficiary and a stranger each see their view", async () => {
  const creator = (await join(await socketFor("50"), "waqf:public")).channel;
  const views = {};
  for (const user of ["51", "52", "53"]) {
    views[user] = collect((await join(await socketFor(user), "waqf:public")).channel, "waqf_created");
  }
  const { status, response } = await push(creator, "create_waqf", {
    type: "khayri",
    name: "School",
    trustees: [{ user_id: "51" }],
    beneficiaries: [
      { user_id: "52", allocation: "40.00" },
      { user_id: "54", allocation: "60.00" },
    ],
  });
  assert.equal(status, "ok");
  const minimal = { id: response.waqf.id, type: "khayri", created_at: response.waqf.created_at };
  assert.deepEqual(unpositioned(await views["51"].next()), { ...minimal, waqf: response.waqf });
  assert.deepEqual(unpositioned(await views["52"].next()), { ...minimal, benefit_amount: "40.00" });
  assert.deepEqual(unpositioned(await views["53"].next()), minimal);
});
