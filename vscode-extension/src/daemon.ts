/**
 * The podlink daemon as a language client: which Python runs it, installing it when that
 * Python lacks podlink, starting it over stdio, restarting it after a crash (a few times), and
 * typed requests and notifications.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";
import {
  CloseAction,
  ErrorAction,
  LanguageClient,
  RevealOutputChannelOn,
  State,
  Trace,
  type CloseHandlerResult,
  type LanguageClientOptions,
  type ServerOptions,
} from "vscode-languageclient/node";
import {
  PROBE_ARGS,
  choosePython,
  describeChoice,
  environmentPython,
  interpretProbe,
  planLaunch,
  privateEnvironmentSteps,
  wheelVersion,
  type PythonChoice,
} from "./interpreter";
import type { DaemonStatus } from "./presentation";
import type { NotificationMap, RequestMap } from "./protocol";
import { protocolMismatch } from "./protocolVersion";
import { runCaptured, runLogged } from "./processes";
import { activeInterpreterPath } from "./pythonExtension";
import { Debouncer, RestartBudget } from "./restartPolicy";
import type { PodlinkSettings } from "./settings";

const RESTART_DEBOUNCE_MS = 400;
const PROBE_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

export class DaemonNotRunning extends Error {}

export class Daemon implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private starting: Promise<LanguageClient | undefined> | undefined;
  private stoppingDeliberately = false;
  /** Whether the current client got the daemon initialised once: a crash before that is a failed start. */
  private clientWasRunning = false;
  private currentStatus: DaemonStatus = { state: "idle" };
  private resolvedPython: PythonChoice | undefined;
  private budget: RestartBudget;
  private readonly statusEmitter = new vscode.EventEmitter<DaemonStatus>();
  private readonly runningEmitter = new vscode.EventEmitter<void>();
  private readonly notificationHandlers: Array<{ method: string; handler: (params: unknown) => void }> = [];
  private readonly logLevelSubscription: vscode.Disposable;
  private readonly restartDebouncer = new Debouncer(RESTART_DEBOUNCE_MS, () => void this.restartNow());

  /** Fires whenever the daemon's state changes. */
  readonly onDidChangeStatus = this.statusEmitter.event;
  /** Fires each time a daemon is up and initialised: the first start and every restart. */
  readonly onDidStart = this.runningEmitter.event;

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly log: vscode.LogOutputChannel,
    private readonly settings: () => PodlinkSettings,
  ) {
    this.budget = new RestartBudget(settings()["daemon.maxRestarts"]);
    this.logLevelSubscription = log.onDidChangeLogLevel(() => void this.followLogLevel(this.client));
  }

  get status(): DaemonStatus {
    return this.currentStatus;
  }

  get isRunning(): boolean {
    return this.client?.state === State.Running;
  }

  /** Handlers survive restarts: they are attached to every client this daemon makes. */
  onNotification<Method extends keyof NotificationMap>(
    method: Method,
    handler: (params: NotificationMap[Method]) => void,
  ): void {
    // The daemon sends each notification with the params its generated type describes.
    const untyped = (params: unknown) => {
      handler(params as NotificationMap[Method]);
    };
    this.notificationHandlers.push({ method, handler: untyped });
    this.client?.onNotification(method, untyped);
  }

  async request<Method extends keyof RequestMap>(
    method: Method,
    params: RequestMap[Method]["params"],
    token?: vscode.CancellationToken,
  ): Promise<RequestMap[Method]["result"]> {
    const client = await this.ensureRunning();
    if (!client) {
      throw new DaemonNotRunning("the podlink daemon is not running");
    }
    // A third argument that is not a token would turn the params into a positional array.
    const result: unknown = token
      ? await client.sendRequest(method, params, token)
      : await client.sendRequest(method, params);
    // The daemon answers with the shape the generated protocol types describe.
    return result as RequestMap[Method]["result"];
  }

  /** Starts the daemon unless it runs; undefined when it cannot run (and the user was told why). */
  ensureRunning(): Promise<LanguageClient | undefined> {
    if (this.client && this.client.state === State.Running) {
      return Promise.resolve(this.client);
    }
    if (this.client && !this.starting && this.currentStatus.state === "starting") {
      // The client is restarting the daemon after a crash: wait for that, do not start another.
      return this.settled();
    }
    this.starting ??= this.start().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private settled(): Promise<LanguageClient | undefined> {
    return new Promise((resolve) => {
      const subscription = this.onDidChangeStatus((status) => {
        if (status.state === "running" || status.state === "failed" || status.state === "idle") {
          subscription.dispose();
          resolve(status.state === "running" ? this.client : undefined);
        }
      });
    });
  }

  /** The Python that runs (or would run) the daemon, for `podlink` commands in terminals. */
  async python(): Promise<PythonChoice | undefined> {
    if (this.resolvedPython) {
      return this.resolvedPython;
    }
    return this.resolvePython();
  }

  /** Restart on request: several requests in a burst make one restart. */
  restart(): void {
    this.restartDebouncer.trigger();
  }

  private async restartNow(): Promise<void> {
    this.log.info("restarting the daemon");
    this.budget = new RestartBudget(this.settings()["daemon.maxRestarts"]);
    this.resolvedPython = undefined;
    await this.stop();
    await this.ensureRunning();
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (!client) {
      return;
    }
    this.stoppingDeliberately = true;
    try {
      if (client.state !== State.Stopped) {
        await client.stop(STOP_TIMEOUT_MS);
      }
    } catch (error) {
      this.log.warn(`the daemon did not stop cleanly: ${String(error)}`);
    } finally {
      this.stoppingDeliberately = false;
      await client.dispose().catch(() => undefined);
      this.setStatus({ state: "idle" });
    }
  }

  dispose(): void {
    this.restartDebouncer.cancel();
    this.logLevelSubscription.dispose();
    void this.stop();
    this.statusEmitter.dispose();
    this.runningEmitter.dispose();
  }

  private setStatus(status: DaemonStatus): void {
    this.currentStatus = status;
    this.statusEmitter.fire(status);
  }

  private bundledWheel(): string | undefined {
    const directory = path.join(this.context.extensionPath, "out", "wheels");
    let names: string[];
    try {
      names = fs.readdirSync(directory);
    } catch {
      return undefined;
    }
    const wheel = names.filter((name) => wheelVersion(name) !== undefined).sort().pop();
    return wheel ? path.join(directory, wheel) : undefined;
  }

  private privateEnvironmentDir(): string {
    return path.join(this.context.globalStorageUri.fsPath, "python-env");
  }

  private async probe(python: string) {
    return interpretProbe(await runCaptured(python, PROBE_ARGS, { timeoutMs: PROBE_TIMEOUT_MS }));
  }

  /** Choose the interpreter, install podlink privately if needed (asking first). */
  private async resolvePython(): Promise<PythonChoice | undefined> {
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
    const configured = this.settings().python;
    const fromExtension = configured.trim() ? undefined : await activeInterpreterPath(folder, this.log);
    const chosen = choosePython(configured, fromExtension);
    const chosenProbe = await this.probe(chosen.command);
    const privatePython = environmentPython(this.privateEnvironmentDir(), process.platform);
    const privateProbe = fs.existsSync(privatePython) ? await this.probe(privatePython) : undefined;
    const wheel = this.bundledWheel();
    const plan = planLaunch({
      chosen,
      chosenProbe,
      privateEnvironmentPython: privatePython,
      privateProbe,
      bundledVersion: wheel ? wheelVersion(wheel) : undefined,
    });
    switch (plan.kind) {
      case "run":
        this.log.info(`daemon interpreter: ${describeChoice(plan.python)}`);
        return plan.python;
      case "upgradePrivateEnvironment":
        if (!wheel) return undefined;
        return this.installPrivately(plan.basePython, wheel, false);
      case "offerPrivateEnvironment": {
        if (!wheel) return undefined;
        this.log.warn(plan.reason);
        const install = "Install podlink";
        const choose = "Choose Interpreter";
        const answer = await vscode.window.showWarningMessage(
          `${plan.reason}. Install it into a private environment for this extension?`,
          install,
          choose,
        );
        if (answer === install) {
          return this.installPrivately(plan.basePython, wheel, true);
        }
        if (answer === choose) {
          await vscode.commands.executeCommand("workbench.action.openSettings", "podlink.python");
        }
        return undefined;
      }
      case "noPython": {
        this.log.error(plan.reason);
        const openSettings = "Open Settings";
        void vscode.window
          .showErrorMessage(`podlink cannot start its daemon: ${plan.reason}.`, openSettings)
          .then((answer) => {
            if (answer === openSettings) {
              void vscode.commands.executeCommand("workbench.action.openSettings", "podlink.python");
            }
          });
        return undefined;
      }
    }
  }

  private async installPrivately(basePython: PythonChoice, wheel: string, create: boolean): Promise<PythonChoice | undefined> {
    const environmentDir = this.privateEnvironmentDir();
    const steps = privateEnvironmentSteps({
      basePython: basePython.command,
      environmentDir,
      wheelPath: wheel,
      platform: process.platform,
      create,
    });
    this.setStatus({ state: "installing" });
    try {
      await fs.promises.mkdir(path.dirname(environmentDir), { recursive: true });
      await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: "podlink: installing the daemon" },
        async (progress) => {
          for (const [index, step] of steps.entries()) {
            progress.report({ message: `${step.title} (${String(index + 1)}/${String(steps.length)})` });
            await runLogged(step.command, step.args, this.log);
          }
        },
      );
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.setStatus({ state: "failed", detail: message });
      this.showFailure(`podlink could not be installed: ${message}`);
      return undefined;
    }
    const python = environmentPython(environmentDir, process.platform);
    this.log.info(`installed podlink into ${environmentDir}`);
    return { command: python, source: "privateEnvironment" };
  }

  private async start(): Promise<LanguageClient | undefined> {
    const stale = this.client;
    this.client = undefined;
    await stale?.dispose().catch(() => undefined);
    this.setStatus({ state: "starting" });
    const python = await this.resolvePython();
    if (!python) {
      this.setStatus({ state: "failed", detail: "no Python with podlink to run the daemon" });
      return undefined;
    }
    this.resolvedPython = python;
    const client = this.createClient(python);
    this.client = client;
    try {
      await client.start();
      const mismatch = protocolMismatch(client.initializeResult?.capabilities.experimental);
      if (mismatch !== undefined) {
        throw new Error(mismatch);
      }
      await this.followLogLevel(client);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.log.error(`the daemon did not start: ${message}`);
      if (this.client === client) {
        this.client = undefined;
      }
      await client.dispose().catch(() => undefined);
      this.setStatus({ state: "failed", detail: message });
      this.showFailure(`The podlink daemon did not start (${describeChoice(python)}): ${message}`);
      return undefined;
    }
    return client;
  }

  /** The protocol trace follows the log channel's level: Debug shows messages, Trace their bodies. */
  private async followLogLevel(client: LanguageClient | undefined): Promise<void> {
    if (client?.state !== State.Running) return;
    const level = this.log.logLevel;
    const trace =
      level === vscode.LogLevel.Trace ? Trace.Verbose : level === vscode.LogLevel.Debug ? Trace.Messages : Trace.Off;
    await client.setTrace(trace).catch((error: unknown) => {
      this.log.warn(`could not set the protocol trace: ${String(error)}`);
    });
  }

  private createClient(python: PythonChoice): LanguageClient {
    const verbose = this.settings()["daemon.verbose"];
    const serverOptions: ServerOptions = {
      command: python.command,
      // No `transport`: with one, the client appends `--stdio`, which `podlink serve` does not take.
      args: ["-m", "podlink", "serve", ...(verbose ? ["--verbose"] : [])],
      options: { env: { ...process.env, PYTHONUNBUFFERED: "1" } },
    };
    const clientOptions: LanguageClientOptions = {
      // podlink reads files from disk itself: no document is synchronised.
      documentSelector: [],
      diagnosticCollectionName: "podlink",
      outputChannel: this.log,
      traceOutputChannel: this.log,
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      errorHandler: {
        error: () => ({ action: ErrorAction.Continue }),
        closed: () => this.onConnectionClosed(),
      },
      initializationFailedHandler: (error) => {
        this.log.error(`initialize failed: ${String(error)}`);
        return false;
      },
    };
    const client = new LanguageClient("podlink", "podlink", serverOptions, clientOptions);
    this.clientWasRunning = false;
    for (const { method, handler } of this.notificationHandlers) {
      client.onNotification(method, handler);
    }
    client.onDidChangeState((change) => {
      if (this.client !== client) {
        return;
      }
      if (change.newState === State.Running) {
        // A daemon of another protocol version is refused by start(); nothing may use it first.
        if (protocolMismatch(client.initializeResult?.capabilities.experimental) !== undefined) {
          return;
        }
        this.clientWasRunning = true;
        this.setStatus({ state: "running" });
        this.runningEmitter.fire();
      } else if (change.newState === State.Starting) {
        this.setStatus({ state: "starting" });
      }
    });
    return client;
  }

  private onConnectionClosed(): CloseHandlerResult {
    if (this.stoppingDeliberately || !this.client || !this.clientWasRunning) {
      // A daemon that never came up is a failed start, which start() reports; restarting
      // it would only fail the same way.
      return { action: CloseAction.DoNotRestart, handled: true };
    }
    const verdict = this.budget.recordCrash(Date.now());
    if (verdict.action === "restart") {
      this.log.warn(`the daemon exited unexpectedly; restarting it (attempt ${String(verdict.attempt)})`);
      this.setStatus({ state: "starting", detail: "restarting after a crash" });
      return { action: CloseAction.Restart, handled: true };
    }
    const detail = `it stopped ${String(verdict.crashes)} times within a few minutes`;
    this.log.error(`the daemon exited unexpectedly and is not restarted again: ${detail}`);
    this.setStatus({ state: "failed", detail });
    this.showFailure(`The podlink daemon keeps stopping (${detail}) and was not restarted again.`);
    return { action: CloseAction.DoNotRestart, handled: true };
  }

  private showFailure(message: string): void {
    const showLog = "Show Log";
    const restart = "Restart Daemon";
    void vscode.window.showErrorMessage(message, showLog, restart).then((answer) => {
      if (answer === showLog) {
        this.log.show(true);
      } else if (answer === restart) {
        this.restart();
      }
    });
  }
}
