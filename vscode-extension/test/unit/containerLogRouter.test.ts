import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ContainerLogRouter, type LogSink } from "../../src/containerLogRouter";

class RecordingSink implements LogSink {
  text = "";
  ended: { error?: string } | undefined;
  append(text: string): void {
    this.text += text;
  }
  end(error?: string): void {
    this.ended = { error };
  }
}

const message = (streamId: string, text: string, ended?: boolean, error?: string) => ({
  streamId,
  sessionId: "s1",
  text,
  ...(ended === undefined ? {} : { ended }),
  ...(error === undefined ? {} : { error }),
});

describe("container log router", () => {
  it("delivers each stream's text to its own sink, in order", () => {
    const router = new ContainerLogRouter();
    const one = new RecordingSink();
    const two = new RecordingSink();
    router.attach("a", one);
    router.attach("b", two);
    router.receive(message("a", "first\n"));
    router.receive(message("b", "other\n"));
    router.receive(message("a", "second\n"));
    assert.equal(one.text, "first\nsecond\n");
    assert.equal(two.text, "other\n");
    assert.deepEqual(router.open, ["a", "b"]);
  });

  it("keeps what came before the followLogs answer and hands it over on attach", () => {
    const router = new ContainerLogRouter();
    router.receive(message("a", "early\n"));
    router.receive(message("a", "later\n"));
    const sink = new RecordingSink();
    router.attach("a", sink);
    assert.equal(sink.text, "early\nlater\n");
    assert.equal(sink.ended, undefined);
  });

  it("ends a stream on its last message, with the error when it failed", () => {
    const router = new ContainerLogRouter();
    const sink = new RecordingSink();
    router.attach("a", sink);
    router.receive(message("a", "tail", true, "lost the log: connection reset"));
    assert.equal(sink.text, "tail");
    assert.deepEqual(sink.ended, { error: "lost the log: connection reset" });
    assert.deepEqual(router.open, []);
    router.receive(message("a", "after the end\n"));
    assert.equal(sink.text, "tail");
  });

  it("ends a stream whose last message came before the attach", () => {
    const router = new ContainerLogRouter();
    router.receive(message("a", "all of it\n", true));
    const sink = new RecordingSink();
    router.attach("a", sink);
    assert.equal(sink.text, "all of it\n");
    assert.deepEqual(sink.ended, { error: undefined });
    assert.deepEqual(router.open, []);
  });
});
