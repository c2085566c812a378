/**
 * The pieces of the end-to-end test that are not the scenario: a copy of the example project,
 * code-server with the packaged extension installed, Chromium driving it, and the moves a
 * person makes in the workbench. A scenario file holds only its own set-up and steps.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { it } from "node:test";
import { chromium, type Browser, type Locator, type Page } from "playwright-core";

export const extensionRoot = path.resolve(__dirname, "..", "..");
export const repoRoot = path.resolve(extensionRoot, "..");

function required(name: string, fallback?: string): string {
  const value = process.env[name] ?? fallback;
  if (!value) {
    throw new Error(`${name} is not set: scripts/vscode-test sets it`);
  }
  return value;
}

export const settings = {
  output: process.env.PODLINK_E2E_OUTPUT ?? path.join(extensionRoot, ".e2e-output"),
  vsix: process.env.PODLINK_VSIX ?? path.join(extensionRoot, "out", "podlink.vsix"),
  codeServer: (): string => required("PODLINK_CODE_SERVER"),
  python: process.env.PODLINK_PYTHON ?? path.join(repoRoot, ".venv", "bin", "python"),
  chromium: process.env.PODLINK_CHROMIUM ?? "/usr/bin/chromium",
};

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === "object") resolve(address.port);
        else reject(new Error("no port"));
      });
    });
  });
}

/** Replaces `before` (which must occur) in a file; a changed example fails here, loudly. */
export function replaceInFile(file: string, before: string, after: string): void {
  const text = fs.readFileSync(file, "utf8");
  if (!text.includes(before)) {
    throw new Error(`${file} no longer contains ${JSON.stringify(before)}: update the end-to-end test`);
  }
  fs.writeFileSync(file, text.replace(before, after));
}

export function lineOf(file: string, needle: string): number {
  const index = fs.readFileSync(file, "utf8").split("\n").findIndex((line) => line.includes(needle));
  if (index < 0) throw new Error(`${needle} is not in ${file}`);
  return index + 1;
}

/** Polls a condition that is not in the page (a file on disk, a port); fails after the timeout. */
export async function waitUntil(what: string, condition: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${String(timeoutMs)} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function runToEnd(command: string, args: string[], logFile: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      fs.writeFileSync(logFile, output);
      if (code === 0) resolve(output);
      else reject(new Error(`${command} ${args.join(" ")} exited with ${String(code)}:\n${output}`));
    });
  });
}

export class CodeServer {
  private process: ChildProcess | undefined;
  readonly userDataDir: string;
  readonly extensionsDir: string;
  port = 0;

  constructor(private readonly root: string) {
    this.userDataDir = path.join(root, "user-data");
    this.extensionsDir = path.join(root, "extensions");
  }

  private commonArgs(): string[] {
    return [
      "--config", path.join(this.root, "code-server.yaml"),
      "--user-data-dir", this.userDataDir,
      "--extensions-dir", this.extensionsDir,
    ];
  }

  writeUserSettings(values: Record<string, unknown>): void {
    const file = path.join(this.userDataDir, "User", "settings.json");
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, JSON.stringify(values, null, 2));
  }

  async installExtension(vsix: string): Promise<void> {
    const output = await runToEnd(
      settings.codeServer(),
      [...this.commonArgs(), "--install-extension", vsix],
      path.join(this.root, "install-extension.log"),
      180_000,
    );
    if (!/successfully installed/i.test(output)) {
      throw new Error(`code-server did not confirm the installation:\n${output}`);
    }
  }

  async start(workspace: string): Promise<void> {
    this.port = await freePort();
    const log = fs.openSync(path.join(this.root, "code-server.log"), "w");
    this.process = spawn(
      settings.codeServer(),
      [
        ...this.commonArgs(),
        "--auth", "none",
        "--bind-addr", `127.0.0.1:${String(this.port)}`,
        "--disable-telemetry",
        "--disable-update-check",
        "--disable-workspace-trust",
        workspace,
      ],
      // Its own process group, so stopping it also stops the extension host and the daemon.
      { stdio: ["ignore", log, log], detached: true },
    );
    const started = this.process;
    await waitUntil(
      "code-server to answer",
      async () => {
        if (started.exitCode !== null) throw new Error(`code-server exited with ${String(started.exitCode)}; see code-server.log`);
        try {
          const response = await fetch(`http://127.0.0.1:${String(this.port)}/healthz`);
          return response.ok;
        } catch {
          return false;
        }
      },
      90_000,
    );
  }

  url(workspace: string): string {
    return `http://127.0.0.1:${String(this.port)}/?folder=${encodeURIComponent(workspace)}`;
  }

  async stop(): Promise<void> {
    const child = this.process;
    if (!child?.pid || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {
      return;
    }
    const timeout = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), 15_000));
    if ((await Promise.race([exited, timeout])) === "timeout") {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
}

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: settings.chromium,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-dev-shm-usage",
    ],
  });
}

/** Drives the workbench the way a person does: the command palette, the keyboard, clicks. */
export class Workbench {
  private shotNumber = 0;

  constructor(
    readonly page: Page,
    private readonly screenshotDir: string,
  ) {}

  async screenshot(name: string): Promise<string> {
    this.shotNumber += 1;
    const file = path.join(this.screenshotDir, `${String(this.shotNumber).padStart(2, "0")}-${name}.png`);
    await this.page.screenshot({ path: file });
    return file;
  }

  /**
   * Rests the mouse on `target` until `shown` appears. A hover opens on the mouse entering an
   * element: when a view re-renders the row under a still mouse, no hover comes, so the mouse
   * leaves and enters again until one does.
   */
  async hoverUntilShown(target: Locator, shown: Locator, timeoutMs: number): Promise<void> {
    await waitUntil("a hover to show", async () => {
      await this.page.mouse.move(0, 0);
      await target.hover();
      return shown.waitFor({ state: "visible", timeout: 3_000 }).then(
        () => true,
        () => false,
      );
    }, timeoutMs);
  }

  /** Runs a command by its title from the command palette; `title` must match a row exactly. */
  async runCommand(title: string): Promise<void> {
    const input = this.page.locator(".quick-input-widget .quick-input-box input");
    await this.page.keyboard.press("Control+Shift+P");
    await input.waitFor({ state: "visible", timeout: 30_000 });
    await input.fill(`>${title}`);
    const row = this.page
      .locator(".quick-input-list .monaco-list-row")
      .filter({ has: this.page.locator(".label-name", { hasText: new RegExp(`^${escapeRegExp(title)}$`) }) })
      .first();
    await row.waitFor({ state: "visible", timeout: 30_000 });
    await row.click();
    await input.waitFor({ state: "hidden", timeout: 30_000 });
  }

  /** Opens a file of the workspace through Quick Open. */
  async openFile(relativePath: string): Promise<void> {
    const input = this.page.locator(".quick-input-widget .quick-input-box input");
    await this.page.keyboard.press("Control+P");
    await input.waitFor({ state: "visible", timeout: 30_000 });
    await input.fill(relativePath);
    const name = path.basename(relativePath);
    const row = this.page.locator(".quick-input-list .monaco-list-row", { hasText: name }).first();
    await row.waitFor({ state: "visible", timeout: 30_000 });
    await this.page.keyboard.press("Enter");
    await this.page.locator(`.tabs-container .tab[data-resource-name="${name}"]`).waitFor({ state: "visible", timeout: 30_000 });
  }

  statusBarItem(labelStart: string): Locator {
    return this.page.locator(`#workbench\\.parts\\.statusbar [aria-label^="${labelStart}"]`).first();
  }

  /** The editor of the active tab. */
  editor(): Locator {
    return this.page.locator(".editor-instance .monaco-editor").first();
  }

  /**
   * Replaces `find`, which must occur exactly once in the active editor, with the editor's find
   * and replace widget, and closes the widget. The file is left unsaved: see `save`.
   */
  async replaceOnce(find: string, replacement: string): Promise<void> {
    await this.editor().locator(".view-lines").click();
    await this.page.keyboard.press("Control+H");
    const widget = this.page.locator(".editor-widget.find-widget");
    await widget.locator(".find-part textarea").fill(find);
    await widget.locator(".matchesCount", { hasText: /1 of 1/ }).waitFor({ state: "visible" });
    await widget.locator(".replace-part textarea").fill(replacement);
    await widget.getByRole("button", { name: /^Replace All/ }).click();
    await widget.locator(".matchesCount", { hasText: /No results/ }).waitFor({ state: "visible" });
    await widget.getByRole("button", { name: /^Close/ }).click();
    // A closed find widget stays in the page, hidden from assistive technology.
    await this.page.locator('.editor-widget.find-widget[aria-hidden="true"]').waitFor({ state: "attached" });
  }

  /** Saves the active editor and waits until `file` on disk holds `savedText` and no tab is unsaved. */
  async save(file: string, savedText: string, timeoutMs: number): Promise<void> {
    await this.page.keyboard.press("Control+S");
    await waitUntil(`${file} saved with ${JSON.stringify(savedText)}`, () => fs.readFileSync(file, "utf8").includes(savedText), timeoutMs);
    await this.page.locator(".tabs-container .tab.dirty").waitFor({ state: "detached" });
  }

  /**
   * The Test Explorer's summary of the last run once it has ended (the spinner gives way to the
   * outcome's icon), with `passedOfAll` such as "2/3".
   */
  testRunSummary(outcome: "passed" | "failed", passedOfAll: string): Locator {
    return this.page.locator(".result-summary", { has: this.page.locator(`.codicon-testing-${outcome}-icon`), hasText: passedOfAll });
  }

  /**
   * Shows the Test Explorer and opens its tree along `folders` (each row's label, from the top),
   * waiting up to `timeoutMs` for each row: the tree is the daemon's and fills in as it collects.
   */
  async openTestExplorer(folders: string[], timeoutMs: number): Promise<Locator> {
    await this.runCommand("Testing: Focus on Test Explorer View");
    const explorer = this.page.locator(".test-explorer");
    for (const label of folders) {
      const row = explorer.locator(".monaco-list-row").filter({ has: this.page.getByText(label, { exact: true }) }).first();
      await row.waitFor({ state: "visible", timeout: timeoutMs });
      if ((await row.getAttribute("aria-expanded")) === "false") {
        await row.locator(".monaco-tl-twistie").click();
      }
    }
    return explorer;
  }
}

/** The user settings every scenario starts from: nothing pops up that a person did not ask for. */
export const QUIET_USER_SETTINGS: Record<string, unknown> = {
  "workbench.startupEditor": "none",
  "workbench.tips.enabled": false,
  "workbench.enableExperiments": false,
  "workbench.welcomePage.walkthroughs.openOnInstall": false,
  "security.workspace.trust.enabled": false,
  "extensions.autoCheckUpdates": false,
  "extensions.autoUpdate": false,
  "extensions.ignoreRecommendations": true,
  "update.mode": "none",
  "telemetry.telemetryLevel": "off",
  "testing.automaticallyOpenPeekView": "never",
  "testing.automaticallyOpenTestResults": "neverOpen",
  "files.autoSave": "off",
  "chat.disableAIFeatures": true,
};

/**
 * A scenario's steps build on each other: after a failure the rest are skipped rather than
 * left to time out. A failing step says what the extension logged, which is where the reason
 * usually is, and leaves a screenshot.
 */
export class Steps {
  private failed = false;
  workbench: Workbench | undefined;

  /** `root` is the code-server folder of the scenario (its user data holds the logs). */
  constructor(private readonly root: string) {}

  step(name: string, body: () => Promise<void>): void {
    it(name, async (context) => {
      if (this.failed) {
        context.skip("an earlier step failed");
        return;
      }
      try {
        await body();
      } catch (error) {
        this.failed = true;
        await this.workbench?.screenshot("failed").catch(() => undefined);
        const log = this.extensionLog();
        const tail = log ? fs.readFileSync(log, "utf8").split("\n").slice(-40).join("\n") : "(no extension log found)";
        const message = error instanceof Error ? error.message : String(error);
        throw new Error(`${message}\n--- the extension's log (${log ?? "missing"}), last lines:\n${tail}`, { cause: error });
      }
    });
  }

  /** The podlink extension's log file of the latest window, if there is one yet. */
  extensionLog(): string | undefined {
    const logs = path.join(this.root, "user-data", "logs");
    if (!fs.existsSync(logs)) return undefined;
    const found = fs
      .readdirSync(logs, { recursive: true, encoding: "utf8" })
      .filter((file) => file.endsWith(path.join("podlink.podlink", "podlink.log")))
      .sort();
    const last = found.pop();
    return last === undefined ? undefined : path.join(logs, last);
  }
}

/**
 * What every scenario sets up around its steps: a folder of its own under the output
 * (code-server's data and logs, the screenshots), a copy of the example project, and the
 * workbench open on that copy in code-server with the packaged extension, in Chromium. The
 * scenarios run one after the other, each cleaning its own folder.
 */
export class Scenario {
  readonly output: string;
  readonly screenshots: string;
  /**
   * Where `copyExample` puts the example: outside the repository, so no .gitignore of the
   * repository applies to the example's sync.
   */
  readonly workspace: string;
  readonly steps: Steps;
  private readonly codeServer: CodeServer;
  private browser: Browser | undefined;

  constructor(name: string) {
    this.output = path.join(settings.output, name);
    this.screenshots = path.join(this.output, "screenshots");
    this.workspace = path.join(fs.mkdtempSync(path.join(os.tmpdir(), `podlink-e2e-${name}-`)), "hello");
    this.steps = new Steps(this.output);
    this.codeServer = new CodeServer(this.output);
  }

  /** Copies examples/hello to `workspace`, without podlink's state or Python's caches. */
  copyExample(): void {
    const example = path.join(repoRoot, "examples", "hello");
    fs.cpSync(example, this.workspace, {
      recursive: true,
      filter: (source) => !/(^|\/)(\.podlink|__pycache__|\.pytest_cache)(\/|$)/.test(path.relative(example, source)),
    });
  }

  /**
   * Opens `workspace` in code-server with the packaged extension installed, in Chromium, and
   * waits for the workbench. `userSettings` go over QUIET_USER_SETTINGS; every wait on the page
   * that names no timeout takes `timeoutMs`.
   */
  async openWorkbench(options: { userSettings?: Record<string, unknown>; timeoutMs: number }): Promise<Workbench> {
    fs.rmSync(this.output, { recursive: true, force: true });
    fs.mkdirSync(this.screenshots, { recursive: true });
    // A machine-overridable setting: code-server, a remote host, does not take it from the
    // user settings, so it goes where a project would keep it.
    fs.mkdirSync(path.join(this.workspace, ".vscode"), { recursive: true });
    fs.writeFileSync(path.join(this.workspace, ".vscode", "settings.json"), JSON.stringify({ "podlink.python": settings.python }, null, 2));
    this.codeServer.writeUserSettings({ ...QUIET_USER_SETTINGS, ...options.userSettings });
    await this.codeServer.installExtension(settings.vsix);
    await this.codeServer.start(this.workspace);
    this.browser = await launchBrowser();
    const page = await this.browser.newPage({ viewport: { width: 1600, height: 1000 } });
    page.setDefaultTimeout(options.timeoutMs);
    const workbench = new Workbench(page, this.screenshots);
    this.steps.workbench = workbench;
    await page.goto(this.codeServer.url(this.workspace));
    await page.locator(".monaco-workbench").waitFor({ state: "visible", timeout: 120_000 });
    return workbench;
  }

  /** Closes what `openWorkbench` started, as far as it got, and removes the example's copy. */
  async close(): Promise<void> {
    await this.browser?.close();
    await this.codeServer.stop();
    fs.rmSync(path.dirname(this.workspace), { recursive: true, force: true });
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
