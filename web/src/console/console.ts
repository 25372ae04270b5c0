// The admin console: one page over the native admin API. The key stays in this tab's sessionStorage and is sent
// only to this server's /admin/v1.

import { h, fill, byId, time } from "../dom";
import { AdminApi, ApiError, Policy } from "./api";

const PLATFORMS = ["android", "iphone", "ipad", "windows", "mac", "linux", "web"];
// Counting who is online walks every session of the app (every user's key in a cluster's Redis): often enough to
// watch, rarely enough to cost nothing, and never while the tab is hidden.
const REFRESH_MS = 15_000;

let api: AdminApi | null = null;
let refresh: ReturnType<typeof setInterval> | null = null;

function say(text: string, error = false): void {
  const el = fill("status", text);
  el.className = error ? "error" : "";
}

function failed(e: unknown): void {
  if (e instanceof ApiError) say(`${e.message} (HTTP ${e.status}, code ${e.code})`, true);
  else say(String(e), true);
}

/** Runs an action, saying what it did or why it failed, then refreshes what it may have changed. */
async function act(done: string, action: () => Promise<unknown>, after: () => Promise<void>): Promise<void> {
  try {
    await action();
    say(done);
  } catch (e) {
    failed(e);
  }
  await after();
}

// ---- sign in / out ----

async function signIn(sdkappid: number, key: string): Promise<void> {
  const candidate = new AdminApi(sdkappid, key);
  try {
    await candidate.online();
  } catch (e) {
    fill("sign-in-error", e instanceof ApiError && e.status === 401 ? "Unknown key." : e instanceof ApiError && e.status === 403 ? "That key belongs to another app." : `Cannot sign in: ${(e as Error).message}`);
    return;
  }
  sessionStorage.setItem("imlogin.console", JSON.stringify({ sdkappid, key }));
  api = candidate;
  fill("sign-in-error");
  byId("sign-in-view").hidden = true;
  byId("app-view").hidden = false;
  byId("sign-out").hidden = false;
  fill("signed-in", `SDKAppID ${sdkappid}`);
  const today = new Date();
  const from = new Date(today.getTime() - 13 * 86400_000);
  byId<HTMLInputElement>("dau-from").value = isoDay(from);
  byId<HTMLInputElement>("dau-to").value = isoDay(today);
  await Promise.all([showOnline(), showDau(), showPolicy(), showDeadLetters(), showUserList()]);
  refresh = setInterval(() => {
    if (document.visibilityState === "visible") void showOnline();
  }, REFRESH_MS);
}

function signOut(): void {
  sessionStorage.removeItem("imlogin.console");
  api = null;
  if (refresh) clearInterval(refresh);
  byId("sign-in-view").hidden = false;
  byId("app-view").hidden = true;
  byId("sign-out").hidden = true;
  fill("signed-in");
  fill("user");
}

function isoDay(d: Date): string {
  return d.toISOString().slice(0, 10);
}

// ---- online now ----

async function showOnline(): Promise<void> {
  if (!api) return;
  try {
    const s = await api.online();
    const max = Math.max(1, ...Object.values(s.by_platform));
    fill(
      "online",
      h("p", { class: "big" }, h("span", { id: "online-total" }, s.total), " online"),
      h(
        "table",
        { class: "bars" },
        ...PLATFORMS.map((p) =>
          h(
            "tr",
            { "data-platform": p },
            h("th", {}, p),
            h("td", { class: "n" }, s.by_platform[p] ?? 0),
            h("td", {}, h("span", { class: "bar", style: `width:${((s.by_platform[p] ?? 0) / max) * 100}%` })),
          ),
        ),
      ),
    );
    fill("online-updated", `updated ${time(Date.now())}, every ${REFRESH_MS / 1000} s`);
  } catch (e) {
    failed(e);
  }
}

// ---- daily active users ----

async function showDau(): Promise<void> {
  if (!api) return;
  const from = byId<HTMLInputElement>("dau-from").value;
  const to = byId<HTMLInputElement>("dau-to").value;
  try {
    const { days } = await api.dau(from, to);
    fill("dau-chart", chart(days));
  } catch (e) {
    failed(e);
  }
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** A bar per day, the count above each bar, the dates below the first, middle and last. */
function chart(days: { date: string; users: number }[]): SVGElement {
  const W = 720, H = 220, top = 20, bottom = 30, left = 8;
  const max = Math.max(1, ...days.map((d) => d.users));
  const step = (W - left * 2) / Math.max(1, days.length);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": "daily active users" });
  root.append(svg("line", { x1: left, x2: W - left, y1: H - bottom, y2: H - bottom, class: "axis" }));
  days.forEach((d, i) => {
    const bh = ((H - top - bottom) * d.users) / max;
    const x = left + i * step + step * 0.15;
    const bar = svg("rect", {
      x,
      y: H - bottom - bh,
      width: step * 0.7,
      height: Math.max(bh, 0),
      class: "day",
      "data-date": d.date,
      "data-users": d.users,
    });
    bar.append(svg("title", {}, `${d.date}: ${d.users} users`));
    root.append(bar);
    if (d.users > 0 || days.length <= 31) {
      root.append(svg("text", { x: x + step * 0.35, y: H - bottom - bh - 4, class: "count" }, String(d.users)));
    }
    if (i === 0 || i === days.length - 1 || i === Math.floor(days.length / 2)) {
      root.append(svg("text", { x: x + step * 0.35, y: H - 10, class: "date" }, d.date.slice(5)));
    }
  });
  return root;
}

// ---- users ----

async function showUser(id: string): Promise<void> {
  if (!api || !id) return;
  const a = api;
  let u;
  try {
    u = await a.user(id);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) fill("user", h("p", { class: "muted" }, `No account ${id}.`));
    else failed(e);
    return;
  }
  const again = () => showUser(id);
  const revoke = h("input", { type: "checkbox", id: "revoke" });
  fill(
    "user",
    h(
      "div",
      { class: "account" },
      h("h3", { id: "user-title" }, u.user_id, u.disabled ? h("span", { class: "tag" }, "disabled") : null),
      h("p", { class: "muted" }, `${u.nick ? u.nick + " · " : ""}registered ${time(u.created_at * 1000)}`),
    ),
    u.instances.length === 0
      ? h("p", { class: "muted", id: "no-instances" }, "Not logged in anywhere.")
      : h(
          "table",
          { id: "instances" },
          h("tr", {}, ...["platform", "instance", "device", "state", "since", "address", ""].map((c) => h("th", {}, c))),
          ...u.instances.map((i) =>
            h(
              "tr",
              { "data-instance": i.instance_id },
              h("td", {}, i.platform),
              h("td", { class: "mono" }, i.instance_id),
              h("td", {}, i.device_id ?? "–"),
              h("td", {}, i.state),
              h("td", {}, time(i.login_at)),
              h("td", {}, i.client_ip),
              h(
                "td",
                {},
                h("button", {
                  class: "kick-one",
                  onclick: () => act(`Kicked ${i.instance_id}.`, () => a.kick(u.user_id, i.instance_id, revoke.checked), again),
                }, "Kick"),
              ),
            ),
          ),
        ),
    h(
      "div",
      { class: "actions" },
      h("button", {
        id: "kick-all",
        onclick: () => act(`Kicked every instance of ${u.user_id}.`, () => a.kick(u.user_id, null, revoke.checked), again),
      }, "Kick all"),
      h("label", {}, revoke, " and revoke the tickets issued so far"),
      h("button", {
        id: "toggle-disabled",
        onclick: () => act(u.disabled ? "Enabled." : "Disabled: logins answer 70051.", () => a.setDisabled(u.user_id, !u.disabled), again),
      }, u.disabled ? "Enable" : "Disable"),
      h("button", {
        id: "delete-user",
        class: "danger",
        onclick: () => {
          if (!confirm(`Delete ${u.user_id}? Their instances are kicked.`)) return;
          void act(`Deleted ${u.user_id}.`, () => a.deleteUser(u.user_id), async () => {
            await showUser(id);
            await showUserList();
          });
        },
      }, "Delete"),
    ),
  );
}

async function showUserList(cursor?: string): Promise<void> {
  if (!api) return;
  try {
    const page = await api.users(cursor);
    const list = h(
      "ul",
      { class: "users" },
      ...page.users.map((u) =>
        h("li", {}, h("a", { href: "#", onclick: (ev: Event) => { ev.preventDefault(); void showUser(u.user_id); } }, u.user_id)),
      ),
    );
    fill(
      "user-list",
      page.users.length ? list : h("p", { class: "muted" }, "No accounts yet."),
      page.next_cursor ? h("button", { onclick: () => showUserList(page.next_cursor) }, "Next page") : null,
      cursor ? h("button", { onclick: () => showUserList() }, "First page") : null,
    );
  } catch (e) {
    failed(e);
  }
}

// ---- policy ----

async function showPolicy(): Promise<void> {
  if (!api) return;
  const a = api;
  let p: Policy;
  try {
    p = await a.policy();
  } catch (e) {
    failed(e);
    return;
  }
  const mode = h("select", { id: "policy-mode" }, ...["single", "dual", "triple", "multi"].map((m) => h("option", { value: m, selected: m === p.mode }, m)));
  const web = h("input", { id: "policy-web", type: "number", min: "1", max: "10", value: String(p.web_instances) });
  const per = h("input", { id: "policy-per", type: "number", min: "1", max: "3", value: String(p.instances_per_platform) });
  fill(
    "policy",
    h("p", { id: "policy-now" }, `In force: ${p.mode}, ${p.web_instances} web instance(s), ${p.instances_per_platform} per platform.`),
    h(
      "form",
      {
        id: "policy-form",
        onsubmit: (ev: Event) => {
          ev.preventDefault();
          void act("Policy saved: it applies to the next logins.", () =>
            a.setPolicy({ mode: mode.value as Policy["mode"], web_instances: Number(web.value), instances_per_platform: Number(per.value) }),
          showPolicy);
        },
      },
      h("label", {}, "mode ", mode),
      h("label", {}, "web instances ", web),
      h("label", {}, "per platform ", per),
      h("button", { type: "submit" }, "Save"),
      h("button", { type: "button", onclick: () => act("Policy back to the config file's.", () => a.resetPolicy(), showPolicy) }, "Use the config file's"),
    ),
  );
}

// ---- webhook dead letters ----

async function showDeadLetters(cursor?: string): Promise<void> {
  if (!api) return;
  const a = api;
  try {
    const page = await a.deadLetters(cursor);
    const again = () => showDeadLetters(cursor);
    fill(
      "dead-letters",
      page.events.length === 0
        ? h("p", { class: "muted" }, "None: every webhook was delivered.")
        : h(
            "table",
            {},
            h("tr", {}, ...["event", "user", "seq", "attempts", "last error", ""].map((c) => h("th", {}, c))),
            ...page.events.map((d) =>
              h(
                "tr",
                { "data-event": d.event_id },
                h("td", { class: "mono" }, d.event_id),
                h("td", {}, d.user_id),
                h("td", {}, d.seq),
                h("td", {}, d.attempts),
                h("td", {}, d.last_error),
                h(
                  "td",
                  {},
                  h("button", { onclick: () => act("Back in the outbox.", () => a.retryDeadLetter(d.event_id), again) }, "Retry"),
                  h("button", { onclick: () => act("Dropped.", () => a.dropDeadLetter(d.event_id), again) }, "Drop"),
                ),
              ),
            ),
          ),
      page.next_cursor ? h("button", { onclick: () => showDeadLetters(page.next_cursor) }, "Next page") : null,
      h("button", { onclick: () => showDeadLetters() }, "Refresh"),
    );
  } catch (e) {
    failed(e);
  }
}

// ---- wiring ----

byId("sign-in").addEventListener("submit", (ev) => {
  ev.preventDefault();
  void signIn(Number(byId<HTMLInputElement>("sdkappid").value), byId<HTMLInputElement>("api-key").value);
});
byId("sign-out").addEventListener("click", signOut);
byId("dau-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  void showDau();
});
byId("find-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  // As typed: a UserID may begin or end with a space.
  void showUser(byId<HTMLInputElement>("find-user").value);
});
byId("online-refresh").addEventListener("click", () => void showOnline());

// A link may carry the app and key in its fragment (the demo's does): never sent to a server, and taken out of
// the address bar at once.
const hash = new URLSearchParams(location.hash.slice(1));
if (hash.get("sdkappid")) byId<HTMLInputElement>("sdkappid").value = hash.get("sdkappid")!;
const user = hash.get("user");
if (location.hash) history.replaceState(null, "", location.pathname);
const saved = sessionStorage.getItem("imlogin.console");
const fromHash = hash.get("key");
if (fromHash || saved) {
  const s = fromHash ? { sdkappid: Number(hash.get("sdkappid")), key: fromHash } : JSON.parse(saved!);
  void signIn(s.sdkappid, s.key).then(() => {
    if (user) {
      byId<HTMLInputElement>("find-user").value = user;
      void showUser(user);
    }
  });
}
