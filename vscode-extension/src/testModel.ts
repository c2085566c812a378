/**
 * The test tree and test results, between the protocol and the Testing API. Pure.
 */
import type { Location, TestItem, TestOutcome, TestResultParams } from "./protocol";

/** Ids of the tests (leaves) in a tree, depth first. */
export function leafIds(items: readonly TestItem[]): string[] {
  const ids: string[] = [];
  const visit = (item: TestItem): void => {
    if (item.children && item.children.length > 0) {
      item.children.forEach(visit);
    } else {
      ids.push(item.id);
    }
  };
  items.forEach(visit);
  return ids;
}

/** Every item in a tree by its id, groups included. */
export function indexTests(items: readonly TestItem[]): Map<string, TestItem> {
  const index = new Map<string, TestItem>();
  const visit = (item: TestItem): void => {
    index.set(item.id, item);
    item.children?.forEach(visit);
  };
  items.forEach(visit);
  return index;
}

/**
 * What to ask the daemon to run. `undefined` ids means everything, which lets the runner
 * collect tests nobody has discovered yet. Excluding from everything needs the explicit list.
 */
export function selectTestIds(
  allLeafIds: readonly string[],
  include: readonly string[] | undefined,
  exclude: readonly string[],
  childrenOf: (id: string) => readonly string[],
): string[] | undefined {
  if (include === undefined && exclude.length === 0) {
    return undefined;
  }
  const excluded = new Set<string>();
  const exclude_ = (id: string): void => {
    excluded.add(id);
    childrenOf(id).forEach(exclude_);
  };
  exclude.forEach(exclude_);
  if (include === undefined) {
    return allLeafIds.filter((id) => !excluded.has(id));
  }
  if (excluded.size === 0) {
    return [...include];
  }
  // With exclusions inside an included group, the group is expanded to its remaining leaves.
  const selected: string[] = [];
  const expand = (id: string): void => {
    if (excluded.has(id)) return;
    const children = childrenOf(id);
    const hasExcludedDescendant = children.some((child) => excluded.has(child) || subtreeHasExcluded(child));
    if (children.length > 0 && hasExcludedDescendant) {
      children.forEach(expand);
    } else {
      selected.push(id);
    }
  };
  const subtreeHasExcluded = (id: string): boolean =>
    childrenOf(id).some((child) => excluded.has(child) || subtreeHasExcluded(child));
  include.forEach(expand);
  return selected;
}

export interface ExpectedActual {
  expected: string;
  actual: string;
}

function unquote(literal: string): string {
  const match = /^(['"])(.*)\1$/s.exec(literal.trim());
  if (match && !match[2]!.includes("\\")) {
    return match[2]!;
  }
  return literal.trim();
}

/**
 * pytest writes `assert ACTUAL == EXPECTED` by convention (the value under test on the left).
 * Only that simple first-line shape is read; anything else has no diff rather than a wrong one.
 */
export function parseExpectedActual(message: string): ExpectedActual | undefined {
  const firstLine = message.split("\n", 1)[0] ?? "";
  const match = /^(?:(?:E\s+)?AssertionError:\s*)?assert (.+?) == (.+)$/.exec(firstLine.trim());
  if (!match) {
    return undefined;
  }
  return { actual: unquote(match[1]!), expected: unquote(match[2]!) };
}

export interface TestMessageModel {
  text: string;
  expectedActual?: ExpectedActual;
  location?: Location;
}

/** The states the Test Explorer has; pytest's other outcomes are shown as one of these. */
export type ExplorerState = "passed" | "failed" | "errored" | "skipped";

export interface TestUpdate {
  id: string;
  outcome: TestOutcome;
  state: ExplorerState;
  durationMs?: number;
  message?: TestMessageModel;
  /** Shown beside the test's name where the state alone would mislead ("expected failure"). */
  badge?: string;
  /** With CRLF line ends, as the test output terminal wants them. */
  output?: string;
}

export function testUpdate(result: TestResultParams): TestUpdate {
  const outcome: string = result.outcome;
  const update: TestUpdate = { id: result.id, outcome: result.outcome, state: "skipped" };
  if (result.durationMs !== undefined) {
    update.durationMs = result.durationMs;
  }
  let note: string | undefined;
  switch (outcome) {
    case "passed":
      update.state = "passed";
      break;
    case "failed":
    case "errored": {
      update.state = outcome;
      const text = result.message ?? outcome;
      const message: TestMessageModel = { text };
      if (outcome === "failed") {
        const expectedActual = parseExpectedActual(text);
        if (expectedActual) message.expectedActual = expectedActual;
      }
      if (result.location) message.location = result.location;
      update.message = message;
      break;
    }
    case "xfailed":
      // It failed, as its xfail mark said it would: the run went as expected.
      update.state = "passed";
      update.badge = "expected failure";
      note = `XFAIL ${result.id}${result.message ? ` - ${result.message}` : ""}`;
      break;
    case "xpassed":
      update.state = "passed";
      update.badge = "unexpected pass";
      note = `XPASS ${result.id}${result.message ? ` - ${result.message}` : ""}`;
      break;
    default:
      // "skipped", and any outcome a newer daemon may add: ended, neither passed nor failed.
      update.state = "skipped";
      if (outcome !== "skipped") update.badge = outcome;
      if (result.message) update.message = { text: result.message };
  }
  const output = [note, result.output].filter((part): part is string => Boolean(part)).join("\n");
  if (output) {
    update.output = toTerminalText(output);
  }
  return update;
}

export function toTerminalText(text: string): string {
  const crlf = text.replace(/\r?\n/g, "\r\n");
  return crlf.endsWith("\r\n") ? crlf : crlf + "\r\n";
}

/** Files whose saving or creation can change the set of tests (pytest's default patterns). */
export function isTestFile(relativePath: string): boolean {
  const segments = relativePath.split(/[\\/]/);
  // Hidden folders (.podlink's local target, .venv, .git) and dependencies hold no tests of the project.
  if (segments.slice(0, -1).some((segment) => segment.startsWith(".") || segment === "node_modules")) {
    return false;
  }
  const name = segments.at(-1) ?? "";
  return /^test_.*\.py$/.test(name) || /^.*_test\.py$/.test(name) || name === "conftest.py";
}

/** The run summary for the end of a run's output. */
export function summaryLine(counts: {
  passed: number;
  failed: number;
  skipped: number;
  errored: number;
  xfailed?: number;
  xpassed?: number;
  durationMs: number;
}): string {
  const parts = [`${String(counts.passed)} passed`, `${String(counts.failed)} failed`];
  if (counts.skipped > 0) parts.push(`${String(counts.skipped)} skipped`);
  if (counts.errored > 0) parts.push(`${String(counts.errored)} errored`);
  if (counts.xfailed) parts.push(`${String(counts.xfailed)} xfailed`);
  if (counts.xpassed) parts.push(`${String(counts.xpassed)} xpassed`);
  return `${parts.join(", ")} in ${(counts.durationMs / 1000).toFixed(2)} s`;
}
