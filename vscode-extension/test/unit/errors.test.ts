import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { describeError } from "../../src/errors";

describe("describeError", () => {
  it("points a configInvalid error at the file and line", () => {
    const error = {
      code: -32001,
      message: "podlink.yaml:7: run.command must be a list",
      data: { reason: "configInvalid", detail: { file: "/w/podlink.yaml", line: 7, key: "run.command" } },
    };
    assert.deepEqual(describeError(error), {
      message: "podlink.yaml:7: run.command must be a list",
      reason: "configInvalid",
      configLocation: { file: "/w/podlink.yaml", line: 7 },
    });
  });

  it("knows the reason from the code when the data lacks it", () => {
    assert.equal(describeError({ code: -32003, message: "no session s9" }).reason, "sessionNotFound");
  });

  it("tells the user what to do about a method the daemon does not implement", () => {
    const described = describeError({ code: -32006, message: "podlink/resumeSync is not implemented", data: { reason: "notImplemented" } });
    assert.equal(described.message, "podlink/resumeSync is not implemented. Update podlink to use this.");
  });

  it("copes with anything thrown", () => {
    assert.deepEqual(describeError(new Error("boom")), { message: "boom" });
    assert.deepEqual(describeError("plain"), { message: "plain" });
  });
});
