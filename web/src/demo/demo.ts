// The demo: log in as a user of the demo app in two tabs and watch the second login kick the first. It uses the
// JavaScript client (clients/js) as an app would; UserSigs come from the server's /demo/usersig, which exists only
// while the demo app with its public key is configured.

import { create, EVENT, LOGIN_STATUS, ImLogin } from "../../../clients/js/src/index";
import { h, byId, fill, time } from "../dom";

interface DemoSig {
  sdkappid: number;
  user_id: string;
  user_sig: string;
  /** Present while the demo app's admin key is the public default: signs the console in. */
  console_key?: string;
}

const params = new URLSearchParams(location.search);
const userInput = byId<HTMLInputElement>("user-id");
userInput.value = params.get("user") || "demo-user";
let im: ImLogin | null = null;

function log(text: string, cls = ""): void {
  byId("log").prepend(h("li", { class: cls }, h("span", { class: "muted" }, time(Date.now()), " "), text));
}

function show(): void {
  const status = im?.getLoginStatus() ?? LOGIN_STATUS.LOGOUT;
  const names = { 1: "logged in", 2: "logging in", 3: "logged out" } as const;
  fill("login-status", names[status]).dataset.status = String(status);
  fill("login-user", im?.getLoginUser() || "–");
  fill("instance", im?.getInstanceID() || "–");
  fill("net-state", im?.getNetState() ?? "disconnected");
  // Logging in while logged in switches users (the protocol logs the current instance out first).
  byId<HTMLButtonElement>("login").disabled = status === LOGIN_STATUS.LOGINING;
  byId<HTMLButtonElement>("logout").disabled = status === LOGIN_STATUS.LOGOUT;
  const user = encodeURIComponent(userInput.value.trim());
  byId<HTMLAnchorElement>("second-tab").href = `/demo?user=${user}`;
}

async function demoSig(userID: string): Promise<DemoSig> {
  const r = await fetch(`/demo/usersig?user_id=${encodeURIComponent(userID)}`);
  const v = await r.json();
  if (!r.ok) throw new Error(v.message || `HTTP ${r.status}`);
  return v;
}

async function login(): Promise<void> {
  const userID = userInput.value.trim();
  try {
    const sig = await demoSig(userID);
    if (sig.console_key) {
      const hash = new URLSearchParams({ sdkappid: String(sig.sdkappid), key: sig.console_key, user: userID });
      byId<HTMLAnchorElement>("console-link").href = `/console#${hash}`;
    }
    if (!im) {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      im = create({
        SDKAppID: sig.sdkappid,
        url: `${scheme}://${location.host}/v1/ws`,
        fetchUserSig: async (u) => (await demoSig(u)).user_sig,
      });
      im.on(EVENT.KICKED_OUT, (k) => {
        log(`Kicked offline: ${k.reason}${k.byPlatform ? ` by a ${k.byPlatform} login` : ""} (code ${k.code}).`, "kicked");
        show();
      });
      im.on(EVENT.NET_STATE_CHANGE, ({ state }) => {
        log(`Network: ${state}.`);
        show();
      });
      im.on(EVENT.RESUMED, () => {
        log("Back after a network loss: the same instance, no new login.");
        show();
      });
      im.on(EVENT.USER_SIG_EXPIRING, () => log("The UserSig expires soon: asking for a fresh one."));
      im.on(EVENT.USER_SIG_RENEWED, () => log("UserSig renewed without a new login."));
      im.on(EVENT.USER_SIG_EXPIRED, () => {
        log("The UserSig expired: logged out.");
        show();
      });
      im.on(EVENT.LOGGED_OUT, ({ reason }) => {
        log(`Logged out by the server (${reason}).`);
        show();
      });
    }
    const p = im.login({ userID, userSig: sig.user_sig, platform: "web" });
    show();
    const r = await p;
    log(`Logged in as ${r.userID}, instance ${r.instanceID}.`, "ok");
  } catch (e: any) {
    log(`Login failed: ${e.message}${e.code ? ` (code ${e.code})` : ""}.`, "kicked");
  }
  show();
}

byId("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  void login();
});
byId("logout").addEventListener("click", async () => {
  try {
    await im?.logout();
    log("Logged out.");
  } catch (e: any) {
    log(`Logout failed: ${e.message}.`);
  }
  show();
});
userInput.addEventListener("input", show);
show();
