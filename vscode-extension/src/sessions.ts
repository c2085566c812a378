/**
 * Which folders should have a session, starting and stopping them, and the store of sessions
 * that `podlink/sessionChanged` keeps current.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";
import type { Daemon } from "./daemon";
import { describeError } from "./errors";
import { logLines } from "./logLevels";
import { folderName } from "./presentation";
import type { Session } from "./protocol";
import { SessionStore, folderKey } from "./sessionStore";
import type { PodlinkSettings } from "./settings";

export const CONFIG_FILE_NAME = "podlink.yaml";

export class Sessions implements vscode.Disposable {
  readonly store = new SessionStore();
  /** Folders (by folderKey) the user or auto-start wants a session for: restored after a crash. */
  private readonly wanted = new Map<string, vscode.Uri>();
  private readonly inFlight = new Map<string, Promise<Session | undefined>>();
  private readonly disposables: { dispose(): unknown }[] = [];

  constructor(
    private readonly daemon: Daemon,
    private readonly log: vscode.LogOutputChannel,
    private readonly settings: () => PodlinkSettings,
  ) {
    daemon.onNotification("podlink/sessionChanged", (session) => this.store.update(session));
    daemon.onNotification("podlink/log", (params) => {
      for (const line of logLines(params)) {
        this.log[line.level](line.text);
      }
    });
    this.disposables.push(
      daemon.onDidStart(() => void this.startWanted()),
      daemon.onDidChangeStatus((status) => {
        if (status.state !== "running") {
          this.store.clear();
        }
      }),
    );
  }

  dispose(): void {
    for (const disposable of this.disposables) disposable.dispose();
  }

  configFile(folder: vscode.Uri): string {
    const custom = this.settings().configFile.trim();
    return path.join(folder.fsPath, custom || CONFIG_FILE_NAME);
  }

  hasConfig(folder: vscode.Uri): boolean {
    return fs.existsSync(this.configFile(folder));
  }

  foldersWithConfig(): vscode.WorkspaceFolder[] {
    return (vscode.workspace.workspaceFolders ?? []).filter((folder) => this.hasConfig(folder.uri));
  }

  /** On activation: every folder with a config gets a session, when the setting says so. */
  async autoStart(): Promise<void> {
    if (!this.settings().autoStart) {
      return;
    }
    const folders = this.foldersWithConfig();
    if (folders.length === 0) {
      return;
    }
    for (const folder of folders) {
      this.wanted.set(folderKey(folder.uri.toString()), folder.uri);
    }
    // A daemon that starts now begins the wanted sessions itself (onDidStart); one that was
    // already running (a folder was added to the workspace) needs asking.
    const wasRunning = this.daemon.isRunning;
    if ((await this.daemon.ensureRunning()) && wasRunning) {
      await this.startWanted();
    }
  }

  async start(folder: vscode.Uri): Promise<Session | undefined> {
    const key = folderKey(folder.toString());
    this.wanted.set(key, folder);
    if (!(await this.daemon.ensureRunning())) {
      return undefined;
    }
    // A daemon that just started has begun the wanted sessions itself (onDidStart).
    return this.inFlight.get(key) ?? this.startOne(folder);
  }

  async stop(session: Session): Promise<void> {
    this.wanted.delete(folderKey(session.folder));
    try {
      await this.daemon.request("podlink/stopSession", { sessionId: session.id });
    } finally {
      this.store.remove(session.id);
    }
  }

  private async startWanted(): Promise<void> {
    await Promise.all([...this.wanted.values()].map((folder) => this.startOne(folder)));
  }

  private startOne(folder: vscode.Uri): Promise<Session | undefined> {
    const key = folderKey(folder.toString());
    const existing = this.store.forFolder(folder.toString());
    if (existing && existing.state !== "stopped") {
      return Promise.resolve(existing);
    }
    let pending = this.inFlight.get(key);
    if (!pending) {
      pending = this.requestStart(folder).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, pending);
    }
    return pending;
  }

  private async requestStart(folder: vscode.Uri): Promise<Session | undefined> {
    const custom = this.settings().configFile.trim();
    this.log.info(`starting a session for ${folder.fsPath}`);
    try {
      const session = await this.daemon.request("podlink/startSession", {
        folder: folder.toString(),
        ...(custom ? { configFile: custom } : {}),
      });
      this.store.update(session);
      if (session.error) {
        void vscode.window.showWarningMessage(`podlink (${folderName(session.folder)}): ${session.error}`);
      }
      return session;
    } catch (error) {
      await this.reportStartFailure(folder, error);
      return undefined;
    }
  }

  private async reportStartFailure(folder: vscode.Uri, error: unknown): Promise<void> {
    const described = describeError(error);
    this.log.error(`the session for ${folder.fsPath} did not start: ${described.message}`);
    const openConfig = "Open podlink.yaml";
    const showLog = "Show Log";
    const actions = described.configLocation ? [openConfig, showLog] : [showLog];
    const answer = await vscode.window.showErrorMessage(`podlink could not start: ${described.message}`, ...actions);
    if (answer === showLog) {
      this.log.show(true);
    } else if (answer === openConfig && described.configLocation) {
      const line = Math.max(0, (described.configLocation.line ?? 1) - 1);
      const document = await vscode.workspace.openTextDocument(described.configLocation.file);
      await vscode.window.showTextDocument(document, { selection: new vscode.Range(line, 0, line, 0) });
    }
  }

  /** The session a command acts on: the only one, or the one the user picks. */
  async pick(placeHolder: string): Promise<Session | undefined> {
    const live = this.store.live();
    if (live.length === 1) {
      return live[0];
    }
    if (live.length === 0) {
      const folders = this.foldersWithConfig();
      if (folders.length === 0) {
        void vscode.window.showInformationMessage("No podlink session is running, and no folder has a podlink.yaml.");
        return undefined;
      }
      const start = "Start";
      const answer = await vscode.window.showInformationMessage("No podlink session is running.", start);
      if (answer !== start) {
        return undefined;
      }
      const folder = folders.length === 1 ? folders[0] : await vscode.window.showWorkspaceFolderPick({ placeHolder: "Start podlink for which folder?" });
      return folder ? this.start(folder.uri) : undefined;
    }
    const picked = await vscode.window.showQuickPick(
      live.map((session) => ({ label: folderName(session.folder), description: session.state, session })),
      { placeHolder },
    );
    return picked?.session;
  }

  workspaceFolderOf(session: Session): vscode.WorkspaceFolder | undefined {
    const key = folderKey(session.folder);
    return (vscode.workspace.workspaceFolders ?? []).find((folder) => folderKey(folder.uri.toString()) === key);
  }

  folderUri(session: Session): vscode.Uri {
    return this.workspaceFolderOf(session)?.uri ?? vscode.Uri.parse(session.folder);
  }
}
