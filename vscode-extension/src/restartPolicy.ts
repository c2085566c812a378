/**
 * When the daemon crashes: restart it, but only a few times in a window, so a daemon that
 * dies at start-up does not loop forever. Pure: the clock is passed in.
 */

export const CRASH_WINDOW_MS = 3 * 60 * 1000;

export type CrashVerdict = { action: "restart"; attempt: number } | { action: "giveUp"; crashes: number };

export class RestartBudget {
  private crashTimes: number[] = [];

  constructor(
    private readonly maxRestarts: number,
    private readonly windowMs: number = CRASH_WINDOW_MS,
  ) {}

  recordCrash(now: number): CrashVerdict {
    this.crashTimes = this.crashTimes.filter((time) => now - time < this.windowMs);
    this.crashTimes.push(now);
    if (this.crashTimes.length > this.maxRestarts) {
      return { action: "giveUp", crashes: this.crashTimes.length };
    }
    return { action: "restart", attempt: this.crashTimes.length };
  }

  /** A deliberate restart by the user starts a fresh budget. */
  reset(): void {
    this.crashTimes = [];
  }
}

export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realTimers: Timers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};

/**
 * Runs `action` once, `delayMs` after the last call: several restart requests in a burst (a
 * double click, a settings change with many keys) become one restart.
 */
export class Debouncer {
  private pending: unknown;

  constructor(
    private readonly delayMs: number,
    private readonly action: () => void,
    private readonly timers: Timers = realTimers,
  ) {}

  trigger(): void {
    this.cancel();
    this.pending = this.timers.setTimeout(() => {
      this.pending = undefined;
      this.action();
    }, this.delayMs);
  }

  cancel(): void {
    if (this.pending !== undefined) {
      this.timers.clearTimeout(this.pending);
      this.pending = undefined;
    }
  }

  get isPending(): boolean {
    return this.pending !== undefined;
  }
}

/** A Debouncer per key, for work that is debounced per session or per folder. */
export class KeyedDebouncer<Key> {
  private readonly debouncers = new Map<Key, Debouncer>();

  constructor(
    private readonly delayMs: number,
    private readonly action: (key: Key) => void,
    private readonly timers: Timers = realTimers,
  ) {}

  trigger(key: Key): void {
    let debouncer = this.debouncers.get(key);
    if (!debouncer) {
      debouncer = new Debouncer(this.delayMs, () => {
        this.debouncers.delete(key);
        this.action(key);
      }, this.timers);
      this.debouncers.set(key, debouncer);
    }
    debouncer.trigger();
  }

  cancelAll(): void {
    for (const debouncer of this.debouncers.values()) {
      debouncer.cancel();
    }
    this.debouncers.clear();
  }
}
