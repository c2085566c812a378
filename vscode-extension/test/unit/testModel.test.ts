import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { TestItem, TestResultParams } from "../../src/protocol";
import { indexTests, isTestFile, leafIds, parseExpectedActual, selectTestIds, summaryLine, testUpdate } from "../../src/testModel";

const tree: TestItem[] = [
  {
    id: "tests",
    label: "tests",
    children: [
      {
        id: "tests/test_greeting.py",
        label: "test_greeting.py",
        uri: "file:///work/hello/tests/test_greeting.py",
        children: [
          { id: "tests/test_greeting.py::test_greets_by_name", label: "test_greets_by_name" },
          { id: "tests/test_greeting.py::test_shout", label: "test_shout" },
        ],
      },
      { id: "tests/test_other.py::test_one", label: "test_one" },
    ],
  },
];
const index = indexTests(tree);
const childrenOf = (id: string) => index.get(id)?.children?.map((child) => child.id) ?? [];
const allLeaves = leafIds(tree);

describe("the test tree", () => {
  it("finds the leaves and indexes every item", () => {
    assert.deepEqual(allLeaves, [
      "tests/test_greeting.py::test_greets_by_name",
      "tests/test_greeting.py::test_shout",
      "tests/test_other.py::test_one",
    ]);
    assert.equal(index.size, 5);
  });
});

describe("selectTestIds: what a run request asks the daemon for", () => {
  it("asks for everything (no ids) when nothing is included or excluded", () => {
    assert.equal(selectTestIds(allLeaves, undefined, [], childrenOf), undefined);
  });
  it("passes included groups as they are: the runner expands them", () => {
    assert.deepEqual(selectTestIds(allLeaves, ["tests/test_greeting.py"], [], childrenOf), ["tests/test_greeting.py"]);
  });
  it("lists the remaining leaves when excluding from everything", () => {
    assert.deepEqual(selectTestIds(allLeaves, undefined, ["tests/test_greeting.py"], childrenOf), ["tests/test_other.py::test_one"]);
  });
  it("expands an included group around an excluded test", () => {
    assert.deepEqual(selectTestIds(allLeaves, ["tests"], ["tests/test_greeting.py::test_shout"], childrenOf), [
      "tests/test_greeting.py::test_greets_by_name",
      "tests/test_other.py::test_one",
    ]);
  });
});

describe("test results", () => {
  const location = {
    uri: "file:///work/hello/tests/test_greeting.py",
    range: { start: { line: 4, character: 0 }, end: { line: 4, character: 10000 } },
  };

  it("turns a pytest assertion into a failure with expected and actual at its line", () => {
    const update = testUpdate({
      runId: "r",
      id: "tests/test_greeting.py::test_greets_by_name",
      outcome: "failed",
      durationMs: 1.2,
      message: "assert 'Hello, Ada!' == 'Hello, Grace!'\n  \n  - Hello, Grace!\n  + Hello, Ada!",
      location,
      output: "captured\nlines",
    });
    assert.equal(update.outcome, "failed");
    assert.equal(update.durationMs, 1.2);
    assert.deepEqual(update.message?.expectedActual, { actual: "Hello, Ada!", expected: "Hello, Grace!" });
    assert.deepEqual(update.message?.location, location);
    assert.equal(update.output, "captured\r\nlines\r\n");
  });

  it("keeps an error's message without inventing a diff", () => {
    const update = testUpdate({ runId: "r", id: "t", outcome: "errored", message: "fixture 'db' not found" });
    assert.equal(update.message?.text, "fixture 'db' not found");
    assert.equal(update.message?.expectedActual, undefined);
  });

  it("gives a failure without a message its outcome as the message", () => {
    assert.equal(testUpdate({ runId: "r", id: "t", outcome: "failed" }).message?.text, "failed");
  });

  it("passes a pass through with nothing to say", () => {
    assert.deepEqual(testUpdate({ runId: "r", id: "t", outcome: "passed" }), { id: "t", outcome: "passed", state: "passed" });
  });

  it("keeps the reason a test was skipped", () => {
    const update = testUpdate({ runId: "r", id: "t", outcome: "skipped", message: "needs docker" });
    assert.equal(update.state, "skipped");
    assert.equal(update.message?.text, "needs docker");
    assert.equal(update.badge, undefined);
  });

  it("shows an expected failure as one, not as a skip", () => {
    const update = testUpdate({ runId: "r", id: "t.py::test_x", outcome: "xfailed", message: "bug 7" });
    assert.equal(update.state, "passed");
    assert.equal(update.badge, "expected failure");
    assert.equal(update.output, "XFAIL t.py::test_x - bug 7\r\n");
  });

  it("says a test passed although it was expected to fail", () => {
    const update = testUpdate({ runId: "r", id: "t.py::test_x", outcome: "xpassed", output: "out" });
    assert.equal(update.state, "passed");
    assert.equal(update.badge, "unexpected pass");
    assert.equal(update.output, "XPASS t.py::test_x\r\nout\r\n");
  });

  it("shows an outcome it does not know as ended without a verdict", () => {
    const future = { runId: "r", id: "t", outcome: "rerun", message: "flaky" } as unknown as TestResultParams;
    const update = testUpdate(future);
    assert.equal(update.state, "skipped");
    assert.equal(update.badge, "rerun");
    assert.equal(update.message?.text, "flaky");
  });
});

describe("parseExpectedActual", () => {
  const cases: Array<[string, ReturnType<typeof parseExpectedActual>]> = [
    ["assert 3 == 4", { actual: "3", expected: "4" }],
    ["AssertionError: assert 'a' == 'b'", { actual: "a", expected: "b" }],
    ["assert 'it\\'s' == 'b'", { actual: "'it\\'s'", expected: "b" }],
    ["assert x > 3", undefined],
    ["ValueError: boom", undefined],
  ];
  for (const [message, expected] of cases) {
    it(message, () => assert.deepEqual(parseExpectedActual(message), expected));
  }
});

describe("isTestFile", () => {
  const cases: Array<[string, boolean]> = [
    ["tests/test_api.py", true],
    ["api_test.py", true],
    ["tests/conftest.py", true],
    ["app/api.py", false],
    ["tests/test_data.json", false],
    [".podlink/target/app/tests/test_api.py", false],
    [".venv/lib/site-packages/x/test_y.py", false],
  ];
  for (const [file, expected] of cases) {
    it(`${file} → ${String(expected)}`, () => assert.equal(isTestFile(file), expected));
  }
});

describe("summaryLine", () => {
  it("mentions skipped and errored tests only when there are some", () => {
    assert.equal(summaryLine({ passed: 3, failed: 1, skipped: 0, errored: 0, durationMs: 1234 }), "3 passed, 1 failed in 1.23 s");
    assert.equal(summaryLine({ passed: 1, failed: 0, skipped: 2, errored: 1, durationMs: 50 }), "1 passed, 0 failed, 2 skipped, 1 errored in 0.05 s");
    assert.equal(
      summaryLine({ passed: 1, failed: 0, skipped: 0, errored: 0, xfailed: 2, xpassed: 1, durationMs: 50 }),
      "1 passed, 0 failed, 2 xfailed, 1 xpassed in 0.05 s",
    );
  });
});
