// The client's size as an application ships it: minified (esbuild), and that gzipped.
import { build } from "esbuild";
import { gzipSync } from "node:zlib";
import { statSync } from "node:fs";

const out = await build({
  entryPoints: ["dist/index.js"],
  bundle: true,
  minify: true,
  format: "esm",
  write: false,
});
const min = out.outputFiles[0].contents;
console.log(`dist/index.js: ${statSync("dist/index.js").size} B`);
console.log(`minified: ${min.length} B, gzipped: ${gzipSync(min, { level: 9 }).length} B`);
