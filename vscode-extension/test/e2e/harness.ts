/**
 * The pieces of the end-to-end test that are not the scenario: a copy of the example project,
 * code-server with the packaged extension installed, and Chromium driving it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
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

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
