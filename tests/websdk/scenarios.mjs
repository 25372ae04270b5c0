// The scenarios of docs/websdk.md, run the same for each SDK (one *.test.mjs file per SDK): login and
// SDK_READY, kicks of the three types while online and while away (then resume), UserSig expiry, logout, and a
// dropped network resumed. After every kick or expiry the page's clock is moved on past the SDK's next
// heartbeat and `wshello` (`settle`) before the events are counted: each kick must fire exactly one KICKED_OUT.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { start, sigs, eventually, versionOf, SDKS, SDKAPPID } from "./harness.mjs";

const SINGLE = { mode: "single", web_instances: 1, instances_per_platform: 1 };
const PURCHASE_BITS = "im_sdk_config_mgr.fetch_imsdk_purchase_bitsv2";

/** Registers the scenarios for the SDK published on npm as `name`. */
export function scenarios(name) {
  const label = `${name} ${versionOf(name)}`;
  let env;
  before(async () => {
    env = await start(name);
  });
  after(async () => {
    await env?.stop();
  });

  /** A page logged in as `user` (through the relay with `through`), SDK_READY fired. */
  async function online(user, opts) {
    const sdk = await env.open(opts);
    const r = await sdk.login(user, sigs.genSig(user, 3600));
    assert.equal(r.ok, true, JSON.stringify(r));
    await sdk.waitFor("ready");
    return sdk;
  }

  /** Waits until the server has seen `user`'s connection end (the instance is kept for the reconnect grace). */
  const gone = (user) =>
    eventually(async () => (await env.onlineStatus(user)).Status === "PushOnline", "the server to see it gone");

  /**
   * Lets the SDK do what it does next (its heartbeat, its `wshello`: an expiry is told on the next `wshello`),
   * waits for `reason`, lets it go on again, and requires that one kick and no other.
   */
  async function kickedOnce(sdk, reason) {
    await sdk.settle();
    await sdk.waitFor("kicked", { reason });
    await sdk.settle();
    assert.deepEqual(await sdk.kicks(), [reason], "exactly one KICKED_OUT");
  }

  test(`${label}: login() resolves, SDK_READY fires, the instance is a web instance online`, async () => {
    const a = await online("sdk-alice");
    const s = await env.onlineStatus("sdk-alice");
    assert.equal(s.Status, "Online");
    assert.deepEqual(s.Detail.map((d) => d.Platform), ["Web"]);
    const user = await env.admin("GET", "/users/sdk-alice");
    assert.equal(user.instances.length, 1);
    // Its socket: where the SDK sent it (lite-chat ignores `proxyServer` and asks for its built-in host).
    const { asked } = await a.sockets();
    const host = SDKS[name].proxyServer ? `ws://${env.base}/tim/` : `wss://${SDKAPPID}w4c.my-imcloud.com/`;
    assert.ok(asked[0].startsWith(`${host}binfo?sdkappid=${SDKAPPID}&`), asked[0]);
    // The purchased features are asked for once, and the answer is taken: not asked again.
    await a.settle();
    const { frames } = await a.sockets();
    const asks = frames.filter((f) => f.dir === "out" && f.servcmd === PURCHASE_BITS);
    const sent = frames.filter((f) => f.dir === "out").map((f) => f.servcmd);
    assert.equal(asks.length, 1, `fetch_imsdk_purchase_bitsv2 asked once; sent: ${sent.join(" ")}`);
    assert.deepEqual(await a.kicks(), []);
    await a.close();
  });

  test(`${label}: a second web login of the same user kicks the first: multipleAccount`, async () => {
    const first = await online("sdk-bob");
    const second = await online("sdk-bob");
    await kickedOnce(first, "multipleAccount");
    const s = await eventually(async () => {
      const s = await env.onlineStatus("sdk-bob");
      return s.Detail.length === 1 && s;
    }, "one instance of sdk-bob");
    assert.equal(s.Status, "Online");
    assert.deepEqual(await second.kicks(), []);
    await first.close();
    await second.close();
  });

  test(`${label}: an Android login through /v1/ws under the single policy kicks the SDK: multipleDevice`, async () => {
    await env.admin("PUT", "/policy", SINGLE);
    try {
      const web = await online("sdk-carol");
      const native = await env.nativeLogin("sdk-carol", "android");
      assert.equal(native.code, 0, JSON.stringify(native));
      await kickedOnce(web, "multipleDevice");
      await web.close();
    } finally {
      await env.admin("DELETE", "/policy");
    }
  });

  test(`${label}: an admin kick reaches the SDK as REST_API_Kick`, async () => {
    const a = await online("sdk-dave");
    const r = await env.admin("POST", "/users/sdk-dave/kick", {});
    assert.equal(r.kicked, 1);
    await kickedOnce(a, "REST_API_Kick");
    assert.equal((await env.onlineStatus("sdk-dave")).Status, "Offline");
    await a.close();
  });

  // Kicked while its network was down: the SDK hears of it when it comes back with its A2Key.
  const away = [
    ["another web login", "multipleAccount", async (user) => (await online(user)).close()],
    [
      "an Android login (single policy)",
      "multipleDevice",
      async (user) => assert.equal((await env.nativeLogin(user, "android")).code, 0),
    ],
    ["an admin kick", "REST_API_Kick", (user) => env.admin("POST", `/users/${user}/kick`, {})],
  ];
  for (const [i, [what, reason, kick]] of away.entries()) {
    test(`${label}: kicked by ${what} while away, the SDK is told on its return: ${reason}`, async () => {
      const user = `sdk-away-${i}`;
      if (reason === "multipleDevice") await env.admin("PUT", "/policy", SINGLE);
      try {
        const a = await online(user, { through: env.cutter.addr });
        env.cutter.block(true);
        env.cutter.cutAll();
        await gone(user);
        await kick(user);
        env.cutter.block(false);
        await kickedOnce(a, reason);
        await a.close();
      } finally {
        env.cutter.block(false);
        if (reason === "multipleDevice") await env.admin("DELETE", "/policy");
      }
    });
  }

  test(`${label}: an expired UserSig: login() rejects with 70001`, async () => {
    const a = await env.open();
    // The official generator, as if run two hours ago: a ticket valid for a minute, long expired.
    const realNow = Date.now;
    Date.now = () => realNow() - 7200 * 1000;
    const sig = sigs.genSig("sdk-erin", 60);
    Date.now = realNow;
    const r = await a.login("sdk-erin", sig);
    assert.equal(r.ok, false);
    assert.equal(r.code, 70001, JSON.stringify(r));
    await a.close();
  });

  test(`${label}: a UserSig that expires while online: userSigExpired once, and the instance is gone`, async () => {
    const a = await env.open();
    assert.equal((await a.login("sdk-frank", sigs.genSig("sdk-frank", 3))).ok, true);
    await a.waitFor("ready");
    // Removed by the server when the ticket expires, whatever the SDK does.
    await eventually(async () => (await env.onlineStatus("sdk-frank")).Status === "Offline", "the expiry");
    await kickedOnce(a, "userSigExpired");
    await a.close();
  });

  test(`${label}: after the network drops, the SDK comes back with its A2Key as the same instance`, async () => {
    const a = await online("sdk-grace", { through: env.cutter.addr });
    const before = await env.onlineStatus("sdk-grace");
    assert.equal(before.Detail.length, 1);
    env.cutter.cutAll();
    await gone("sdk-grace");
    await eventually(async () => (await env.onlineStatus("sdk-grace")).Status === "Online", "the SDK to come back");
    const now = await env.onlineStatus("sdk-grace");
    assert.deepEqual(now.Detail, before.Detail, "the same instance, resumed");
    assert.deepEqual(await a.kicks(), [], "no kick, no expiry");
    const logins = (await a.events()).filter((e) => e.type === "login");
    assert.equal(logins.length, 1, "the app did not log in again");
    await a.close();
  });

  test(`${label}: logout() resolves and the instance is gone`, async () => {
    const a = await online("sdk-heidi");
    assert.equal((await env.onlineStatus("sdk-heidi")).Status, "Online");
    const r = await a.logout();
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal((await env.onlineStatus("sdk-heidi")).Status, "Offline");
    await a.close();
  });
}
