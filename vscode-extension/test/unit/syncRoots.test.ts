import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { syncRootOf } from "../../src/syncRoots";

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
