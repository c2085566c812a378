/**
 * The level each line of `podlink/log` gets in the log channel: the level the daemon gave the
 * message (a daemon that gives none is shown at info). Pure.
 */
import type { LogLevel as MessageLevel, LogParams } from "./protocol";

export type LogLevel = "trace" | "debug" | "info" | "warn" | "error";

const CHANNEL_LEVELS: Record<MessageLevel, LogLevel> = {
  debug: "debug",
  info: "info",
  warning: "warn",
  error: "error",
};

export function levelFor(level: MessageLevel | undefined): LogLevel {
  return level === undefined ? "info" : CHANNEL_LEVELS[level];
}

export interface LogLine {
  level: LogLevel;
  text: string;
}

/** One `podlink/log` message as channel lines: one per line of text, tagged with its source. */
export function logLines(params: Pick<LogParams, "source" | "text" | "level">): LogLine[] {
  const level = levelFor(params.level);
  return params.text
    .replace(/\r?\n$/, "")
    .split(/\r?\n/)
    .map((line) => ({ level, text: `[${params.source}] ${line}` }));
}
