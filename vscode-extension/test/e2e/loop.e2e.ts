/**
 * The whole loop in real VS Code (code-server) with the packaged extension, on a copy of the
 * example project with the local target: the session comes up, a failing test shows in the
 * Test Explorer and as a problem at its line, the fix is typed and saved in the editor, and
 * the problem goes away on the next run. Every wait is on the page (or the disk), with a
 * timeout; the screenshots are for people, the assertions are on the DOM.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { after, before, describe } from "node:test";
import { Scenario, Workbench, freePort, lineOf, replaceInFile, settings } from "./harness";

// The machine may be busy with other test suites: waits are generous, never fixed sleeps.
const SESSION_READY_MS = 240_000;
const TEST_RUN_MS = 180_000;
const UI_MS = 60_000;

const scenario = new Scenario("loop");
const workspace = scenario.workspace;
const testFile = path.join(workspace, "tests", "test_greeting.py");
const FAILING_ASSERT = 'assert greet("Ada") == "Hello, Grace!"';

function prepareWorkspace(): void {
  scenario.copyExample();
  const config = path.join(workspace, "podlink.yaml");
  const python = JSON.stringify(settings.python);
  // The local target runs commands on this machine: use the repo's venv, which has pytest.
  replaceInFile(config, '["python3", "-m", "pytest", "-q"]', `[${python}, "-m", "pytest", "-q"]`);
  replaceInFile(config, '["python3", "-m", "app"]', `[${python}, "-m", "app"]`);
}

const step = scenario.steps.step.bind(scenario.steps);
let workbench: Workbench;

describe("podlink in real VS Code", { timeout: 20 * 60_000 }, () => {
  let failingLine = 0;

  before(async () => {
    prepareWorkspace();
    // Another suite may use the example's port 8000: give the app a free one.
    replaceInFile(path.join(workspace, "podlink.yaml"), 'PORT: "8000"', `PORT: "${String(await freePort())}"`);
    replaceInFile(testFile, 'assert greet("Ada") == "Hello, Ada!"', FAILING_ASSERT);
    failingLine = lineOf(testFile, FAILING_ASSERT);
    workbench = await scenario.openWorkbench({ timeoutMs: UI_MS });
  });

  after(async () => {
    await scenario.close();
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
    // The tree is the daemon's: the tests folder, the file, then the tests; open it down to them.
    const explorer = await workbench.openTestExplorer(["tests", "test_greeting.py"], UI_MS);
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
    await workbench.testRunSummary("failed", "2/3").waitFor({ state: "visible", timeout: TEST_RUN_MS });

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
    await workbench.openFile("tests/test_greeting.py");
    await workbench.editor().locator(".squiggly-error").first().waitFor({ state: "visible", timeout: UI_MS });
    await workbench.screenshot("squiggle-in-editor");

    // Replace the wrong expectation with the editor's find and replace widget, then save.
    await workbench.replaceOnce("Grace", "Ada");
    await workbench.save(testFile, 'assert greet("Ada") == "Hello, Ada!"', UI_MS);
    await workbench.screenshot("fixed-and-saved");
  });

  step("runs the tests again with podlink's command: the problem disappears", async () => {
    const page = workbench.page;
    await workbench.runCommand("podlink: Run Tests");
    await page.locator(".markers-panel .monaco-list-row", { hasText: "Hello, Grace" }).waitFor({ state: "detached", timeout: TEST_RUN_MS });
    await page.getByText("No problems have been detected in the workspace.").waitFor({ state: "visible" });
    await page.locator(".test-explorer .codicon-testing-failed-icon").waitFor({ state: "detached", timeout: UI_MS });
    await page.locator(".test-explorer .codicon-testing-passed-icon").first().waitFor({ state: "visible" });
    await workbench.testRunSummary("passed", "3/3").waitFor({ state: "visible", timeout: TEST_RUN_MS });
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
