// Test helpers shared by the Node test suites of this repository (this client's, the console's and the Web
// SDK's): a real imlogin binary on a free port, a TCP relay whose connections can be cut, the native admin API,
// and a bounded wait. Nothing here sleeps a fixed time.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));

/** The demo app of imlogin's embedded defaults (its keys are public, for trying only). */
export const SDKAPPID = 1400000000;
export const KEY = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
export const ADMIN_KEY = "demo-admin-api-key-FOR-TRYING-ONLY";
export const WAIT_MS = 30_000;

/** The binary under test: IMLOGIN_BIN, else the workspace's release build. */
export function imloginBin() {
  return process.env.IMLOGIN_BIN || path.resolve(here, "../../../target/release/imlogin");
}

/**
 * Starts `imlogin serve` on a free port with its database in `dir` (and `env` on top, e.g.
 * `IMLOGIN__APPS__0__POLICY__WEB_INSTANCES`); resolves with `{ child, addr, stop() }` once it listens.
 */
export function startImlogin(dir, env = {}) {
  const inherited = { ...process.env };
  delete inherited.RUST_LOG;
  const child = spawn(imloginBin(), ["serve"], {
    env: {
      ...inherited,
      IMLOGIN__SERVER__LISTEN: "127.0.0.1:0",
      IMLOGIN__SERVER__METRICS_LISTEN: "127.0.0.1:0",
      IMLOGIN__LOG__FORMAT: "json",
      IMLOGIN__DATABASE__URL: `sqlite://${dir}/imlogin.db`,
      // Every test client comes from 127.0.0.1.
      IMLOGIN__LIMITS__NEW_CONNECTIONS_PER_IP_PER_SECOND: "0",
      ...env,
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stderr });
    child.on("exit", (code) => reject(new Error(`imlogin exited (${code}) before listening`)));
    setTimeout(() => reject(new Error("imlogin did not listen within 30 s")), 30_000).unref();
    lines.on("line", (line) => {
      let v;
      try {
        v = JSON.parse(line);
      } catch {
        return;
      }
      if (v.message === "imlogin listening") {
        resolve({
          child,
          addr: v.addr,
          stop() {
            if (child.exitCode !== null) return Promise.resolve();
            return new Promise((done) => {
              child.once("exit", done);
              child.kill("SIGTERM");
            });
          },
        });
      }
    });
  });
}

/** A TCP relay in front of `target` whose connections the test can cut, as a network failure would. */
export function startCutter(target) {
  const [host, port] = target.split(":");
  const sockets = new Set();
  let accepted = 0;
  let blocked = false;
  const srv = net.createServer((client) => {
    accepted++;
    if (blocked) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(Number(port), host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {});
    }
    client.pipe(upstream).pipe(client);
  });
  return new Promise((resolve) =>
    srv.listen(0, "127.0.0.1", () =>
      resolve({
        addr: `127.0.0.1:${srv.address().port}`,
        /** Connections accepted so far. */
        accepted: () => accepted,
        cutAll() {
          for (const s of sockets) s.resetAndDestroy();
        },
        /** While blocked, every new connection is reset at once (the network is down). */
        block(on) {
          blocked = on;
        },
        close() {
          this.cutAll();
          srv.close();
        },
      }),
    ),
  );
}

/** Calls the native admin API of the demo app on `base` (`host:port`); asserts success; the JSON answer. */
export async function admin(base, method, route, body) {
  const r = await fetch(`http://${base}/admin/v1/apps/${SDKAPPID}${route}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  assert.ok(r.ok, `${method} ${route}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Polls `check` until it returns a truthy value, at most `WAIT_MS`. */
export async function eventually(check, what) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
