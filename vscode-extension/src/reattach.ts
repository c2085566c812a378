/**
 * When to attach the debugger again. A restarted app (after a sync, say) ends the debugpy
 * session; if the user was debugging, they expect to stay attached. A debug session the user
 * stopped while the app kept running must not come back. Pure: the clock is passed in.
 */
import type { AppState } from "./protocol";

/** How long after a debug session ends an app restart still counts as its cause. */
export const REATTACH_GRACE_MS = 15_000;

interface Tracked {
  activeDebugSessions: number;
  /** When the last debug session ended while the app was not running, or undefined. */
  endedAt: number | undefined;
  lastAppState: AppState | undefined;
  /** The app left "running" while a debug session was attached. */
  restartSeen: boolean;
  /**
   * The app runs again, restarted while the debug session was still attached: when that
   * session ends (its connection to the old process closes late), attach to the new one.
   * When the restart was seen, or undefined.
   */
  restartedUnderDebugAt: number | undefined;
}

export class ReattachTracker {
  private readonly sessions = new Map<string, Tracked>();

  constructor(private readonly graceMs: number = REATTACH_GRACE_MS) {}

  private tracked(sessionId: string): Tracked {
    let entry = this.sessions.get(sessionId);
    if (!entry) {
      entry = {
        activeDebugSessions: 0,
        endedAt: undefined,
        lastAppState: undefined,
        restartSeen: false,
        restartedUnderDebugAt: undefined,
      };
      this.sessions.set(sessionId, entry);
    }
    return entry;
  }

  debugStarted(sessionId: string): void {
    const entry = this.tracked(sessionId);
    entry.activeDebugSessions += 1;
    entry.endedAt = undefined;
    entry.restartSeen = false;
    entry.restartedUnderDebugAt = undefined;
  }

  /** True when the debug session that ended was left over from before a restart of the app,
   * which runs again: the debugger should attach to it now. */
  debugEnded(sessionId: string, now: number): boolean {
    const entry = this.tracked(sessionId);
    entry.activeDebugSessions = Math.max(0, entry.activeDebugSessions - 1);
    if (entry.activeDebugSessions > 0) return false;
    entry.endedAt = now;
    const restartedAt = entry.restartedUnderDebugAt;
    entry.restartedUnderDebugAt = undefined;
    return restartedAt !== undefined && entry.lastAppState === "running" && now - restartedAt <= this.graceMs;
  }

  /** True when the app is running again and the debugger should attach to it. */
  appChanged(sessionId: string, state: AppState | undefined, now: number): boolean {
    const entry = this.tracked(sessionId);
    const previous = entry.lastAppState;
    entry.lastAppState = state;
    if (state !== "running") {
      const attachedOrJustEnded =
        entry.activeDebugSessions > 0 || (entry.endedAt !== undefined && now - entry.endedAt <= this.graceMs);
      if (previous === "running" && attachedOrJustEnded) {
        entry.restartSeen = true;
      }
      return false;
    }
    if (previous === "running" || !entry.restartSeen) {
      return false;
    }
    entry.restartSeen = false;
    if (entry.activeDebugSessions > 0) {
      // Still attached, to the old process or across the restart: decide when it ends.
      entry.restartedUnderDebugAt = now;
      return false;
    }
    return entry.endedAt !== undefined && now - entry.endedAt <= this.graceMs;
  }

  /** The debug session ended because the app went away: the restart comes later. */
  forget(sessionId: string): void {
    this.sessions.delete(sessionId);
  }
}
