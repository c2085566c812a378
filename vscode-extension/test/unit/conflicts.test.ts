import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { conflictCopyFor, syncRootOf } from "../../src/conflicts";

describe("conflictCopyFor", () => {
  it("finds the newest copy of the file beside it", () => {
    const names = ["greeting.py", "greeting.py.podlink-conflict-20250101T000000", "greeting.py.podlink-conflict-20250102T000000", "other.py"];
    assert.equal(conflictCopyFor("app/greeting.py", names), "app/greeting.py.podlink-conflict-20250102T000000");
  });
  it("works at the root of the folder", () => {
    assert.equal(conflictCopyFor("README.md", ["README.md.podlink-conflict-1"]), "README.md.podlink-conflict-1");
  });
  it("does not take another file's copy", () => {
    assert.equal(conflictCopyFor("app/a.py", ["a.py.bak", "ab.py.podlink-conflict-1"]), undefined);
  });
});

describe("the sync root of an issue", () => {
  it("is the workspace folder for the entry `.` and for an issue that names no entry", () => {
    assert.equal(syncRootOf("/work/hello", "."), "/work/hello");
    assert.equal(syncRootOf("/work/hello", undefined), "/work/hello");
  });
  it("is the entry's folder inside the workspace folder", () => {
    assert.equal(syncRootOf("/work/hello", "services/api"), "/work/hello/services/api");
  });
  it("is an absolute entry folder as it is", () => {
    assert.equal(syncRootOf("/work/hello", "/srv/shared"), "/srv/shared");
  });
});
