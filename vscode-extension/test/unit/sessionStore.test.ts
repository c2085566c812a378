import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SessionStore, folderKey } from "../../src/sessionStore";
import { session } from "./fixtures";

describe("folderKey", () => {
  it("compares Python's and VS Code's spellings of the same folder as equal", () => {
    // Path.as_uri() leaves `@` and `+` alone; VS Code's Uri.toString() escapes them.
    assert.equal(folderKey("file:///home/ada/my%20app@2+x"), folderKey("file:///home/ada/my%20app%402%2Bx"));
    assert.equal(folderKey("file:///tmp/a/"), folderKey("file:///tmp/a"));
  });
});

describe("SessionStore", () => {
  it("keeps the latest view of each session and tells its listeners", () => {
    const store = new SessionStore();
    let changes = 0;
    store.onDidChange(() => (changes += 1));
    store.update(session({ state: "starting" }));
    store.update(session({ state: "ready" }));
    assert.equal(changes, 2);
    assert.equal(store.get("s1")?.state, "ready");
    assert.equal(store.forFolder("file:///work/hello/")?.id, "s1");
  });

  it("replaces a folder's old session by its new one (after a daemon restart)", () => {
    const store = new SessionStore();
    store.update(session({ id: "old", state: "stopped" }));
    store.update(session({ id: "new" }));
    assert.deepEqual(store.all().map((each) => each.id), ["new"]);
  });

  it("lists live sessions apart from stopped ones", () => {
    const store = new SessionStore();
    store.update(session());
    store.update(session({ id: "s2", folder: "file:///work/api", state: "stopped", error: "bad config" }));
    assert.deepEqual(store.live().map((each) => each.id), ["s1"]);
    assert.equal(store.all().length, 2);
  });

  it("forgets everything when the daemon goes away, and says so once", () => {
    const store = new SessionStore();
    store.update(session());
    let changes = 0;
    const subscription = store.onDidChange(() => (changes += 1));
    store.clear();
    store.clear();
    assert.equal(changes, 1);
    subscription.dispose();
    store.update(session());
    assert.equal(changes, 1);
  });

  it("removes a stopped session on request", () => {
    const store = new SessionStore();
    store.update(session());
    store.remove("s1");
    store.remove("unknown");
    assert.equal(store.all().length, 0);
  });
});
