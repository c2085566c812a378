/**
 * The `podlink` debug type: its resolver asks the daemon for a ready `debugpy` attach
 * configuration and hands that to VS Code. Re-attaches after the app restarts.
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
const DEBUGPY_EXTENSION_ID = "ms-python.debugpy";

export class Debugging implements vscode.DebugConfigurationProvider, vscode.Disposable {
  private readonly tracker = new ReattachTracker();
  private readonly disposables: { dispose(): unknown }[] = [];

  constructor(
    private readonly daemon: Daemon,
    private readonly sessions: Sessions,
    private readonly log: vscode.LogOutputChannel,
    private readonly settings: () => PodlinkSettings,
  ) {
    this.disposables.push(
      vscode.debug.registerDebugConfigurationProvider(DEBUG_TYPE, this),
      vscode.debug.onDidStartDebugSession((debugSession) => {
        const id = markerOf(debugSession.configuration);
        if (id) this.tracker.debugStarted(id);
      }),
      vscode.debug.onDidTerminateDebugSession((debugSession) => {
        const id = markerOf(debugSession.configuration);
        if (id) this.tracker.debugEnded(id, Date.now());
      }),
      sessions.store.onDidChange(() => this.appsChanged()),
    );
  }

  dispose(): void {
    for (const disposable of this.disposables) disposable.dispose();
  }

  /** Starts debugging a session's app; false when it could not. */
  async debug(session: Session): Promise<boolean> {
    return vscode.debug.startDebugging(this.sessions.workspaceFolderOf(session), {
      type: DEBUG_TYPE,
      request: "attach",
      name: `podlink: ${folderName(session.folder)}`,
      [SESSION_MARKER]: session.id,
    });
  }

  async resolveDebugConfiguration(
    folder: vscode.WorkspaceFolder | undefined,
    configuration: vscode.DebugConfiguration,
    token?: vscode.CancellationToken,
  ): Promise<vscode.DebugConfiguration | undefined> {
    if (!vscode.extensions.getExtension(DEBUGPY_EXTENSION_ID)) {
      void vscode.window.showErrorMessage(
        "Debugging with podlink needs the Python Debugger extension (ms-python.debugpy), which is not installed.",
      );
      return undefined;
    }
    const session = await this.sessionFor(folder, configuration);
    if (!session) {
      return undefined;
    }
    try {
      const { configuration: attach } = await this.daemon.request("podlink/startDebug", { sessionId: session.id }, token);
      this.log.info(`debugging ${session.folder}: attaching to ${JSON.stringify(attach["connect"])}`);
      // The name the user chose stays; the rest is the daemon's.
      return {
        ...attach,
        type: typeof attach["type"] === "string" ? attach["type"] : "debugpy",
        request: typeof attach["request"] === "string" ? attach["request"] : "attach",
        name: configuration.name || (typeof attach["name"] === "string" ? attach["name"] : "podlink"),
        [SESSION_MARKER]: session.id,
      };
    } catch (error) {
      void vscode.window.showErrorMessage(`podlink cannot debug the app: ${describeError(error).message}`);
      return undefined;
    }
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
      const attach = this.tracker.appChanged(session.id, session.app?.state, now);
      if (attach && this.settings()["debug.reattachAfterRestart"]) {
        this.log.info(`the app of ${session.folder} restarted: attaching the debugger again`);
        void this.debug(session);
      }
    }
  }
}

function markerOf(configuration: vscode.DebugConfiguration): string | undefined {
  // A DebugConfiguration is an open record: read the marker as unknown before trusting it.
  const value: unknown = (configuration as Record<string, unknown>)[SESSION_MARKER];
  return typeof value === "string" ? value : undefined;
}
