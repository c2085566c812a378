/** Requests' errors as messages a person can act on. Pure. */
import { ErrorCodes, type ErrorReason } from "./protocol";

export interface DescribedError {
  message: string;
  reason?: ErrorReason;
  /** For configInvalid: where in the config file the problem is (1-based line). */
  configLocation?: { file: string; line?: number };
}

const REASONS_BY_CODE = new Map<number, ErrorReason>(
  Object.entries(ErrorCodes).map(([reason, code]) => [code, reason as ErrorReason]),
);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

/** Works on vscode-jsonrpc's ResponseError and on anything else thrown. */
export function describeError(error: unknown): DescribedError {
  if (!isRecord(error)) {
    return { message: String(error) };
  }
  const message = typeof error.message === "string" ? error.message : JSON.stringify(error);
  const data = isRecord(error.data) ? error.data : undefined;
  const reasonFromData = typeof data?.reason === "string" ? (data.reason as ErrorReason) : undefined;
  const reason = reasonFromData ?? (typeof error.code === "number" ? REASONS_BY_CODE.get(error.code) : undefined);
  const described: DescribedError = { message };
  if (reason) {
    described.reason = reason;
  }
  const detail = isRecord(data?.detail) ? data.detail : undefined;
  if (reason === "configInvalid" && detail && typeof detail.file === "string") {
    described.configLocation =
      typeof detail.line === "number" ? { file: detail.file, line: detail.line } : { file: detail.file };
  }
  if (reason === "notImplemented") {
    described.message = `${message}. Update podlink to use this.`;
  }
  return described;
}
