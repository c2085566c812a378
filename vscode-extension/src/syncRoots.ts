/**
 * Where a sync issue's files are. An issue's paths are relative to its sync entry's local
 * folder, which the issue names (`entry`). Pure.
 */
import * as path from "node:path";

/**
 * The local folder a sync issue's paths are relative to: its entry's folder, relative to the
 * workspace folder or absolute; the workspace folder itself when the issue names no entry.
 */
export function syncRootOf(workspaceFolder: string, entry: string | undefined): string {
  if (entry === undefined) return workspaceFolder;
  return path.isAbsolute(entry) ? path.normalize(entry) : path.join(workspaceFolder, entry);
}
