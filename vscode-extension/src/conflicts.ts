/**
 * Where a sync issue's files are. An issue's paths are relative to its sync entry's local
 * folder, which the issue names (`entry`). Two-way sync keeps the local file and saves the
 * target's version beside it as `<name>.podlink-conflict-<stamp>`; when the issue does not
 * name that copy, it is found by that naming. Pure.
 */
import * as path from "node:path";

export const CONFLICT_MARKER = ".podlink-conflict-";

/** The newest conflict copy of `relativePath` among the names in its folder, if any. */
export function conflictCopyFor(relativePath: string, namesInFolder: readonly string[]): string | undefined {
  const base = path.posix.basename(relativePath);
  const copies = namesInFolder.filter((name) => name.startsWith(base + CONFLICT_MARKER)).sort();
  const newest = copies.at(-1);
  if (newest === undefined) return undefined;
  const folder = path.posix.dirname(relativePath);
  return folder === "." ? newest : `${folder}/${newest}`;
}

/**
 * The local folder a sync issue's paths are relative to: its entry's folder, relative to the
 * workspace folder or absolute; the workspace folder itself when the issue names no entry.
 */
export function syncRootOf(workspaceFolder: string, entry: string | undefined): string {
  if (entry === undefined) return workspaceFolder;
  return path.isAbsolute(entry) ? path.normalize(entry) : path.join(workspaceFolder, entry);
}
