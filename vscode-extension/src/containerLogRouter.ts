/**
 * Routes `podlink/containerLog` messages to the stream each belongs to. A stream's first
 * messages can arrive before the `podlink/followLogs` answer that names it: they wait here
 * until the stream is attached. Pure: no `vscode`, unit-tested under Node.
 */
import type { ContainerLogParams } from "./protocol";

export interface LogSink {
  append(text: string): void;
  /** The stream is over; `error` says why when it failed. */
  end(error?: string): void;
}

export class ContainerLogRouter {
  private readonly sinks = new Map<string, LogSink>();
  private readonly early = new Map<string, ContainerLogParams[]>();

  /** Deliver one message, or keep it until its stream is attached. */
  receive(params: ContainerLogParams): void {
    const sink = this.sinks.get(params.streamId);
    if (!sink) {
      const waiting = this.early.get(params.streamId) ?? [];
      waiting.push(params);
      this.early.set(params.streamId, waiting);
      return;
    }
    this.deliver(sink, params);
  }

  /** From now on `sink` gets the stream's messages, first those that came early. */
  attach(streamId: string, sink: LogSink): void {
    this.sinks.set(streamId, sink);
    const waiting = this.early.get(streamId) ?? [];
    this.early.delete(streamId);
    for (const params of waiting) {
      if (!this.sinks.has(streamId)) break;
      this.deliver(sink, params);
    }
  }

  /** The streams that have not ended. */
  get open(): string[] {
    return [...this.sinks.keys()];
  }

  private deliver(sink: LogSink, params: ContainerLogParams): void {
    if (params.text) sink.append(params.text);
    if (params.ended) {
      this.sinks.delete(params.streamId);
      sink.end(params.error);
    }
  }
}
