// A real imlogin, a relay whose connections can be cut, a web server for the page and the SDK bundle, and
// Chromium, for one SDK's tests; and the page helpers those tests use. Every wait is for an event or a state,
// with a bound; nothing sleeps a fixed time.
//
// The server is the binary named by IMLOGIN_BIN, else the workspace's release build (helpers shared with the
// other Node suites: clients/js/test/imlogin.mjs). Chromium is Debian's (CHROMIUM_PATH, else /usr/bin/chromium).

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
import { allAnswered, routeSockets, socketLog } from "./sockets.mjs";

const require = createRequire(import.meta.url);
const TLSSigAPIv2 = require("tls-sig-api-v2");
const here = path.dirname(fileURLToPath(import.meta.url));

/** The SDKs under test: the npm package, its browser bundle, and whether it reads `proxyServer`. */
export const SDKS = {
  "tim-js-sdk": { bundle: "tim-js-sdk/tim-js.js", proxyServer: true },
  "@tencentcloud/chat": { bundle: "@tencentcloud/chat/index.js", proxyServer: true },
  "@tencentcloud/lite-chat": { bundle: "@tencentcloud/lite-chat/standard.js", proxyServer: false },
};

export const sigs = new TLSSigAPIv2.Api(SDKAPPID, KEY);
export { SDKAPPID, WAIT_MS, eventually };

/** A file of an installed package (by path: lite-chat's `exports` do not list its files). */
const installed = (file) => path.join(here, "node_modules", file);

/** The version of `name` installed (package.json pins it exactly). */
export function versionOf(name) {
  return JSON.parse(fs.readFileSync(installed(`${name}/package.json`))).version;
}

/** Serves the page with `name`'s bundle from node_modules, as an app's own web server would. */
function startPageServer(name) {
  const sdk = fs.readFileSync(installed(SDKS[name].bundle));
  const page = fs.readFileSync(path.join(here, "page.html"));
  const srv = createServer((req, res) => {
    if (req.url === "/sdk.js") {
      res.writeHead(200, { "content-type": "text/javascript" }).end(sdk);
    } else {
      res.writeHead(200, { "content-type": "text/html" }).end(page);
    }
  });
  return new Promise((resolve) =>
    srv.listen(0, "127.0.0.1", () => resolve({ url: `http://127.0.0.1:${srv.address().port}/`, srv })),
  );
}

/** Starts everything one SDK's tests need; `stop()` ends it all. */
export async function start(name) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "imlogin-websdk-"));
  const server = await startImlogin(tmp);
  const base = server.addr;
  const cutter = await startCutter(base);
  const pages = await startPageServer(name);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    args: ["--no-sandbox"],
  });
  const env = {
    name,
    base,
    cutter,
    admin: (method, route, body) => adminOn(base, method, route, body),
    onlineStatus: (userID) => onlineStatus(base, userID),
    open: (opts) => openSdk(env, browser, pages.url, opts),
    nativeLogin: (userID, platform) => nativeLogin(browser, base, userID, platform),
    async stop() {
      await browser.close();
      cutter.close();
      server.child.kill("SIGTERM");
      pages.srv.closeAllConnections();
      pages.srv.close();
      fs.rmSync(tmp, { recursive: true, force: true });
    },
  };
  return env;
}

async function onlineStatus(base, userID) {
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

/** A login through imlogin's own protocol (`/v1/ws`) from a page of its own; the answer. */
async function nativeLogin(browser, base, userID, platform) {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const login = { op: "login", id: 1, sdkappid: SDKAPPID, user_id: userID, platform };
    login.user_sig = sigs.genSig(userID, 3600);
    return await page.evaluate(
      ([url, frame]) =>
        new Promise((resolve, reject) => {
          const ws = new WebSocket(url);
          ws.onerror = () => reject(new Error("ws error"));
          ws.onopen = () => ws.send(JSON.stringify(frame));
          ws.onmessage = (m) => resolve(JSON.parse(m.data));
        }),
      [`ws://${base}/v1/ws`, login],
    );
  } finally {
    await context.close();
  }
}

/**
 * A page of its own (own storage, as another browser would be) with the SDK created, not yet logged in. Its
 * sockets go to imlogin (or to the relay, `through`): by `proxyServer` for the SDKs that read it, by routing
 * (sockets.mjs) for lite-chat.
 */
async function openSdk(env, browser, pageUrl, { through } = {}) {
  const target = through || env.base;
  const context = await browser.newContext();
  // Nothing leaves the machine: the SDKs' reports to their vendor fail (they ignore that).
  await context.route(/^https?:\/\/(?!127\.0\.0\.1[:/])/, (route) => route.abort());
  await routeSockets(context, target);
  // The page's timers run on a clock the tests can move on (settle, below); it keeps time until then.
  await context.clock.install();
  // The SDK's own calls of unsupported commands end in rejections it does not catch (lite-chat's are plain
  // `{errorCode, errorInfo}` objects): expected, not shown. Any other is.
  const expected = /is not supported: imlogin|kicked offline/;
  await context.addInitScript(
    (pattern) =>
      window.addEventListener("unhandledrejection", (e) => {
        const text = String(e.reason?.message ?? e.reason?.errorInfo ?? "");
        if (new RegExp(pattern).test(text)) e.preventDefault();
      }),
    expected.source,
  );
  const page = await context.newPage();
  page.on("pageerror", (e) => {
    if (!expected.test(e.message)) console.error("page error:", e.message);
  });
  await page.goto(pageUrl);
  await page.evaluate(([sdkappid, proxy]) => window.createSdk(sdkappid, proxy), [SDKAPPID, `ws://${target}/tim`]);
  const events = () => page.evaluate(() => window.events);
  const answered = () =>
    eventually(async () => allAnswered(await socketLog(page)), "the SDK's requests to be answered");
  return {
    page,
    login: (userID, userSig) => page.evaluate(([u, s]) => window.login(u, s), [userID, userSig]),
    logout: () => page.evaluate(() => window.logout()),
    events,
    kicks: async () => (await events()).filter((e) => e.type === "kicked").map((e) => e.reason),
    sockets: () => socketLog(page),
    /**
     * Moves the page's clock on past the SDK's next heartbeats (sent after 10 s without a frame) and its next
     * `wshello` (30 s), a step at a time: each taken once every request has its answer (so none times out), and
     * done when the SDK has sent its heartbeat (some SDKs tick from a worker, on real time). Then whatever the SDK
     * does by itself after an event has been done and answered, and its events can be counted.
     */
    async settle() {
      const beats = async () =>
        (await socketLog(page)).frames.filter((f) => f.dir === "out" && f.servcmd === "heartbeat.alive").length;
      for (let step = 0; step < 4; step++) {
        await answered();
        const before = await beats();
        await page.clock.fastForward(11_000);
        await eventually(async () => (await beats()) > before, "the SDK's next heartbeat");
      }
      await answered();
    },
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
