/** Wires the parts together: one daemon, its sessions, and the views, tests and debugging on them. */
import * as vscode from "vscode";
import { registerCommands } from "./commands";
import { ContainerLogs } from "./containerLogs";
import { Daemon } from "./daemon";
import { Debugging } from "./debugging";
import { Sessions } from "./sessions";
import { SETTINGS_SECTION, qualifiedKey, readSettings, type PodlinkSettings, type SettingKey } from "./settings";
import { Testing } from "./testing";
import { SessionsTree, StatusBar } from "./views";

let daemon: Daemon | undefined;

/** Settings that change how the daemon process is started: a change restarts it. */
const DAEMON_SETTINGS: SettingKey[] = ["python", "daemon.verbose"];

export function activate(context: vscode.ExtensionContext): void {
  const log = vscode.window.createOutputChannel("podlink", { log: true });
  context.subscriptions.push(log);

  const reportedProblems = new Set<string>();
  const settings = (): PodlinkSettings => {
    const configuration = vscode.workspace.getConfiguration(SETTINGS_SECTION);
    const read = readSettings((key) => configuration.get(key));
    // Settings are read on every use: say what is wrong with one once, not each time.
    for (const problem of read.problems) {
      if (!reportedProblems.has(problem.message)) {
        reportedProblems.add(problem.message);
        log.warn(problem.message);
      }
    }
    return read.settings;
  };

  daemon = new Daemon(context, log, settings);
  const sessions = new Sessions(daemon, log, settings);
  const debugging = new Debugging(daemon, sessions, log, settings);
  const testing = new Testing(daemon, sessions, log, settings, (session, configuration, runId) =>
    debugging.debugTestRun(session, configuration, runId),
  );
  const tree = new SessionsTree(sessions);
  const containerLogs = new ContainerLogs(daemon, log);
  context.subscriptions.push(
    daemon,
    sessions,
    debugging,
    testing,
    tree,
    containerLogs,
    new StatusBar(daemon, sessions),
    vscode.window.createTreeView("podlink.sessions", { treeDataProvider: tree, showCollapseAll: true }),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (daemon?.isRunning && DAEMON_SETTINGS.some((key) => event.affectsConfiguration(qualifiedKey(key)))) {
        log.info("the daemon's settings changed: restarting it");
        daemon.restart();
      }
    }),
    vscode.workspace.onDidChangeWorkspaceFolders(() => void sessions.autoStart()),
  );
  registerCommands(context, { daemon, sessions, testing, debugging, containerLogs, log });
  // Menus that only make sense once podlink runs in this window ("Is This Synced?").
  void vscode.commands.executeCommand("setContext", "podlink.active", true);
  void sessions.autoStart();
}

export async function deactivate(): Promise<void> {
  await daemon?.stop();
  daemon = undefined;
}
