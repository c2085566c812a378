/** The commands: each picks its session (or takes it from the sessions view) and asks the daemon. */
import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";
import { hasContainerLog, type ContainerLogs } from "./containerLogs";
import type { Daemon } from "./daemon";
import type { Debugging } from "./debugging";
import { describeError } from "./errors";
import { availableActions, folderName, parsePortSpec, type TreeNodeModel } from "./presentation";
import type { Session } from "./protocol";
import { runCaptured } from "./processes";
import { CONFIG_FILE_NAME, type Sessions } from "./sessions";
import { syncRootOf } from "./syncRoots";
import type { Testing } from "./testing";

interface Parts {
  daemon: Daemon;
  sessions: Sessions;
  testing: Testing;
  debugging: Debugging;
  containerLogs: ContainerLogs;
  log: vscode.LogOutputChannel;
}

function isTreeNode(value: unknown): value is TreeNodeModel {
  return typeof value === "object" && value !== null && "sessionId" in value && "kind" in value;
}

export function registerCommands(context: vscode.ExtensionContext, parts: Parts): void {
  const { daemon, sessions, testing, debugging, containerLogs, log } = parts;

  /** The session a command is about: the tree node it was invoked on, else the user's pick. */
  const sessionFrom = async (argument: unknown, placeHolder: string): Promise<Session | undefined> => {
    if (isTreeNode(argument)) {
      const session = sessions.store.get(argument.sessionId);
      if (session) return session;
    }
    return sessions.pick(placeHolder);
  };

  const reportFailure = (what: string) => (error: unknown) => {
    const message = describeError(error).message;
    log.error(`${what}: ${message}`);
    void vscode.window.showErrorMessage(`podlink: ${what}: ${message}`);
  };

  const register = (command: string, handler: (...args: unknown[]) => unknown) => {
    context.subscriptions.push(vscode.commands.registerCommand(command, handler));
  };

  const pickFolder = async (placeHolder: string, withConfigOnly: boolean): Promise<vscode.WorkspaceFolder | undefined> => {
    const candidates = withConfigOnly ? sessions.foldersWithConfig() : [...(vscode.workspace.workspaceFolders ?? [])];
    if (candidates.length <= 1) return candidates[0];
    const picked = await vscode.window.showQuickPick(
      candidates.map((folder) => ({ label: folder.name, description: folder.uri.fsPath, folder })),
      { placeHolder },
    );
    return picked?.folder;
  };

  /** A `podlink` command in a terminal, run by the daemon's Python, in the folder. */
  const podlinkTerminal = async (name: string, args: string[], folder: vscode.Uri): Promise<void> => {
    const python = await daemon.python();
    if (!python) return;
    const terminal = vscode.window.createTerminal({
      name,
      shellPath: python.command,
      shellArgs: ["-m", "podlink", ...args],
      cwd: folder,
    });
    terminal.show();
  };

  register("podlink.start", async () => {
    const folders = sessions.foldersWithConfig().filter((folder) => {
      const session = sessions.store.forFolder(folder.uri.toString());
      return !session || session.state === "stopped";
    });
    if (folders.length === 0) {
      if (sessions.foldersWithConfig().length > 0) {
        void vscode.window.showInformationMessage("podlink is already running for every folder with a podlink.yaml.");
        return;
      }
      const create = "Create podlink.yaml";
      const answer = await vscode.window.showInformationMessage(
        "No workspace folder has a podlink.yaml to say where the code runs.",
        create,
      );
      if (answer === create) await vscode.commands.executeCommand("podlink.createConfig");
      return;
    }
    const folder = folders.length === 1 ? folders[0] : (await vscode.window.showQuickPick(
      folders.map((each) => ({ label: each.name, description: each.uri.fsPath, folder: each })),
      { placeHolder: "Start podlink for which folder?" },
    ))?.folder;
    if (folder) await sessions.start(folder.uri);
  });

  register("podlink.stop", async (argument) => {
    const session = await sessionFrom(argument, "Stop which session?");
    if (session) await sessions.stop(session).catch(reportFailure("stopping the session failed"));
  });

  register("podlink.restartApp", async (argument) => {
    const session = await sessionFrom(argument, "Restart the app of which session?");
    if (!session) return;
    await daemon.request("podlink/restartApp", { sessionId: session.id }).catch(reportFailure("the app did not restart"));
  });

  register("podlink.debug", async (argument) => {
    const session = await sessionFrom(argument, "Debug the app of which session?");
    if (session) await debugging.debug(session);
  });

  register("podlink.runTests", async (argument) => {
    const session = await sessionFrom(argument, "Run the tests of which session?");
    if (session) await testing.runAll(session);
  });

  register("podlink.build", async (argument) => {
    const session = await sessionFrom(argument, "Build in which session?");
    if (!session) return;
    try {
      const result = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Window, title: "podlink: building" },
        () => daemon.request("podlink/build", { sessionId: session.id }),
      );
      const seconds = (result.durationMs / 1000).toFixed(1);
      if (result.exitCode === 0) {
        void vscode.window.showInformationMessage(`podlink: the build passed in ${seconds} s.`);
      } else {
        const problems = "Show Problems";
        const answer = await vscode.window.showErrorMessage(
          `podlink: the build failed (exit code ${String(result.exitCode)}, ${String(result.diagnostics)} problems) in ${seconds} s.`,
          problems,
        );
        if (answer === problems) await vscode.commands.executeCommand("workbench.actions.view.problems");
      }
    } catch (error) {
      reportFailure("the build did not run")(error);
    }
  });

  register("podlink.openShell", async (argument) => {
    const session = isTreeNode(argument) ? sessions.store.get(argument.sessionId) : undefined;
    const folder = session ? sessions.folderUri(session) : (await pickFolder("Open a shell in the target of which folder?", true))?.uri;
    if (!folder) {
      void vscode.window.showInformationMessage("No workspace folder has a podlink.yaml.");
      return;
    }
    await podlinkTerminal(`podlink shell: ${path.basename(folder.fsPath)}`, ["shell"], folder);
  });

  // podlink's own log, and for a session on a container or pod (the one the command was
  // invoked on, else the only one) that container's log as it streams.
  register("podlink.showLogs", async (argument) => {
    log.show(true);
    const live = sessions.store.all().filter((session) => session.state !== "stopped" && hasContainerLog(session));
    const session = isTreeNode(argument) ? sessions.store.get(argument.sessionId) : live.length === 1 ? live[0] : undefined;
    if (session && hasContainerLog(session)) await containerLogs.show(session);
  });

  register("podlink.addPort", async (argument) => {
    const session = await sessionFrom(argument, "Forward a port of which session?");
    if (!session) return;
    const input = await vscode.window.showInputBox({
      title: "podlink: forward a port",
      prompt: "The port in the target, or LOCAL:REMOTE (such as 9000:8000)",
      validateInput: (text) => {
        const spec = parsePortSpec(text);
        return "error" in spec ? spec.error : undefined;
      },
    });
    if (input === undefined) return;
    const spec = parsePortSpec(input);
    if ("error" in spec) return;
    try {
      const forward = await daemon.request("podlink/addPort", { sessionId: session.id, ...spec });
      const open = "Open in Browser";
      const answer = await vscode.window.showInformationMessage(
        `podlink: port ${String(forward.remotePort)} of the target is on 127.0.0.1:${String(forward.localPort)}.`,
        open,
      );
      if (answer === open) await openLocalPort(forward.localPort);
    } catch (error) {
      reportFailure("the port was not forwarded")(error);
    }
  });

  register("podlink.removePort", async (argument) => {
    if (!isTreeNode(argument) || !argument.port) return;
    await daemon
      .request("podlink/removePort", { sessionId: argument.sessionId, localPort: argument.port.localPort })
      .catch(reportFailure("the forward was not removed"));
  });

  register("podlink.openPort", async (argument) => {
    if (isTreeNode(argument) && argument.port) await openLocalPort(argument.port.localPort);
  });

  register("podlink.openConflict", async (argument) => {
    if (!isTreeNode(argument) || !argument.path) return;
    const session = sessions.store.get(argument.sessionId);
    if (!session) return;
    // The paths are relative to its sync entry's folder, not always the workspace's.
    const root = vscode.Uri.file(syncRootOf(sessions.folderUri(session).fsPath, argument.entry));
    const local = vscode.Uri.joinPath(root, argument.path);
    const copy = argument.kind === "conflict" ? argument.copyPath : undefined;
    if (copy !== undefined && fs.existsSync(local.fsPath)) {
      // The target's version was saved beside the local file: diff the two.
      await vscode.commands.executeCommand(
        "vscode.diff",
        vscode.Uri.joinPath(root, copy),
        local,
        `${argument.path}: target ↔ local`,
      );
      return;
    }
    // No copy to compare with, and the protocol has no request for the target's version:
    // open the local file and say what the sync reported.
    if (fs.existsSync(local.fsPath)) {
      await vscode.window.showTextDocument(local, { preview: true });
    }
    void vscode.window.showWarningMessage(`${argument.path}: ${argument.description ?? argument.label}`);
  });

  register("podlink.purge", async () => {
    const folder = (await pickFolder("Purge what podlink left behind, from which folder?", false))?.uri;
    if (!folder) {
      void vscode.window.showInformationMessage("Open a folder first: podlink purge runs in it.");
      return;
    }
    await podlinkTerminal("podlink purge", ["purge"], folder);
  });

  register("podlink.resumeSync", async (argument) => {
    const session = await sessionFrom(argument, "Resume the sync of which session?");
    if (!session) return;
    await daemon.request("podlink/resumeSync", { sessionId: session.id }).catch(reportFailure("the sync did not resume"));
  });

  register("podlink.createConfig", async () => {
    const folder = await pickFolder("Create a podlink.yaml in which folder?", false);
    if (!folder) {
      void vscode.window.showInformationMessage("Open a folder first: the podlink.yaml goes into it.");
      return;
    }
    const configPath = path.join(folder.uri.fsPath, CONFIG_FILE_NAME);
    const args = ["-m", "podlink", "init", folder.uri.fsPath];
    if (fs.existsSync(configPath)) {
      const overwrite = "Overwrite";
      const answer = await vscode.window.showWarningMessage(`${configPath} exists. Overwrite it?`, { modal: true }, overwrite);
      if (answer !== overwrite) {
        await vscode.window.showTextDocument(vscode.Uri.file(configPath));
        return;
      }
      args.push("--force");
    }
    const python = await daemon.python();
    if (!python) return;
    const outcome = await runCaptured(python.command, args, { cwd: folder.uri.fsPath });
    if (outcome.spawnError !== undefined || outcome.exitCode !== 0) {
      const why = outcome.spawnError ?? (outcome.stderr.trim() || outcome.stdout.trim());
      log.error(`podlink init failed: ${why}`);
      void vscode.window.showErrorMessage(`podlink init failed: ${why}`);
      return;
    }
    log.info(outcome.stdout.trim());
    await vscode.window.showTextDocument(vscode.Uri.file(configPath));
    const start = "Start";
    const answer = await vscode.window.showInformationMessage(
      `Wrote ${CONFIG_FILE_NAME} for ${folder.name}: check the target and the commands, then start.`,
      start,
    );
    if (answer === start) await sessions.start(folder.uri);
  });

  register("podlink.explainPath", async (argument) => {
    const uri = argument instanceof vscode.Uri ? argument : vscode.window.activeTextEditor?.document.uri;
    if (!uri || uri.scheme !== "file") {
      void vscode.window.showInformationMessage("Pick a file or folder in the Explorer, or open a file, to ask whether podlink syncs it.");
      return;
    }
    const folder = vscode.workspace.getWorkspaceFolder(uri);
    const session = folder ? sessions.store.forFolder(folder.uri.toString()) : undefined;
    let message: string | undefined;
    if (session && session.state !== "stopped") {
      const answer = await daemon
        .request("podlink/explainPath", { sessionId: session.id, uri: uri.toString() })
        .catch(reportFailure("could not ask whether the path is synced"));
      message = answer?.message;
    } else if (folder) {
      // No session: the command line reads the same rules from disk.
      const python = await daemon.python();
      if (!python) return;
      const outcome = await runCaptured(python.command, ["-m", "podlink", "why", "-C", folder.uri.fsPath, uri.fsPath], {
        cwd: folder.uri.fsPath,
      });
      if (outcome.spawnError !== undefined || outcome.exitCode !== 0) {
        reportFailure("podlink why failed")(new Error(outcome.spawnError ?? (outcome.stderr.trim() || outcome.stdout.trim())));
        return;
      }
      message = outcome.stdout.trim();
    } else {
      message = `${uri.fsPath} is outside the workspace folders, so podlink does not sync it.`;
    }
    if (message) {
      log.info(message);
      void vscode.window.showInformationMessage(message);
    }
  });

  register("podlink.restartDaemon", () => daemon.restart());

  register("podlink.showActions", async () => {
    const hasConfig = sessions.foldersWithConfig().length > 0;
    const actions = availableActions(daemon.status, sessions.store.all(), hasConfig);
    const live = sessions.store.live();
    const picked = await vscode.window.showQuickPick(actions, {
      placeHolder: live.length === 1 ? `podlink — ${folderName(live[0]!.folder)}` : "podlink",
    });
    if (picked) await vscode.commands.executeCommand(picked.command);
  });
}

async function openLocalPort(port: number): Promise<void> {
  // Through asExternalUri, so a remote or browser-hosted editor opens its own forward.
  const external = await vscode.env.asExternalUri(vscode.Uri.parse(`http://127.0.0.1:${String(port)}/`));
  await vscode.env.openExternal(external);
}
