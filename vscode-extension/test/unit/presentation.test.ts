import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  availableActions,
  describePort,
  formatLatency,
  ignoredText,
  parsePortSpec,
  sessionNodes,
  statusBarModel,
  summariseSync,
  type DaemonStatus,
} from "../../src/presentation";
import { session, syncStatus } from "./fixtures";

const running: DaemonStatus = { state: "running" };

describe("the status bar", () => {
  it("shows the target, the state and the last sync latency of a ready session", () => {
    const model = statusBarModel(running, [session({ sync: syncStatus({ lastLatencyMs: 6.4 }) })]);
    assert.equal(model.text, "$(vm-active) local: ready $(check) 6 ms");
    assert.equal(model.accessibilityLabel, "podlink: local ready, in sync, last change in 6 ms");
    assert.equal(model.tone, "normal");
    assert.match(model.tooltip, /Target: local `\/work\/hello\/\.podlink\/target`/);
  });

  it("names a remote target by its name", () => {
    const model = statusBarModel(running, [session({ target: { kind: "kubernetes", name: "web-7d9c" } })]);
    assert.match(model.text, /^\$\(vm-active\) web-7d9c: ready/);
  });

  it("counts pending changes while syncing", () => {
    const model = statusBarModel(running, [session({ state: "syncing", sync: syncStatus({ state: "syncing", pending: 4 }) })]);
    assert.equal(model.text, "$(sync~spin) local: syncing $(sync~spin) 4 pending");
  });

  it("turns to the warning colour on conflicts and problems", () => {
    const conflicts = syncStatus({ state: "conflict", conflicts: [{ path: "a.py", message: "changed on both sides" }] });
    assert.deepEqual(
      [statusBarModel(running, [session({ sync: conflicts })]).tone, statusBarModel(running, [session({ sync: conflicts })]).text],
      ["warning", "$(vm-active) local: ready $(warning) 1 conflict"],
    );
    const problems = syncStatus({ problems: [{ path: "a", message: "x" }, { path: "b", message: "y" }] });
    assert.match(statusBarModel(running, [session({ sync: problems })]).text, /2 problems$/);
    assert.equal(statusBarModel(running, [session({ sync: problems })]).tone, "warning");
  });

  it("warns about a crashed app and a failing port forward", () => {
    assert.equal(statusBarModel(running, [session({ app: { state: "exited", command: ["x"], exitCode: 1 } })]).tone, "warning");
    assert.equal(
      statusBarModel(running, [session({ ports: [{ localPort: 8000, remotePort: 8000, state: "error", connections: 0 }] })]).tone,
      "warning",
    );
    assert.equal(statusBarModel(running, [session({ app: { state: "exited", command: ["x"], exitCode: 0 } })]).tone, "normal");
  });

  it("shows a failed session in the error colour", () => {
    const model = statusBarModel(running, [session({ state: "stopped", error: "no such container: web" })]);
    assert.equal(model.tone, "error");
    assert.equal(model.text, "$(vm-outline) local: stopped");
    assert.match(model.tooltip, /Error: no such container: web/);
  });

  it("says when the daemon is starting, installing or stopped", () => {
    assert.equal(statusBarModel({ state: "starting" }, []).text, "$(sync~spin) podlink: starting");
    assert.equal(statusBarModel({ state: "installing" }, []).text, "$(sync~spin) podlink: installing");
    const failed = statusBarModel({ state: "failed", detail: "it stopped 4 times" }, [session()]);
    assert.equal(failed.tone, "error");
    assert.match(failed.tooltip, /it stopped 4 times/);
  });

  it("summarises several sessions", () => {
    const model = statusBarModel(running, [
      session(),
      session({ id: "s2", folder: "file:///work/api", state: "syncing", sync: syncStatus({ pending: 2 }) }),
    ]);
    assert.equal(model.text, "$(vm-active) podlink: 1/2 ready $(sync~spin) 2");
    assert.equal(model.accessibilityLabel, "podlink: 1 of 2 sessions ready");
  });

  it("invites to start when there is no session", () => {
    assert.equal(statusBarModel(running, []).accessibilityLabel, "podlink: no session");
  });
});

describe("sync summaries", () => {
  it("puts a paused sync first", () => {
    assert.equal(summariseSync(syncStatus({ state: "paused", pending: 3 })).text, "sync paused");
  });
  it("formats latencies", () => {
    assert.equal(formatLatency(5.6), "6 ms");
    assert.equal(formatLatency(1530), "1.5 s");
  });
});

describe("the sessions view", () => {
  it("lists a session's target, sync, app, ports and conflicts, with stable ids", () => {
    const [node] = sessionNodes([
      session({
        ports: [{ localPort: 9000, remotePort: 8000, state: "active", connections: 2 }],
        sync: syncStatus({
          conflicts: [
            { path: "app/x.py", message: "changed on both sides", copyPath: "app/x.py.podlink-conflict-1" },
          ],
        }),
      }),
    ]);
    assert.ok(node);
    assert.equal(node.label, "hello");
    assert.equal(node.description, "ready");
    assert.deepEqual(
      node.children?.map((child) => [child.id, child.kind, child.label]),
      [
        ["s1/target", "target", "Target: local"],
        ["s1/sync", "sync", "Sync: idle"],
        ["s1/app", "app", "App: running"],
        ["s1/port/9000", "port", "Port 8000"],
        ["s1/conflict/app/x.py", "conflict", "app/x.py"],
      ],
    );
    const conflict = node.children?.find((child) => child.kind === "conflict");
    assert.equal(conflict?.copyPath, "app/x.py.podlink-conflict-1");
    assert.equal(conflict?.entry, undefined);
    const port = node.children?.find((child) => child.kind === "port");
    assert.equal(port?.description, "→ 127.0.0.1:9000");
    assert.equal(port?.port?.localPort, 9000);
  });

  it("puts a session's error first and marks a paused sync for the resume action", () => {
    const [node] = sessionNodes([session({ state: "degraded", error: "agent lost", sync: syncStatus({ state: "paused" }) })]);
    assert.equal(node?.children?.[0]?.kind, "error");
    assert.ok(node?.children?.some((child) => child.kind === "syncPaused"));
    assert.equal(node?.iconColor, "problemsWarningIcon.foreground");
  });

  it("keeps the sync entry of conflicts and problems, which their paths are relative to", () => {
    const [node] = sessionNodes([
      session({
        sync: syncStatus({
          conflicts: [{ path: "x.py", message: "changed on both sides", entry: "services/api" }],
          problems: [{ path: "y.py", message: "permission denied", entry: "/srv/shared" }],
        }),
      }),
    ]);
    const issues = node?.children?.filter((child) => child.kind === "conflict" || child.kind === "problem");
    assert.deepEqual(
      issues?.map((child) => [child.kind, child.path, child.entry]),
      [
        ["conflict", "x.py", "services/api"],
        ["problem", "y.py", "/srv/shared"],
      ],
    );
  });

  it("describes ports for tooltips", () => {
    assert.equal(describePort({ localPort: 8000, remotePort: 8000, state: "active", connections: 1 }), "127.0.0.1:8000 (active, 1 connection)");
    assert.equal(
      describePort({ localPort: 8001, remotePort: 8000, state: "reconnecting", connections: 0, error: "pod restarted" }),
      "127.0.0.1:8001 → 8000 (reconnecting: pod restarted)",
    );
  });
});

describe("the actions quick pick", () => {
  const commands = (daemon: DaemonStatus, sessions: Parameters<typeof availableActions>[1], hasConfig: boolean) =>
    availableActions(daemon, sessions, hasConfig).map((action) => action.command);

  it("offers to create a config when there is none", () => {
    assert.equal(commands(running, [], false)[0], "podlink.createConfig");
  });
  it("offers Start when a folder has a config but no session", () => {
    assert.equal(commands(running, [], true)[0], "podlink.start");
  });
  it("offers the session's controls when one runs, and Resume Sync only when paused", () => {
    const live = commands(running, [session()], true);
    assert.ok(live.includes("podlink.runTests") && live.includes("podlink.stop") && !live.includes("podlink.start"));
    assert.ok(!live.includes("podlink.resumeSync"));
    assert.ok(commands(running, [session({ sync: syncStatus({ state: "paused" }) })], true).includes("podlink.resumeSync"));
  });
  it("puts a daemon restart first after a crash, once", () => {
    const actions = commands({ state: "failed" }, [], true);
    assert.equal(actions[0], "podlink.restartDaemon");
    assert.equal(actions.filter((command) => command === "podlink.restartDaemon").length, 1);
  });
});

describe("parsePortSpec", () => {
  const cases: Array<[string, ReturnType<typeof parsePortSpec>]> = [
    ["8000", { remotePort: 8000 }],
    [" 9000:8000 ", { remotePort: 8000, localPort: 9000 }],
    ["0", { error: "0 is not a port number (1-65535)." }],
    ["70000", { error: "70000 is not a port number (1-65535)." }],
    ["web", { error: "Write a port number, or LOCAL:REMOTE such as 9000:8000." }],
    ["1:2:3", { error: "Write a port number, or LOCAL:REMOTE such as 9000:8000." }],
  ];
  for (const [input, expected] of cases) {
    it(JSON.stringify(input), () => assert.deepEqual(parsePortSpec(input), expected));
  }
});

describe("ignoredText", () => {
  it("says what the ignore rules keep out, and nothing when they keep nothing out", () => {
    assert.equal(ignoredText(undefined), "");
    assert.equal(ignoredText({ files: 0, folders: 0, examples: [] }), "");
    assert.equal(
      ignoredText({ files: 1, folders: 2, examples: ["debug.log", "build/", "wcwidth.egg-info/"] }),
      '; not synced by ignore rules: 1 file and 2 folders (debug.log, build/, wcwidth.egg-info/) — "podlink: Is This Synced?" on a file says which rule',
    );
  });
});
