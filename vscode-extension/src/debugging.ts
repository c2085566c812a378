/**
 * The `podlink` debug type, with its own debug adapter: the resolver asks the daemon to run
 * the app under debugpy in the target and gets back where podlink forwards debugpy's port;
 * the adapter descriptor points VS Code straight at that port, where debugpy already speaks
 * DAP. No other extension is needed. Re-attaches after the app restarts. Test runs under
 * debugpy (the Test Explorer's Debug profile) are attached to the same way.
 */
import * as vscode from "vscode";
import type { Daemon } from "./daemon";
import { describeError } from "./errors";
import { folderName } from "./presentation";
import type { Session } from "./protocol";
import { ReattachTracker } from "./reattach";
import type { Sessions } from "./sessions";
import type { PodlinkSettings } from "./settings";

export const DEBUG_TYPE = "podlink";
/** Carried in the debugpy configuration so a debug session can be traced to its podlink session. */
const SESSION_MARKER = "podlinkSessionId";
/** In a podlink configuration: the port in the target where a running process serves debugpy. */
const TARGET_PORT = "targetPort";
/** In a podlink configuration: the test run (podlink/debugTests) whose pytest waits for it. */
const TEST_RUN = "podlinkTestRunId";

export class Debugging
  implements vscode.DebugConfigurationProvider, vscode.DebugAdapterDescriptorFactory, vscode.Disposable
{
  private readonly tracker = new ReattachTracker();
  /** Sessions whose app restarted: their next debug session says why it is a new one. */
  private readonly reattaching = new Set<string>();
  /** The port of the process a session's debugging attached to, when not the app podlink runs. */
  private readonly attachPorts = new Map<string, number>();
  private readonly disposables: { dispose(): unknown }[] = [];

  constructor(
    private readonly daemon: Daemon,
    private readonly sessions: Sessions,
    private readonly log: vscode.LogOutputChannel,
    private readonly settings: () => PodlinkSettings,
  ) {
    this.disposables.push(
      vscode.debug.registerDebugConfigurationProvider(DEBUG_TYPE, this),
      vscode.debug.registerDebugAdapterDescriptorFactory(DEBUG_TYPE, this),
      vscode.debug.onDidStartDebugSession((debugSession) => {
        const id = markerOf(debugSession.configuration);
        if (!id) return;
        this.tracker.debugStarted(id);
        const port = attachPortOf(debugSession.configuration);
        if (port === undefined) this.attachPorts.delete(id);
        else this.attachPorts.set(id, port);
        if (this.reattaching.delete(id)) {
          vscode.debug.activeDebugConsole.appendLine("podlink: the app restarted; the debugger attached to it again");
        }
      }),
      vscode.debug.onDidTerminateDebugSession((debugSession) => {
        const id = markerOf(debugSession.configuration);
        if (id && this.tracker.debugEnded(id, Date.now())) this.reattach(id);
      }),
      sessions.store.onDidChange(() => this.appsChanged()),
    );
  }

  dispose(): void {
    for (const disposable of this.disposables) disposable.dispose();
  }

  /** Starts debugging a session's app (or the process serving debugpy on `targetPort` in
   * the target); false when it could not. */
  async debug(session: Session, targetPort?: number): Promise<boolean> {
    return vscode.debug.startDebugging(this.sessions.workspaceFolderOf(session), {
      type: DEBUG_TYPE,
      request: "attach",
      name: `podlink: ${folderName(session.folder)}`,
      [SESSION_MARKER]: session.id,
      ...(targetPort === undefined ? {} : { [TARGET_PORT]: targetPort }),
    });
  }

  /** Attaches to a test run that waits under debugpy (podlink/debugTests answered with
   * `attach`); false when the debugger could not start. Not re-attached: the run ends. */
  async debugTestRun(session: Session, attach: Record<string, unknown>, runId: string): Promise<boolean> {
    this.log.info(`debugging tests of ${session.folder}: attaching to ${JSON.stringify(attach["connect"])}`);
    return vscode.debug.startDebugging(this.sessions.workspaceFolderOf(session), {
      ...attach,
      type: DEBUG_TYPE,
      request: "attach",
      name: `podlink: tests of ${folderName(session.folder)}`,
      [TEST_RUN]: runId,
    });
  }

  async resolveDebugConfiguration(
    folder: vscode.WorkspaceFolder | undefined,
    configuration: vscode.DebugConfiguration,
    token?: vscode.CancellationToken,
  ): Promise<vscode.DebugConfiguration | undefined> {
    // A test run's configuration comes from the daemon already complete.
    if (typeof (configuration as Record<string, unknown>)[TEST_RUN] === "string") return configuration;
    const session = await this.sessionFor(folder, configuration);
    if (!session) {
      return undefined;
    }
    try {
      const port = attachPortOf(configuration);
      const { configuration: attach } = await this.daemon.request(
        "podlink/startDebug",
        port === undefined ? { sessionId: session.id } : { sessionId: session.id, port },
        token,
      );
      this.log.info(`debugging ${session.folder}: attaching to ${JSON.stringify(attach["connect"])}`);
      // The name the user chose stays; the rest is the daemon's. The type stays podlink's,
      // so VS Code asks this extension for the adapter rather than another debugger's.
      return {
        ...attach,
        type: DEBUG_TYPE,
        request: "attach",
        name: configuration.name || (typeof attach["name"] === "string" ? attach["name"] : "podlink"),
        [SESSION_MARKER]: session.id,
        // Kept so that attaching again after a restart goes to the same process. Not `port`:
        // debugpy refuses an attach that has both `port` and `connect`.
        ...(port === undefined ? {} : { [TARGET_PORT]: port }),
      };
    } catch (error) {
      void vscode.window.showErrorMessage(`podlink cannot debug the app: ${describeError(error).message}`);
      return undefined;
    }
  }

  /** debugpy started with `--listen` serves DAP itself: VS Code talks to it through the forward. */
  createDebugAdapterDescriptor(debugSession: vscode.DebugSession): vscode.DebugAdapterDescriptor {
    const { host, port } = connectOf(debugSession.configuration);
    this.log.info(`debug adapter: debugpy at ${host}:${String(port)}`);
    return new vscode.DebugAdapterServer(port, host);
  }

  private async sessionFor(
    folder: vscode.WorkspaceFolder | undefined,
    configuration: vscode.DebugConfiguration,
  ): Promise<Session | undefined> {
    const marked = markerOf(configuration);
    if (marked !== undefined) {
      const session = this.sessions.store.get(marked);
      if (session && session.state !== "stopped") return session;
    }
    if (folder) {
      const session = this.sessions.store.forFolder(folder.uri.toString());
      if (session && session.state !== "stopped") return session;
      if (this.sessions.hasConfig(folder.uri)) return this.sessions.start(folder.uri);
    }
    return this.sessions.pick("Debug the app of which session?");
  }

  private appsChanged(): void {
    const now = Date.now();
    for (const session of this.sessions.store.live()) {
      if (this.tracker.appChanged(session.id, session.app?.state, now)) this.reattach(session.id);
    }
  }

  /** The app restarted while it was being debugged: attach again, and say so. */
  private reattach(sessionId: string): void {
    const session = this.sessions.store.get(sessionId);
    if (!session || session.state === "stopped" || !this.settings()["debug.reattachAfterRestart"]) return;
    this.log.info(`the app of ${session.folder} restarted: attaching the debugger again`);
    vscode.window.setStatusBarMessage(`podlink: the app of ${folderName(session.folder)} restarted; debugger attached again`, 30_000);
    this.reattaching.add(sessionId);
    void this.debug(session, this.attachPorts.get(sessionId)).then((started) => {
      if (!started) this.reattaching.delete(sessionId);
    });
  }
}

function markerOf(configuration: vscode.DebugConfiguration): string | undefined {
  // A DebugConfiguration is an open record: read the marker as unknown before trusting it.
  const value: unknown = (configuration as Record<string, unknown>)[SESSION_MARKER];
  return typeof value === "string" ? value : undefined;
}

function connectOf(configuration: vscode.DebugConfiguration): { host: string; port: number } {
  const connect: unknown = (configuration as Record<string, unknown>)["connect"];
  if (typeof connect === "object" && connect !== null) {
    const { host, port } = connect as Record<string, unknown>;
    if (typeof port === "number" && Number.isInteger(port) && port > 0) {
      return { host: typeof host === "string" ? host : "127.0.0.1", port };
    }
  }
  throw new Error(
    `this podlink debug configuration has no debug server to connect to (connect: ${JSON.stringify(connect)}); ` +
      'start debugging with "podlink: Debug" so podlink starts the app under debugpy first',
  );
}

/** `targetPort` of a podlink configuration: attach to the debugpy already listening there. */
function attachPortOf(configuration: vscode.DebugConfiguration): number | undefined {
  const value: unknown = (configuration as Record<string, unknown>)[TARGET_PORT];
  return typeof value === "number" && Number.isInteger(value) && value > 0 && value < 65536 ? value : undefined;
}
