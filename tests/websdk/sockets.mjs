// What the tests see of an SDK's socket, and how they route lite-chat's to imlogin.
//
// `@tencentcloud/lite-chat` 4.x has no address option: it opens `wss://<SDKAppID>w4c.my-imcloud.com/binfo?…`
// (then other built-in cloud hosts), by default from a Blob Web Worker. Playwright's `routeWebSocket` does not
// reach sockets opened in workers (it works by a script and a binding in the page's frames), so the page gets a
// script, before any of its own, that replaces the `WebSocket` constructor in the page and in every worker it
// starts (a worker is started from a small script that installs the same replacement, then loads the SDK's
// worker script with `importScripts`). The replacement sends every `wss://` socket to
// `ws://<imlogin>/tim/<path>?<query>` (the SDK's path and query kept), and records the address the SDK asked
// for. A `ws://` socket (tim-js-sdk and @tencentcloud/chat, given `proxyServer`) is left where it goes. In both
// cases the JSON frames are recorded as they pass (servcmd and ErrorCode), so tests can count the SDK's requests
// and wait for an answer; nothing is changed in them. Workers send their records to the page on a
// BroadcastChannel (not the worker's own messages, which are the SDK's), so they outlive the worker: the SDKs end
// their socket's worker when they reconnect.

/** Runs in the page and in each worker: `target` is `host:port` of imlogin (or of a relay in front of it). */
function install(target) {
  const channel = new BroadcastChannel("imlogin-test-sockets");
  const inPage = typeof window !== "undefined";
  const seen = { asked: [], opened: [], frames: [], closed: [] };
  const note = (kind, v) => (inPage ? seen[kind].push(v) : channel.postMessage([kind, v]));
  if (inPage) {
    self.__sockets = seen;
    channel.onmessage = (m) => seen[m.data[0]].push(m.data[1]);
  }
  const NativeSocket = self.WebSocket;
  const text = (data) => {
    if (typeof data === "string") return data;
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer);
    return new TextDecoder().decode(bytes);
  };
  const record = (socket, dir, data) => {
    try {
      const v = JSON.parse(text(data));
      note("frames", { socket, dir, servcmd: v.head?.servcmd, code: v.body?.ErrorCode ?? 0 });
    } catch {
      note("frames", { socket, dir, servcmd: null, code: null });
    }
  };
  self.WebSocket = class extends NativeSocket {
    constructor(url, protocols) {
      const u = new URL(String(url), self.location.href);
      note("asked", u.href);
      super(u.protocol === "wss:" ? `ws://${target}/tim${u.pathname}${u.search}` : u.href, protocols);
      this.__id = `${self.location.href}#${Math.random()}`;
      note("opened", this.__id);
      this.addEventListener("message", (m) => record(this.__id, "in", m.data));
      this.addEventListener("close", () => note("closed", this.__id));
    }
    send(data) {
      record(this.__id, "out", data);
      super.send(data);
    }
  };
  if (self.Worker) {
    const NativeWorker = self.Worker;
    const prelude = `(${install})(${JSON.stringify(target)});`;
    self.Worker = class extends NativeWorker {
      constructor(url, options) {
        const script = `${prelude}\nimportScripts(${JSON.stringify(new URL(String(url), location.href).href)});`;
        super(URL.createObjectURL(new Blob([script], { type: "text/javascript" })), options);
      }
    };
  }
}

/** Installs the socket routing and recording in every page of `context`, before the page's own scripts. */
export async function routeSockets(context, target) {
  await context.addInitScript(`(${install})(${JSON.stringify(target)});`);
}

/**
 * What the page and its workers recorded: the addresses asked for, the frames (each socket's in order), and the
 * sockets closed.
 */
export function socketLog(page) {
  return page.evaluate(() => self.__sockets);
}

/**
 * Whether every request sent on the SDK's socket (its newest: an SDK has one at a time, and what was in flight on
 * an earlier one is lost with it) has had its answer, unless that socket is closed. Pushes only add answers.
 */
export function allAnswered({ opened, frames, closed }) {
  const socket = opened.at(-1);
  if (socket === undefined || closed.includes(socket)) return true;
  const open = new Map();
  for (const f of frames.filter((f) => f.socket === socket)) {
    open.set(f.servcmd, (open.get(f.servcmd) ?? 0) + (f.dir === "out" ? 1 : -1));
  }
  return [...open.values()].every((n) => n <= 0);
}
