/**
 * The sessions as the daemon last described them. Everything the UI shows is derived from
 * here, and only `podlink/sessionChanged` (or a request's Session result) changes it.
 */
import { fileURLToPath } from "node:url";
import * as path from "node:path";
import type { Session } from "./protocol";

/**
 * A comparable key for a `file:` URI. Python's `Path.as_uri()` and VS Code's `Uri.toString()`
 * percent-encode differently (`:`, `@`, spaces), so URIs are compared as paths.
 */
export function folderKey(uri: string): string {
  if (!uri.startsWith("file:")) {
    return uri;
  }
  try {
    return path.resolve(fileURLToPath(uri));
  } catch {
    return uri;
  }
}

export type Listener = () => void;

/** What `onDidChange` returns; shaped like vscode.Disposable without depending on vscode. */
export interface Subscription {
  dispose(): void;
}

export class SessionStore {
  private readonly sessions = new Map<string, Session>();
  private readonly listeners = new Set<Listener>();

  onDidChange(listener: Listener): Subscription {
    this.listeners.add(listener);
    return { dispose: () => this.listeners.delete(listener) };
  }

  /** A newer view of a session; a new session for a folder replaces the folder's old one. */
  update(session: Session): void {
    const key = folderKey(session.folder);
    for (const [id, existing] of this.sessions) {
      if (id !== session.id && folderKey(existing.folder) === key) {
        this.sessions.delete(id);
      }
    }
    this.sessions.set(session.id, session);
    this.emit();
  }

  remove(sessionId: string): void {
    if (this.sessions.delete(sessionId)) {
      this.emit();
    }
  }

  /** The daemon went away: none of its sessions exist any more. */
  clear(): void {
    if (this.sessions.size > 0) {
      this.sessions.clear();
      this.emit();
    }
  }

  get(sessionId: string): Session | undefined {
    return this.sessions.get(sessionId);
  }

  forFolder(folderUri: string): Session | undefined {
    const key = folderKey(folderUri);
    return this.all().find((session) => folderKey(session.folder) === key);
  }

  all(): Session[] {
    return [...this.sessions.values()].sort((a, b) => a.folder.localeCompare(b.folder));
  }

  /** Sessions that have not stopped: the ones requests can be sent to. */
  live(): Session[] {
    return this.all().filter((session) => session.state !== "stopped");
  }

  private emit(): void {
    for (const listener of [...this.listeners]) {
      listener();
    }
  }
}
