/**
 * The level each line of `podlink/log` gets in the log channel. The protocol carries a source
 * but no level, so the level comes from the source and from well-known shapes of error lines.
 */
import type { LogSource } from "./protocol";

export type LogLevel = "trace" | "debug" | "info" | "warn" | "error";

const ERROR_LINE = /^(Traceback \(most recent call last\)|E\s{2,}|\S*(Error|Exception)\b:|FATAL|CRITICAL|ERROR\b)/;
const WARNING_LINE = /^(WARN(ING)?\b|\S*Warning:)/;
const DAEMON_TROUBLE = /\b(cannot|could not|failed|lost|unavailable|refused)\b/i;

export function levelFor(source: LogSource, line: string): LogLevel {
  const trimmed = line.trimStart();
  if (ERROR_LINE.test(trimmed)) return "error";
  if (WARNING_LINE.test(trimmed)) return "warn";
  switch (source) {
    case "daemon":
      return DAEMON_TROUBLE.test(trimmed) ? "warn" : "info";
    case "sync":
      // One line per synced batch: useful when looking into the sync, noise otherwise.
      return trimmed.startsWith("synced ") ? "debug" : "info";
    case "app":
    case "build":
    case "test":
      return "info";
  }
}

export interface LogLine {
  level: LogLevel;
  text: string;
}

/** One `podlink/log` message as channel lines: one per line of text, tagged with its source. */
export function logLines(source: LogSource, text: string): LogLine[] {
  return text
    .replace(/\r?\n$/, "")
    .split(/\r?\n/)
    .map((line) => ({ level: levelFor(source, line), text: `[${source}] ${line}` }));
}
