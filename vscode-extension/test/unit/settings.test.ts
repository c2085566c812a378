import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { SETTING_SPECS } from "../../src/generated/settings";
import { qualifiedKey, readSettings, type SettingKey } from "../../src/settings";

const manifest = JSON.parse(readFileSync(join(__dirname, "..", "..", "package.json"), "utf8")) as {
  contributes: { configuration: { properties: Record<string, { default: unknown }> } };
};

describe("settings", () => {
  it("falls back to package.json's defaults when nothing is set", () => {
    const { settings, problems } = readSettings(() => undefined);
    assert.deepEqual(problems, []);
    for (const [fullKey, schema] of Object.entries(manifest.contributes.configuration.properties)) {
      const key = fullKey.slice("podlink.".length) as SettingKey;
      assert.equal(settings[key], schema.default, fullKey);
    }
  });

  it("reads set values with their declared types", () => {
    const values: Partial<Record<SettingKey, unknown>> = {
      python: "/opt/py/bin/python",
      autoStart: false,
      "daemon.maxRestarts": 5,
    };
    const { settings, problems } = readSettings((key) => values[key]);
    assert.deepEqual(problems, []);
    assert.equal(settings.python, "/opt/py/bin/python");
    assert.equal(settings.autoStart, false);
    assert.equal(settings["daemon.maxRestarts"], 5);
  });

  const unusable: Array<[SettingKey, unknown, RegExp]> = [
    ["python", 3, /is not text/],
    ["autoStart", "yes", /is not true or false/],
    ["daemon.maxRestarts", 2.5, /is not a whole number/],
    ["daemon.maxRestarts", -1, /below the minimum of 0/],
    ["daemon.maxRestarts", 99, /above the maximum of 20/],
  ];
  for (const [key, value, expected] of unusable) {
    it(`replaces ${qualifiedKey(key)} = ${JSON.stringify(value)} by its default and says why`, () => {
      const { settings, problems } = readSettings((asked) => (asked === key ? value : undefined));
      assert.equal(settings[key], SETTING_SPECS[key].default);
      const [problem] = problems;
      assert.equal(problems.length, 1);
      assert.equal(problem?.key, key);
      assert.match(problem.message, expected);
    });
  }

  it("generates one spec per declared setting, with the same defaults", () => {
    const declared = Object.keys(manifest.contributes.configuration.properties).map((key) => key.slice("podlink.".length));
    assert.deepEqual(Object.keys(SETTING_SPECS).sort(), declared.sort());
  });
});
