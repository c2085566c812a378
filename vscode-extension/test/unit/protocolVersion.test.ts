import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PROTOCOL_VERSION } from "../../src/protocol";
import { daemonProtocolVersion, protocolMismatch } from "../../src/protocolVersion";

describe("protocol version", () => {
  it("accepts a daemon of this extension's version", () => {
    assert.equal(protocolMismatch({ podlink: { protocolVersion: PROTOCOL_VERSION } }), undefined);
  });

  it("names both versions when the daemon speaks another one", () => {
    const other = PROTOCOL_VERSION + 1;
    const message = protocolMismatch({ podlink: { protocolVersion: other } });
    assert.equal(
      message,
      `the daemon speaks podlink protocol version ${String(other)}, but this extension speaks version ` +
        `${String(PROTOCOL_VERSION)}: install the podlink package of the same release as the extension ` +
        "(or update the extension)",
    );
  });

  it("says so when the daemon names no version at all", () => {
    for (const experimental of [undefined, null, {}, { podlink: {} }, { podlink: { protocolVersion: "1" } }]) {
      assert.equal(daemonProtocolVersion(experimental), undefined);
      assert.match(protocolMismatch(experimental) ?? "", /^the daemon names no podlink protocol version, but/);
    }
  });
});
