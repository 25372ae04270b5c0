// Bundles the console's and the demo's scripts into dist/ (committed: `cargo build` embeds them, and the HTML and
// CSS straight from src/, so building imlogin needs no Node).
// `node build.mjs --check` builds into memory and fails if dist/ differs from the sources (the tests run it).

import { build } from "esbuild";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const check = process.argv.includes("--check");

const scripts = await build({
  entryPoints: { console: "src/console/console.ts", demo: "src/demo/demo.ts" },
  absWorkingDir: here,
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2020",
  outdir: "dist",
  write: false,
  legalComments: "none",
});
const files = new Map(scripts.outputFiles.map((f) => [path.relative(here, f.path), Buffer.from(f.contents)]));

let stale = [];
for (const [name, contents] of files) {
  const target = path.join(here, name);
  const same = fs.existsSync(target) && fs.readFileSync(target).equals(contents);
  if (same) continue;
  if (check) stale.push(name);
  else fs.writeFileSync(target, contents);
}
if (stale.length) {
  console.error(`dist/ is not built from the sources: ${stale.join(", ")}; run npm run build in web/ and commit`);
  process.exit(1);
}
for (const [name, contents] of files) console.log(`${name}: ${contents.length} B`);
