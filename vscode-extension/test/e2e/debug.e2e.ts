/**
 * Breakpoints in real VS Code (code-server, no Python Debugger extension) on the Docker
 * target: a breakpoint set by clicking the gutter stops the app running in a container, the
 * editor shows where and what, stepping and continuing work, and after a saved change restarts
 * the app the same breakpoint stops the editor again with no user action. Needs the Docker
 * Engine and the test image of scripts/docker-env. Every wait is on the page, the disk or the
 * app, with a timeout; the screenshots are for people, the assertions are on the DOM.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe } from "node:test";
import type { Locator } from "playwright-core";
import { Scenario, Workbench, freePort, lineOf, waitUntil } from "./harness";

const TEST_IMAGE = process.env.PODLINK_TEST_IMAGE ?? "podlink-test-python:bookworm";
const SESSION_READY_MS = 240_000;
const STOP_MS = 90_000;
const UI_MS = 60_000;

const scenario = new Scenario("debug");
const workspace = scenario.workspace;
const greetingFile = path.join(workspace, "app", "greeting.py");
// The first line of greet(): `name` is known there, `cleaned` one step over later.
const BREAKPOINT_NEEDLE = "cleaned = name.strip()";
const testFile = path.join(workspace, "tests", "test_greeting.py");
// In the test that fails once the app says Howdy (the save below makes it so).
const TEST_BREAKPOINT_NEEDLE = 'assert greet("Ada") == "Hello, Ada!"';
const container = `podlink-e2e-debug-${String(process.pid)}`;

const step = scenario.steps.step.bind(scenario.steps);
let workbench: Workbench;
let appPort = 0;

function docker(...args: string[]): string {
  return execFileSync("docker", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function prepareWorkspace(): void {
  scenario.copyExample();
  fs.writeFileSync(
    path.join(workspace, "podlink.yaml"),
    [
      "version: 1",
      "target:",
      "  docker:",
      `    container: ${container}`,
      "sync:",
      "  - local: .",
      "    remote: /app",
      "    mode: upload",
      "run:",
      '  command: ["python3", "-m", "app"]',
      "  restart: on-sync",
      '  env: {PORT: "8000"}',
      "test:",
      '  command: ["python3", "-m", "pytest", "-q"]',
      `ports: ["${String(appPort)}:8000"]`,
      "",
    ].join("\n"),
  );
}

/** One request to the app through podlink's forward: its body, or why there is none. */
async function greeting(name: string, timeoutMs: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${String(appPort)}/?name=${encodeURIComponent(name)}`, {
    signal: AbortSignal.timeout(timeoutMs),
  });
  return response.text();
}

describe("breakpoints in real VS Code on a Docker target", { timeout: 20 * 60_000 }, () => {
  let breakpointLine = 0;
  // The request stopped at the breakpoint; it completes once the editor continues.
  let stoppedRequest: Promise<string> | undefined;

  before(async () => {
    appPort = await freePort();
    prepareWorkspace();
    breakpointLine = lineOf(greetingFile, BREAKPOINT_NEEDLE);
    docker("run", "-d", "--rm", "--init", "--name", container, "--label", "podlink.test=1", TEST_IMAGE, "sleep", "infinity");
    workbench = await scenario.openWorkbench({ userSettings: { "debug.openDebug": "openOnDebugBreak" }, timeoutMs: UI_MS });
  });

  after(async () => {
    await scenario.close();
    try {
      docker("rm", "-f", container);
    } catch {
      // never started, or already gone
    }
  });

  /** Sets a breakpoint at `line` of the open file by clicking the gutter beside it. */
  async function clickGutter(line: number): Promise<void> {
    const page = workbench.page;
    const number = lineNumber(line);
    await number.waitFor({ state: "visible" });
    const numberBox = await number.boundingBox();
    const glyphMargin = await page.locator(".editor-instance .monaco-editor .glyph-margin").first().boundingBox();
    assert.ok(numberBox && glyphMargin, "the editor's gutter is not on the page");
    // The breakpoint column is the glyph margin, left of the line numbers, on the same row.
    const x = glyphMargin.x + glyphMargin.width / 2;
    const y = numberBox.y + numberBox.height / 2;
    await page.mouse.move(x, y);
    await page.mouse.click(x, y);
    const glyph = page.locator(".editor-instance .monaco-editor .codicon-debug-breakpoint").first();
    await glyph.waitFor({ state: "visible" });
    // It sits on the line clicked: the glyph and the line number share a row.
    await assertSameRow(glyph, number, "the breakpoint");
  }

  /** The editor's line `line` of the open file, by its line number in the gutter. */
  function lineNumber(line: number): Locator {
    return workbench.page
      .locator(".editor-instance .monaco-editor .margin-view-overlays .line-numbers")
      .filter({ hasText: new RegExp(`^${String(line)}$`) })
      .first();
  }

  /**
   * Sends requests to the app, one at a time, until one stops at the breakpoint: a request
   * answered before the debugger attached (the app restarts under debugpy first) is retried.
   */
  async function requestUntilStopped(name: string): Promise<void> {
    const page = workbench.page;
    const stoppedFrame = page.locator(".editor-instance .monaco-editor .codicon-debug-stackframe");
    const deadline = Date.now() + STOP_MS;
    for (;;) {
      const request = greeting(name, STOP_MS);
      const settled = request.then(
        (body) => `answered ${body}`,
        (error: unknown) => `failed ${String(error)}`,
      );
      // Until this request is answered (then another is sent) or the editor stops.
      for (;;) {
        const outcome = await Promise.race([
          settled,
          stoppedFrame.waitFor({ state: "visible", timeout: 1_000 }).then(
            () => "stopped",
            () => "waiting",
          ),
        ]);
        if (outcome === "stopped") {
          stoppedRequest = request;
          return;
        }
        if (Date.now() > deadline) throw new Error(`the breakpoint never stopped the editor; the last request: ${outcome}`);
        if (outcome !== "waiting") break;
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  /** The editor is stopped at the breakpoint in greet(): toolbar, line, frame, a local. */
  async function assertStoppedAtBreakpoint(shot: string): Promise<void> {
    const page = workbench.page;
    await page.locator(".debug-toolbar").waitFor({ state: "visible" });
    await page.locator(".debug-toolbar .codicon-debug-continue").waitFor({ state: "visible" });
    // The stopped line is highlighted in the editor, at the breakpoint's line.
    await page.locator(`.tabs-container .tab.active[data-resource-name="greeting.py"]`).waitFor({ state: "visible" });
    const highlighted = page.locator(".editor-instance .monaco-editor .debug-top-stack-frame-line").first();
    await highlighted.waitFor({ state: "visible" });
    await assertSameRow(highlighted, lineNumber(breakpointLine), "the highlighted line");
    await assertTopFrameAt(breakpointLine);

    await expand(page.locator(".debug-variables .monaco-list-row", { hasText: /^\s*Locals\s*$/ }).first());
    const nameVariable = page.locator(".debug-variables .monaco-list-row", { hasText: /^\s*name\s*=/ }).first();
    await nameVariable.waitFor({ state: "visible" });
    // textContent: innerText would fold the spaces the value starts with.
    assert.match((await nameVariable.textContent()) ?? "", /name\s*=\s*' {2}Ada '/);
    await workbench.screenshot(shot);
  }

  async function assertSameRow(found: Locator, line: Locator, what: string): Promise<void> {
    const [foundBox, lineBox] = [await found.boundingBox(), await line.boundingBox()];
    assert.ok(foundBox && lineBox, `${what} or its line number is not on the page`);
    const middle = foundBox.y + foundBox.height / 2;
    assert.ok(Math.abs(middle - (lineBox.y + lineBox.height / 2)) < lineBox.height / 2, `${what} is not on its line`);
  }

  /** Opens a tree row (a thread, a scope) the way a person does, if it is closed. */
  async function expand(row: Locator): Promise<void> {
    await row.waitFor({ state: "visible" });
    if ((await row.getAttribute("aria-expanded")) === "false") {
      await row.locator(".monaco-tl-twistie").click();
    }
    await row.and(workbench.page.locator('[aria-expanded="true"]')).waitFor({ state: "visible" });
  }

  /** The Call Stack's frame of the stopped thread is greet() at `line` of the local greeting.py. */
  async function assertTopFrameAt(line: number): Promise<void> {
    const page = workbench.page;
    // The view may open on the stop with the thread still closed.
    await expand(page.locator(".debug-call-stack .monaco-list-row", { hasText: /paused on breakpoint|paused on step/i }).first());
    const frame = page
      .locator(".debug-call-stack .monaco-list-row")
      .filter({ has: page.locator(".stack-frame .expression", { hasText: /^greet$/ }) })
      .first();
    await frame.locator(".line-number", { hasText: new RegExp(`^${String(line)}:`) }).waitFor({ state: "visible" });
    // The frame's source is the local file, mapped back from /app in the container: its
    // hover says where.
    const hover = page.locator(".workbench-hover, .monaco-hover", { hasText: "greeting.py" }).first();
    await workbench.hoverUntilShown(frame.locator(".file"), hover, UI_MS);
    const title = (await hover.textContent()) ?? "";
    assert.ok(title.includes(path.join("hello", "app", "greeting.py")), `the frame's source is ${JSON.stringify(title)}`);
    assert.ok(!title.trim().startsWith("/app/"), `the frame's source is the container's path ${title}`);
    await page.mouse.move(0, 0);
    await hover.waitFor({ state: "hidden" });
  }

  step("starts the Docker session", async () => {
    const ready = workbench.statusBarItem(`podlink: ${container} ready`);
    await ready.waitFor({ state: "visible", timeout: SESSION_READY_MS });
    await waitUntil("the app to answer through the forward", async () => {
      try {
        return (await greeting("world", 2_000)).includes("Hello, world!");
      } catch {
        return false;
      }
    }, SESSION_READY_MS);
    await workbench.screenshot("docker-session-ready");
  });

  step("sets a breakpoint by clicking the gutter at a line of the app's file", async () => {
    await workbench.openFile("app/greeting.py");
    await clickGutter(breakpointLine);
    await workbench.screenshot("breakpoint-in-gutter");
  });

  step('"podlink: Debug" stops the editor at the breakpoint when the app in the container reaches it', async () => {
    await workbench.runCommand("podlink: Debug");
    await requestUntilStopped("  Ada ");
    await assertStoppedAtBreakpoint("stopped-at-breakpoint");
  });

  step("steps over: the next line, with the new local in the Variables view", async () => {
    const page = workbench.page;
    await page.locator(".debug-toolbar .codicon-debug-step-over").click();
    await assertTopFrameAt(breakpointLine + 1);
    const cleaned = page.locator(".debug-variables .monaco-list-row", { hasText: /^\s*cleaned\s*=/ }).first();
    await cleaned.waitFor({ state: "visible" });
    assert.match((await cleaned.textContent()) ?? "", /cleaned\s*=\s*'Ada'/);
    await workbench.screenshot("stepped-over");
  });

  step("continues: the app answers the request that stopped", async () => {
    const page = workbench.page;
    await page.locator(".debug-toolbar .codicon-debug-continue").click();
    assert.ok(stoppedRequest, "no request stopped");
    assert.equal(await stoppedRequest, '{"message": "Hello, Ada!"}');
    await page.locator(".editor-instance .monaco-editor .codicon-debug-stackframe").waitFor({ state: "detached" });
    // Still attached, running: the toolbar offers to pause.
    await page.locator(".debug-toolbar .codicon-debug-pause").waitFor({ state: "visible" });
    await workbench.screenshot("continued");
  });

  step("a saved change restarts the app under debugpy and the same breakpoint stops the editor again", async () => {
    const page = workbench.page;
    await workbench.replaceOnce("Hello", "Howdy");
    await workbench.save(greetingFile, "Howdy", UI_MS);
    // The restarted app says Howdy once it runs; a request answered by the old one is retried.
    await requestUntilStopped("  Ada ");
    await assertStoppedAtBreakpoint("stopped-again-after-save");
    // The editor says what happened: the restart, and the new attach.
    await page.locator(".repl .monaco-list-row", { hasText: "the app restarted; the debugger attached to it again" }).first().waitFor({ state: "visible" });
    await page.locator(".debug-toolbar .codicon-debug-continue").click();
    assert.equal(await stoppedRequest, '{"message": "Howdy, Ada!"}');
  });
  step("debugs a failing test from the Test Explorer: the editor stops inside the test", async () => {
    const page = workbench.page;
    // The app's debug session ends first, so the toolbar is the test run's alone.
    await page.locator(".debug-toolbar .codicon-debug-disconnect, .debug-toolbar .codicon-debug-stop").first().click();
    await page.locator(".debug-toolbar").waitFor({ state: "hidden" });
    const testLine = lineOf(testFile, TEST_BREAKPOINT_NEEDLE);
    await workbench.openFile("tests/test_greeting.py");
    await clickGutter(testLine);

    const explorer = await workbench.openTestExplorer(["tests", "test_greeting.py"], SESSION_READY_MS);
    const testRow = explorer
      .locator(".monaco-list-row")
      .filter({ has: page.getByText("test_greets_by_name", { exact: true }) })
      .first();
    const debugButton = testRow.getByRole("button", { name: /^Debug Test/ });
    await workbench.hoverUntilShown(testRow, debugButton, UI_MS);
    await debugButton.click();

    // Stopped in the test, in the local test file, at the line of the breakpoint.
    await page.locator(".debug-toolbar .codicon-debug-continue").waitFor({ state: "visible", timeout: STOP_MS });
    await page.locator(`.tabs-container .tab.active[data-resource-name="test_greeting.py"]`).waitFor({ state: "visible" });
    const highlighted = page.locator(".editor-instance .monaco-editor .debug-top-stack-frame-line").first();
    await highlighted.waitFor({ state: "visible" });
    await assertSameRow(highlighted, lineNumber(testLine), "the highlighted line");
    // pytest runs one thread: the Call Stack lists its frames with no thread row to open.
    await page
      .locator(".debug-call-stack .monaco-list-row")
      .filter({ has: page.locator(".stack-frame .expression", { hasText: /^test_greets_by_name$/ }) })
      .first()
      .locator(".line-number", { hasText: new RegExp(`^${String(testLine)}:`) })
      .waitFor({ state: "visible" });
    await workbench.screenshot("stopped-in-a-test");
  });

  step("continues: the app code the test calls stops at its breakpoint, under the test's frame", async () => {
    const page = workbench.page;
    await page.locator(".debug-toolbar .codicon-debug-continue").click();
    await page.locator(`.tabs-container .tab.active[data-resource-name="greeting.py"]`).waitFor({ state: "visible", timeout: STOP_MS });
    const highlighted = page.locator(".editor-instance .monaco-editor .debug-top-stack-frame-line").first();
    await highlighted.waitFor({ state: "visible" });
    await assertSameRow(highlighted, lineNumber(breakpointLine), "the highlighted line");
    const frames = page.locator(".debug-call-stack .monaco-list-row .stack-frame .expression");
    await waitUntil("greet() over the test in the Call Stack", async () => {
      const names = (await frames.allTextContents()).map((name) => name.trim());
      return names[0] === "greet" && names.includes("test_greets_by_name");
    }, UI_MS);
    await workbench.screenshot("stopped-in-app-code-from-a-test");
  });

  step("continues: the run ends and the Test Explorer shows the test failed", async () => {
    const page = workbench.page;
    await page.locator(".debug-toolbar .codicon-debug-continue").click();
    await page.locator(".debug-toolbar").waitFor({ state: "hidden", timeout: STOP_MS });
    await workbench.runCommand("Testing: Focus on Test Explorer View");
    // The one test debugged, failed: its mark in the tree and the run's summary.
    await page.locator(".test-explorer .codicon-testing-failed-icon").first().waitFor({ state: "visible", timeout: STOP_MS });
    await workbench.testRunSummary("failed", "0/1").waitFor({ state: "visible" });
    await workbench.screenshot("debugged-test-failed");
  });
});
