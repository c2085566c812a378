/**
 * The Test Explorer: tests from `podlink/discoverTests`, runs through `podlink/runTests` with
 * results streamed from `podlink/testResult`. Failures also arrive as diagnostics, which the
 * language client puts in the Problems panel by itself. The Debug profile runs the chosen
 * tests under debugpy through `podlink/debugTests`, attaches the debugger, and takes the
 * totals from `podlink/testRunFinished`.
 */
import * as path from "node:path";
import * as vscode from "vscode";
import type { Daemon } from "./daemon";
import { describeError } from "./errors";
import type { Location, RunTestsResult, Session, TestItem, TestResultParams } from "./protocol";
import { KeyedDebouncer } from "./restartPolicy";
import type { Sessions } from "./sessions";
import { folderKey } from "./sessionStore";
import type { PodlinkSettings } from "./settings";
import { isTestFile, selectTestIds, summaryLine, testUpdate, toTerminalText } from "./testModel";

const REDISCOVER_DEBOUNCE_MS = 800;

interface ItemData {
  folder: string;
  testId: string;
}

export class Testing implements vscode.Disposable {
  readonly controller: vscode.TestController;
  private readonly itemData = new WeakMap<vscode.TestItem, ItemData>();
  /** folderKey → the protocol ids of that folder's items, to find an item from a result. */
  private readonly itemsByFolder = new Map<string, Map<string, vscode.TestItem>>();
  private readonly runListeners = new Map<string, (result: TestResultParams) => void>();
  /** Debugged runs waiting for their totals, by run id. */
  private readonly runsFinishing = new Map<string, (summary: RunTestsResult) => void>();
  private readonly discovered = new Set<string>();
  private readonly rediscover: KeyedDebouncer<string>;
  private readonly disposables: { dispose(): unknown }[] = [];
  private runCounter = 0;

  constructor(
    private readonly daemon: Daemon,
    private readonly sessions: Sessions,
    private readonly log: vscode.LogOutputChannel,
    private readonly settings: () => PodlinkSettings,
    /** Attaches the debugger to a run that waits for it; false when it could not. */
    private readonly attachDebugger: (session: Session, configuration: Record<string, unknown>, runId: string) => Promise<boolean>,
  ) {
    this.controller = vscode.tests.createTestController("podlink", "podlink");
    this.controller.refreshHandler = async () => {
      await Promise.all(this.sessions.store.live().map((session) => this.discover(session)));
    };
    this.controller.createRunProfile("Run in the target", vscode.TestRunProfileKind.Run, (request, token) =>
      this.run(request, token, false), true);
    // pytest itself runs under the debugger: breakpoints hit in tests and in the app code they call.
    this.controller.createRunProfile("Debug in the target", vscode.TestRunProfileKind.Debug, (request, token) =>
      this.run(request, token, true), true);
    this.rediscover = new KeyedDebouncer(REDISCOVER_DEBOUNCE_MS, (folder) => {
      const session = this.sessions.store.forFolder(folder);
      if (session && session.state !== "stopped") void this.discover(session);
    });
    daemon.onNotification("podlink/testResult", (result) => this.runListeners.get(result.runId)?.(result));
    daemon.onNotification("podlink/testRunFinished", (summary) => this.runsFinishing.get(summary.runId)?.(summary));
    const watcher = vscode.workspace.createFileSystemWatcher("**/{test_*.py,*_test.py,conftest.py}", false, true, false);
    this.disposables.push(
      this.controller,
      watcher,
      watcher.onDidCreate((uri) => this.testFileChanged(uri)),
      watcher.onDidDelete((uri) => this.testFileChanged(uri)),
      vscode.workspace.onDidSaveTextDocument((document) => this.testFileChanged(document.uri)),
      sessions.store.onDidChange(() => this.sessionsChanged()),
    );
  }

  dispose(): void {
    this.rediscover.cancelAll();
    for (const disposable of this.disposables) disposable.dispose();
  }

  /** Run every test of a session (the Run Tests command), shown in the Test Explorer. */
  async runAll(session: Session): Promise<void> {
    const root = this.controller.items.get(this.rootId(session.folder));
    const request = new vscode.TestRunRequest(root ? [root] : undefined);
    const cancellation = new vscode.CancellationTokenSource();
    try {
      await this.run(request, cancellation.token, false, session);
    } finally {
      cancellation.dispose();
    }
  }

  private testFileChanged(uri: vscode.Uri): void {
    if (!this.settings()["testing.rediscoverOnSave"] || uri.scheme !== "file") return;
    for (const session of this.sessions.store.live()) {
      const folder = folderKey(session.folder);
      const relative = path.relative(folder, uri.fsPath);
      if (!relative.startsWith("..") && !path.isAbsolute(relative) && isTestFile(relative)) {
        this.rediscover.trigger(session.folder);
      }
    }
  }

  private sessionsChanged(): void {
    const live = this.sessions.store.live();
    const liveFolders = new Set(live.map((session) => folderKey(session.folder)));
    for (const session of live) {
      const key = folderKey(session.folder);
      if (session.state === "ready" && !this.discovered.has(key)) {
        this.discovered.add(key);
        void this.discover(session);
      }
    }
    // A folder whose session went away keeps its tests visible but can be rediscovered later.
    for (const key of [...this.discovered]) {
      if (!liveFolders.has(key)) this.discovered.delete(key);
    }
  }

  private rootId(folderUri: string): string {
    return `folder:${folderKey(folderUri)}`;
  }

  async discover(session: Session): Promise<void> {
    let tests: TestItem[];
    try {
      ({ tests } = await this.daemon.request("podlink/discoverTests", { sessionId: session.id }));
    } catch (error) {
      this.log.warn(`could not collect the tests of ${session.folder}: ${describeError(error).message}`);
      return;
    }
    const key = folderKey(session.folder);
    const byId = new Map<string, vscode.TestItem>();
    const make = (test: TestItem): vscode.TestItem => {
      const uri = test.uri ? vscode.Uri.parse(test.uri) : undefined;
      const item = this.controller.createTestItem(`${key}::${test.id}`, test.label, uri);
      if (test.range) {
        item.range = new vscode.Range(test.range.start.line, test.range.start.character, test.range.end.line, test.range.end.character);
      }
      this.itemData.set(item, { folder: key, testId: test.id });
      byId.set(test.id, item);
      item.children.replace((test.children ?? []).map(make));
      return item;
    };
    const folderItems = tests.map(make);
    this.itemsByFolder.set(key, byId);
    const workspaceFolders = vscode.workspace.workspaceFolders ?? [];
    if (workspaceFolders.length > 1) {
      // With several folders the tree starts with one node per folder.
      const root = this.controller.createTestItem(this.rootId(session.folder), path.basename(key), vscode.Uri.file(key));
      root.children.replace(folderItems);
      this.controller.items.add(root);
    } else {
      this.controller.items.replace(folderItems);
    }
    this.log.info(`collected ${String(byId.size)} test items in ${key}`);
  }

  private sessionFor(item: vscode.TestItem): Session | undefined {
    const data = this.itemData.get(item);
    const folder = data?.folder ?? (item.id.startsWith("folder:") ? item.id.slice("folder:".length) : undefined);
    return folder === undefined ? undefined : this.sessions.store.forFolder(vscode.Uri.file(folder).toString());
  }

  private leaves(item: vscode.TestItem): vscode.TestItem[] {
    if (item.children.size === 0) return [item];
    const found: vscode.TestItem[] = [];
    item.children.forEach((child) => found.push(...this.leaves(child)));
    return found;
  }

  private async run(
    request: vscode.TestRunRequest,
    token: vscode.CancellationToken,
    debug: boolean,
    onlySession?: Session,
  ): Promise<void> {
    // Group what to run by session: each session gets one runTests request.
    const groups = new Map<string, { session: Session; include: vscode.TestItem[] | undefined }>();
    if (request.include) {
      for (const item of request.include) {
        const session = this.sessionFor(item);
        if (!session) continue;
        const group = groups.get(session.id) ?? { session, include: [] };
        if (item.id.startsWith("folder:")) {
          group.include = undefined; // the whole folder
        } else {
          group.include?.push(item);
        }
        groups.set(session.id, group);
      }
    } else {
      for (const session of onlySession ? [onlySession] : this.sessions.store.live()) {
        groups.set(session.id, { session, include: undefined });
      }
    }
    if (groups.size === 0) {
      void vscode.window.showInformationMessage("No podlink session to run tests in: start one first.");
      return;
    }
    const run = this.controller.createTestRun(request, debug ? "podlink (debug)" : "podlink", true);
    try {
      for (const { session, include } of groups.values()) {
        if (token.isCancellationRequested) break;
        await this.runInSession(run, session, include, request.exclude ?? [], token, debug);
      }
    } finally {
      run.end();
    }
  }

  private async runInSession(
    run: vscode.TestRun,
    session: Session,
    include: vscode.TestItem[] | undefined,
    exclude: readonly vscode.TestItem[],
    token: vscode.CancellationToken,
    debug: boolean,
  ): Promise<void> {
    const key = folderKey(session.folder);
    const byId = this.itemsByFolder.get(key) ?? new Map<string, vscode.TestItem>();
    const dataOf = (item: vscode.TestItem) => this.itemData.get(item)?.testId;
    const childrenOf = (id: string): string[] => {
      const item = byId.get(id);
      const children: string[] = [];
      item?.children.forEach((child) => {
        const childId = dataOf(child);
        if (childId) children.push(childId);
      });
      return children;
    };
    const allLeaves = [...byId.entries()].filter(([, item]) => item.children.size === 0).map(([id]) => id);
    const ids = selectTestIds(
      allLeaves,
      include?.map(dataOf).filter((id): id is string => id !== undefined),
      exclude.map(dataOf).filter((id): id is string => id !== undefined),
      childrenOf,
    );
    const enqueued = (ids ?? allLeaves).flatMap((id) => {
      const item = byId.get(id);
      return item ? this.leaves(item) : [];
    });
    enqueued.forEach((item) => run.enqueued(item));

    this.runCounter += 1;
    const runId = `vscode-${String(process.pid)}-${String(this.runCounter)}-${Date.now().toString(36)}`;
    let unknownResults = 0;
    const reported = new Set<vscode.TestItem>();
    this.runListeners.set(runId, (result) => {
      const item = byId.get(result.id);
      const update = testUpdate(result);
      if (!item) {
        unknownResults += 1;
        if (update.output) run.appendOutput(update.output);
        return;
      }
      if (update.output) {
        run.appendOutput(update.output, undefined, item);
      }
      // A file skipped as a whole (pytest.importorskip) reports under the file's own id: its
      // tests, when the tree has any, show that skip.
      for (const leaf of this.leaves(item)) {
        reported.add(leaf);
        leaf.description = update.badge;
        switch (update.state) {
          case "passed":
            run.passed(leaf, update.durationMs);
            break;
          case "skipped":
            run.skipped(leaf);
            break;
          case "failed":
          case "errored": {
            const model = update.message ?? { text: update.outcome };
            const message = model.expectedActual
              ? vscode.TestMessage.diff(model.text, model.expectedActual.expected, model.expectedActual.actual)
              : new vscode.TestMessage(model.text);
            if (model.location) message.location = toVscodeLocation(model.location);
            if (update.state === "failed") run.failed(leaf, message, update.durationMs);
            else run.errored(leaf, message, update.durationMs);
            break;
          }
        }
      }
    });
    const cancellation = token.onCancellationRequested(() => {
      void this.daemon.request("podlink/cancelTests", { runId }).catch(() => undefined);
    });
    try {
      enqueued.forEach((item) => run.started(item));
      const params = { sessionId: session.id, runId, ...(ids ? { ids } : {}) };
      const summary = debug
        ? await this.debugRun(session, params, token)
        : await this.daemon.request("podlink/runTests", params);
      if (summary.problem) run.appendOutput(toTerminalText(`podlink: ${summary.problem}`));
      run.appendOutput(toTerminalText(summaryLine(summary)));
      this.log.info(`tests in ${key}: ${summaryLine(summary)}`);
    } catch (error) {
      const described = describeError(error);
      run.appendOutput(toTerminalText(`podlink: ${described.message}`));
      for (const item of enqueued.filter((each) => !reported.has(each))) {
        run.errored(item, new vscode.TestMessage(described.message));
      }
      if (!token.isCancellationRequested) {
        void vscode.window.showErrorMessage(`podlink could not run the tests: ${described.message}`);
      }
    } finally {
      cancellation.dispose();
      this.runListeners.delete(runId);
    }
    if (unknownResults > 0) {
      // The run found tests the tree does not have yet.
      this.rediscover.trigger(session.folder);
    }
  }

  /** Start the run under debugpy, attach the debugger, and wait for the run's totals. */
  private async debugRun(
    session: Session,
    params: { sessionId: string; runId: string; ids?: string[] },
    token: vscode.CancellationToken,
  ): Promise<RunTestsResult> {
    // Listening before the request: a run can end right after its debugger attached.
    const finished = new Promise<RunTestsResult>((resolve) => this.runsFinishing.set(params.runId, resolve));
    try {
      const { configuration } = await this.daemon.request("podlink/debugTests", params, token);
      if (!(await this.attachDebugger(session, configuration, params.runId))) {
        await this.daemon.request("podlink/cancelTests", { runId: params.runId });
        throw new Error("the debugger did not start, so the run was cancelled");
      }
      return await finished;
    } finally {
      this.runsFinishing.delete(params.runId);
    }
  }
}

function toVscodeLocation(location: Location): vscode.Location {
  const { start, end } = location.range;
  return new vscode.Location(
    vscode.Uri.parse(location.uri),
    new vscode.Range(start.line, start.character, end.line, end.character),
  );
}
