// The client against a real imlogin binary (IMLOGIN_BIN, else the workspace's release build), in Node with the
// `ws` package as its WebSocket. Every wait is for an event or a state, with a bound.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import WebSocket from "ws";
import { create, EVENT, TYPES, LOGIN_STATUS, ImLoginError } from "../dist/index.js";
import { SDKAPPID, KEY, ADMIN_KEY, startImlogin, startCutter, admin, eventually } from "./imlogin.mjs";

const TLSSigAPIv2 = createRequire(import.meta.url)("tls-sig-api-v2");
const sigs = new TLSSigAPIv2.Api(SDKAPPID, KEY);
const otherKeySigs = new TLSSigAPIv2.Api(SDKAPPID, "0".repeat(64));

let server, cutter, tmp;
const clients = [];

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "imlogin-js-"));
  server = await startImlogin(tmp, {
    IMLOGIN__SESSION__SIG_EXPIRY_NOTICE_SECS: "60",
    IMLOGIN__SESSION__RECONNECT_GRACE_SECS: "30",
  });
  cutter = await startCutter(server.addr);
});

after(async () => {
  for (const c of clients) c.destroy();
  cutter?.close();
  await server?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A client on the server (or through the cutter), recording every event it emits. */
function client({ through, ...options } = {}) {
  const c = create({
    SDKAppID: SDKAPPID,
    url: `ws://${through || server.addr}/v1/ws`,
    WebSocket,
    reconnectBaseMs: 50,
    reconnectMaxMs: 500,
    ...options,
  });
  c.events = [];
  for (const name of Object.values(EVENT)) c.on(name, (data) => c.events.push({ name, ...data }));
  c.waitFor = (name, what = name) => eventually(() => c.events.find((e) => e.name === name), what);
  clients.push(c);
  return c;
}

async function instancesOf(userID) {
  return (await admin(server.addr, "GET", `/users/${encodeURIComponent(userID)}`)).instances;
}

test("login, the login surface, logout", async () => {
  const c = client();
  assert.equal(c.getLoginStatus(), LOGIN_STATUS.LOGOUT);
  assert.equal(c.getLoginUser(), "");
  const r = await c.login({ userID: "js-alice", userSig: sigs.genSig("js-alice", 3600) });
  assert.equal(r.userID, "js-alice");
  assert.equal(r.platform, "web");
  assert.match(r.instanceID, /^[0-9a-f]{24}$/);
  assert.equal(r.repeatLogin, false);
  assert.ok(r.sigExpiresAt > Date.now() / 1000 + 3000);
  assert.equal(c.getLoginStatus(), LOGIN_STATUS.LOGINED);
  assert.equal(c.getLoginUser(), "js-alice");
  assert.equal(c.getNetState(), TYPES.NET_STATE_CONNECTED);
  assert.deepEqual(
    c.events.filter((e) => e.name === EVENT.NET_STATE_CHANGE).map((e) => e.state),
    ["connecting", "connected"],
  );
  const [inst] = await instancesOf("js-alice");
  assert.equal(inst.instance_id, r.instanceID);
  assert.equal(inst.state, "online");

  await c.logout();
  assert.equal(c.getLoginStatus(), LOGIN_STATUS.LOGOUT);
  assert.equal(c.getLoginUser(), "");
  assert.equal(c.getNetState(), TYPES.NET_STATE_DISCONNECTED);
  assert.deepEqual(await instancesOf("js-alice"), []);
  await assert.rejects(c.logout(), (e) => e instanceof ImLoginError && e.code === 6014);
});

test("a refused login says the server's code and leaves the client logged out", async () => {
  const c = client();
  await assert.rejects(
    c.login({ userID: "js-bob", userSig: otherKeySigs.genSig("js-bob", 3600) }),
    (e) => e instanceof ImLoginError && e.code === 70009,
  );
  await assert.rejects(
    c.login({ userID: "js-bob", userSig: sigs.genSig("js-carol", 3600) }),
    (e) => e.code === 70013,
  );
  await assert.rejects(c.login({ userID: "js-bob", userSig: "" }), (e) => e.code === 70002);
  assert.equal(c.getLoginStatus(), LOGIN_STATUS.LOGOUT);
  assert.equal(c.getLoginUser(), "");
  await assert.rejects(c.renewUserSig(sigs.genSig("js-bob", 60)), (e) => e.code === 2802);
});

test("a second web login kicks the first: kickedOut, no reconnect", async () => {
  const first = client({ through: cutter.addr });
  const second = client();
  await first.login({ userID: "js-dave", userSig: sigs.genSig("js-dave", 3600) });
  const accepted = cutter.accepted();
  await second.login({ userID: "js-dave", userSig: sigs.genSig("js-dave", 3600) });
  const kick = await first.waitFor(EVENT.KICKED_OUT);
  assert.equal(kick.type, TYPES.KICKED_OUT_MULT_ACCOUNT);
  assert.equal(kick.reason, "multi_terminal");
  assert.equal(kick.code, 6208);
  assert.equal(kick.byPlatform, "web");
  assert.equal(first.getLoginStatus(), LOGIN_STATUS.LOGOUT);
  await eventually(() => first.getNetState() === TYPES.NET_STATE_DISCONNECTED, "the kicked link closed");
  // Absence cannot be awaited: give a reconnect (50–500 ms backoff here) a second to show up, if it would.
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(cutter.accepted(), accepted, "a kicked client does not reconnect");
  assert.equal(second.getLoginStatus(), LOGIN_STATUS.LOGINED);
});

test("an admin kick reaches the client as a REST API kick", async () => {
  const c = client();
  await c.login({ userID: "js-erin", userSig: sigs.genSig("js-erin", 3600), platform: "android" });
  await admin(server.addr, "POST", "/users/js-erin/kick", { revoke_sigs: true });
  const kick = await c.waitFor(EVENT.KICKED_OUT);
  assert.deepEqual(
    { type: kick.type, reason: kick.reason, code: kick.code },
    { type: TYPES.KICKED_OUT_REST_API, reason: "admin_kick", code: 70052 },
  );
  assert.equal(kick.byPlatform, undefined);
  assert.equal(c.getLoginUser(), "");
});

test("a lost network: the client resumes its instance by itself", async () => {
  const c = client({ through: cutter.addr });
  const r = await c.login({ userID: "js-frank", userSig: sigs.genSig("js-frank", 3600) });
  c.events.length = 0;
  cutter.cutAll();
  const back = await c.waitFor(EVENT.RESUMED, "a resume");
  assert.equal(back.instanceID, r.instanceID, "the same instance, no new login");
  assert.deepEqual(
    c.events.filter((e) => e.name === EVENT.NET_STATE_CHANGE).map((e) => e.state),
    ["disconnected", "connecting", "connected"],
  );
  assert.equal(c.getLoginStatus(), LOGIN_STATUS.LOGINED);
  assert.equal(c.getLoginUser(), "js-frank");
  const insts = await instancesOf("js-frank");
  assert.deepEqual(
    insts.map((i) => [i.instance_id, i.state]),
    [[r.instanceID, "online"]],
  );
  // And it works as before.
  const renewed = await c.renewUserSig(sigs.genSig("js-frank", 7200));
  assert.ok(renewed.sigExpiresAt > r.sigExpiresAt);
});

test("the server away for a while: the client keeps trying with backoff, then resumes", async () => {
  const c = client({ through: cutter.addr });
  const r = await c.login({ userID: "js-gina", userSig: sigs.genSig("js-gina", 3600) });
  c.events.length = 0;
  // The network is down: every reconnect is refused, three times at least; then it is back.
  cutter.block(true);
  try {
    const start = cutter.accepted();
    cutter.cutAll();
    await eventually(() => cutter.accepted() >= start + 3, "three refused reconnects");
    assert.equal(c.getNetState(), TYPES.NET_STATE_CONNECTING);
    assert.equal(c.getLoginStatus(), LOGIN_STATUS.LOGINED, "the login stands meanwhile");
  } finally {
    cutter.block(false);
  }
  const back = await c.waitFor(EVENT.RESUMED, "the resume once the network is back");
  assert.equal(back.instanceID, r.instanceID);
  assert.equal(c.getNetState(), TYPES.NET_STATE_CONNECTED);
});

test("a UserSig about to expire is renewed through fetchUserSig, without a new login", async () => {
  const asked = [];
  const c = client({
    fetchUserSig: async (userID) => {
      asked.push(userID);
      return sigs.genSig(userID, 3600);
    },
  });
  // 30 s left, the notice is at 60 s: it comes at once.
  const r = await c.login({ userID: "js-hal", userSig: sigs.genSig("js-hal", 30) });
  const expiring = await c.waitFor(EVENT.USER_SIG_EXPIRING);
  assert.equal(expiring.expiresAt, r.sigExpiresAt);
  const renewed = await c.waitFor(EVENT.USER_SIG_RENEWED);
  assert.deepEqual(asked, ["js-hal"]);
  assert.ok(renewed.sigExpiresAt >= r.sigExpiresAt + 3000, "the fresh ticket's expiry");
  assert.ok(!c.events.some((e) => e.name === EVENT.ERROR));
  // The same instance: no new login.
  assert.equal(c.getInstanceID(), r.instanceID);
  const insts = await instancesOf("js-hal");
  assert.deepEqual(insts.map((i) => i.instance_id), [r.instanceID]);
  assert.equal(c.getLoginStatus(), LOGIN_STATUS.LOGINED);
});

test("a UserSig that expires: userSigExpired, logged out", async () => {
  const c = client();
  await c.login({ userID: "js-ivy", userSig: sigs.genSig("js-ivy", 2) });
  await c.waitFor(EVENT.USER_SIG_EXPIRING);
  const expired = await c.waitFor(EVENT.USER_SIG_EXPIRED);
  assert.equal(expired.code, 6206);
  assert.equal(c.getLoginStatus(), LOGIN_STATUS.LOGOUT);
  assert.equal(c.getLoginUser(), "");
  // A new login works on the same client.
  await c.login({ userID: "js-ivy", userSig: sigs.genSig("js-ivy", 3600) });
  assert.equal(c.getLoginUser(), "js-ivy");
});

test("a kick while the network is down is told when the client comes back", async () => {
  const c = client({ through: cutter.addr });
  await c.login({ userID: "js-jo", userSig: sigs.genSig("js-jo", 3600) });
  c.events.length = 0;
  cutter.block(true);
  try {
    cutter.cutAll();
    const attempts = cutter.accepted();
    await eventually(() => cutter.accepted() >= attempts + 2, "reconnect attempts while the link is down");
    await admin(server.addr, "POST", "/users/js-jo/disable");
  } finally {
    cutter.block(false);
  }
  const kick = await c.waitFor(EVENT.KICKED_OUT);
  assert.equal(kick.reason, "account_disabled");
  assert.equal(kick.code, 70051);
  assert.equal(c.getLoginStatus(), LOGIN_STATUS.LOGOUT);
});

test("a restart that lost the session: a new login with fetchUserSig, else loggedOut", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "imlogin-js-lost-"));
  let s = await startImlogin(dir);
  try {
    const url = `ws://${s.addr}/v1/ws`;
    const withHook = client({ url, fetchUserSig: async (u) => sigs.genSig(u, 3600) });
    const without = client({ url });
    const a = await withHook.login({ userID: "js-kim", userSig: sigs.genSig("js-kim", 3600) });
    await without.login({ userID: "js-lee", userSig: sigs.genSig("js-lee", 3600) });
    // A one-node server keeps its sessions in memory: a restart forgets them (a cluster's Redis would not).
    await s.stop();
    s = await startImlogin(dir, { IMLOGIN__SERVER__LISTEN: s.addr });
    const lost = await without.waitFor(EVENT.LOGGED_OUT, "loggedOut after the restart");
    assert.equal(lost.reason, "session_lost");
    assert.equal(without.getLoginStatus(), LOGIN_STATUS.LOGOUT);
    await eventually(
      () => withHook.getLoginStatus() === LOGIN_STATUS.LOGINED && withHook.getInstanceID() !== a.instanceID,
      "a new login with a fresh UserSig",
    );
    assert.equal(withHook.getLoginUser(), "js-kim");
    const insts = (await fetch(`http://${s.addr}/admin/v1/apps/${SDKAPPID}/users/js-kim`, {
      headers: { authorization: `Bearer ${ADMIN_KEY}` },
    }).then((r) => r.json())).instances;
    assert.deepEqual(insts.map((i) => i.instance_id), [withHook.getInstanceID()]);
  } finally {
    await s.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("closed for abuse (1008): logged out, no reconnect", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "imlogin-js-1008-"));
  // One frame a second, bursts of two: the login and one more.
  const s = await startImlogin(dir, { IMLOGIN__LIMITS__FRAMES_PER_SECOND: "1" });
  const relay = await startCutter(s.addr);
  try {
    const c = client({ through: relay.addr });
    await c.login({ userID: "js-max", userSig: sigs.genSig("js-max", 3600) });
    const flood = [1, 2, 3, 4].map(() => c.renewUserSig(sigs.genSig("js-max", 3600)).catch((e) => e.code));
    const codes = await Promise.all(flood);
    assert.ok(codes.includes(2800), `some answers never came: ${JSON.stringify(codes)}`);
    await eventually(() => c.getLoginStatus() === LOGIN_STATUS.LOGOUT, "logged out after 1008");
    assert.equal(c.getNetState(), TYPES.NET_STATE_DISCONNECTED);
    // Absence cannot be awaited: a second for a reconnect (50–500 ms backoff here) to show up, if it would.
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(relay.accepted(), 1, "no reconnect after 1008");
  } finally {
    relay.close();
    await s.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a refused repeat login keeps the login; a failed switch logs out", async () => {
  const c = client();
  await c.login({ userID: "js-nia", userSig: sigs.genSig("js-nia", 3600) });
  await assert.rejects(
    c.login({ userID: "js-nia", userSig: otherKeySigs.genSig("js-nia", 3600) }),
    (e) => e.code === 70009,
  );
  assert.equal(c.getLoginUser(), "js-nia", "the repeat was refused, the login stands");
  assert.equal((await instancesOf("js-nia")).length, 1);
  await assert.rejects(
    c.login({ userID: "js-oli", userSig: otherKeySigs.genSig("js-oli", 3600) }),
    (e) => e.code === 70009,
  );
  assert.equal(c.getLoginStatus(), LOGIN_STATUS.LOGOUT, "the switch logged the connection out");
  assert.deepEqual(await instancesOf("js-nia"), []);
});
