// Writes src/generated/settings.ts from package.json's contributes.configuration, so the
// settings are declared once: package.json is the source, the TypeScript is derived.
// `--check` fails when the generated file is stale instead of writing it.
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const target = join(root, "src", "generated", "settings.ts");
const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const SECTION = "podlink.";
const KNOWN_TYPES = new Set(["string", "boolean", "integer", "number"]);

function render() {
  const properties = manifest.contributes.configuration.properties;
  const entries = [];
  for (const [fullKey, schema] of Object.entries(properties)) {
    if (!fullKey.startsWith(SECTION)) {
      throw new Error(`setting ${fullKey} is outside the ${SECTION} section`);
    }
    if (!KNOWN_TYPES.has(schema.type)) {
      throw new Error(`setting ${fullKey}: type ${schema.type} has no TypeScript mapping yet`);
    }
    const spec = { type: schema.type, default: schema.default };
    if (schema.minimum !== undefined) spec.minimum = schema.minimum;
    if (schema.maximum !== undefined) spec.maximum = schema.maximum;
    const description = (schema.markdownDescription ?? schema.description ?? "").replaceAll("*/", "*\\/");
    entries.push(
      `  /** ${description} */\n  ${JSON.stringify(fullKey.slice(SECTION.length))}: ${JSON.stringify(spec)},`,
    );
  }
  return [
    "// Generated from package.json (contributes.configuration) by tools/generate-settings.mjs; do not edit.",
    "",
    "/** The configuration section every podlink setting lives in. */",
    `export const SETTINGS_SECTION = ${JSON.stringify(SECTION.slice(0, -1))};`,
    "",
    "/** Each setting's key within the section, with its JSON type, default and bounds. */",
    "export const SETTING_SPECS = {",
    ...entries,
    "} as const;",
    "",
  ].join("\n");
}

const text = render();
if (process.argv.includes("--check")) {
  let current = "";
  try {
    current = readFileSync(target, "utf8");
  } catch {
    // a missing file is as stale as a different one
  }
  if (current !== text) {
    console.error(`${target} is stale: run npm run generate`);
    process.exit(1);
  }
  console.log("settings: generated file is current");
} else {
  mkdirSync(dirname(target), { recursive: true });
  writeFileSync(target, text);
  console.log(`wrote ${target}`);
}
