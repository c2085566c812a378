/** Protocol values for tests: a ready local session, changed field by field. */
import type { Session, SyncStatus } from "../../src/protocol";

export function syncStatus(overrides: Partial<SyncStatus> = {}): SyncStatus {
  return {
    state: "idle",
    pending: 0,
    filesSynced: 12,
    bytesSynced: 3400,
    conflicts: [],
    problems: [],
    ...overrides,
  };
}

export function session(overrides: Partial<Session> = {}): Session {
  return {
    id: "s1",
    folder: "file:///work/hello",
    state: "ready",
    target: { kind: "local", name: "/work/hello/.podlink/target" },
    sync: syncStatus(),
    ports: [],
    app: { state: "running", command: ["python3", "-m", "app"] },
    ...overrides,
  };
}
