import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { levelFor, logLines, type LogLevel } from "../../src/logLevels";
import type { LogLevel as MessageLevel } from "../../src/protocol";

describe("log levels", () => {
  const cases: Array<[MessageLevel | undefined, LogLevel]> = [
    ["debug", "debug"],
    ["info", "info"],
    ["warning", "warn"],
    ["error", "error"],
    [undefined, "info"],
  ];
  for (const [level, channelLevel] of cases) {
    it(`${String(level)} → ${channelLevel}`, () => assert.equal(levelFor(level), channelLevel));
  }

  it("splits a message into tagged lines, all at the message's level", () => {
    const text = "Traceback (most recent call last):\n  File \"x\"\nKeyError: 'a'\n";
    assert.deepEqual(logLines({ source: "app", text, level: "error" }), [
      { level: "error", text: "[app] Traceback (most recent call last):" },
      { level: "error", text: '[app]   File "x"' },
      { level: "error", text: "[app] KeyError: 'a'" },
    ]);
  });

  it("shows the lines of a daemon that gives no level at info, without reading the text", () => {
    assert.deepEqual(logLines({ source: "daemon", text: "ERROR: cannot forward port 8000" }), [
      { level: "info", text: "[daemon] ERROR: cannot forward port 8000" },
    ]);
  });
});
