/**
 * What the status bar, the sessions view and the actions quick pick show, derived from the
 * sessions and the daemon's state. Pure: the vscode glue turns these models into widgets.
 */
import type { AppProcess, IgnoredPaths, PortForward, Session, SessionState, SyncStatus, TargetInfo } from "./protocol";

export type DaemonState = "idle" | "starting" | "installing" | "running" | "failed";

export interface DaemonStatus {
  state: DaemonState;
  /** Why the daemon failed or is not running, for the tooltip. */
  detail?: string;
}

export type Tone = "normal" | "warning" | "error";

export interface StatusBarModel {
  /** With `$(icon)` references, as a status bar item takes it. */
  text: string;
  /** Markdown. */
  tooltip: string;
  /** Plain words for screen readers (and for finding the item in the page). */
  accessibilityLabel: string;
  tone: Tone;
}

const STATE_ICONS: Record<SessionState, string> = {
  starting: "$(sync~spin)",
  syncing: "$(sync~spin)",
  ready: "$(vm-active)",
  degraded: "$(warning)",
  stopped: "$(vm-outline)",
};

/** A local target's name is its root folder: too long for the status bar. */
export function shortTargetName(target: TargetInfo): string {
  if (target.kind === "local" || !target.name) {
    return target.kind;
  }
  return target.name;
}

export interface SyncSummary {
  icon: string;
  text: string;
  words: string;
  tone: Tone;
}

export function summariseSync(sync: SyncStatus): SyncSummary {
  if (sync.state === "paused") {
    return { icon: "$(debug-pause)", text: "sync paused", words: "sync paused", tone: "warning" };
  }
  if (sync.state === "error") {
    return { icon: "$(error)", text: "sync error", words: "sync failing", tone: "error" };
  }
  if (sync.conflicts.length > 0) {
    const count = plural(sync.conflicts.length, "conflict");
    return { icon: "$(warning)", text: count, words: count, tone: "warning" };
  }
  if (sync.problems.length > 0) {
    const count = plural(sync.problems.length, "problem");
    return { icon: "$(warning)", text: count, words: `${count} syncing`, tone: "warning" };
  }
  if (sync.pending > 0 || sync.state === "syncing" || sync.state === "scanning") {
    const pending = sync.pending > 0 ? `${String(sync.pending)} pending` : sync.state;
    return { icon: "$(sync~spin)", text: pending, words: `syncing, ${pending}`, tone: "normal" };
  }
  if (sync.lastLatencyMs !== undefined) {
    const latency = formatLatency(sync.lastLatencyMs);
    return { icon: "$(check)", text: latency, words: `in sync, last change in ${latency}`, tone: "normal" };
  }
  return { icon: "$(check)", text: "", words: "in sync", tone: "normal" };
}

export function formatLatency(milliseconds: number): string {
  return milliseconds < 1000 ? `${String(Math.round(milliseconds))} ms` : `${(milliseconds / 1000).toFixed(1)} s`;
}

function plural(count: number, noun: string): string {
  return `${String(count)} ${noun}${count === 1 ? "" : "s"}`;
}

function worstTone(...tones: Tone[]): Tone {
  if (tones.includes("error")) return "error";
  if (tones.includes("warning")) return "warning";
  return "normal";
}

function sessionTone(session: Session): Tone {
  const stateTone: Tone = session.state === "degraded" ? "warning" : "normal";
  const appTone: Tone = session.app?.state === "exited" && session.app.exitCode !== 0 ? "warning" : "normal";
  const portTone: Tone = session.ports.some((port) => port.state === "error") ? "warning" : "normal";
  return worstTone(stateTone, appTone, portTone, summariseSync(session.sync).tone);
}

function sessionTooltip(session: Session): string {
  const lines = [
    `**${folderName(session.folder)}** — ${session.state}`,
    `Target: ${session.target.kind} \`${session.target.name}\``,
    `Sync: ${summariseSync(session.sync).words}; ${String(session.sync.filesSynced)} files synced`,
  ];
  if (session.app) {
    lines.push(`App: ${describeApp(session.app)}`);
  }
  for (const port of session.ports) {
    lines.push(`Port: ${describePort(port)}`);
  }
  if (session.error) {
    lines.push(`Error: ${session.error}`);
  }
  return lines.join("\n\n");
}

export function statusBarModel(daemon: DaemonStatus, sessions: readonly Session[]): StatusBarModel {
  const clickHint = "\n\n---\n\nClick for podlink's actions.";
  switch (daemon.state) {
    case "installing":
      return {
        text: "$(sync~spin) podlink: installing",
        tooltip: "Installing podlink into its private environment." + clickHint,
        accessibilityLabel: "podlink: installing",
        tone: "normal",
      };
    case "starting":
      return {
        text: "$(sync~spin) podlink: starting",
        tooltip: "Starting the podlink daemon." + clickHint,
        accessibilityLabel: "podlink: starting the daemon",
        tone: "normal",
      };
    case "failed":
      return {
        text: "$(error) podlink: stopped",
        tooltip: `The podlink daemon is not running${daemon.detail ? `: ${daemon.detail}` : "."}` + clickHint,
        accessibilityLabel: "podlink: daemon not running",
        tone: "error",
      };
    case "idle":
    case "running":
      break;
  }
  const live = sessions.filter((session) => session.state !== "stopped");
  const shown = live.length > 0 ? live : sessions;
  if (shown.length === 0) {
    return {
      text: "$(vm-outline) podlink",
      tooltip: "No podlink session." + clickHint,
      accessibilityLabel: "podlink: no session",
      tone: "normal",
    };
  }
  if (shown.length === 1) {
    const [session] = shown as [Session];
    const sync = summariseSync(session.sync);
    const syncText = sync.text ? ` ${sync.icon} ${sync.text}` : ` ${sync.icon}`;
    const stateText = session.state === "ready" ? "ready" : session.state;
    return {
      text: `${STATE_ICONS[session.state]} ${shortTargetName(session.target)}: ${stateText}${session.state === "stopped" ? "" : syncText}`,
      tooltip: sessionTooltip(session) + clickHint,
      accessibilityLabel: `podlink: ${shortTargetName(session.target)} ${session.state}, ${sync.words}`,
      tone: session.state === "stopped" && session.error ? "error" : sessionTone(session),
    };
  }
  const ready = shown.filter((session) => session.state === "ready").length;
  const tone = worstTone(...shown.map(sessionTone));
  const pending = shown.reduce((sum, session) => sum + session.sync.pending, 0);
  const icon = tone === "normal" ? "$(vm-active)" : "$(warning)";
  return {
    text: `${icon} podlink: ${String(ready)}/${String(shown.length)} ready${pending > 0 ? ` $(sync~spin) ${String(pending)}` : ""}`,
    tooltip: shown.map(sessionTooltip).join("\n\n---\n\n") + clickHint,
    accessibilityLabel: `podlink: ${String(ready)} of ${String(shown.length)} sessions ready`,
    tone,
  };
}

export function describeApp(app: AppProcess): string {
  const command = app.command.join(" ");
  if (app.state === "exited") {
    return `exited (code ${String(app.exitCode ?? "?")}) — ${command}`;
  }
  return `${app.state} — ${command}`;
}

export function describePort(port: PortForward): string {
  const mapping =
    port.localPort === port.remotePort
      ? `127.0.0.1:${String(port.localPort)}`
      : `127.0.0.1:${String(port.localPort)} → ${String(port.remotePort)}`;
  const connections = port.connections > 0 ? `, ${plural(port.connections, "connection")}` : "";
  const error = port.error ? `: ${port.error}` : "";
  return `${mapping} (${port.state}${connections}${error})`;
}

export function folderName(folderUri: string): string {
  const trimmed = folderUri.replace(/\/+$/, "");
  return decodeURIComponent(trimmed.slice(trimmed.lastIndexOf("/") + 1)) || folderUri;
}

// -- the sessions view -----------------------------------------------------------------------

/** What the ignore rules keep out, for a tooltip: silence there hides why a file is missing. */
export function ignoredText(ignored: IgnoredPaths | undefined): string {
  if (!ignored || (ignored.files === 0 && ignored.folders === 0)) return "";
  const shown = ignored.examples.slice(0, 5).join(", ");
  const more = ignored.examples.length > 5 ? ", …" : "";
  return (
    `; not synced by ignore rules: ${plural(ignored.files, "file")} and ${plural(ignored.folders, "folder")}` +
    ` (${shown}${more}) — "podlink: Is This Synced?" on a file says which rule`
  );
}

export type NodeKind = "session" | "target" | "sync" | "syncPaused" | "app" | "port" | "conflict" | "problem" | "error";

export interface TreeNodeModel {
  /** Stable across updates, so the view keeps expansion and selection. */
  id: string;
  kind: NodeKind;
  label: string;
  description?: string;
  tooltip?: string;
  /** A codicon name, with an optional theme colour id. */
  icon: string;
  iconColor?: string;
  sessionId: string;
  /** For ports: the local port; for conflicts and problems: the path. */
  port?: PortForward;
  path?: string;
  /** For conflicts: where the daemon saved the target's version (relative to the sync root). */
  copyPath?: string;
  /** For conflicts and problems: the sync root their paths are relative to (SyncIssue.entry). */
  entry?: string;
  children?: TreeNodeModel[];
}

export function sessionNodes(sessions: readonly Session[]): TreeNodeModel[] {
  return sessions.map((session) => {
    const sync = summariseSync(session.sync);
    const children: TreeNodeModel[] = [];
    const base = `${session.id}/`;
    if (session.error) {
      children.push({
        id: base + "error",
        kind: "error",
        label: session.error,
        icon: "error",
        iconColor: "errorForeground",
        sessionId: session.id,
        tooltip: session.error,
      });
    }
    children.push({
      id: base + "target",
      kind: "target",
      label: `Target: ${session.target.kind}`,
      description: session.target.name,
      icon: "vm",
      sessionId: session.id,
      tooltip: session.target.name,
    });
    children.push({
      id: base + "sync",
      kind: session.sync.state === "paused" ? "syncPaused" : "sync",
      label: `Sync: ${session.sync.state}`,
      description: sync.text || undefined,
      icon: session.sync.state === "paused" ? "debug-pause" : sync.tone === "normal" ? "sync" : "warning",
      iconColor: sync.tone === "normal" ? undefined : "problemsWarningIcon.foreground",
      sessionId: session.id,
      tooltip:
        `${sync.words}; ${String(session.sync.filesSynced)} files, ${String(session.sync.bytesSynced)} bytes synced` +
        ignoredText(session.sync.ignored),
    });
    if (session.app) {
      const running = session.app.state === "running";
      const failed = session.app.state === "exited" && session.app.exitCode !== 0;
      children.push({
        id: base + "app",
        kind: "app",
        label: `App: ${session.app.state}`,
        description: session.app.command.join(" "),
        icon: running ? "play-circle" : failed ? "error" : "circle-outline",
        iconColor: running ? "testing.iconPassed" : failed ? "errorForeground" : undefined,
        sessionId: session.id,
        tooltip: describeApp(session.app),
      });
    }
    for (const port of session.ports) {
      children.push({
        id: `${base}port/${String(port.localPort)}`,
        kind: "port",
        label: `Port ${String(port.remotePort)}`,
        description: `→ 127.0.0.1:${String(port.localPort)}${port.state === "active" ? "" : ` (${port.state})`}`,
        icon: port.state === "active" ? "plug" : port.state === "error" ? "error" : "sync~spin",
        iconColor: port.state === "error" ? "errorForeground" : undefined,
        sessionId: session.id,
        port,
        tooltip: describePort(port),
      });
    }
    for (const conflict of session.sync.conflicts) {
      children.push({
        id: `${base}conflict/${conflict.path}`,
        kind: "conflict",
        label: conflict.path,
        description: conflict.message,
        icon: "git-merge",
        iconColor: "problemsWarningIcon.foreground",
        sessionId: session.id,
        path: conflict.path,
        ...(conflict.copyPath !== undefined ? { copyPath: conflict.copyPath } : {}),
        ...(conflict.entry !== undefined ? { entry: conflict.entry } : {}),
        tooltip: `Conflict: ${conflict.message}`,
      });
    }
    for (const problem of session.sync.problems) {
      children.push({
        id: `${base}problem/${problem.path}`,
        kind: "problem",
        label: problem.path,
        description: problem.message,
        icon: "warning",
        iconColor: "problemsWarningIcon.foreground",
        sessionId: session.id,
        path: problem.path,
        ...(problem.entry !== undefined ? { entry: problem.entry } : {}),
        tooltip: problem.message,
      });
    }
    const tone = session.state === "stopped" && session.error ? "error" : sessionTone(session);
    return {
      id: session.id,
      kind: "session",
      label: folderName(session.folder),
      description: session.state,
      icon: STATE_ICONS[session.state].replace(/^\$\((.*)\)$/, "$1"),
      iconColor: tone === "error" ? "errorForeground" : tone === "warning" ? "problemsWarningIcon.foreground" : undefined,
      sessionId: session.id,
      tooltip: sessionTooltip(session),
      children,
    };
  });
}

// -- the actions quick pick ------------------------------------------------------------------

export interface ActionModel {
  command: string;
  label: string;
  detail?: string;
}

/** The actions that make sense now: a stopped daemon offers a restart, a session its controls. */
export function availableActions(daemon: DaemonStatus, sessions: readonly Session[], hasConfig: boolean): ActionModel[] {
  const actions: ActionModel[] = [];
  const live = sessions.filter((session) => session.state !== "stopped");
  if (daemon.state === "failed") {
    actions.push({ command: "podlink.restartDaemon", label: "$(refresh) Restart the daemon", detail: daemon.detail });
  }
  if (live.length === 0) {
    if (hasConfig) {
      actions.push({ command: "podlink.start", label: "$(play) Start" });
    } else {
      actions.push({ command: "podlink.createConfig", label: "$(new-file) Create podlink.yaml" });
    }
  } else {
    actions.push(
      { command: "podlink.runTests", label: "$(beaker) Run Tests" },
      { command: "podlink.debug", label: "$(debug-alt) Debug" },
      { command: "podlink.restartApp", label: "$(debug-restart) Restart App" },
      { command: "podlink.build", label: "$(tools) Build" },
      { command: "podlink.openShell", label: "$(terminal) Open Shell" },
      { command: "podlink.addPort", label: "$(plug) Add Port" },
    );
    if (live.some((session) => session.sync.state === "paused")) {
      actions.push({ command: "podlink.resumeSync", label: "$(debug-continue) Resume Sync" });
    }
    actions.push({ command: "podlink.stop", label: "$(debug-stop) Stop" });
  }
  actions.push(
    { command: "podlink.showLogs", label: "$(output) Show Logs" },
    { command: "podlink.restartDaemon", label: "$(refresh) Restart Daemon" },
    { command: "podlink.purge", label: "$(trash) Purge" },
  );
  // The failed-daemon entry and the general one are the same command: keep the first.
  return actions.filter((action, index) => actions.findIndex((a) => a.command === action.command) === index);
}

// -- input parsing ---------------------------------------------------------------------------

export type PortSpec = { remotePort: number; localPort?: number };

/** `8000` or `9000:8000` (local:remote, as podlink.yaml writes ports). */
export function parsePortSpec(text: string): PortSpec | { error: string } {
  const match = /^\s*(?:(\d+)\s*:\s*)?(\d+)\s*$/.exec(text);
  if (!match) {
    return { error: "Write a port number, or LOCAL:REMOTE such as 9000:8000." };
  }
  const remotePort = Number(match[2]);
  const localPort = match[1] === undefined ? undefined : Number(match[1]);
  for (const port of [remotePort, localPort]) {
    if (port !== undefined && (port < 1 || port > 65535)) {
      return { error: `${String(port)} is not a port number (1-65535).` };
    }
  }
  return localPort === undefined ? { remotePort } : { remotePort, localPort };
}
