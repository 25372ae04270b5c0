// `npm pack` makes a package a user can install: it installs into an empty project (no network: it has no
// dependencies) and its ESM entry and type declarations load from there.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

test("npm pack gives an installable package with types", () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "imlogin-pack-"));
  try {
    const out = execFileSync("npm", ["pack", "--json", "--pack-destination", tmp], { cwd: root, encoding: "utf8" });
    const [{ filename, files }] = JSON.parse(out.slice(out.indexOf("[")));
    assert.deepEqual(files.map((f) => f.path).sort(), ["README.md", "dist/index.d.ts", "dist/index.js", "package.json"]);
    const app = path.join(tmp, "app");
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
    execFileSync("npm", ["install", "--offline", "--no-audit", "--no-fund", path.join(tmp, filename)], { cwd: app });
    fs.writeFileSync(
      path.join(app, "main.mjs"),
      'import { create, EVENT, TYPES, LOGIN_STATUS } from "imlogin-client";\n' +
        "const im = create({ SDKAppID: 1, url: 'ws://127.0.0.1:1/v1/ws', WebSocket: class {} });\n" +
        "console.log(JSON.stringify([typeof im.login, EVENT.KICKED_OUT, TYPES.KICKED_OUT_MULT_ACCOUNT, im.getLoginStatus()]));\n",
    );
    const printed = execFileSync("node", ["main.mjs"], { cwd: app, encoding: "utf8" });
    assert.deepEqual(JSON.parse(printed), ["function", "kickedOut", "multipleAccount", 3]);
    const types = fs.readFileSync(path.join(app, "node_modules/imlogin-client/dist/index.d.ts"), "utf8");
    for (const name of ["login(", "logout(", "getLoginUser(", "getLoginStatus(", "renewUserSig(", "export declare const EVENT"]) {
      assert.ok(types.includes(name), `the declarations have ${name}`);
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
