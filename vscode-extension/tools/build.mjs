// Bundles the extension into out/extension.js (vscode is provided by the editor at run time).
// `--production` minifies and drops source maps, as for the .vsix.
import * as esbuild from "esbuild";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const production = process.argv.includes("--production");

await esbuild.build({
  entryPoints: [join(root, "src", "extension.ts")],
  outfile: join(root, "out", "extension.js"),
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  external: ["vscode"],
  minify: production,
  sourcemap: production ? false : "linked",
  logLevel: "info",
});
