/**
 * Whether the daemon speaks this extension's version of the podlink protocol, read from the
 * `initialize` result's `capabilities.experimental.podlink.protocolVersion`. Pure.
 */
import { PROTOCOL_VERSION } from "./protocol";

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

/** The daemon's protocol version, or undefined when it names none. */
export function daemonProtocolVersion(experimental: unknown): number | undefined {
  const podlink = isRecord(experimental) ? experimental.podlink : undefined;
  const version = isRecord(podlink) ? podlink.protocolVersion : undefined;
  return typeof version === "number" ? version : undefined;
}

/** What is wrong when the daemon speaks another protocol version; undefined when it matches. */
export function protocolMismatch(experimental: unknown): string | undefined {
  const version = daemonProtocolVersion(experimental);
  if (version === PROTOCOL_VERSION) return undefined;
  const spoken =
    version === undefined ? "names no podlink protocol version" : `speaks podlink protocol version ${String(version)}`;
  return (
    `the daemon ${spoken}, but this extension speaks version ${String(PROTOCOL_VERSION)}: ` +
    "install the podlink package of the same release as the extension (or update the extension)"
  );
}
