// The console and the demo in Chromium (Debian's: CHROMIUM_PATH, else /usr/bin/chromium) against the real
// binary (IMLOGIN_BIN, else the workspace's release build), on the embedded defaults' demo app. Every wait is for
// something on the page, with a bound.
//
// SCREENSHOTS=1 also writes docs/images/console.png and docs/images/demo.png.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import {
  SDKAPPID,
  ADMIN_KEY,
  WAIT_MS,
  startImlogin,
  admin,
  eventually,
} from "../../clients/js/test/imlogin.mjs";
import net from "node:net";

const here = path.dirname(fileURLToPath(import.meta.url));
let server, browser, tmp, base;

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "imlogin-web-"));
  server = await startImlogin(tmp);
  base = `http://${server.addr}`;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    args: ["--no-sandbox"],
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A page that fails the test on any script error or refused resource (the CSP included). */
async function open(context, url) {
  const page = await context.newPage();
  page.problems = [];
  page.on("pageerror", (e) => page.problems.push(`error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") page.problems.push(`console: ${m.text()}`);
  });
  await page.goto(url);
  return page;
}

function clean(page) {
  assert.deepEqual(page.problems, [], "the page ran without errors");
}

/** The users each server (by host) has logged in today through demoLogin. */
const loggedIn = new Map();

async function demoLogin(page, userID) {
  await page.fill("#user-id", userID);
  await page.click("#login");
  // Logged in as this user (a switch from another user passes through "logging in").
  await page.waitForFunction(
    (u) =>
      document.querySelector("#login-status").dataset.status === "1" &&
      document.querySelector("#login-user").textContent === u,
    userID,
    { timeout: WAIT_MS },
  );
  const host = new URL(page.url()).host;
  if (!loggedIn.has(host)) loggedIn.set(host, new Set());
  loggedIn.get(host).add(userID);
}

async function signIn(page) {
  await page.fill("#sdkappid", String(SDKAPPID));
  await page.fill("#api-key", ADMIN_KEY);
  await page.click('#sign-in button[type="submit"]');
  await page.waitForSelector("#app-view:not([hidden])", { timeout: WAIT_MS });
}

async function findUser(page, userID) {
  await page.fill("#find-user", userID);
  await page.click('#find-form button[type="submit"]');
  await page.waitForFunction((u) => document.querySelector("#user-title")?.textContent.startsWith(u), userID, {
    timeout: WAIT_MS,
  });
}

function screenshots() {
  const dir = path.resolve(here, "../../docs/images");
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

const logText = (page) => page.locator("#log").innerText();

test("two tabs: the second login kicks the first", async () => {
  const context = await browser.newContext();
  const first = await open(context, `${base}/demo`);
  await demoLogin(first, "tab-user");
  const second = await open(context, `${base}/demo?user=tab-user`);
  assert.equal(await second.inputValue("#user-id"), "tab-user");
  await demoLogin(second, "tab-user");
  await first.waitForSelector('#login-status[data-status="3"]', { timeout: WAIT_MS });
  assert.match(await logText(first), /Kicked offline: multi_terminal by a web login \(code 6208\)/);
  assert.equal(await first.innerText("#login-user"), "–");
  assert.equal(await second.innerText("#login-status"), "logged in");
  const { instances } = await admin(server.addr, "GET", "/users/tab-user");
  assert.deepEqual(
    instances.map((i) => i.instance_id),
    [await second.innerText("#instance")],
  );
  if (process.env.SCREENSHOTS) {
    await first.setViewportSize({ width: 1000, height: 760 });
    await first.screenshot({ path: path.join(screenshots(), "demo.png") });
  }
  clean(first);
  clean(second);
  await context.close();
});

test("the console's kick reaches the page", async () => {
  const context = await browser.newContext();
  const demo = await open(context, `${base}/demo`);
  await demoLogin(demo, "kick-me");
  const instance = await demo.innerText("#instance");
  const console_ = await open(context, `${base}/console`);
  await signIn(console_);
  await findUser(console_, "kick-me");
  const row = console_.locator(`#instances tr[data-instance="${instance}"]`);
  assert.match(await row.innerText(), /web\s+\S+\s+–\s+online/);
  await row.locator("button.kick-one").click();
  await demo.waitForSelector('#login-status[data-status="3"]', { timeout: WAIT_MS });
  assert.match(await logText(demo), /Kicked offline: admin_kick \(code 6208\)/);
  await console_.waitForSelector("#no-instances", { timeout: WAIT_MS });
  assert.match(await console_.innerText("#status"), /Kicked/);
  clean(demo);
  clean(console_);
  await context.close();
});

/** The account on the server at `addr` as the API's query-string route sees it: `{ status, body }`. */
async function account(addr, userID) {
  const r = await fetch(`http://${addr}/admin/v1/apps/${SDKAPPID}/user?${new URLSearchParams({ user_id: userID })}`, {
    headers: { authorization: `Bearer ${ADMIN_KEY}` },
  });
  return { status: r.status, body: await r.json() };
}

/** Waits until the console shows exactly this account, disabled or not. */
async function shows(page, userID, disabled) {
  await page.waitForFunction(
    ([u, d]) => {
      const title = document.querySelector("#user-title");
      return title?.firstChild?.textContent === u && (title.querySelector(".tag") !== null) === d;
    },
    [userID, disabled],
    { timeout: WAIT_MS },
  );
}

test("the console finds, kicks, disables, enables and deletes users a path cannot name", async () => {
  // `.` and `..` are dot segments in a path (also as %2e); the others carry /, ?, #, %, & and +, or edge spaces.
  const users = [".", "..", "a/b?c#d%2e%&e+f", " padded "];
  // A server of its own: the accounts it deletes are no other test's.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "imlogin-web-names-"));
  const s = await startImlogin(dir);
  const context = await browser.newContext();
  try {
    const console_ = await open(context, `http://${s.addr}/console`);
    console_.on("dialog", (d) => void d.accept());
    await signIn(console_);
    for (const userID of users) {
      const demo = await open(context, `http://${s.addr}/demo`);
      // The demo trims what is typed: a UserID with edge spaces is created through the API instead.
      const online = userID.trim() === userID;
      if (online) await demoLogin(demo, userID);
      else await admin(s.addr, "PUT", `/user?${new URLSearchParams({ user_id: userID })}`, {});
      // In front, so that Chromium does not throttle its frames (every click waits for one).
      await console_.bringToFront();
      await console_.fill("#find-user", userID);
      await console_.click('#find-form button[type="submit"]');
      await shows(console_, userID, false);
      if (online) {
        await console_.waitForSelector("#instances tr[data-instance]", { timeout: WAIT_MS });
        await console_.click("#kick-all");
        await demo.waitForSelector('#login-status[data-status="3"]', { timeout: WAIT_MS });
        assert.match(await logText(demo), /Kicked offline: admin_kick/);
        await console_.waitForSelector("#no-instances", { timeout: WAIT_MS });
      }
      await console_.click("#toggle-disabled");
      await shows(console_, userID, true);
      assert.equal((await account(s.addr, userID)).body.disabled, true, `${userID} disabled`);
      await console_.click("#toggle-disabled");
      await shows(console_, userID, false);
      assert.equal((await account(s.addr, userID)).body.disabled, false, `${userID} enabled`);
      await console_.click("#delete-user");
      await console_.waitForFunction(() => /^No account /.test(document.querySelector("#user p")?.textContent ?? ""), null, {
        timeout: WAIT_MS,
      });
      assert.equal((await account(s.addr, userID)).status, 404, `${userID} deleted`);
      clean(demo);
      await demo.close();
    }
    // Each deletion is followed by the console's "No account" from a 404, which Chromium logs: that, and nothing else.
    const notFound = "console: Failed to load resource: the server responded with a status of 404 (Not Found)";
    assert.deepEqual(console_.problems, users.map(() => notFound));
  } finally {
    await context.close();
    await s.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("the console's policy change applies to the next login", async () => {
  const context = await browser.newContext();
  const console_ = await open(context, `${base}/console`);
  await signIn(console_);
  assert.match(await console_.innerText("#policy-now"), /dual, 1 web instance/);
  await console_.fill("#policy-web", "2");
  await console_.click('#policy-form button[type="submit"]');
  await console_.waitForFunction(() => /dual, 2 web instance/.test(document.querySelector("#policy-now").textContent), null, {
    timeout: WAIT_MS,
  });
  const a = await open(context, `${base}/demo`);
  await demoLogin(a, "two-tabs-ok");
  const b = await open(context, `${base}/demo`);
  await demoLogin(b, "two-tabs-ok");
  await findUser(console_, "two-tabs-ok");
  assert.equal(await console_.locator("#instances tr[data-instance]").count(), 2, "both tabs online");
  assert.equal(await a.innerText("#login-status"), "logged in");
  assert.doesNotMatch(await logText(a), /Kicked/);
  // Back to the configuration file's policy: one web instance, so a third tab kicks the oldest.
  await console_.click('#policy-form button[type="button"]');
  await console_.waitForFunction(() => /dual, 1 web instance/.test(document.querySelector("#policy-now").textContent), null, {
    timeout: WAIT_MS,
  });
  const c = await open(context, `${base}/demo`);
  await demoLogin(c, "two-tabs-ok");
  await a.waitForSelector('#login-status[data-status="3"]', { timeout: WAIT_MS });
  for (const p of [console_, a, b, c]) clean(p);
  await context.close();
});

test("the daily-active chart shows today's logins; the screenshots", async () => {
  const users = ["dau-1", "dau-2", "dau-3"];
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const demo = await open(context, `${base}/demo`);
  for (const u of users) await demoLogin(demo, u);
  const today = new Date().toISOString().slice(0, 10);
  // Every user this server saw today, once its daily-active writer (which works beside the logins) has them.
  const expected = loggedIn.get(server.addr).size;
  assert.ok(expected >= users.length);
  await eventually(async () => {
    const counted = (await admin(server.addr, "GET", `/stats/dau?from=${today}&to=${today}`)).days[0].users;
    return counted === expected;
  }, "the day's logins counted");
  const console_ = await open(context, `${base}/console`);
  await signIn(console_);
  const bar = console_.locator(`svg.chart rect[data-date="${today}"]`);
  await bar.waitFor({ timeout: WAIT_MS });
  assert.equal(Number(await bar.getAttribute("data-users")), expected);
  assert.ok(Number(await bar.getAttribute("height")) > 0, "a visible bar");
  assert.equal(await console_.locator("svg.chart rect.day").count(), 14, "the last 14 days");
  // Online now, by platform.
  await console_.click("#online-refresh");
  await console_.waitForFunction(() => Number(document.querySelector("#online-total")?.textContent) >= 1, null, {
    timeout: WAIT_MS,
  });
  const web = Number(await console_.innerText('tr[data-platform="web"] td.n'));
  const online = (await admin(server.addr, "GET", "/stats/online")).by_platform.web;
  assert.equal(web, online);
  if (process.env.SCREENSHOTS) {
    await findUser(console_, "dau-3");
    await console_.screenshot({ path: path.join(screenshots(), "console.png"), fullPage: true });
  }
  clean(demo);
  clean(console_);
  await context.close();
});

test("a wrong key does not sign in; the key is kept in the tab only", async () => {
  const context = await browser.newContext();
  const page = await open(context, `${base}/console`);
  await page.fill("#sdkappid", String(SDKAPPID));
  await page.fill("#api-key", "not-the-key");
  await page.click('#sign-in button[type="submit"]');
  await page.waitForFunction(() => document.querySelector("#sign-in-error").textContent.length > 0, null, {
    timeout: WAIT_MS,
  });
  assert.equal(await page.innerText("#sign-in-error"), "Unknown key.");
  assert.equal(await page.isHidden("#app-view"), true);
  await signIn(page);
  assert.equal(await page.evaluate(() => localStorage.length), 0, "nothing in localStorage");
  await page.click("#sign-out");
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, "signed out: forgotten");
  await context.close();
});

test("webhook dead letters: retried or dropped from the console", async () => {
  // A receiver that refuses every connection, one attempt each: every event becomes a dead letter at once.
  const closed = net.createServer();
  await new Promise((r) => closed.listen(0, "127.0.0.1", r));
  const port = closed.address().port;
  await new Promise((r) => closed.close(r));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "imlogin-web-dead-"));
  const s = await startImlogin(dir, {
    IMLOGIN__APPS__0__WEBHOOK__URL: `http://127.0.0.1:${port}/hook`,
    IMLOGIN__APPS__0__WEBHOOK__MAX_ATTEMPTS: "1",
  });
  const context = await browser.newContext();
  try {
    const demo = await open(context, `http://${s.addr}/demo`);
    await demoLogin(demo, "dead-1");
    await demoLogin(demo, "dead-2");
    const letters = async () => (await admin(s.addr, "GET", "/webhooks/dead_letters")).events;
    // dead-1's login, its switch-out, dead-2's login.
    await eventually(async () => (await letters()).length === 3, "three dead letters");
    const console_ = await open(context, `http://${s.addr}/console`);
    await signIn(console_);
    // The table is filled by its own request after sign-in: wait for it, then count.
    await console_.waitForSelector("#dead-letters tr[data-event]", { timeout: WAIT_MS });
    assert.equal(await console_.locator("#dead-letters tr[data-event]").count(), 3);
    const [first, second] = (await letters()).map((d) => d.event_id);
    await console_.locator(`tr[data-event="${second}"] button`, { hasText: "Drop" }).click();
    await console_.waitForSelector(`tr[data-event="${second}"]`, { state: "detached", timeout: WAIT_MS });
    await console_.locator(`tr[data-event="${first}"] button`, { hasText: "Retry" }).click();
    await console_.waitForFunction(() => /Back in the outbox/.test(document.querySelector("#status").textContent), null, {
      timeout: WAIT_MS,
    });
    // Retried, it fails again (the receiver still refuses) and comes back as a dead letter; the dropped one is gone.
    await eventually(async () => {
      const ids = (await letters()).map((d) => d.event_id);
      return !ids.includes(second) && ids.length === 2;
    }, "the dropped letter gone, the retried one dead again");
    clean(demo);
    clean(console_);
  } finally {
    await context.close();
    await s.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
