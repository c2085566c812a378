import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { levelFor, logLines, type LogLevel } from "../../src/logLevels";
import type { LogSource } from "../../src/protocol";

describe("log levels", () => {
  const cases: Array<[LogSource, string, LogLevel]> = [
    ["app", "hello app listening on http://127.0.0.1:8000", "info"],
    ["app", "Traceback (most recent call last):", "error"],
    ["app", "ValueError: bad greeting", "error"],
    ["app", "WARNING: slow request", "warn"],
    ["app", "DeprecationWarning: old API", "warn"],
    ["test", "E       assert 'a' == 'b'", "error"],
    ["build", "$ python -m compileall -q .", "info"],
    ["sync", "synced 1 file (120 B) in 6 ms", "debug"],
    ["sync", "initial sync of . -> /app: 8 file(s)", "info"],
    ["daemon", "cannot forward port 8000: in use", "warn"],
    ["daemon", "reconnected to the target and resynced", "info"],
  ];
  for (const [source, line, level] of cases) {
    it(`${source}: ${line} → ${level}`, () => assert.equal(levelFor(source, line), level));
  }

  it("splits a message into tagged lines, each with its own level", () => {
    assert.deepEqual(logLines("app", "Traceback (most recent call last):\n  File \"x\"\nKeyError: 'a'\n"), [
      { level: "error", text: "[app] Traceback (most recent call last):" },
      { level: "info", text: '[app]   File "x"' },
      { level: "error", text: "[app] KeyError: 'a'" },
    ]);
  });
});
