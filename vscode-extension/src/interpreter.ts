/**
 * Which Python runs the daemon, and what to do when podlink is not installed there.
 * Pure: the facts (settings, the Python extension's answer, probe results) come in as values.
 */
import * as path from "node:path";

export const DEFAULT_PYTHON = "python3";

export type PythonSource = "setting" | "pythonExtension" | "default" | "privateEnvironment";

export interface PythonChoice {
  command: string;
  source: PythonSource;
}

const SOURCE_DESCRIPTIONS: Record<PythonSource, string> = {
  setting: "the podlink.python setting",
  pythonExtension: "the Python extension's active interpreter",
  default: "the default",
  privateEnvironment: "podlink's private environment",
};

export function describeChoice(choice: PythonChoice): string {
  return `${choice.command} (${SOURCE_DESCRIPTIONS[choice.source]})`;
}

/** The setting wins, then the Python extension's interpreter, then plain `python3`. */
export function choosePython(configured: string, activeEnvironmentPath: string | undefined): PythonChoice {
  const fromSetting = configured.trim();
  if (fromSetting) {
    return { command: fromSetting, source: "setting" };
  }
  const fromExtension = activeEnvironmentPath?.trim();
  if (fromExtension) {
    return { command: fromExtension, source: "pythonExtension" };
  }
  return { command: DEFAULT_PYTHON, source: "default" };
}

/** What running `python -c "import podlink; ..."` found out about one interpreter. */
export type ProbeResult =
  | { kind: "hasPodlink"; version: string }
  | { kind: "noPodlink"; detail: string }
  | { kind: "notRunnable"; detail: string };

/** Prints podlink's version; exits non-zero when podlink cannot be imported. */
export const PROBE_ARGS = ["-c", "import sys, podlink; sys.stdout.write(podlink.__version__)"];

/** A probe's exit as a ProbeResult: a spawn failure means the interpreter itself is missing. */
export function interpretProbe(outcome: {
  spawnError?: string;
  exitCode: number | null;
  stdout: string;
  stderr: string;
}): ProbeResult {
  if (outcome.spawnError !== undefined) {
    return { kind: "notRunnable", detail: outcome.spawnError };
  }
  if (outcome.exitCode === 0) {
    return { kind: "hasPodlink", version: outcome.stdout.trim() };
  }
  const lastLine = outcome.stderr.trim().split("\n").pop() ?? "";
  return { kind: "noPodlink", detail: lastLine || `exit code ${String(outcome.exitCode)}` };
}

export type LaunchPlan =
  | { kind: "run"; python: PythonChoice }
  /** The private environment exists but holds an older podlink than the bundled wheel. */
  | { kind: "upgradePrivateEnvironment"; basePython: PythonChoice; environmentPython: string }
  /** Ask before installing: the user's interpreter lacks podlink. */
  | { kind: "offerPrivateEnvironment"; basePython: PythonChoice; reason: string }
  | { kind: "noPython"; reason: string };

export interface LaunchFacts {
  chosen: PythonChoice;
  chosenProbe: ProbeResult;
  privateEnvironmentPython: string;
  /** Undefined when the private environment does not exist yet. */
  privateProbe: ProbeResult | undefined;
  /** The version of the wheel shipped in the extension, when there is one. */
  bundledVersion: string | undefined;
}

/**
 * The interpreter the user chose wins when it has podlink, so a developer's editable install is
 * used as is. Otherwise the private environment serves, kept at the bundled version.
 */
export function planLaunch(facts: LaunchFacts): LaunchPlan {
  if (facts.chosenProbe.kind === "hasPodlink") {
    return { kind: "run", python: facts.chosen };
  }
  const privateChoice: PythonChoice = {
    command: facts.privateEnvironmentPython,
    source: "privateEnvironment",
  };
  if (facts.privateProbe?.kind === "hasPodlink") {
    const outdated =
      facts.bundledVersion !== undefined &&
      compareVersions(facts.privateProbe.version, facts.bundledVersion) < 0;
    if (outdated && facts.chosenProbe.kind !== "notRunnable") {
      return {
        kind: "upgradePrivateEnvironment",
        basePython: facts.chosen,
        environmentPython: facts.privateEnvironmentPython,
      };
    }
    return { kind: "run", python: privateChoice };
  }
  if (facts.chosenProbe.kind === "notRunnable") {
    return {
      kind: "noPython",
      reason: `${describeChoice(facts.chosen)} cannot be run: ${facts.chosenProbe.detail}`,
    };
  }
  if (facts.bundledVersion === undefined) {
    return {
      kind: "noPython",
      reason: `podlink is not installed for ${describeChoice(facts.chosen)} and this build of the extension ships no wheel`,
    };
  }
  return {
    kind: "offerPrivateEnvironment",
    basePython: facts.chosen,
    reason: `podlink is not installed for ${describeChoice(facts.chosen)}`,
  };
}

/** The interpreter inside a virtual environment, as `python -m venv` lays it out. */
export function environmentPython(environmentDir: string, platform: NodeJS.Platform): string {
  return platform === "win32"
    ? path.win32.join(environmentDir, "Scripts", "python.exe")
    : path.posix.join(environmentDir, "bin", "python");
}

export interface InstallStep {
  title: string;
  command: string;
  args: string[];
}

/** Create the environment (unless only upgrading), then install the wheel with its dependencies. */
export function privateEnvironmentSteps(options: {
  basePython: string;
  environmentDir: string;
  wheelPath: string;
  platform: NodeJS.Platform;
  create: boolean;
}): InstallStep[] {
  const python = environmentPython(options.environmentDir, options.platform);
  const steps: InstallStep[] = [];
  if (options.create) {
    steps.push({
      title: "Creating a virtual environment",
      command: options.basePython,
      args: ["-m", "venv", "--clear", options.environmentDir],
    });
  }
  steps.push({
    title: "Installing podlink and its dependencies",
    command: python,
    args: ["-m", "pip", "install", "--disable-pip-version-check", "--upgrade", options.wheelPath],
  });
  return steps;
}

/** `podlink-0.1.0-py3-none-any.whl` → `0.1.0`; undefined for a name that is not podlink's wheel. */
export function wheelVersion(fileName: string): string | undefined {
  const match = /^podlink-([^-]+)-[^-]+-[^-]+-[^-]+\.whl$/.exec(path.basename(fileName));
  return match?.[1];
}

/** Dotted release numbers compared part by part; a missing part counts as 0. */
export function compareVersions(left: string, right: string): number {
  const parts = (version: string) =>
    version.split(/[.+-]/).map((part) => Number.parseInt(part, 10) || 0);
  const a = parts(left);
  const b = parts(right);
  for (let index = 0; index < Math.max(a.length, b.length); index += 1) {
    const difference = (a[index] ?? 0) - (b[index] ?? 0);
    if (difference !== 0) {
      return Math.sign(difference);
    }
  }
  return 0;
}
