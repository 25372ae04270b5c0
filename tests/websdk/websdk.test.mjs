// The cloud IM's official Web SDK (tim-js-sdk, from npm) in Chromium, logging in to a real imlogin through its
// `proxyServer` option, with UserSigs from the official generator (tls-sig-api-v2). Every wait is for an event or
// a state, with a bound; nothing sleeps a fixed time.
//
// The server is the binary named by IMLOGIN_BIN, else the workspace's release build (helpers shared with the
// other Node suites: clients/js/test/imlogin.mjs). Chromium is Debian's
// (CHROMIUM_PATH, else /usr/bin/chromium).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";
import {
  SDKAPPID,
  KEY,
  WAIT_MS,
  startImlogin,
  startCutter,
  admin as adminOn,
  eventually,
} from "../../clients/js/test/imlogin.mjs";

const require = createRequire(import.meta.url);
const TLSSigAPIv2 = require("tls-sig-api-v2");

const here = path.dirname(fileURLToPath(import.meta.url));

const sigs = new TLSSigAPIv2.Api(SDKAPPID, KEY);
let server, base, page0Url, pageServer, browser, cutter, tmp;

/** Serves the page and the SDK from node_modules, as an app's own web server would. */
function startPageServer() {
  const sdk = fs.readFileSync(require.resolve("tim-js-sdk/tim-js.js"));
  const page = fs.readFileSync(path.join(here, "page.html"));
  const srv = createServer((req, res) => {
    if (req.url === "/tim-js.js") {
      res.writeHead(200, { "content-type": "text/javascript" }).end(sdk);
    } else {
      res.writeHead(200, { "content-type": "text/html" }).end(page);
    }
  });
  return new Promise((resolve) =>
    srv.listen(0, "127.0.0.1", () => resolve({ url: `http://127.0.0.1:${srv.address().port}/`, srv })),
  );
}

const admin = (method, route, body) => adminOn(base, method, route, body);

async function onlineStatus(userID) {
  const q = new URLSearchParams({
    sdkappid: String(SDKAPPID),
    identifier: "administrator",
    usersig: sigs.genSig("administrator", 3600),
    random: String(Math.floor(Math.random() * 1e9)),
    contenttype: "json",
  });
  const r = await fetch(`http://${base}/v4/openim/query_online_status?${q}`, {
    method: "POST",
    body: JSON.stringify({ To_Account: [userID], IsNeedDetail: 1, IsReturnInstid: 1 }),
  });
  const v = await r.json();
  assert.equal(v.ActionStatus, "OK", JSON.stringify(v));
  return v.QueryResult[0];
}

/** A page of its own (own storage, as another browser would be) with the SDK loaded, not yet logged in. */
async function openSdk({ through } = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  // The SDK's own calls of unsupported commands end in rejections it does not catch: expected, not shown.
  page.on("pageerror", (e) => {
    if (!e.message.includes("is not supported: imlogin")) console.error("page error:", e.message);
  });
  await page.goto(page0Url);
  await page.evaluate(
    ([sdkappid, proxy]) => window.createSdk(sdkappid, proxy),
    [SDKAPPID, `ws://${through || base}/tim`],
  );
  return {
    page,
    login: (userID, userSig) => page.evaluate(([u, s]) => window.login(u, s), [userID, userSig]),
    logout: () => page.evaluate(() => window.logout()),
    events: () => page.evaluate(() => window.events),
    waitFor: (type, extra = {}) =>
      page.waitForFunction(
        ([t, x]) =>
          window.events.find((e) => e.type === t && Object.entries(x).every(([k, v]) => e[k] === v)),
        [type, extra],
        { timeout: WAIT_MS },
      ),
    close: () => context.close(),
  };
}

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "imlogin-websdk-"));
  server = await startImlogin(tmp);
  base = server.addr;
  cutter = await startCutter(base);
  const pages = await startPageServer();
  page0Url = pages.url;
  pageServer = pages.srv;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    args: ["--no-sandbox"],
  });
});

after(async () => {
  await browser?.close();
  cutter?.close();
  server?.child.kill("SIGTERM");
  pageServer?.closeAllConnections();
  pageServer?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

test("login() resolves, SDK_READY fires, and the instance is a web instance online", async () => {
  const a = await openSdk();
  const r = await a.login("sdk-alice", sigs.genSig("sdk-alice", 3600));
  assert.equal(r.ok, true, JSON.stringify(r));
  await a.waitFor("ready");
  const s = await onlineStatus("sdk-alice");
  assert.equal(s.Status, "Online");
  assert.deepEqual(s.Detail.map((d) => d.Platform), ["Web"]);
  const user = await admin("GET", "/users/sdk-alice");
  assert.equal(user.instances.length, 1);
  await a.close();
});

test("a second web login of the same user kicks the first: multipleAccount", async () => {
  const first = await openSdk();
  assert.equal((await first.login("sdk-bob", sigs.genSig("sdk-bob", 3600))).ok, true);
  await first.waitFor("ready");
  const second = await openSdk();
  assert.equal((await second.login("sdk-bob", sigs.genSig("sdk-bob", 3600))).ok, true);
  await first.waitFor("kicked", { reason: "multipleAccount" });
  await second.waitFor("ready");
  const s = await eventually(async () => {
    const s = await onlineStatus("sdk-bob");
    return s.Detail.length === 1 && s;
  }, "one instance of sdk-bob");
  assert.equal(s.Status, "Online");
  assert.ok(!(await second.events()).some((e) => e.type === "kicked"));
  await first.close();
  await second.close();
});

test("an Android login through /v1/ws under the single policy kicks the SDK: multipleDevice", async () => {
  await admin("PUT", "/policy", { mode: "single", web_instances: 1, instances_per_platform: 1 });
  try {
    const web = await openSdk();
    assert.equal((await web.login("sdk-carol", sigs.genSig("sdk-carol", 3600))).ok, true);
    await web.waitFor("ready");
    const native = await web.page.evaluate(
      ([url, sdkappid, sig]) =>
        new Promise((resolve, reject) => {
          const ws = new WebSocket(url);
          ws.onerror = () => reject(new Error("ws error"));
          ws.onopen = () =>
            ws.send(JSON.stringify({ id: 1, op: "login", sdkappid, user_id: "sdk-carol", user_sig: sig, platform: "android" }));
          ws.onmessage = (m) => resolve(JSON.parse(m.data));
        }),
      [`ws://${base}/v1/ws`, SDKAPPID, sigs.genSig("sdk-carol", 3600)],
    );
    assert.equal(native.code, 0, JSON.stringify(native));
    await web.waitFor("kicked", { reason: "multipleDevice" });
    await web.close();
  } finally {
    await admin("DELETE", "/policy");
  }
});

test("an admin kick reaches the SDK as REST_API_Kick", async () => {
  const a = await openSdk();
  assert.equal((await a.login("sdk-dave", sigs.genSig("sdk-dave", 3600))).ok, true);
  await a.waitFor("ready");
  const r = await admin("POST", "/users/sdk-dave/kick", {});
  assert.equal(r.kicked, 1);
  await a.waitFor("kicked", { reason: "REST_API_Kick" });
  assert.equal((await onlineStatus("sdk-dave")).Status, "Offline");
  await a.close();
});

test("an expired UserSig: login() rejects with 70001", async () => {
  const a = await openSdk();
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

test("a UserSig that expires while online: userSigExpired, and the instance is gone", async () => {
  const a = await openSdk();
  assert.equal((await a.login("sdk-frank", sigs.genSig("sdk-frank", 3))).ok, true);
  await a.waitFor("ready");
  await a.waitFor("kicked", { reason: "userSigExpired" });
  assert.equal((await onlineStatus("sdk-frank")).Status, "Offline");
  await a.close();
});

test("after the network drops, the SDK comes back with its A2Key, as the same instance, without a new login", async () => {
  const a = await openSdk({ through: cutter.addr });
  assert.equal((await a.login("sdk-grace", sigs.genSig("sdk-grace", 3600))).ok, true);
  await a.waitFor("ready");
  const before = await onlineStatus("sdk-grace");
  assert.equal(before.Detail.length, 1);
  cutter.cutAll();
  await eventually(async () => {
    const s = await onlineStatus("sdk-grace");
    return s.Status === "PushOnline";
  }, "the server to see the connection gone");
  await eventually(async () => {
    const s = await onlineStatus("sdk-grace");
    return s.Status === "Online";
  }, "the SDK to come back");
  const now = await onlineStatus("sdk-grace");
  assert.deepEqual(now.Detail, before.Detail, "the same instance, resumed");
  assert.ok(!(await a.events()).some((e) => e.type === "kicked"), "no kick, no expiry");
  const logins = (await a.events()).filter((e) => e.type === "login");
  assert.equal(logins.length, 1, "the app did not log in again");
  await a.close();
});

test("logout() resolves and the instance is gone", async () => {
  const a = await openSdk();
  assert.equal((await a.login("sdk-heidi", sigs.genSig("sdk-heidi", 3600))).ok, true);
  await a.waitFor("ready");
  assert.equal((await onlineStatus("sdk-heidi")).Status, "Online");
  const r = await a.logout();
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.equal((await onlineStatus("sdk-heidi")).Status, "Offline");
  await a.close();
});
