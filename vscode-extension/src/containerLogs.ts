/**
 * "Show Logs" for a session on a container or a pod: its own log (what `podlink logs -f`
 * prints) streamed into an output channel of its own, one per session, until the container
 * stops or the session ends.
 */
import * as vscode from "vscode";
import { ContainerLogRouter } from "./containerLogRouter";
import type { Daemon } from "./daemon";
import { describeError } from "./errors";
import { folderName } from "./presentation";
import type { Session } from "./protocol";

/** Lines a new stream starts with: enough to see what led up to now. */
const TAIL_LINES = 200;

export function hasContainerLog(session: Session): boolean {
  return session.target.kind === "docker" || session.target.kind === "kubernetes";
}

export class ContainerLogs implements vscode.Disposable {
  private readonly router = new ContainerLogRouter();
  private readonly channels = new Map<string, vscode.OutputChannel>();
  /** The open stream of each session, by session id. */
  private readonly streams = new Map<string, string>();

  constructor(
    private readonly daemon: Daemon,
    private readonly log: vscode.LogOutputChannel,
  ) {
    daemon.onNotification("podlink/containerLog", (params) => this.router.receive(params));
  }

  /** Show the session's container log, starting its stream unless one runs. */
  async show(session: Session): Promise<void> {
    const channel = this.channelFor(session);
    channel.show(true);
    if (this.streams.has(session.id)) return;
    const what = session.target.kind === "kubernetes" ? "pod" : "container";
    try {
      const { streamId } = await this.daemon.request("podlink/followLogs", { sessionId: session.id, tail: TAIL_LINES });
      this.streams.set(session.id, streamId);
      this.router.attach(streamId, {
        append: (text) => channel.append(text),
        end: (error) => {
          this.streams.delete(session.id);
          channel.appendLine(error ? `[podlink: the log stopped: ${error}]` : `[podlink: the ${what} log ended]`);
        },
      });
    } catch (error) {
      const message = describeError(error).message;
      this.log.error(`the ${what} log of ${session.target.name} cannot be read: ${message}`);
      channel.appendLine(`[podlink: the ${what} log cannot be read: ${message}]`);
    }
  }

  dispose(): void {
    for (const streamId of this.streams.values()) {
      void this.daemon.request("podlink/stopLogs", { streamId }).catch(() => undefined);
    }
    this.streams.clear();
    for (const channel of this.channels.values()) channel.dispose();
  }

  private channelFor(session: Session): vscode.OutputChannel {
    let channel = this.channels.get(session.id);
    if (!channel) {
      channel = vscode.window.createOutputChannel(`podlink: ${session.target.name} (${folderName(session.folder)})`);
      this.channels.set(session.id, channel);
    }
    return channel;
  }
}
