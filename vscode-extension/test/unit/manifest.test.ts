/** package.json and the code agree: every declared command is registered, and back. */
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";

const root = join(__dirname, "..", "..");
const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  contributes: { commands: Array<{ command: string }>; walkthroughs: Array<{ steps: Array<{ media: { markdown?: string } }> }> };
};
const source = readdirSync(join(root, "src"))
  .filter((name) => name.endsWith(".ts"))
  .map((name) => readFileSync(join(root, "src", name), "utf8"))
  .join("\n");

describe("the manifest", () => {
  const declared = manifest.contributes.commands.map((each) => each.command).sort();
  const registered = [...source.matchAll(/register\("(podlink\.[A-Za-z]+)"/g)].map((match) => match[1]).sort();

  it("declares exactly the commands the extension registers", () => {
    assert.deepEqual(registered, declared);
  });

  it("ships the walkthrough's media", () => {
    for (const step of manifest.contributes.walkthroughs.flatMap((walkthrough) => walkthrough.steps)) {
      if (step.media.markdown) readFileSync(join(root, step.media.markdown), "utf8");
    }
  });
});
