import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  choosePython,
  compareVersions,
  environmentPython,
  interpretProbe,
  planLaunch,
  privateEnvironmentSteps,
  wheelVersion,
  type LaunchFacts,
  type ProbeResult,
} from "../../src/interpreter";

describe("choosePython", () => {
  it("prefers the podlink.python setting", () => {
    assert.deepEqual(choosePython(" /venv/bin/python ", "/ext/python"), { command: "/venv/bin/python", source: "setting" });
  });
  it("uses the Python extension's interpreter when the setting is empty", () => {
    assert.deepEqual(choosePython("", "/ext/python"), { command: "/ext/python", source: "pythonExtension" });
  });
  it("falls back to python3", () => {
    assert.deepEqual(choosePython("  ", undefined), { command: "python3", source: "default" });
    assert.deepEqual(choosePython("", ""), { command: "python3", source: "default" });
  });
});

describe("interpretProbe", () => {
  it("reads the version on success", () => {
    assert.deepEqual(interpretProbe({ exitCode: 0, stdout: "0.1.0", stderr: "" }), { kind: "hasPodlink", version: "0.1.0" });
  });
  it("keeps the last line of the import error", () => {
    const stderr = "Traceback (most recent call last):\n  File ...\nModuleNotFoundError: No module named 'podlink'\n";
    assert.deepEqual(interpretProbe({ exitCode: 1, stdout: "", stderr }), {
      kind: "noPodlink",
      detail: "ModuleNotFoundError: No module named 'podlink'",
    });
  });
  it("tells a missing interpreter from a missing package", () => {
    assert.equal(interpretProbe({ spawnError: "ENOENT", exitCode: null, stdout: "", stderr: "" }).kind, "notRunnable");
  });
});

describe("planLaunch: which interpreter runs the daemon, or whether to offer an install", () => {
  const has = (version: string): ProbeResult => ({ kind: "hasPodlink", version });
  const lacks: ProbeResult = { kind: "noPodlink", detail: "No module named 'podlink'" };
  const missing: ProbeResult = { kind: "notRunnable", detail: "ENOENT" };
  const base = (overrides: Partial<LaunchFacts>): LaunchFacts => ({
    chosen: { command: "python3", source: "default" },
    chosenProbe: lacks,
    privateEnvironmentPython: "/storage/python-env/bin/python",
    privateProbe: undefined,
    bundledVersion: "0.2.0",
    ...overrides,
  });

  const cases: Array<[string, Partial<LaunchFacts>, string]> = [
    ["the chosen interpreter has podlink", { chosenProbe: has("0.1.0") }, "run:python3"],
    ["the chosen one has it even when the private one is newer", { chosenProbe: has("0.1.0"), privateProbe: has("0.2.0") }, "run:python3"],
    ["only the private environment has it", { privateProbe: has("0.2.0") }, "run:/storage/python-env/bin/python"],
    ["the private environment is older than the bundled wheel", { privateProbe: has("0.1.0") }, "upgradePrivateEnvironment"],
    ["an older private environment, and no base interpreter to upgrade it with", { chosenProbe: missing, privateProbe: has("0.1.0") }, "run:/storage/python-env/bin/python"],
    ["nothing has podlink: offer to install", {}, "offerPrivateEnvironment"],
    ["the private environment exists but is broken: offer again", { privateProbe: lacks }, "offerPrivateEnvironment"],
    ["the chosen interpreter does not run", { chosenProbe: missing }, "noPython"],
    ["no wheel is bundled", { bundledVersion: undefined }, "noPython"],
  ];
  for (const [name, facts, expected] of cases) {
    it(name, () => {
      const plan = planLaunch(base(facts));
      const summary = plan.kind === "run" ? `run:${plan.python.command}` : plan.kind;
      assert.equal(summary, expected);
    });
  }

  it("offers to install with the chosen interpreter as the base, and says why", () => {
    const plan = planLaunch(base({ chosen: { command: "/usr/bin/python3.12", source: "setting" } }));
    assert.ok(plan.kind === "offerPrivateEnvironment");
    assert.equal(plan.basePython.command, "/usr/bin/python3.12");
    assert.match(plan.reason, /podlink is not installed for \/usr\/bin\/python3\.12 \(the podlink\.python setting\)/);
  });
});

describe("the private environment", () => {
  it("puts the interpreter where venv does on each platform", () => {
    assert.equal(environmentPython("/s/env", "linux"), "/s/env/bin/python");
    assert.equal(environmentPython("C:\\s\\env", "win32"), "C:\\s\\env\\Scripts\\python.exe");
  });

  it("creates the environment, then installs the wheel with its dependencies", () => {
    const steps = privateEnvironmentSteps({
      basePython: "python3",
      environmentDir: "/s/env",
      wheelPath: "/ext/out/wheels/podlink-0.1.0-py3-none-any.whl",
      platform: "linux",
      create: true,
    });
    assert.deepEqual(
      steps.map((step) => [step.command, ...step.args]),
      [
        ["python3", "-m", "venv", "--clear", "/s/env"],
        ["/s/env/bin/python", "-m", "pip", "install", "--disable-pip-version-check", "--upgrade", "/ext/out/wheels/podlink-0.1.0-py3-none-any.whl"],
      ],
    );
  });

  it("only installs when upgrading", () => {
    const steps = privateEnvironmentSteps({ basePython: "python3", environmentDir: "/s/env", wheelPath: "/w.whl", platform: "linux", create: false });
    assert.equal(steps.length, 1);
    assert.equal(steps[0]?.command, "/s/env/bin/python");
  });

  it("reads the version of podlink's wheel and nothing else", () => {
    assert.equal(wheelVersion("/x/podlink-0.1.0-py3-none-any.whl"), "0.1.0");
    assert.equal(wheelVersion("podlink-1.2.3rc1-py3-none-any.whl"), "1.2.3rc1");
    assert.equal(wheelVersion("pygls-2.1.1-py3-none-any.whl"), undefined);
    assert.equal(wheelVersion("podlink.tar.gz"), undefined);
  });

  it("compares versions part by part", () => {
    assert.equal(compareVersions("0.1.0", "0.2.0"), -1);
    assert.equal(compareVersions("0.10.0", "0.9.1"), 1);
    assert.equal(compareVersions("1.0", "1.0.0"), 0);
  });
});
