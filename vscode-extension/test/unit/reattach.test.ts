import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ReattachTracker } from "../../src/reattach";

describe("re-attaching the debugger after an app restart", () => {
  it("attaches again when the app restarts while debugging (debug session ends first)", () => {
    const tracker = new ReattachTracker(15_000);
    tracker.appChanged("s", "running", 0);
    tracker.debugStarted("s");
    tracker.debugEnded("s", 1000);
    assert.equal(tracker.appChanged("s", "restarting", 1100), false);
    assert.equal(tracker.appChanged("s", "running", 2500), true);
    // Once: a later plain update does not attach again.
    assert.equal(tracker.appChanged("s", "running", 2600), false);
  });

  it("attaches again when the restart is seen before the debug session ends", () => {
    const tracker = new ReattachTracker(15_000);
    tracker.appChanged("s", "running", 0);
    tracker.debugStarted("s");
    assert.equal(tracker.appChanged("s", "restarting", 1000), false);
    tracker.debugEnded("s", 1100);
    assert.equal(tracker.appChanged("s", "running", 1500), true);
  });

  it("does nothing when the user stopped debugging and the app kept running", () => {
    const tracker = new ReattachTracker(15_000);
    tracker.appChanged("s", "running", 0);
    tracker.debugStarted("s");
    tracker.debugEnded("s", 1000);
    assert.equal(tracker.appChanged("s", "running", 1200), false);
    // A restart long after that is not the debug session's.
    tracker.appChanged("s", "restarting", 60_000);
    assert.equal(tracker.appChanged("s", "running", 61_000), false);
  });

  it("does not attach twice while the debug session survived the restart", () => {
    const tracker = new ReattachTracker(15_000);
    tracker.appChanged("s", "running", 0);
    tracker.debugStarted("s");
    tracker.appChanged("s", "restarting", 1000);
    assert.equal(tracker.appChanged("s", "running", 2000), false);
  });

  it("never attaches a session that was not debugged", () => {
    const tracker = new ReattachTracker(15_000);
    tracker.appChanged("s", "running", 0);
    tracker.appChanged("s", "exited", 100);
    assert.equal(tracker.appChanged("s", "running", 200), false);
  });
});

describe("re-attaching when the old debug session ends after the app runs again", () => {
  it("attaches when the session ends shortly after the restarted app runs", () => {
    const tracker = new ReattachTracker(15_000);
    tracker.appChanged("s", "running", 0);
    tracker.debugStarted("s");
    tracker.appChanged("s", "restarting", 1000);
    assert.equal(tracker.appChanged("s", "running", 2000), false);
    assert.equal(tracker.debugEnded("s", 2300), true);
    // Once: the attach that follows starts and ends a session of its own.
    tracker.debugStarted("s");
    assert.equal(tracker.debugEnded("s", 9000), false);
  });

  it("does not attach when the user stops debugging long after the restart", () => {
    const tracker = new ReattachTracker(15_000);
    tracker.appChanged("s", "running", 0);
    tracker.debugStarted("s");
    tracker.appChanged("s", "restarting", 1000);
    tracker.appChanged("s", "running", 2000);
    assert.equal(tracker.debugEnded("s", 60_000), false);
  });

  it("does not attach when the app is down again when the session ends", () => {
    const tracker = new ReattachTracker(15_000);
    tracker.appChanged("s", "running", 0);
    tracker.debugStarted("s");
    tracker.appChanged("s", "restarting", 1000);
    tracker.appChanged("s", "running", 2000);
    tracker.appChanged("s", "exited", 2100);
    assert.equal(tracker.debugEnded("s", 2200), false);
  });
});
