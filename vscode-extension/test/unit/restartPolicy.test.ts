import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Debouncer, KeyedDebouncer, RestartBudget, type Timers } from "../../src/restartPolicy";

/** Timers that run only when the test advances the clock. */
class ManualTimers implements Timers {
  now = 0;
  private pending = new Map<number, { at: number; callback: () => void }>();
  private nextId = 1;

  setTimeout(callback: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.pending.set(id, { at: this.now + ms, callback });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.pending.delete(handle as number);
  }

  advance(ms: number): void {
    this.now += ms;
    for (const [id, timer] of [...this.pending].sort((a, b) => a[1].at - b[1].at)) {
      if (timer.at <= this.now) {
        this.pending.delete(id);
        timer.callback();
      }
    }
  }
}

describe("RestartBudget", () => {
  it("restarts a few times, then gives up", () => {
    const budget = new RestartBudget(3, 180_000);
    assert.deepEqual(budget.recordCrash(0), { action: "restart", attempt: 1 });
    assert.deepEqual(budget.recordCrash(1000), { action: "restart", attempt: 2 });
    assert.deepEqual(budget.recordCrash(2000), { action: "restart", attempt: 3 });
    assert.deepEqual(budget.recordCrash(3000), { action: "giveUp", crashes: 4 });
  });

  it("forgets crashes older than the window", () => {
    const budget = new RestartBudget(1, 10_000);
    assert.equal(budget.recordCrash(0).action, "restart");
    assert.equal(budget.recordCrash(20_000).action, "restart");
    assert.equal(budget.recordCrash(21_000).action, "giveUp");
  });

  it("starts afresh after a deliberate restart", () => {
    const budget = new RestartBudget(1);
    budget.recordCrash(0);
    budget.reset();
    assert.equal(budget.recordCrash(1).action, "restart");
  });

  it("never restarts with a budget of zero", () => {
    assert.equal(new RestartBudget(0).recordCrash(0).action, "giveUp");
  });
});

describe("Debouncer", () => {
  it("turns a burst of triggers into one action after the quiet period", () => {
    const timers = new ManualTimers();
    let runs = 0;
    const debouncer = new Debouncer(400, () => (runs += 1), timers);
    debouncer.trigger();
    timers.advance(300);
    debouncer.trigger();
    timers.advance(300);
    assert.equal(runs, 0);
    assert.ok(debouncer.isPending);
    timers.advance(100);
    assert.equal(runs, 1);
    assert.ok(!debouncer.isPending);
  });

  it("can be cancelled", () => {
    const timers = new ManualTimers();
    let runs = 0;
    const debouncer = new Debouncer(400, () => (runs += 1), timers);
    debouncer.trigger();
    debouncer.cancel();
    timers.advance(1000);
    assert.equal(runs, 0);
  });

  it("debounces each key on its own", () => {
    const timers = new ManualTimers();
    const ran: string[] = [];
    const debouncer = new KeyedDebouncer<string>(100, (key) => ran.push(key), timers);
    debouncer.trigger("a");
    timers.advance(60);
    debouncer.trigger("b");
    debouncer.trigger("a");
    timers.advance(60);
    assert.deepEqual(ran, []);
    timers.advance(60);
    assert.deepEqual(ran.sort(), ["a", "b"]);
    debouncer.trigger("a");
    debouncer.cancelAll();
    timers.advance(500);
    assert.deepEqual(ran.sort(), ["a", "b"]);
  });
});
