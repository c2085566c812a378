/**
 * The whole loop in real VS Code (code-server) with the packaged extension, on a copy of the
 * example project with the local target: the session comes up, a failing test shows in the
 * Test Explorer and as a problem at its line, the fix is typed and saved in the editor, and
 * the problem goes away on the next run. Every wait is on the page (or the disk), with a
 * timeout; the screenshots are for people, the assertions are on the DOM.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe } from "node:test";
import type { Browser } from "playwright-core";
import {
  CodeServer,
  QUIET_USER_SETTINGS,
  Steps,
  Workbench,
  freePort,
  launchBrowser,
  lineOf,
  replaceInFile,
  repoRoot,
  settings,
  waitUntil,
} from "./harness";

// The machine may be busy with other test suites: waits are generous, never fixed sleeps.
const SESSION_READY_MS = 240_000;
const TEST_RUN_MS = 180_000;
const UI_MS = 60_000;

// Each scenario has a folder of its own: they run one after the other, each cleaning its own.
const output = path.join(settings.output, "loop");
const screenshots = path.join(output, "screenshots");
// Outside the repository, so no .gitignore of the repository applies to the example's sync.
const workspace = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "podlink-e2e-")), "hello");
const testFile = path.join(workspace, "tests", "test_greeting.py");
const FAILING_ASSERT = 'assert greet("Ada") == "Hello, Grace!"';

function prepareWorkspace(): void {
  const example = path.join(repoRoot, "examples", "hello");
  fs.cpSync(example, workspace, {
    recursive: true,
    filter: (source) => !/(^|\/)(\.podlink|__pycache__|\.pytest_cache)(\/|$)/.test(path.relative(example, source)),
  });
  const config = path.join(workspace, "podlink.yaml");
  const python = JSON.stringify(settings.python);
  // The local target runs commands on this machine: use the repo's venv, which has pytest.
  replaceInFile(config, '["python3", "-m", "pytest", "-q"]', `[${python}, "-m", "pytest", "-q"]`);
  replaceInFile(config, '["python3", "-m", "app"]', `[${python}, "-m", "app"]`);
}

const steps = new Steps(output);
const step = steps.step.bind(steps);
let workbench: Workbench;

describe("podlink in real VS Code", { timeout: 20 * 60_000 }, () => {
  const codeServer = new CodeServer(output);
  let browser: Browser | undefined;
  let failingLine = 0;

  before(async () => {
    fs.rmSync(output, { recursive: true, force: true });
    fs.mkdirSync(screenshots, { recursive: true });
    prepareWorkspace();
    // Another suite may use the example's port 8000: give the app a free one.
    replaceInFile(path.join(workspace, "podlink.yaml"), 'PORT: "8000"', `PORT: "${String(await freePort())}"`);
    replaceInFile(testFile, 'assert greet("Ada") == "Hello, Ada!"', FAILING_ASSERT);
    failingLine = lineOf(testFile, FAILING_ASSERT);

    // A machine-overridable setting: code-server, a remote host, does not take it from the
    // user settings, so it goes where a project would keep it.
    fs.mkdirSync(path.join(workspace, ".vscode"), { recursive: true });
    fs.writeFileSync(path.join(workspace, ".vscode", "settings.json"), JSON.stringify({ "podlink.python": settings.python }, null, 2));
    codeServer.writeUserSettings(QUIET_USER_SETTINGS);
    await codeServer.installExtension(settings.vsix);
    await codeServer.start(workspace);
    browser = await launchBrowser();
    const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    page.setDefaultTimeout(UI_MS);
    workbench = new Workbench(page, screenshots);
    steps.workbench = workbench;
    await page.goto(codeServer.url(workspace));
    await page.locator(".monaco-workbench").waitFor({ state: "visible", timeout: 120_000 });
  });

  after(async () => {
    await browser?.close();
    await codeServer.stop();
    fs.rmSync(path.dirname(workspace), { recursive: true, force: true });
  });

  step("activates, starts the daemon and shows the session ready in the status bar", async () => {
    const ready = workbench.statusBarItem("podlink: local ready");
    // An error from podlink ends the wait early instead of after the whole timeout.
    const podlinkError = workbench.page
      .locator(".notifications-toasts .notification-toast", { has: workbench.page.locator(".codicon-error"), hasText: /podlink/ })
      .first();
    // Each racer settles as a value: the loser's later timeout must not become an unhandled rejection.
    const first = await Promise.race([
      ready.waitFor({ state: "visible", timeout: SESSION_READY_MS }).then(() => "ready" as const, () => "timed out" as const),
      podlinkError.waitFor({ state: "visible", timeout: SESSION_READY_MS }).then(() => "error" as const, () => "timed out" as const),
    ]);
    await workbench.screenshot("session-ready");
    assert.equal(first, "ready", first === "error" ? await podlinkError.innerText() : "");
    assert.match(await ready.innerText(), /local: ready/);
  });

  step("lists the example's tests in the Test Explorer", async () => {
    const page = workbench.page;
    await workbench.runCommand("Testing: Focus on Test Explorer View");
    const explorer = page.locator(".test-explorer");
    // The tree is the daemon's: the tests folder, the file, then the tests; open it down to them.
    for (const label of ["tests", "test_greeting.py"]) {
      const row = explorer.locator(".monaco-list-row").filter({ has: page.getByText(label, { exact: true }) }).first();
      await row.waitFor({ state: "visible", timeout: UI_MS });
      if ((await row.getAttribute("aria-expanded")) === "false") {
        await row.locator(".monaco-tl-twistie").click();
      }
    }
    for (const name of ["test_greets_by_name", "test_blank_name_greets_the_world", "test_shout_is_upper_case"]) {
      await explorer.getByText(name, { exact: true }).waitFor({ state: "visible" });
    }
    await workbench.screenshot("test-explorer");
  });

  step("runs the tests: the failing one is marked in the Test Explorer and in the Problems panel at its line", async () => {
    const page = workbench.page;
    await workbench.runCommand("Test: Run All Tests");
    await page.locator(".test-explorer .codicon-testing-failed-icon").first().waitFor({ state: "visible", timeout: TEST_RUN_MS });
    // The run has ended (its summary lost the spinner): two of three passed.
    await page
      .locator(".result-summary", { has: page.locator(".codicon-testing-failed-icon"), hasText: "2/3" })
      .waitFor({ state: "visible", timeout: TEST_RUN_MS });

    await page.locator('[id="status.problems"]').click();
    const problem = page.locator(".markers-panel .monaco-list-row", { hasText: "Hello, Grace" }).first();
    await problem.waitFor({ state: "visible", timeout: UI_MS });
    await workbench.screenshot("failing-test-problem");
    const problemText = await problem.innerText();
    assert.match(problemText, /podlink-test/);
    assert.match(problemText, new RegExp(`\\[Ln ${String(failingLine)}, Col \\d+\\]`));
    const fileRow = page.locator(".markers-panel .monaco-list-row", { hasText: "test_greeting.py" }).first();
    await fileRow.waitFor({ state: "visible" });
    assert.match(await fileRow.innerText(), /tests/);
  });

  step("shows the failure as a squiggle in the editor, where the fix is typed and saved", async () => {
    const page = workbench.page;
    await workbench.openFile("tests/test_greeting.py");
    const editor = page.locator(".editor-instance .monaco-editor").first();
    await editor.locator(".squiggly-error").first().waitFor({ state: "visible", timeout: UI_MS });
    await workbench.screenshot("squiggle-in-editor");

    // Replace the wrong expectation with the editor's find and replace widget, then save.
    await editor.locator(".view-lines").click();
    await page.keyboard.press("Control+H");
    const widget = page.locator(".editor-widget.find-widget");
    await widget.locator(".find-part textarea").fill("Grace");
    await widget.locator(".matchesCount", { hasText: /1 of 1/ }).waitFor({ state: "visible" });
    await widget.locator(".replace-part textarea").fill("Ada");
    await widget.getByRole("button", { name: /^Replace All/ }).click();
    await widget.locator(".matchesCount", { hasText: /No results/ }).waitFor({ state: "visible" });
    await widget.getByRole("button", { name: /^Close/ }).click();
    // A closed find widget stays in the page, hidden from assistive technology.
    await page.locator('.editor-widget.find-widget[aria-hidden="true"]').waitFor({ state: "attached" });
    await page.keyboard.press("Control+S");
    await waitUntil(
      "the fixed test file on disk",
      () => fs.readFileSync(testFile, "utf8").includes('assert greet("Ada") == "Hello, Ada!"'),
      UI_MS,
    );
    await page.locator(".tabs-container .tab.dirty").waitFor({ state: "detached" });
    await workbench.screenshot("fixed-and-saved");
  });

  step("runs the tests again with podlink's command: the problem disappears", async () => {
    const page = workbench.page;
    await workbench.runCommand("podlink: Run Tests");
    await page.locator(".markers-panel .monaco-list-row", { hasText: "Hello, Grace" }).waitFor({ state: "detached", timeout: TEST_RUN_MS });
    await page.getByText("No problems have been detected in the workspace.").waitFor({ state: "visible" });
    await page.locator(".test-explorer .codicon-testing-failed-icon").waitFor({ state: "detached", timeout: UI_MS });
    await page.locator(".test-explorer .codicon-testing-passed-icon").first().waitFor({ state: "visible" });
    await page
      .locator(".result-summary", { has: page.locator(".codicon-testing-passed-icon"), hasText: "3/3" })
      .waitFor({ state: "visible", timeout: TEST_RUN_MS });
    await workbench.screenshot("all-tests-pass");
  });

  step("shows the session, its app and its target in the podlink view", async () => {
    const page = workbench.page;
    await workbench.runCommand("podlink: Focus on Sessions View");
    const view = page.locator('[id="workbench.view.extension.podlink"]');
    await view.getByText("hello", { exact: true }).waitFor({ state: "visible" });
    await view.getByText("App: running").waitFor({ state: "visible" });
    await view.getByText("Target: local").waitFor({ state: "visible" });
    await workbench.screenshot("podlink-view");
  });

  step("debugs the app with podlink's own debug adapter: no other extension needed", async () => {
    // code-server has no Python Debugger extension here: podlink talks to debugpy itself.
    // Breakpoints and stepping are in debug.e2e.ts; this checks the local target attaches.
    const page = workbench.page;
    await workbench.runCommand("podlink: Debug");
    await page.locator(".debug-toolbar").waitFor({ state: "visible", timeout: SESSION_READY_MS });
    // Attached and running: the toolbar offers to pause.
    await page.locator(".debug-toolbar .codicon-debug-pause").waitFor({ state: "visible" });
    await workbench.runCommand("View: Show Run and Debug");
    // The exception filters debugpy announced in its answer to initialize: VS Code talks to it.
    await page.locator(".debug-breakpoints .monaco-list-row", { hasText: "User Uncaught Exceptions" }).waitFor({ state: "visible" });
    await workbench.screenshot("debug-attached");
  });
});
